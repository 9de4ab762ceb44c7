#!/usr/bin/env python3
"""Live-tail benchmark of jitmux as a cluster: three stateless nodes (one PostgreSQL catalog, one S3
store) behind nginx, all started by deploy/cluster.sh on this one machine.

For each scenario (a number of live viewers) it answers:
  1. Segment landed on node A -> first byte of its fragment at a viewer, p50/p99 in ms, for viewers
     on node A (the node that took the append), on the other nodes B and C, and all together.
  2. Store GETs per segment per node (`jitmux_store_reads_total` on each node's /metrics).
  3. Catalog statements per appended segment, per node and summed over the cluster
     (`jitmux_catalog_statements_total` on each node's /metrics: every SQL statement it sends).

Method (as bench/live_bench.py on one node):
  - ffmpeg makes 1 s H.264/AAC MPEG-TS segments (x264 1 s GOP), distinct bytes per scenario.
  - A simulated encoder works in real time (one segment per second) against node1 (A) directly,
    not through the load balancer: PUT segment i, then PUT index.m3u8 naming segments 0..i. The
    append commits inside the playlist PUT (201 after the commit), so t_land(i) = the moment that
    PUT is sent; latencies measured from it include the append's own work. Both PUT round trips are
    recorded. After the last segment a playlist with #EXT-X-ENDLIST ends the broadcast.
  - Viewers: raw asyncio HTTP/1.1 clients of GET /v1/files/CAMERA/live.mp4?mode=stream, opened
    after the first two segments landed, connected to the nodes directly, round robin starting at
    node2 (node2, node3, node1, node2, ...), so that a single viewer is on a node other than A.
    Each viewer de-chunks the stream and walks its top-level boxes; a fragment's first byte is the
    arrival time of the read holding the first byte of its moof (mfhd sequence = segment index + 1).
    Latency = that time - t_land(i). (Cross-check: the first byte a viewer receives at or after
    t_land(i) is segment i's moof; the number of samples where it is not is reported.)
  - The first --warmup segments are not measured; the next --segments are. Each node's counters are
    read right before the first measured segment's PUT (once every viewer holds the previous
    segment's fragment) and again once every viewer holds the last measured segment's fragment.
  - Before the scenarios, the same counters are read over an idle period (no broadcast, no
    viewer): the nodes' background statements per second (the idle-broadcast sweep runs once a
    second with --ingest-idle-timeout 30) are reported, and catalog statements per segment are
    given both as measured (gross) and net of that background.
  Viewers, encoder, every node, PostgreSQL, SeaweedFS and nginx all share this machine; the
  viewers' timestamps are taken in this one Python process.

Usage:
  bench/cluster_bench.py [--segments N] [--viewers 1,200] [--warmup W] [--base-port 18900]
                         [--keep] [--out results.json]

  --segments N     measured segments per scenario (default 20)
  --viewers LIST   comma-separated viewer counts, one scenario (and one new camera) each
                   (default 1,200)
  --warmup W       segments appended before the measured ones (default 4; viewers join after 2)
  --base-port P    the cluster's BASE_PORT for deploy/cluster.sh (nginx P, nodes P+1..P+3,
                   SeaweedFS P+10..P+17; default 18900)
  --keep           leave the cluster running at the end (prints its directory and the stop command)
  --out PATH       also write the results as JSON to PATH

Needs target/release/jitmux (or $JITMUX_BIN; nothing is built), ffmpeg, nginx, SeaweedFS (weed) and
PostgreSQL on 127.0.0.1:5432 (as deploy/cluster.sh). $CLUSTER_EXTRA adds serve flags to the
benchmark's own (--user-max-streams, --ingest-idle-timeout 30).
"""
import argparse
import asyncio
import bisect
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("JITMUX_BIN") or os.path.join(ROOT, "target/release/jitmux")
CLUSTER = os.path.join(ROOT, "deploy/cluster.sh")
IDLE_BASELINE_S = 6.0
JOIN_AFTER = 2  # viewers connect once this many segments landed


def log(msg):
    print(f"[cluster_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- segments ---------------------------------------------------------------------------------

def make_segments(d, secs, freq):
    """live_bench.py's 1 s segments (x264 1 s GOP, AAC, 640x360; `freq` makes each set's bytes
    distinct). Returns [(name, duration_s)] in order."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import live_bench
    live_bench.make_segments(d, secs, freq)
    segs, dur = [], 1.0
    for line in open(os.path.join(d, "index.m3u8")):
        line = line.strip()
        if line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            segs.append((line, dur))
    return segs


def playlist(segs, end):
    target = max(1, math.ceil(max(d for _, d in segs)))
    s = f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n"
    s += "".join(f"#EXTINF:{d:.6f},\n{name}\n" for name, d in segs)
    return s + ("#EXT-X-ENDLIST\n" if end else "")


# ---- cluster ----------------------------------------------------------------------------------

def cluster_env(d):
    """The variables of DIR/env (sourced by bash, so quoting is bash's)."""
    path = os.path.join(d, "env")
    keys = {line.split()[1].split("=", 1)[0] for line in open(path) if line.startswith("export ")}
    out = subprocess.run(["bash", "-c", '. "$1"; env -0', "_", path],
                         check=True, capture_output=True, env={"PATH": os.environ["PATH"]})
    env = {}
    for item in out.stdout.split(b"\0"):
        k, _, v = item.decode().partition("=")
        if k in keys:
            env[k] = v
    return env


def cli(env, *args):
    out = subprocess.run([BIN, *args], check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip().splitlines()[-1]


def split_url(url):
    hostport = url.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


# ---- HTTP -------------------------------------------------------------------------------------

async def http(node, method, path, headers=None, body=b""):
    """One request on a new connection; returns (status, body, seconds from send to the end of the
    response), the connection being made before the clock starts."""
    r, w = await asyncio.open_connection(*node)
    h = {"Host": f"{node[0]}:{node[1]}", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    req = f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode() + b"\r\n"
    t_send = time.monotonic()
    w.write(req + body)
    await w.drain()
    data = await r.read()
    rt = time.monotonic() - t_send
    w.close()
    head, _, resp = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        resp = dechunk(resp)
    return status, resp, rt, t_send


def dechunk(b):
    out, i = bytearray(), 0
    while True:
        j = b.index(b"\r\n", i)
        n = int(b[i:j].split(b";")[0], 16)
        if n == 0:
            return bytes(out)
        out += b[j + 2:j + 2 + n]
        i = j + 2 + n + 2


COUNTERS = ("jitmux_store_reads_total", "jitmux_catalog_statements_total")


async def counters(node):
    st, body, _, _ = await http(node, "GET", "/metrics")
    assert st == 200, (node, st, body[:200])
    c = dict.fromkeys(COUNTERS, 0.0)
    for line in body.decode().splitlines():
        for name in COUNTERS:
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                c[name] += float(line.rsplit(None, 1)[1])
    return c


async def all_counters(nodes):
    return await asyncio.gather(*(counters(n) for n in nodes))


# ---- viewers ----------------------------------------------------------------------------------

class Viewer(asyncio.Protocol):
    """A live tail client: sends the GET, then parses the response incrementally without keeping
    its payload (chunked transfer coding, then the top-level MP4 boxes: only their headers are
    looked at, the rest is skipped by count). Records the arrival time of every read and, per moof
    (by mfhd sequence number), the arrival time of the read holding its first byte."""

    def __init__(self, node_idx, request):
        self.node_idx, self.request = node_idx, request
        self.transport = None
        self.head = bytearray()
        self.status = None
        self.error = None
        self.state = "head"  # head, size, data, crlf, done
        self.line = bytearray()
        self.remaining = 0
        self.chunked = True
        self.box_skip = 0
        self.box_hdr = bytearray()
        self.box_t = None
        self.arrivals = []  # monotonic time of each read
        self.moof_at = {}  # mfhd sequence -> time of its first byte
        self.init_at = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(exc)

    def close(self):
        if self.transport:
            self.transport.abort()

    def data_received(self, data):
        now = time.monotonic()
        if self.status is None or self.status == 200:
            self.arrivals.append(now)
        mv = memoryview(data)
        i, n = 0, len(mv)
        while i < n:
            st = self.state
            if st == "head":
                self.head += mv[i:]
                k = self.head.find(b"\r\n\r\n")
                if k < 0:
                    return
                rest = bytes(self.head[k + 4:])
                head = bytes(self.head[:k])
                self.status = int(head.split(b" ", 2)[1])
                if self.status != 200:
                    self.error = head.split(b"\r\n", 1)[0].decode(errors="replace") + " " + rest[:200].decode(errors="replace")
                    self.state = "done"
                    self.transport.close()
                    return
                self.chunked = b"transfer-encoding: chunked" in head.lower()
                self.state = "size" if self.chunked else "data"
                self.remaining = float("inf")
                self.arrivals = [now] if rest else []
                data = rest
                mv, i, n = memoryview(data), 0, len(data)
            elif st == "size":
                k = data.find(b"\n", i)
                if k < 0:
                    self.line += mv[i:]
                    return
                self.line += mv[i:k]
                i = k + 1
                size = int(bytes(self.line).strip().split(b";")[0] or b"0", 16)
                self.line.clear()
                if size == 0:
                    self.state = "done"
                    return
                self.remaining, self.state = size, "data"
            elif st == "data":
                k = min(self.remaining, n - i)
                self.payload(mv[i:i + k], now)
                i += k
                self.remaining -= k
                if self.remaining == 0:
                    self.state, self.remaining = "crlf", 2
            elif st == "crlf":
                k = min(self.remaining, n - i)
                i += k
                self.remaining -= k
                if self.remaining == 0:
                    self.state = "size"
            else:
                return

    def payload(self, mv, now):
        i, n = 0, len(mv)
        while i < n:
            if self.box_skip:
                k = min(self.box_skip, n - i)
                self.box_skip -= k
                i += k
                continue
            hdr = self.box_hdr
            if not hdr:
                self.box_t = now
            need = 8
            if len(hdr) >= 8:
                size = int.from_bytes(hdr[0:4], "big")
                typ = bytes(hdr[4:8])
                need = 24 if typ == b"moof" else 16 if size == 1 else 8
            if len(hdr) < need:
                k = min(need - len(hdr), n - i)
                hdr += mv[i:i + k]
                i += k
                if len(hdr) < need:
                    continue
                if need == 8:
                    size = int.from_bytes(hdr[0:4], "big")
                    typ = bytes(hdr[4:8])
                    if typ == b"moof" or size == 1:
                        continue  # more of the header is needed
            if size == 1:
                size = int.from_bytes(hdr[8:16], "big")
            if typ == b"moof":
                self.moof_at.setdefault(int.from_bytes(hdr[20:24], "big"), self.box_t)
            elif typ in (b"ftyp", b"moov") and self.init_at is None:
                self.init_at = self.box_t
            self.box_skip = max(0, size - len(hdr)) if size else float("inf")  # size 0: to the end
            hdr.clear()


# ---- one scenario -----------------------------------------------------------------------------

def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else None


def summary(v):
    return {"n": len(v), "p50": pct(v, .5), "p99": pct(v, .99), "max": max(v) if v else None}


async def wait_for(pred, timeout):
    t_end = time.monotonic() + timeout
    while not pred() and time.monotonic() < t_end:
        await asyncio.sleep(0.01)
    return pred()


async def scenario(nodes, names, env, token, nviewers, segs, segdir, warmup, measured):
    cam = f"cam-{nviewers}v-{int(time.time())}"
    key = cli(env, "camera", "add", "--user", "bench", cam)
    auth = {"Authorization": f"Bearer {key}"}
    A = nodes[0]
    viewers = []
    t_land, rt_seg, rt_pl = {}, {}, {}
    m0 = m1 = None
    t_m0 = t_m1 = None
    first, last = warmup, warmup + measured - 1  # measured segment indexes
    request = (f"GET /v1/files/{cam}/live.mp4?mode=stream HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    loop = asyncio.get_running_loop()

    def streaming():
        return [v for v in viewers if v.error is None and not v.closed.done()]

    def all_have(i):  # every live viewer holds segment i's fragment
        return all((i + 1) in v.moof_at for v in streaming())

    try:
        t0 = time.monotonic()
        for i in range(warmup + measured):
            await asyncio.sleep(max(0, t0 + i - time.monotonic()))  # real time: 1 s per segment
            if i == first:
                ok = await wait_for(lambda: all_have(i - 1), 0.5)
                m0, t_m0 = await all_counters(nodes), time.monotonic()
                if not ok:
                    log(f"  warning: not every viewer held segment {i - 1} when the counters were read")
            name, _ = segs[i]
            body = open(os.path.join(segdir, name), "rb").read()
            st, resp, rt, _ = await http(A, "PUT", f"/v1/ingest/{cam}/{name}", auth, body)
            assert st == 201, (name, st, resp[:300])
            rt_seg[i] = rt
            st, resp, rt, t_send = await http(A, "PUT", f"/v1/ingest/{cam}/index.m3u8", auth,
                                              playlist(segs[:i + 1], False).encode())
            assert st == 201, ("playlist", i, st, resp[:300])
            t_land[i], rt_pl[i] = t_send, rt
            if i == JOIN_AFTER - 1:
                for k in range(nviewers):
                    idx = (k + 1) % len(nodes)  # node2, node3, node1, ...
                    v = Viewer(idx, request)
                    viewers.append(v)
                    await loop.create_connection(lambda v=v: v, *nodes[idx])
                if not await wait_for(lambda: all(v.init_at or v.error for v in viewers), 30):
                    log(f"  warning: {sum(1 for v in viewers if not v.init_at)} viewers without a first byte after 30 s")
                bad = [v.error for v in viewers if v.error]
                if bad:
                    raise RuntimeError(f"{len(bad)} of {nviewers} viewers refused, e.g. {bad[0]}")
        ok = await wait_for(lambda: all_have(last), 5)
        m1, t_m1 = await all_counters(nodes), time.monotonic()
        if not ok:
            log(f"  warning: not every viewer held segment {last} when the counters were read")
        st, resp, _, _ = await http(A, "PUT", f"/v1/ingest/{cam}/index.m3u8", auth,
                                    playlist(segs[:warmup + measured], True).encode())
        assert st == 201, ("end", st, resp[:300])
        ended = await wait_for(lambda: all(v.closed.done() or v.state == "done" for v in viewers), 30)
        if not ended:
            log("  warning: some live tails did not end within 30 s of #EXT-X-ENDLIST")
    finally:
        for v in viewers:
            v.close()

    # Latencies, by the viewer's node.
    lat = {"A": [], "BC": []}
    missing = disagree = 0
    for v in viewers:
        grp = "A" if v.node_idx == 0 else "BC"
        for i in range(first, last + 1):
            t = v.moof_at.get(i + 1)
            if t is None:
                missing += 1
                continue
            lat[grp].append((t - t_land[i]) * 1000)
            j = bisect.bisect_left(v.arrivals, t_land[i])
            if j >= len(v.arrivals) or v.arrivals[j] != t:
                disagree += 1
    lat["all"] = lat["A"] + lat["BC"]
    nseg = measured
    per_node = []
    for k, nm in enumerate(names):
        d = {c: m1[k][c] - m0[k][c] for c in COUNTERS}
        per_node.append({"node": nm, "viewers": sum(1 for v in viewers if v.node_idx == k),
                         "store_gets_per_segment": d["jitmux_store_reads_total"] / nseg,
                         "catalog_statements_per_segment": d["jitmux_catalog_statements_total"] / nseg})
    measured_s = [rt_pl[i] for i in range(first, last + 1)]
    return {
        "viewers": nviewers,
        "camera": cam,
        "segments_measured": nseg,
        "window_s": t_m1 - t_m0,
        "latency_ms": {g: summary(v) for g, v in lat.items()},
        "latency_samples_missing": missing,
        "first_byte_after_land_is_not_the_fragment": disagree,
        "put_segment_rt_ms": summary([rt_seg[i] * 1000 for i in range(first, last + 1)]),
        "put_playlist_rt_ms": summary([x * 1000 for x in measured_s]),
        "nodes": per_node,
        "catalog_statements_per_segment_total": sum(n["catalog_statements_per_segment"] for n in per_node),
        "latency_raw_ms": lat,
    }


# ---- output -----------------------------------------------------------------------------------

def label(n):
    return f"{n} viewer" + ("" if n == 1 else "s")


def f1(x):
    return f"{'-':>6}" if x is None else f"{x:6.1f}"


def report(meta, baseline, results):
    names = meta["nodes"]
    print(f"jitmux cluster benchmark  ({time.strftime('%Y-%m-%d %H:%M:%S')})")
    print(f"machine: nproc {meta['nproc']}, {meta['cpu']}, load average {meta['load_before']} before, "
          f"{meta['load_after']} after")
    print("all on this machine: the 3 jitmux nodes, PostgreSQL, SeaweedFS (S3), nginx, and this script "
          "(encoder + viewers, one Python asyncio process)")
    print(f"binary: {meta['binary']}; serve flags: {meta['serve_extra']}")
    print(f"segments: {meta['segment']}; one per second, PUT to node1 (A) directly; "
          f"{meta['warmup']} warm-up + {meta['segments']} measured per scenario, a new camera each, "
          f"ended with #EXT-X-ENDLIST")
    print("viewers: live.mp4?mode=stream straight to the nodes, round robin from node2 (node2, node3, node1, ...)")
    print("latency: playlist PUT naming segment i sent to A (the append commits inside it) -> "
          "first byte of segment i's fragment at the viewer")
    print()
    print(f"idle background over {baseline['window_s']:.1f} s (no broadcast, no viewer), per node per second: "
          + ", ".join(f"{n}: {b['catalog_statements_per_s']:.2f} catalog statements, "
                      f"{b['store_gets_per_s']:.2f} store GETs" for n, b in zip(names, baseline["nodes"])))
    print()
    hdr = (f"{'scenario':<12} {'viewers A/B/C':>13} | {'on A p50':>8} {'p99':>6} | {'on B+C p50':>10} {'p99':>6} | "
           f"{'all p50':>7} {'p99':>6} {'max':>6} {'n':>5} | {'seg PUT':>7} {'pl. PUT':>7}")
    print("1. segment landed on A -> first byte at viewer, ms (target p99 < 100); PUT round trips p50, ms")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        L = r["latency_ms"]
        vc = "/".join(str(n["viewers"]) for n in r["nodes"])
        print(f"{label(r['viewers']):<12} {vc:>13} | "
              f"{f1(L['A']['p50']):>8} {f1(L['A']['p99'])} | {f1(L['BC']['p50']):>10} {f1(L['BC']['p99'])} | "
              f"{f1(L['all']['p50']):>7} {f1(L['all']['p99'])} {f1(L['all']['max'])} {L['all']['n']:>5} | "
              f"{f1(r['put_segment_rt_ms']['p50']):>7} {f1(r['put_playlist_rt_ms']['p50']):>7}")
    for r in results:
        if r["latency_samples_missing"] or r["first_byte_after_land_is_not_the_fragment"]:
            print(f"  {r['viewers']} viewers: {r['latency_samples_missing']} (viewer, segment) samples missing, "
                  f"{r['first_byte_after_land_is_not_the_fragment']} where the first byte after t_land was not "
                  f"the fragment's")
    print()
    print("2. store GETs per segment per node (target 1)")
    hdr = f"{'scenario':<12} " + " ".join(f"{n + (' (A)' if k == 0 else ''):>10}" for k, n in enumerate(names))
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        print(f"{label(r['viewers']):<12} "
              + " ".join(f"{n['store_gets_per_segment']:>10.2f}" for n in r["nodes"]))
    print()
    print("3. catalog statements per appended segment (measured; in brackets net of the idle background)")
    hdr = (f"{'scenario':<12} " + " ".join(f"{n + (' (A)' if k == 0 else ''):>16}" for k, n in enumerate(names))
           + f" {'cluster':>16}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        cells = [f"{n['catalog_statements_per_segment']:.2f} ({n['catalog_statements_per_segment_net']:.2f})"
                 for n in r["nodes"]]
        cells.append(f"{r['catalog_statements_per_segment_total']:.2f} "
                     f"({r['catalog_statements_per_segment_total_net']:.2f})")
        print(f"{label(r['viewers']):<12} " + " ".join(f"{c:>16}" for c in cells))


# ---- main -------------------------------------------------------------------------------------

async def bench(args, env, nodes, names, segsets, meta):
    token = cli(env, "user", "add", "bench")
    # Idle background of the counters.
    await asyncio.sleep(1)
    b0, t_b0 = await all_counters(nodes), time.monotonic()
    await asyncio.sleep(IDLE_BASELINE_S)
    b1, t_b1 = await all_counters(nodes), time.monotonic()
    win = t_b1 - t_b0
    baseline = {"window_s": win, "nodes": [
        {"node": nm, "catalog_statements_per_s": (b1[k]["jitmux_catalog_statements_total"]
                                                   - b0[k]["jitmux_catalog_statements_total"]) / win,
         "store_gets_per_s": (b1[k]["jitmux_store_reads_total"] - b0[k]["jitmux_store_reads_total"]) / win}
        for k, nm in enumerate(names)]}
    results = []
    for n in args.viewers:
        segdir, segs = segsets[n]
        log(f"scenario: {n} viewer(s), {args.warmup} + {args.segments} segments")
        r = await scenario(nodes, names, env, token, n, segs, segdir, args.warmup, args.segments)
        # Net of the idle background over the measured window.
        for k, nd in enumerate(r["nodes"]):
            bg = baseline["nodes"][k]["catalog_statements_per_s"] * r["window_s"] / r["segments_measured"]
            nd["catalog_statements_per_segment_net"] = nd["catalog_statements_per_segment"] - bg
        r["catalog_statements_per_segment_total_net"] = sum(nd["catalog_statements_per_segment_net"]
                                                            for nd in r["nodes"])
        L = r["latency_ms"]["all"]
        log(f"  all viewers p50 {f1(L['p50'])} ms p99 {f1(L['p99'])} ms (n={L['n']})")
        results.append(r)
    return baseline, results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=20, help="measured segments per scenario (default 20)")
    ap.add_argument("--viewers", default="1,200", help="comma-separated viewer counts, one scenario each")
    ap.add_argument("--warmup", type=int, default=4, help="segments before the measured ones (default 4, >= 3)")
    ap.add_argument("--base-port", type=int, default=18900, help="BASE_PORT of deploy/cluster.sh (default 18900)")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running")
    ap.add_argument("--out", help="write the results as JSON to this path")
    args = ap.parse_args()
    args.viewers = [int(x) for x in args.viewers.split(",") if x.strip()]
    if args.warmup < JOIN_AFTER + 1 or args.segments < 1 or not args.viewers or min(args.viewers) < 1:
        ap.error("need --warmup >= 3, --segments >= 1 and viewer counts >= 1")
    if not os.access(BIN, os.X_OK):
        sys.exit(f"no jitmux binary at {BIN} (this script builds nothing)")

    # SIGTERM as Ctrl-C: the cluster is stopped either way.
    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    work = tempfile.mkdtemp(prefix="jitmux-cluster-bench.")
    cdir = os.path.join(work, "cluster")
    extra = f"--user-max-streams {max(1000, 2 * max(args.viewers))} --ingest-idle-timeout 30"
    if os.environ.get("CLUSTER_EXTRA"):
        extra += " " + os.environ["CLUSTER_EXTRA"]
    cenv = {**os.environ, "CLUSTER_EXTRA": extra, "JITMUX_BIN": BIN}
    started = False
    try:
        nseg = args.warmup + args.segments
        segsets = {}
        log(f"making {len(args.viewers)} x {nseg} segments with ffmpeg")
        for k, n in enumerate(args.viewers):
            d = os.path.join(work, f"segs{k}")
            segs = make_segments(d, nseg + 1, 500 + 37 * k)[:nseg]
            if len(segs) < nseg:
                raise RuntimeError(f"ffmpeg made {len(segs)} segments, {nseg} needed")
            segsets[n] = (d, segs)
        seg0 = os.path.join(segsets[args.viewers[0]][0], segsets[args.viewers[0]][1][0][0])

        log(f"starting the cluster in {cdir} on base port {args.base_port}")
        started = True
        p = subprocess.run([CLUSTER, "start", cdir, str(args.base_port)], env=cenv, capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stdout + p.stderr)
            raise RuntimeError("deploy/cluster.sh start failed")
        env = {**os.environ, **cluster_env(cdir)}
        env.pop("JITMUX_BIN", None)
        urls = env["JITMUX_NODES"].split()
        nodes = [split_url(u) for u in urls]
        names = [f"node{k + 1}" for k in range(len(nodes))]
        log("cluster up: " + ", ".join(f"{nm} {u}" for nm, u in zip(names, urls)) + f", LB {env['JITMUX_LB']}")

        meta = {
            "nproc": os.cpu_count(),
            "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                         if line.startswith("model name")), "?"),
            "load_before": " ".join(open("/proc/loadavg").read().split()[:3]),
            "shared": "3 jitmux nodes, PostgreSQL, SeaweedFS, nginx and the benchmark client share this machine",
            "binary": BIN,
            "serve_extra": extra,
            "nodes": names,
            "node_urls": urls,
            "warmup": args.warmup,
            "segments": args.segments,
            "segment": (f"~1 s H.264 640x360 30 fps (1 s GOP) + AAC 64k MPEG-TS, "
                        f"~{os.path.getsize(seg0) // 1024} KiB"),
        }
        baseline, results = asyncio.run(bench(args, env, nodes, names, segsets, meta))
        meta["load_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
        report(meta, baseline, results)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"meta": meta, "idle_background": baseline, "scenarios": results}, f, indent=1)
            log(f"results written to {args.out}")
    finally:
        if started and args.keep:
            log(f"cluster left running (--keep): env in {cdir}/env; stop it with: {CLUSTER} stop {cdir}")
        elif started:
            log("stopping the cluster")
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the stop
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            p = subprocess.run([CLUSTER, "stop", cdir], capture_output=True, text=True)
            if p.returncode != 0:
                sys.stderr.write(p.stdout + p.stderr)
                log(f"deploy/cluster.sh stop {cdir} failed: run it again by hand")
            else:
                shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
