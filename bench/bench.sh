#!/usr/bin/env bash
# Side-by-side benchmark of the full-MP4 path, in one run on this machine:
#   1. HEAD, and time until the first 64 KiB of a GET have arrived (what a player reads first:
#      ftyp + start of moov), for a 5 min and a 60 min recording; cold (first request after the
#      server starts) and warm (median and p95 of N requests). Times are curl's time_total.
#   2. Full-download throughput of jitmux vs nginx serving the very same bytes as a static file,
#      and wall time of `ffmpeg -i index.m3u8 -c copy -movflags +faststart` for the same output.
# Needs the 300 s 720p sets: BENCH=1 ../shared/fixtures/make_fixtures.sh  (-> /tmp/jitmux-bench)
# Usage: bench/bench.sh [BENCH_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SETS=${1:-/tmp/jitmux-bench}
N=${N:-30}
OUT=bench/out; rm -rf "$OUT"; mkdir -p "$OUT/www"
command -v nginx >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
cargo build --release -q
B=target/release/jitmux
DATA=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DATA"' EXIT
TOKEN=$($B --data-dir "$DATA" user add bench | tail -1)
AUTH="Authorization: Bearer $TOKEN"

# 60 min playlists: the 300 s set 12 times, joined by discontinuities (objects are stored once).
for s in b01_h264_aac_720p_ts_2s b02_h264_aac_720p_fmp4_2s; do
  python3 - "$SETS/$s" <<'PY'
import sys, os
d = sys.argv[1]; lines = open(os.path.join(d, "index.m3u8")).read().splitlines()
head = [l for l in lines if l.startswith("#EXT") and not l.startswith(("#EXTINF", "#EXT-X-ENDLIST", "#EXT-X-DISCONTINUITY"))]
body = [l for l in lines if l not in head and l != "#EXT-X-ENDLIST"]
out = head[:]
for i in range(12):
    if i: out.append("#EXT-X-DISCONTINUITY")
    out += body
out.append("#EXT-X-ENDLIST")
open(os.path.join(d, "index_60min.m3u8"), "w").write("\n".join(out) + "\n")
PY
done

declare -A PATHS
for s in b01_h264_aac_720p_ts_2s b02_h264_aac_720p_fmp4_2s; do
  PATHS[$s/5]=$($B --data-dir "$DATA" import --user bench --camera "${s%%_*}" "$SETS/$s/index.m3u8" | tail -1)
  PATHS[$s/60]=$($B --data-dir "$DATA" import --user bench --camera "${s%%_*}" "$SETS/$s/index_60min.m3u8" | tail -1)
done

start_server() {
  $B --data-dir "$DATA" serve --listen 127.0.0.1:0 > "$OUT/serve.out" 2>"$OUT/serve.err" &
  SERVER_PID=$!
  for _ in $(seq 50); do grep -q listening "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
  BASE=$(sed -n 's/^listening on //p' "$OUT/serve.out")
}
stop_server() { kill $SERVER_PID; wait $SERVER_PID 2>/dev/null || true; }

stats() { python3 -c 'import sys,statistics as s; v=sorted(float(x)*1000 for x in sys.stdin.read().split()); print(f"median {s.median(v):7.2f} ms  p95 {v[int(len(v)*0.95)-1]:7.2f} ms  (n={len(v)})")'; }

echo "== HEAD and time to first byte (jitmux release, loopback, N=$N)"
for s in b01_h264_aac_720p_ts_2s b02_h264_aac_720p_fmp4_2s; do
  for m in 5 60; do
    start_server
    url="$BASE/v1/files${PATHS[$s/$m]}"
    cold=$(curl -s -o /dev/null -r 0-65535 -H "$AUTH" -w '%{time_total}' "$url")
    printf '%-28s %2s min  first 64 KiB, cold: %7.2f ms\n' "$s" "$m" "$(python3 -c "print($cold*1000)")"
    printf '%-28s %2s min  HEAD              ' "$s" "$m"
    for i in $(seq $N); do curl -s -o /dev/null -I -H "$AUTH" -w '%{time_total}\n' "$url"; done | stats
    printf '%-28s %2s min  first 64 KiB      ' "$s" "$m"
    for i in $(seq $N); do curl -s -o /dev/null -r 0-65535 -H "$AUTH" -w '%{time_total}\n' "$url"; done | stats
    stop_server
  done
done

echo
echo "== Full download of the 5 min recording (3 runs each, best)"
cat > "$OUT/nginx.conf" <<NGX
daemon off; worker_processes 1; pid $PWD/$OUT/nginx.pid; error_log $PWD/$OUT/nginx.err;
events { worker_connections 64; }
http { access_log off; sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:18098; root $PWD/$OUT/www; types { video/mp4 mp4; } } }
NGX
start_server
best() { sort -n | head -1; }
for s in b01_h264_aac_720p_ts_2s b02_h264_aac_720p_fmp4_2s; do
  url="$BASE/v1/files${PATHS[$s/5]}"
  curl -s -H "$AUTH" -o "$OUT/www/$s.mp4" "$url"
  size=$(stat -c %s "$OUT/www/$s.mp4")
  if [ -z "${NGINX_PID:-}" ]; then nginx -c "$PWD/$OUT/nginx.conf" & NGINX_PID=$!; sleep 0.5; fi
  j=$(for i in 1 2 3; do curl -s -o /dev/null -H "$AUTH" -w '%{time_total}\n' "$url"; done | best)
  n=$(for i in 1 2 3; do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:18098/$s.mp4"; done | best)
  f=$(for i in 1 2 3; do /usr/bin/time -f '%e' ffmpeg -nostdin -v error -y -i "$SETS/$s/index.m3u8" -c copy -movflags +faststart "$OUT/ff.mp4" 2>&1 | tail -1; done | best)
  python3 - "$s" "$size" "$j" "$n" "$f" <<'PY'
import sys
s, size, j, n, f = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
mb = size / 1e6
print(f"{s:28s} {mb:7.1f} MB  jitmux {mb/j:7.0f} MB/s ({j*1000:6.0f} ms)  nginx static {mb/n:7.0f} MB/s ({n*1000:6.0f} ms)"
      f"  ratio {n/j:4.2f}x  |  ffmpeg -c copy +faststart {f*1000:6.0f} ms ({f/j:5.1f}x jitmux's time)")
PY
done
stop_server
