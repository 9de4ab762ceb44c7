#!/usr/bin/env python3
"""Live-tail and quasi-stream benchmark of a release jitmux on loopback, in one run.

  1. Upload-to-viewer latency: an encoder (simulated, with ffmpeg's order: segment PUT, then the
     playlist PUT) sends 1 s H.264/AAC MPEG-TS segments in real time; viewers follow
     live.mp4?mode=stream. Latency = time from the segment PUT's completion to the first byte of
     that segment's fragment (its moof) at each viewer. p50/p99 over segments x viewers.
  2. Store reads per segment with 1 and with 200 concurrent live viewers (jitmux_store_reads_total
     from /metrics, over the segments appended while viewers watched).
  3. Time to first byte of a quasi-stream of an archived recording: first body byte (init) and
     first fragment, cold and warm.
  4. Thumbnails: a recording's first key frame as JPEG, made (cold) and then stored (warm).
  5. Server RSS with 1000 concurrent quasi-stream viewers that read slowly (64 KiB/s each), and
     how long until the last of them, all connecting at once, gets its first byte.
  6. Fairness: user B's time to the first 64 KiB of its file, idle and while user A runs 50
     parallel full downloads in a loop (A's requests past its download limit get 429 and retry).

Usage: bench/live_bench.py   (builds nothing; needs target/release/jitmux and ffmpeg)
"""
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/jitmux")


def cli(data, *args):
    out = subprocess.run([BIN, "--data-dir", data, *args], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def make_segments(d, secs, freq):
    """1 s segments from a real encoder (x264 1 s GOP, AAC), 640x360; `freq` makes each set's bytes
    distinct (segments are content-addressed, so equal bytes would be shared)."""
    os.makedirs(d)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
                    "-f", "lavfi", "-i", f"sine=frequency={freq}:beep_factor=4:sample_rate=48000", "-t", str(secs),
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "2", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
                    "-hls_segment_filename", os.path.join(d, "seg_%05d.ts"), os.path.join(d, "index.m3u8")],
                   check=True)
    return sorted(f for f in os.listdir(d) if f.endswith(".ts"))


class Server:
    def __init__(self, data):
        # Fan-out scenarios: one user with 200-1000 viewers, far above the default stream limit.
        self.p = subprocess.Popen([BIN, "--data-dir", data, "serve", "--listen", "127.0.0.1:0",
                                   "--ingest-idle-timeout", "30", "--user-max-streams", "2000"],
                                  stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "RUST_LOG": "warn"})
        line = self.p.stdout.readline()
        self.host, self.port = line.split("http://")[1].strip().split(":")
        self.port = int(self.port)

    def rss_mib(self):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def stop(self):
        self.p.kill()
        self.p.wait()


async def http(srv, method, path, headers=None, body=b""):
    r, w = await asyncio.open_connection(srv.host, srv.port)
    h = {"Host": "x", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
    w.write(f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode()
            + b"\r\n" + body)
    await w.drain()
    data = await r.read()
    w.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


async def store_reads(srv):
    _, body = await http(srv, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("jitmux_store_reads_total "):
            return int(line.split()[1])


class Viewer:
    """Reads a chunked quasi-stream, de-chunks it, walks top-level boxes and records the arrival
    time of each moof by its mfhd sequence number."""

    def __init__(self, srv, path, token, rate=None):
        self.srv, self.path, self.token, self.rate = srv, path, token, rate
        self.moof_at = {}
        self.first_body_at = None
        self.done = False

    async def run(self, t_start=None):
        r, w = await asyncio.open_connection(self.srv.host, self.srv.port)
        w.write(f"GET {self.path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.token}\r\n\r\n".encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0], head
        buf, pos, box_end = bytearray(), 0, 0  # de-chunked stream; next top-level box starts at box_end
        while True:
            size_line = await r.readline()
            n = int(size_line.strip() or b"0", 16)
            if n == 0:
                break
            chunk = await r.readexactly(n)
            await r.readexactly(2)
            now = time.monotonic()
            if self.first_body_at is None:
                self.first_body_at = now
            buf += chunk
            while len(buf) - (box_end - pos) >= 24 and box_end - pos >= 0:
                off = box_end - pos
                size = int.from_bytes(buf[off:off + 4], "big")
                typ = bytes(buf[off + 4:off + 8])
                if typ == b"moof":
                    seq = int.from_bytes(buf[off + 20:off + 24], "big")
                    self.moof_at.setdefault(seq, now)
                box_end += size
            # drop consumed bytes
            drop = min(box_end - pos, len(buf))
            del buf[:drop]
            pos += drop
            if self.rate:
                await asyncio.sleep(n / self.rate)
        self.done = True
        w.close()


async def live_run(srv, token, key, segs, segdir, nviewers):
    """One broadcast on camera cam{nviewers}: returns (latencies_ms, reads_per_segment)."""
    cam = f"cam{nviewers}"
    key = cli(DATA, "camera", "add", "--user", "bench", cam)
    auth = {"Authorization": f"Bearer {key}"}
    put_done = {}
    viewers = []
    reads0 = None
    playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"
    t0 = time.monotonic()
    for i, name in enumerate(segs):
        body = open(os.path.join(segdir, name), "rb").read()
        st, _ = await http(srv, "PUT", f"/v1/ingest/{cam}/{name}", auth, body)
        assert st == 201, st
        put_done[i + 1] = time.monotonic()
        playlist += f"#EXTINF:1.0,\n{name}\n"
        end = "#EXT-X-ENDLIST\n" if i == len(segs) - 1 else ""
        st, _ = await http(srv, "PUT", f"/v1/ingest/{cam}/index.m3u8", auth, (playlist + end).encode())
        assert st == 201, st
        if i == 1:  # viewers join after two segments
            for _ in range(nviewers):
                v = Viewer(srv, f"/v1/files/{cam}/live.mp4?mode=stream", token)
                viewers.append((v, asyncio.create_task(v.run())))
            await asyncio.sleep(0.5)
            reads0 = await store_reads(srv)
            first_measured = i + 2
        await asyncio.sleep(max(0, t0 + i + 1 - time.monotonic()))  # real time: 1 s per segment
    await asyncio.wait_for(asyncio.gather(*(t for _, t in viewers)), 30)
    reads = await store_reads(srv) - reads0
    lat = [(v.moof_at[s] - put_done[s]) * 1000 for v, _ in viewers for s in range(first_measured, len(segs) + 1)
           if s in v.moof_at]
    return lat, reads / (len(segs) - first_measured + 1)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


async def main():
    global DATA
    tmp = tempfile.mkdtemp()
    DATA = os.path.join(tmp, "data")
    token = cli(DATA, "user", "add", "bench")
    srv = Server(DATA)
    try:
        print("== live tail, 20 x 1 s segments in real time (H.264 640x360 + AAC, MPEG-TS)")
        for n in (1, 200):
            segdir = os.path.join(tmp, f"segs{n}")
            segs = make_segments(segdir, 20, 500 + n)
            lat, rps = await live_run(srv, token, None, segs, segdir, n)
            print(f"{n:4d} viewer(s): segment upload -> viewer first byte p50 {pct(lat, .5):6.1f} ms  "
                  f"p99 {pct(lat, .99):6.1f} ms  (n={len(lat)});  store reads per segment {rps:.2f}")

        print("== quasi-stream of an archived recording (60 s, s01 fixture)")
        path = cli(DATA, "import", "--user", "bench", "--camera", "archive",
                   os.path.join(ROOT, "fixtures/sets/s01_h264_aac_ts_2s/index.m3u8"))
        url = f"/v1/files{path}?mode=stream"
        for label in ("cold", "warm", "warm", "warm"):
            v = Viewer(srv, url, token)
            t = time.monotonic()
            await v.run()
            print(f"  {label}: first body byte {(v.first_body_at - t) * 1000:5.1f} ms, first fragment "
                  f"{(v.moof_at[1] - t) * 1000:5.1f} ms")

        print("== thumbnail of a recording (first key frame: openh264 decode, JPEG encode, stored)")
        for fixture in ("s01_h264_aac_ts_2s", "r02_intel_car_ts"):
            p = cli(DATA, "import", "--user", "bench", "--camera", "thumbs",
                    os.path.join(ROOT, f"fixtures/sets/{fixture}/index.m3u8"))
            times = []
            for _ in range(4):
                t = time.monotonic()
                st, body = await http(srv, "GET", "/v1/thumbnails" + p[:-4] + ".jpg",
                                      {"Authorization": f"Bearer {token}"})
                assert st == 200, body
                times.append((time.monotonic() - t) * 1000)
            print(f"  {fixture}: cold {times[0]:5.1f} ms, then stored {statistics.median(times[1:]):4.1f} ms "
                  f"({len(body)} bytes)")

        print("== RSS with 1000 concurrent quasi-stream viewers reading 64 KiB/s each")
        base = srv.rss_mib()
        viewers = [Viewer(srv, url, token, rate=64 * 1024) for _ in range(1000)]
        t_connect = time.monotonic()
        tasks = [asyncio.create_task(v.run()) for v in viewers]
        peak = base
        for _ in range(10):
            await asyncio.sleep(1)
            peak = max(peak, srv.rss_mib())
        started = sum(1 for v in viewers if v.first_body_at)
        all_in = max((v.first_body_at for v in viewers if v.first_body_at), default=t_connect) - t_connect
        print(f"  idle RSS {base:.1f} MiB; peak RSS over 10 s {peak:.1f} MiB; viewers streaming: {started} "
              f"(the last got its first byte {all_in:.2f} s after all connected at once)")
        for t in tasks:
            t.cancel()
        await asyncio.sleep(1)

        print("== fairness: user B's first 64 KiB while user A runs 50 parallel downloads")
        token_b = cli(DATA, "user", "add", "other")
        path_b = cli(DATA, "import", "--user", "other", "--camera", "b",
                     os.path.join(ROOT, "fixtures/sets/s02_h264_aac_fmp4_2s/index.m3u8"))

        async def first_64k():
            # A separate client process, so the load generator's own event loop is not measured.
            p = await asyncio.create_subprocess_exec(
                "curl", "-s", "-o", "/dev/null", "-r", "0-65535", "-H", f"Authorization: Bearer {token_b}",
                "-w", "%{time_total}", f"http://{srv.host}:{srv.port}/v1/files{path_b}",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await p.communicate()
            return float(out) * 1000

        idle = [await first_64k() for _ in range(30)]
        stop = False
        counts = {"200": 0, "429": 0}

        async def hog():
            while not stop:
                st, _ = await http(srv, "GET", f"/v1/files{path}", {"Authorization": f"Bearer {token}"})
                counts[str(st)] = counts.get(str(st), 0) + 1
                if st == 429:
                    await asyncio.sleep(1)

        hogs = [asyncio.create_task(hog()) for _ in range(50)]
        await asyncio.sleep(1)
        loaded = []
        for _ in range(30):
            loaded.append(await first_64k())
            await asyncio.sleep(0.05)
        stop = True
        await asyncio.gather(*hogs)
        print(f"  idle   median {statistics.median(idle):6.2f} ms  p95 {pct(idle, .95):6.2f} ms")
        print(f"  loaded median {statistics.median(loaded):6.2f} ms  p95 {pct(loaded, .95):6.2f} ms  "
              f"(ratio of medians {statistics.median(loaded) / statistics.median(idle):.2f}x; user A's "
              f"responses: {counts['200']} x 200, {counts['429']} x 429)")
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
