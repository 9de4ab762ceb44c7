#!/usr/bin/env python3
"""Object storage benchmark, side by side in one run on this machine (every HTTP figure by curl).

For a 300 s 720p recording in MPEG-TS and in fMP4 (BENCH=1 ../shared/fixtures/make_fixtures.sh
makes them in /tmp/jitmux-bench), each set uploaded to SeaweedFS (scripts/seaweed.sh) and
indexed there in place:

  store   reading every segment object of the set once from S3, sequentially over one
          keep-alive connection (curl, SigV4): what the store gives one reader, MB/s
  rtt     a 1-byte ranged GET of a segment object on a new connection: the store's round trip,
          ms (curl's time to first byte, median of 9)
  cold    a full download from a freshly started jitmux (empty cache), MB/s; locally also on a
          node in steady state (its cache full and turning over), the usual case of a node
  warm    the same download again (segments in the node cache), MB/s
  ttfb    time to the first byte of a full GET from a freshly started jitmux, ms (median of 9;
          each on a new server): the stored head is read, then sent
  GETs    store GETs per served file (from /metrics) for 1 viewer and for 50 concurrent viewers

and, locally, jitmux on its local-directory store against nginx serving the very same bytes
as a static file (the full MP4 written once by jitmux): cold and warm MB/s.

Usage: bench/store_bench.py [BENCH_DIR]     (needs nginx: apt-get install nginx-light)
"""

import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETS_DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp/jitmux-bench"
SETS = ["b01_h264_aac_720p_ts_2s", "b02_h264_aac_720p_fmp4_2s"]
BIN = os.path.join(ROOT, "target/release/jitmux")
PORT_S3 = 18700
START = "2026-03-01T10:00:00Z"


def sh(*args, env=None, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True, env=env)


def seaweed(*args):
    return sh("bash", os.path.join(ROOT, "scripts/seaweed.sh"), *args)


class Server:
    """A jitmux serve on a free port; stopped with stop()."""

    def __init__(self, data, env, extra=()):
        self.p = subprocess.Popen([BIN, "--data-dir", data, "serve", "--listen", "127.0.0.1:0", *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.p.stdout.readline()
        self.base = line.strip().removeprefix("listening on ")

    def metric(self, name):
        text = urllib.request.urlopen(self.base + "/metrics").read().decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith(name) and l[len(name)] in " {")

    def stop(self):
        self.p.terminate()
        self.p.wait()


def get(url, token=None):
    """(seconds to first byte, seconds total, bytes) of one GET by curl (its own timers: process
    start-up excluded; a new connection, as a downloader makes)."""
    args = ["curl", "-sf", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{size_download}"]
    if token:
        args += ["-H", "Authorization: Bearer " + token]
    out = subprocess.run(args + [url], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def mbps(n, s):
    return n / s / 1e6


def main():
    for s in SETS:
        if not os.path.isdir(os.path.join(SETS_DIR, s)):
            sys.exit(f"{SETS_DIR}/{s} missing: run BENCH=1 ../shared/fixtures/make_fixtures.sh first")
    if not shutil.which("nginx"):
        sys.exit("nginx missing: apt-get install nginx-light")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="store-bench-")
    swdir = os.path.join(tmp, "seaweed")
    seaweed("start", swdir, str(PORT_S3))
    nginx = None
    try:
        env = dict(os.environ, AWS_ACCESS_KEY_ID="jitmuxtest", AWS_SECRET_ACCESS_KEY="jitmuxtestsecret",
                   AWS_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{PORT_S3}",
                   AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")
        data = os.path.join(tmp, "data")
        token = sh(BIN, "--data-dir", data, "user", "add", "bench", env=env).stdout.strip().splitlines()[-1]
        sh(BIN, "--data-dir", data, "user", "grant", "bench", "s3://archive/", env=env)
        rows = []
        local_paths = {}
        for s in SETS:
            local_paths[s] = sh(BIN, "--data-dir", data, "import", "--user", "bench", "--camera",
                                s.split("_")[0] + "l", "--start", START, os.path.join(SETS_DIR, s, "index.m3u8"),
                                env=env).stdout.strip().splitlines()[-1]
        for s in SETS:
            d = os.path.join(SETS_DIR, s)
            files = sorted(f for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))
            for f in files:
                seaweed("put", swdir, f"archive/{s}/{f}", os.path.join(d, f))
            cam = s.split("_")[0]
            path = sh(BIN, "--data-dir", data, "import", "--user", "bench", "--camera", cam, "--start", START,
                      f"s3://archive/{s}/index.m3u8", env=env).stdout.strip().splitlines()[-1]
            local_path = local_paths[s]

            # The store alone: every segment once, sequentially, one connection.
            segs = [f for f in files if not f.endswith(".m3u8")]
            total = sum(os.path.getsize(os.path.join(d, f)) for f in segs)
            args = ["curl", "-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "jitmuxtest:jitmuxtestsecret"]
            for f in segs:
                args += ["-o", "/dev/null", f"http://127.0.0.1:{PORT_S3}/archive/{s}/{f}"]
            best = min(timed(lambda: subprocess.run(args, check=True)) for _ in range(3))
            store = mbps(total, best)
            # curl's time to first byte (process start-up excluded), a new connection each time,
            # as jitmux's first read after a start.
            rtts = []
            for _ in range(9):
                out = subprocess.run(args[:6] + ["-o", "/dev/null", "-r", "0-0", "-w", "%{time_starttransfer}",
                                                 f"http://127.0.0.1:{PORT_S3}/archive/{s}/{segs[0]}"],
                                     check=True, capture_output=True, text=True).stdout
                rtts.append(float(out) * 1e3)
            rtt = statistics.median(rtts)

            url = None
            colds, warms, ttfbs = [], [], []
            for i in range(9):
                srv = Server(data, env)
                url = srv.base + "/v1/files" + path
                ttfb, total_s, n = get(url, token)
                ttfbs.append(ttfb * 1e3)
                if i < 5:
                    colds.append(mbps(n, total_s))
                    warms.append(mbps(n, get(url, token)[1]))
                srv.stop()
            srv = Server(data, env)
            url = srv.base + "/v1/files" + path
            r0 = srv.metric("jitmux_store_reads_total")
            get(url, token)
            one = srv.metric("jitmux_store_reads_total") - r0
            srv.stop()
            srv = Server(data, env, ("--user-max-downloads", "64"))
            url = srv.base + "/v1/files" + path
            r0 = srv.metric("jitmux_store_reads_total")
            with concurrent.futures.ThreadPoolExecutor(50) as ex:
                list(ex.map(lambda _: get(url, token), range(50)))
            fifty = srv.metric("jitmux_store_reads_total") - r0
            srv.stop()
            rows.append(("S3", s, store, colds, warms, statistics.median(ttfbs), rtt, one, fifty, n))

            # Local: jitmux on its local store vs nginx serving the same bytes.
            srv = Server(data, env)
            lurl = srv.base + "/v1/files" + local_path
            www = os.path.join(tmp, "www")
            os.makedirs(www, exist_ok=True)
            req = urllib.request.Request(lurl, headers={"Authorization": "Bearer " + token})
            with urllib.request.urlopen(req) as r, open(os.path.join(www, s + ".mp4"), "wb") as out:
                shutil.copyfileobj(r, out)
            srv.stop()
            if nginx is None:
                nginx = start_nginx(tmp, www)
            ngx = f"http://127.0.0.1:18790/{s}.mp4"
            ngx_best = max(mbps(n, get(ngx)[1]) for _ in range(3))
            lcold, lwarm, lsteady = [], [], []
            for _ in range(5):
                srv = Server(data, env)
                lurl = srv.base + "/v1/files" + local_path
                lcold.append(mbps(n, get(lurl, token)[1]))
                lwarm.append(mbps(n, get(lurl, token)[1]))
                srv.stop()
            # A node in steady state: its cache (64 MiB here) full and turning over after serving
            # the other recording, then this one, not cached.
            other = local_paths[SETS[1] if s == SETS[0] else SETS[0]]
            for _ in range(5):
                srv = Server(data, env, ("--cache-bytes", str(64 << 20)))
                get(srv.base + "/v1/files" + other, token)
                lsteady.append(mbps(n, get(srv.base + "/v1/files" + local_path, token)[1]))
                srv.stop()
            rows.append(("local", s, ngx_best, lcold, lwarm, None, None, None, None, n))
            rows.append(("local", s + " (steady)", ngx_best, lsteady, lwarm, None, None, None, None, n))

        print(f"\n{'':6} {'set':28} {'MB':>6} {'store/nginx':>11} {'cold best (median)':>22} "
              f"{'warm best (median)':>22} {'ttfb ms':>8} {'rtt ms':>7} {'GETs 1':>6} {'GETs 50':>7}")
        for where, s, base, cold, warm, ttfb, rtt, one, fifty, n in rows:
            extra = (f"{ttfb:8.2f} {rtt:7.2f} {one:6.0f} {fifty:7.0f}" if ttfb is not None else "")
            c, w = max(cold), max(warm)
            cm, wm = statistics.median(cold), statistics.median(warm)
            print(f"{where:6} {s:28} {n / 1e6:6.1f} {base:6.0f} MB/s {c:5.0f} {c / base:.2f}x ({cm / base:.2f}x) "
                  f"{w:5.0f} {w / base:.2f}x ({wm / base:.2f}x) {extra}")
        print("\nstore/nginx: S3 rows, the store read sequentially by curl; local rows, nginx serving the "
              "same file (best of 3). cold/warm: jitmux full download by curl on a fresh server, best "
              "and median of 5, as a fraction of store/nginx; (steady): cold on a node whose cache is full and turning over (64 MiB, the other recording served first). ttfb: median of 9 fresh servers. GETs: "
              "store reads for 1 viewer and for 50 concurrent viewers of the file.")
    finally:
        if nginx:
            nginx.terminate()
        seaweed("stop", swdir)
        shutil.rmtree(tmp, ignore_errors=True)


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def start_nginx(tmp, www):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; error_log {tmp}/nginx.err; pid {tmp}/nginx.pid;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:18790; root {www}; }} }}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    for _ in range(50):
        try:
            urllib.request.urlopen("http://127.0.0.1:18790/")
        except urllib.error.HTTPError:
            break
        except OSError:
            time.sleep(0.1)
    return p


if __name__ == "__main__":
    main()
