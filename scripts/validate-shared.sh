#!/usr/bin/env bash
# Imports every set of ../shared/fixtures/sets (or the folder given) into a fresh data dir and
# runs tests/tools/validate.py on each playlist: the full MP4 (with HTTP Range checks) and the
# quasi-stream (?mode=stream). Prints one line per check and a summary; exit 1 if any failed.
#   scripts/validate-shared.sh [SETS_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
SETS=${1:-../shared/fixtures/sets}
cargo build --release -q || exit 1
B=target/release/jitmux
D=$(mktemp -d); trap 'kill $PID 2>/dev/null; rm -rf "$D"' EXIT
T=$($B --data-dir "$D" user add v | tail -1)
$B --data-dir "$D" serve --listen 127.0.0.1:0 > "$D/serve.out" 2>"$D/serve.err" & PID=$!
for _ in $(seq 50); do grep -q listening "$D/serve.out" && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$D/serve.out")
pass=0; fail=0; n=0
for set in $(find "$SETS" -mindepth 2 -maxdepth 2 -type d | sort); do
  for pl in "$set"/index*.m3u8; do
    n=$((n + 1))
    name="$(basename "$set")/$(basename "$pl")"
    P=$($B --data-dir "$D" import --user v --camera "c$n" "$pl" 2>"$D/imp.err" | tail -1)
    if [ -z "$P" ]; then echo "FAIL import $name: $(cat "$D/imp.err")"; fail=$((fail + 1)); continue; fi
    # ffmpeg 5.1's HLS demuxer mis-times the first ADTS frames of audio-only MPEG-TS playlists;
    # read those segments with the TS demuxer directly.
    mode=auto; case "$name" in *aac_only_ts*) mode=sections;; esac
    for target in "" "?mode=stream"; do
      extra=(); [ -n "$target" ] && extra=(--no-range)
      if python3 tests/tools/validate.py --source-mode $mode --source "$pl" --target "$BASE/v1/files$P$target" \
           --header "Authorization: Bearer $T" "${extra[@]}" > "$D/v.log" 2>&1; then
        echo "PASS $name ${target:-full}"; pass=$((pass + 1))
      else
        echo "FAIL $name ${target:-full}: $(grep -E '^\[FAIL' "$D/v.log" | head -3 | tr '\n' ' ')"; fail=$((fail + 1))
      fi
    done
  done
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
