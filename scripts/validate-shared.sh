#!/usr/bin/env bash
# Imports every set of ../shared/fixtures/sets (or the folder given) into a fresh data dir and
# runs tests/tools/validate.py on each playlist: the full MP4 (with HTTP Range checks) and the
# quasi-stream (?mode=stream). Prints one line per check and a summary; exit 1 if any failed.
# With --s3, every set is uploaded to a SeaweedFS started for the run (scripts/seaweed.sh) and
# indexed there in place (import s3://…), the node's own objects going to a bucket too; with
# --s3-copied, every set is imported (copied) into an S3 store instead.
#   scripts/validate-shared.sh [--s3 | --s3-copied] [SETS_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
S3=0; COPIED=0
case "${1:-}" in
  --s3) S3=1; shift ;;
  --s3-copied) S3=1; COPIED=1; shift ;;
esac
SETS=${1:-../shared/fixtures/sets}
cargo build --release -q || exit 1
B=target/release/jitmux
D=$(mktemp -d); trap 'kill $PID 2>/dev/null; [ $S3 = 1 ] && scripts/seaweed.sh stop "$D/sw" >/dev/null; rm -rf "$D"' EXIT
if [ $S3 = 1 ]; then
  scripts/seaweed.sh start "$D/sw" 18600 >/dev/null || exit 1
  . "$D/sw/env"; export AWS_EC2_METADATA_DISABLED=true JITMUX_STORE=s3://jitmux/node
  scripts/seaweed.sh mkbucket "$D/sw" jitmux >/dev/null || exit 1
fi
T=$($B --data-dir "$D" user add v | tail -1)
[ $S3 = 1 ] && $B --data-dir "$D" user grant v s3://archive/ >/dev/null
$B --data-dir "$D" serve --listen 127.0.0.1:0 > "$D/serve.out" 2>"$D/serve.err" & PID=$!
for _ in $(seq 50); do grep -q listening "$D/serve.out" && break; sleep 0.1; done
BASE=$(sed -n 's/^listening on //p' "$D/serve.out")
pass=0; fail=0; n=0
for set in $(find "$SETS" -mindepth 2 -maxdepth 2 -type d | sort); do
  for pl in "$set"/index*.m3u8; do
    n=$((n + 1))
    name="$(basename "$set")/$(basename "$pl")"
    src="$pl"
    if [ $S3 = 1 ] && [ $COPIED = 0 ]; then
      for f in "$set"/*; do
        [ -f "$f" ] && scripts/seaweed.sh put "$D/sw" "archive/c$n/$(basename "$f")" "$f" >/dev/null
      done
      src="s3://archive/c$n/$(basename "$pl")"
    fi
    P=$($B --data-dir "$D" import --user v --camera "c$n" "$src" 2>"$D/imp.err" | tail -1)
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
