#!/usr/bin/env bash
# Runs the jitmux-format fuzz targets one after another (never two fuzzers at once) and prints,
# per target, the executions done, exec/s and the result. Exits non-zero if any target crashed
# (a panic, a failed assertion, a timeout or running out of memory).
#
# usage: fuzz/run.sh [--runs N | --seconds S] [target...]
#   --runs N      stop each target after N executions (libFuzzer -runs=N; the default, 20000)
#   --seconds S   stop each target after S seconds (libFuzzer -max_total_time=S)
#   target...     any of: ts_segment fmp4_init fmp4_segment m3u8 sample_index sps (default: all)
#
# Environment:
#   FUZZ_SANITIZER=address|none   cargo fuzz --sanitizer (default none: jitmux-format has no
#                                 `unsafe`, and ASan costs about half the exec/s)
#   FUZZ_DEBUG_ASSERTIONS=1|0     build with debug assertions and overflow checks (default 1:
#                                 the crate's own debug_assert!s are promises too)
#   FUZZ_TIMEOUT=S                libFuzzer -timeout per input, seconds (default 10)
#   FUZZ_JOBS=N                   cargo build jobs (default 1: the machine is shared)
#   JITMUX_FUZZ_STRICT=1          stronger checks (see fuzz_targets/common/mod.rs)
#
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo fuzz use the nightly-only flags.
# Seeds the corpora (fuzz/seed.sh) when a target's corpus is missing or empty. Crash inputs go
# to fuzz/artifacts/<target>/, logs to fuzz/target/fuzz-logs/<target>.log. To reproduce or
# minimize a crash of the default build (from the repository root):
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s none -a <target> fuzz/artifacts/<target>/crash-…
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz -s none -a <target> fuzz/artifacts/<target>/crash-…
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
all_targets=(ts_segment fmp4_init fmp4_segment m3u8 sample_index sps)

limit=(-runs=20000)
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) limit=("-runs=${2:?--runs needs a number}"); shift 2 ;;
        --seconds) limit=("-max_total_time=${2:?--seconds needs a number}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *)
            if [[ " ${all_targets[*]} " != *" $1 "* ]]; then
                echo "unknown target $1 (targets: ${all_targets[*]})" >&2
                exit 2
            fi
            targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${FUZZ_JOBS:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== cargo fuzz missing: cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked || exit 1
fi

for t in "${targets[@]}"; do
    if [ -z "$(ls -A "$here/corpus/$t" 2>/dev/null)" ]; then
        echo "== seeding fuzz/corpus/ (fuzz/seed.sh)"
        "$here/seed.sh" || exit 1
        break
    fi
done

build_flags=(--fuzz-dir "$here" --sanitizer "${FUZZ_SANITIZER:-none}")
# cargo fuzz builds with optimizations either way; without -O it adds debug assertions.
if [ "${FUZZ_DEBUG_ASSERTIONS:-1}" != 0 ]; then build_flags+=(--debug-assertions); else build_flags+=(--release); fi
# Builds other than the default one get a target dir of their own, so that switching does not
# rebuild everything (cargo does not keep artifacts per RUSTFLAGS).
if [ "${FUZZ_SANITIZER:-none}" != none ] || [ "${FUZZ_DEBUG_ASSERTIONS:-1}" = 0 ]; then
    build_flags+=(--target-dir "$here/target/san-${FUZZ_SANITIZER:-none}-da${FUZZ_DEBUG_ASSERTIONS:-1}")
fi

cd "$here/.." || exit 1
logs="$here/target/fuzz-logs"
mkdir -p "$logs"

for t in "${targets[@]}"; do
    start=$(date +%s)
    echo "== building $t: cargo fuzz build ${build_flags[*]} $t"
    if ! cargo fuzz build "${build_flags[@]}" "$t"; then
        echo "build of $t failed" >&2
        exit 1
    fi
    echo "   built in $(( $(date +%s) - start ))s"
done

failed=0
summary=()
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    echo "== fuzzing $t: cargo fuzz run ${build_flags[*]} $t -- ${limit[*]} -timeout=${FUZZ_TIMEOUT:-10} -print_final_stats=1"
    start=$(date +%s.%N)
    cargo fuzz run "${build_flags[@]}" "$t" -- "${limit[@]}" -timeout="${FUZZ_TIMEOUT:-10}" \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then
        # No final stats (the run died): the last status line, "#N ... exec/s: R ...".
        last=$(grep -E '^#[0-9]+' "$log" | tail -1)
        execs=$(sed -E 's/^#([0-9]+).*/\1/' <<<"$last")
        rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$last")
    fi
    # libFuzzer's average is executions / whole seconds (0 for a run under a second): then use
    # the wall time of `cargo fuzz run`, which includes cargo's own start-up (~0.3 s).
    if [ -n "$execs" ] && [ "${rate:-0}" -eq 0 ] 2>/dev/null; then
        rate=$(awk -v n="$execs" -v s="$secs" 'BEGIN { if (s > 0) printf "~%d", n / s; else print "?" }')
    fi
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -nE 's/.*cov: ([0-9]+).*/\1/p')
    corpus=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -nE 's/.*corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/p')

    if [ $rc -eq 0 ]; then
        result=ok
    else
        failed=1
        kind=$(grep -oE 'ERROR: libFuzzer: [a-z-]+' "$log" | head -1 | sed 's/ERROR: libFuzzer: //')
        artifact=$(sed -nE 's/.*(Test unit|artifact_prefix.*Test unit) written to ([^ ]+).*/\2/p' "$log" | tail -1)
        result="CRASH (${kind:-exit $rc}) ${artifact:-see $log}"
        echo "---- $t crashed; panic message and artifact:"
        grep -A3 -E "panicked at|ERROR: libFuzzer" "$log" | head -12
        grep -E "Test unit written to|Base64:" "$log" | head -2
    fi
    line=$(printf '%-13s %10s execs %8s exec/s %6ss  cov %-6s corpus %-10s %s' \
        "$t" "${execs:-?}" "${rate:-?}" "$secs" "${cov:-?}" "${corpus:-?}" "$result")
    echo "$line"
    summary+=("$line")
done

echo "== summary (${limit[*]}; sanitizer ${FUZZ_SANITIZER:-none}; debug assertions ${FUZZ_DEBUG_ASSERTIONS:-1}; logs in $logs)"
printf '%s\n' "${summary[@]}"
exit $failed
