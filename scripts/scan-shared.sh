#!/usr/bin/env bash
# Scans a bucket holding every set of ../shared/fixtures/sets (or the folder given), one camera
# prefix per set (s3://archive/cams/<set>/…), on a SeaweedFS started for the run:
#   1. a first scan indexes every media playlist;
#   2. a second scan imports nothing;
#   3. in a second data dir, a scan killed after half the playlists, then run again, ends in the
#      same catalog as the clean run (per recording: camera, source playlist, ETag, length,
#      duration).
# Prints what each step saw; exit 1 if a step failed.
#   scripts/scan-shared.sh [SETS_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
SETS=${1:-../shared/fixtures/sets}
cargo build --release -q || exit 1
B=target/release/jitmux
D=$(mktemp -d); trap 'scripts/seaweed.sh stop "$D/sw" >/dev/null; rm -rf "$D"' EXIT
scripts/seaweed.sh start "$D/sw" 18650 >/dev/null || exit 1
. "$D/sw/env"; export AWS_EC2_METADATA_DISABLED=true
n=0
for set in $(find "$SETS" -mindepth 2 -maxdepth 2 -type d | sort); do
  for f in "$set"/*; do
    [ -f "$f" ] && scripts/seaweed.sh put "$D/sw" "archive/cams/$(basename "$set")/$(basename "$f")" "$f" >/dev/null
  done
  n=$((n + $(ls "$set"/*.m3u8 | wc -l)))
done
echo "uploaded $(find "$SETS" -mindepth 2 -maxdepth 2 -type d | wc -l) sets, $n playlists"
fail=0
scan() { $B --data-dir "$1" scan --user u --jobs 2 s3://archive/cams/; }
for dir in a b; do
  $B --data-dir "$D/$dir" user add u >/dev/null && $B --data-dir "$D/$dir" user grant u s3://archive/cams/ >/dev/null
done

t0=$(date +%s%N)
scan "$D/a" > "$D/first.out" 2> "$D/first.err"; rc=$?
echo "first scan ($(( ($(date +%s%N) - t0) / 1000000 )) ms, exit $rc): $(tail -1 "$D/first.out")"
grep -q "$n playlists, $n imported" "$D/first.out" || { echo "FAIL: not every playlist imported"; cat "$D/first.err"; fail=1; }
scan "$D/a" > "$D/second.out" 2>&1
echo "second scan: $(tail -1 "$D/second.out")"
grep -q "0 imported, 0 replaced, $n unchanged" "$D/second.out" || { echo "FAIL: second scan did something"; fail=1; }

# Killed after half the playlists, then run again.
$B --data-dir "$D/b" scan --user u --jobs 2 s3://archive/cams/ > "$D/killed.out" 2>/dev/null & pid=$!
while [ "$(grep -c '^imported' "$D/killed.out" 2>/dev/null)" -lt $((n / 2)) ] && kill -0 $pid 2>/dev/null; do sleep 0.05; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
echo "killed scan: $(grep -c '^imported' "$D/killed.out") imported before the kill"
scan "$D/b" > "$D/rest.out" 2>&1
echo "restarted scan: $(tail -1 "$D/rest.out")"

catalog() {
  python3 - "$1/catalog.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for row in db.execute("SELECT c.name, r.source_url, r.etag, r.len_bytes, r.duration_ms, r.live, "
                      "(SELECT COUNT(*) FROM segments s WHERE s.recording_id = r.id) "
                      "FROM recordings r JOIN cameras c ON c.id = r.camera_id ORDER BY 1, 2"):
    print(*row, sep="\t")
PY
}
catalog "$D/a" > "$D/a.tsv"; catalog "$D/b" > "$D/b.tsv"
if cmp -s "$D/a.tsv" "$D/b.tsv"; then
  echo "catalogs equal: $(wc -l < "$D/a.tsv") recordings (camera, source, ETag, length, duration, segments)"
else
  echo "FAIL: catalogs differ"; diff "$D/a.tsv" "$D/b.tsv" | head; fail=1
fi
[ $fail = 0 ]
