#!/usr/bin/env python3
"""A day-long camera timeline: HEAD and first byte of a clip over all of it, server memory, and
the recordings made into MP4 files by jitmux (`jitmux export` into a directory, its default
`--parallel 2`, durable and `--no-sync`, and GET over HTTP) vs `ffmpeg -c copy -movflags
+faststart` per playlist.

How the timeline is made: one real 2 s segment (x264, one GOP, AAC; 160x120 so the store stays
small) is listed `3600 / 2` times in each of `--hours` hourly playlists (24 → 43,200 segments),
imported as one recording per hour with consecutive wall-clock starts. Every segment gets its
own sample index row and its own place in the layouts (what HEAD, first byte and memory depend
on); its bytes are stored once (content-addressed keys).

    bench/clip_bench.py --bin target/release/jitmux [--hours 24] [--export 4]

Prints one line per measurement. Needs ffmpeg, curl.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

SEG_S = 2


def run(*a, **k):
    return subprocess.run(a, check=True, **k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/jitmux")
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--export", type=int, default=4, help="recordings made into MP4s, both ways")
    ap.add_argument("--export-minutes", type=int, default=10, help="length of each of those recordings")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="clip-bench-")
    data = os.path.join(work, "data")
    src = os.path.join(work, "src")
    os.makedirs(src)
    run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30", "-f", "lavfi",
        "-i", "sine=frequency=600:sample_rate=48000", "-t", str(SEG_S), "-c:v", "libx264", "-preset", "veryfast",
        "-g", "60", "-bf", "2", "-b:v", "100k", "-c:a", "aac", "-b:a", "32k", "-f", "mpegts",
        "-mpegts_copyts", "0", os.path.join(src, "seg.ts"))
    per_hour = 3600 // SEG_S
    J = [args.bin, "--data-dir", data]
    env = {**os.environ, "RUST_LOG": "warn"}
    token = run(*J, "user", "add", "bench", capture_output=True, text=True, env=env).stdout.strip().splitlines()[-1]
    t0 = time.time()
    day0 = "2026-03-01T00:00:00Z"
    base_s = 1772323200  # 2026-03-01T00:00:00Z
    for h in range(args.hours):
        pl = os.path.join(src, f"h{h:02d}.m3u8")
        with open(pl, "w") as f:
            f.write("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n")
            for i in range(per_hour):
                if i:
                    f.write("#EXT-X-DISCONTINUITY\n")
                f.write(f"#EXTINF:{SEG_S}.0,\nseg.ts\n")
            f.write("#EXT-X-ENDLIST\n")
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base_s + h * 3600))
        run(*J, "import", "--user", "bench", "--camera", "cam", "--start", start, pl, capture_output=True, env=env)
    print(f"import: {args.hours} recordings, {args.hours * per_hour} segments in {time.time() - t0:.1f} s")

    p = subprocess.Popen([*J, "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True, env=env)
    base = p.stdout.readline().split("listening on ")[1].strip()

    def rss():
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base_s + args.hours * 3600))
    clip = f"{base}/v1/clips/cam/{day0}_{end}.mp4"
    auth = ["-H", f"Authorization: Bearer {token}"]

    def curl(*extra):
        out = run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer} %{size_download}",
                  *auth, *extra, capture_output=True, text=True).stdout.split()
        return int(out[0]), float(out[1]) * 1e3, int(out[2])

    try:
        print(f"server RSS before: {rss():.0f} MiB")
        code, ms, _ = curl("-I", clip)
        print(f"HEAD of the {args.hours} h clip, cold (builds {args.hours} layouts from the indexes): {ms:.0f} ms, status {code}, RSS {rss():.0f} MiB")
        heads = [curl("-I", clip)[1] for _ in range(20)]
        print(f"HEAD, warm: p50 {statistics.median(heads):.1f} ms, max {max(heads):.1f} ms")
        firsts = [curl("-r", "0-0", clip)[1] for _ in range(20)]
        print(f"first byte (Range 0-0), warm: p50 {statistics.median(firsts):.1f} ms, max {max(firsts):.1f} ms")
        head = run("curl", "-s", "-I", *auth, clip, capture_output=True, text=True).stdout
        length = int([l.split(":")[1] for l in head.splitlines() if l.lower().startswith("content-length")][0])
        code, ms, n = curl("-r", f"{length // 2}-{length // 2 + 65535}", clip)
        print(f"64 KiB from the middle of the mdat: {ms:.1f} ms to first byte ({code}, {n} bytes)")
        print(f"server RSS serving it: {rss():.0f} MiB")

        # The recordings made into MP4 files, N of them, each of distinct segments (a real
        # encode per recording, so no segment is shared through the content-addressed store or
        # the node cache): jitmux (`jitmux export` into a directory, then GET of each full file:
        # every segment read and transmuxed) vs ffmpeg remuxing each playlist.
        n = args.export
        out = os.path.join(work, "out")
        os.makedirs(out)
        names = []
        for i in range(n):
            d = os.path.join(work, f"exp{i}")
            os.makedirs(d)
            run("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi",
                "-i", f"sine=frequency={300 + 50 * i}:sample_rate=48000", "-t", str(args.export_minutes * 60),
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-c:a", "aac", "-f", "hls", "-hls_time", "2",
                "-hls_list_size", "0", os.path.join(d, "index.m3u8"))
            start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base_s + 86400 * 2 + i * 3600))
            path = run(*J, "import", "--user", "bench", "--camera", "exp", "--start", start,
                       os.path.join(d, "index.m3u8"), capture_output=True, text=True, env=env).stdout.split()[-1]
            names.append((d, path))
        # Each way run 5 times from a page-cached store, the median counted. Before each run its
        # outputs are removed and dirty pages written back (`sync`), neither timed, so no way
        # pays for another's writes. `jitmux export` makes each file durable (fdatasync) before
        # naming it; ffmpeg leaves its files in the page cache. So each is compared with the
        # other under the same guarantee: `jitmux export` with ffmpeg followed by `sync`, and
        # `jitmux export --no-sync` (page cache) with ffmpeg as it is.
        def timed(f, outputs, then_sync=False):
            times = []
            for _ in range(5):
                for o in outputs:
                    if os.path.isdir(o):
                        shutil.rmtree(o)
                    elif os.path.exists(o):
                        os.remove(o)
                os.sync()
                t = time.time()
                f()
                if then_sync:
                    os.sync()
                times.append(time.time() - t)
            return statistics.median(times)

        exported = os.path.join(work, "exported")

        def export(*extra):
            run(*J, "export", "--user", "bench", *extra, "--to", exported,
                *[path.lstrip("/") for _, path in names], capture_output=True, env=env)

        def get():
            for i, (_, path) in enumerate(names):
                run("curl", "-s", "-f", *auth, "-o", os.path.join(out, f"j{i}.mp4"), f"{base}/v1/files{path}")

        def ffmpeg():
            for i, (d, _) in enumerate(names):
                run("ffmpeg", "-v", "error", "-y", "-i", os.path.join(d, "index.m3u8"), "-c", "copy",
                    "-movflags", "+faststart", os.path.join(out, f"f{i}.mp4"))

        j_out = [os.path.join(out, f"j{i}.mp4") for i in range(n)]
        f_out = [os.path.join(out, f"f{i}.mp4") for i in range(n)]
        te, tc = timed(export, [exported]), timed(lambda: export("--no-sync"), [exported])
        tj = timed(get, j_out)
        tf, tfs = timed(ffmpeg, f_out), timed(ffmpeg, f_out, then_sync=True)
        size = sum(os.path.getsize(p) for p in j_out) / 2**20
        print(f"{n} recordings of {args.export_minutes} min ({size:.0f} MiB) to MP4 files, median of 5: "
              f"jitmux export --no-sync {tc:.2f} s ({tf / tc:.1f}x against ffmpeg), "
              f"jitmux export {te:.2f} s ({tfs / te:.1f}x against ffmpeg + sync), "
              f"GET of each over HTTP {tj:.2f} s ({tf / tj:.1f}x against ffmpeg), "
              f"ffmpeg -c copy -movflags +faststart per playlist {tf:.2f} s, with sync after {tfs:.2f} s")
    finally:
        p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
