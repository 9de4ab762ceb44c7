//! Clips by wall-clock time across two recordings with an encoder restart and a gap between
//! them: every accuracy and gap policy checked frame by frame against the recordings' own files
//! (decoded as players decode, edit lists honoured), audio kept in sync, HTTP ranges, HEAD
//! without segment reads, signed URLs and Chromium playback.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::live::decode_errors;

/// `(presentation time s, MD5 of the decoded frame)` of every frame of `stream` ("v" or "a"),
/// in output order, edit lists honoured: times from ffprobe, hashes from framemd5.
fn frames(file: &Path, stream: &str) -> Vec<(f64, String)> {
    let h = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-map", &format!("0:{stream}"), "-fps_mode", "passthrough", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    let hashes: Vec<String> = String::from_utf8_lossy(&h.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
        .collect();
    let t = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", "frame=pts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let times: Vec<f64> = String::from_utf8_lossy(&t.stdout)
        .split_whitespace()
        .map(|x| x.trim_end_matches(',').parse().unwrap())
        .collect();
    assert_eq!(times.len(), hashes.len(), "{}", file.display());
    times.into_iter().zip(hashes).collect()
}

fn duration(file: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn start_time(file: &Path, stream: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", "stream=start_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Two HLS recordings of one test pattern with their own encodes (an encoder restart): A is
/// source 0–12 s, B source 16–28 s; 2 s GOPs with B-frames, AAC audio.
fn two_recordings(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mezz = dir.join("mezz.nut");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi"])
        .args(["-i", "sine=frequency=800:beep_factor=4:sample_rate=48000", "-t", "30"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-bf", "2", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "nut"])
        .arg(&mezz)
        .status()
        .unwrap();
    assert!(st.success());
    let part = |name: &str, from: &str| {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).unwrap();
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-ss", from, "-i"])
            .arg(&mezz)
            .args(["-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-bf", "2", "-c:a", "aac"])
            .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "0"])
            .arg(out.join("index.m3u8"))
            .status()
            .unwrap();
        assert!(st.success());
        out.join("index.m3u8")
    };
    (part("a", "0"), part("b", "16"))
}

fn fetch(url: &str, token: &str, to: &Path) -> Resp {
    let r = get(url, token);
    std::fs::write(to, &r.body).unwrap();
    r
}

#[test]
fn clips_across_a_restart_and_a_gap_in_every_mode() {
    let env = Env::new("alice");
    let src = tempfile::tempdir().unwrap();
    let (a, b) = two_recordings(src.path());
    for (pl, start) in [(&a, "2026-03-01T14:00:00Z"), (&b, "2026-03-01T14:00:16Z")] {
        let r = env.cli(&["import", "--user", "alice", "--camera", "cam", "--start", start, pl.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let server = env.serve();
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_path_buf();
    let (fa, fb) = (out.path().join("a.mp4"), out.path().join("b.mp4"));
    assert_eq!(fetch(&server.url("/cam/2026-03-01/14-00-00.mp4"), &env.token, &fa).status, 200);
    assert_eq!(fetch(&server.url("/cam/2026-03-01/14-00-16.mp4"), &env.token, &fb).status, 200);
    let (va, vb) = (frames(&fa, "v"), frames(&fb, "v"));
    let dur_a = duration(&fa);
    // A's file presents its movie time 0 at 14:00:00, B's at 14:00:16.
    let name = "2026-03-01T14:00:05.500Z_2026-03-01T14:00:20.250Z.mp4";
    let clip_url = format!("{}/v1/clips/cam/{name}", server.base);

    // HEAD answers from the indexes alone: no segment is read.
    let reads = |s: &Server| {
        let body = String::from_utf8(request("GET", &format!("{}/metrics", s.base), &[]).body).unwrap();
        body.lines().find_map(|l| l.strip_prefix("jitmux_store_reads_total ")).map_or(0.0, |v| v.parse().unwrap())
    };
    let before = reads(&server);
    let head = request("HEAD", &clip_url, &[("Authorization", &format!("Bearer {}", env.token))]);
    assert_eq!(head.status, 200);
    assert_eq!(reads(&server), before, "HEAD of a clip reads no segment");
    assert!(head.header("etag").unwrap().starts_with("\"v"));
    assert_eq!(head.header("x-jitmux-clip-gaps").unwrap().matches('/').count(), 1, "one gap");

    for (query, a_from, keyframe, collapse) in [
        ("", 5.5, false, false),
        ("?gaps=collapse", 5.5, false, true),
        ("?accuracy=keyframe", 4.0, true, false),
        ("?accuracy=keyframe&gaps=collapse", 4.0, true, true),
    ] {
        let file = out.path().join(format!("clip{}.mp4", query.replace(['?', '&', '='], "_")));
        let r = fetch(&format!("{clip_url}{query}"), &env.token, &file);
        assert_eq!(r.status, 200, "{query}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("content-length").unwrap().parse::<usize>().unwrap(), r.body.len());
        assert!(r.header("content-disposition").unwrap().contains(name));
        assert_eq!(decode_errors(&file), "", "{query}: ffmpeg decodes it cleanly");
        // Frames: A's from the cut on (frame mode: presented at or after 5.5 s; keyframe mode:
        // from the sync sample at 4 s), then B's presented before 20.25 s (4.25 s into B).
        let want: Vec<&String> = va
            .iter()
            .filter(|(t, _)| *t >= a_from - 0.001)
            .chain(vb.iter().filter(|(t, _)| *t < 4.25 - 1e-6))
            .map(|(_, h)| h)
            .collect();
        let got = frames(&file, "v");
        let got_h: Vec<&String> = got.iter().map(|(_, h)| h).collect();
        assert_eq!(got_h.len(), want.len(), "{query}: frame count");
        assert!(got_h == want, "{query}: decoded frames equal the recordings' frames in the range");
        assert!(got[0].0.abs() < 1e-6, "{query}: the first frame is presented at 0");
        let n_a = va.iter().filter(|(t, _)| *t >= a_from - 0.001).count();
        let a_first = va.iter().find(|(t, _)| *t >= a_from - 0.001).unwrap().0;
        if keyframe {
            assert!((a_first - 4.0).abs() < 0.05, "keyframe mode starts at the sync sample at 4 s: {a_first}");
        }
        // B's first frame: at its wall-clock offset (keep), or right after A's last (collapse).
        let b_first = got[n_a].0;
        let want_b = if collapse { dur_a - a_first + vb[0].0 } else { 16.0 + vb[0].0 - a_first };
        assert!((b_first - want_b).abs() < 0.002, "{query}: B starts at {b_first}, want {want_b}");
        // Audio in sync: the first audio sample starts with the first frame, as in the sources.
        let (v0, a0) = (start_time(&file, "v"), start_time(&file, "a"));
        assert!((a0 - v0).abs() < 0.03, "{query}: audio starts {a0} s, video {v0} s");
        // Duration: to 20.25 s of wall clock, less the gap when collapsed.
        let want_dur = if collapse { dur_a - a_first + 4.25 } else { 20.25 - a_first };
        let dur = duration(&file);
        assert!((dur - want_dur).abs() < 0.002, "{query}: duration {dur}, want {want_dur}");
    }

    // gaps=refuse: 409 naming the runs; a range inside one recording is served.
    let r = get(&format!("{clip_url}?gaps=refuse"), &env.token);
    assert_eq!(r.status, 409);
    let why = String::from_utf8_lossy(&r.body);
    assert!(why.contains("2026-03-01T14:00:16Z"), "{why}");
    let one = format!("{}/v1/clips/cam/2026-03-01T14:00:01Z_2026-03-01T14:00:03Z.mp4?gaps=refuse", server.base);
    assert_eq!(get(&one, &env.token).status, 200);

    // Ranges: every slice equals the same bytes of the whole; conditional requests.
    let whole = get(&clip_url, &env.token);
    let etag = whole.header("etag").unwrap().to_string();
    let len = whole.body.len();
    for (a, b) in [(0, 99), (len / 3, len / 2), (len - 10, len - 1), (1000, 1000)] {
        let r = get_range(&clip_url, &env.token, &format!("bytes={a}-{b}"));
        assert_eq!(r.status, 206);
        assert_eq!(r.body, whole.body[a..=b]);
    }
    // Several ranges at once: multipart/byteranges, each part the same bytes of the whole.
    let r = request(
        "GET",
        &clip_url,
        &[("Authorization", &format!("Bearer {}", env.token)), ("Range", "bytes=0-99,5000-9999,-100")],
    );
    assert_eq!(r.status, 206);
    let parts = crate::multipart::multipart_parts(r.header("content-type").unwrap(), &r.body);
    let want = [(0, 100), (5000, 10_000), (len - 100, len)];
    assert_eq!(parts.len(), want.len());
    for ((cr, bytes), (a, b)) in parts.iter().zip(want) {
        assert_eq!(cr, &format!("bytes {a}-{}/{len}", b - 1));
        assert!(bytes[..] == whole.body[a..b], "part {cr}");
    }
    let r = request("GET", &clip_url, &[("Authorization", &format!("Bearer {}", env.token)), ("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert_eq!(get(&clip_url, &env.token).body, whole.body, "the same URL gives the same bytes");

    // Errors.
    let status = |p: &str| get(&format!("{}/v1/clips/cam/{p}", server.base), &env.token).status;
    assert_eq!(status("2026-03-01T14:00:10Z_2026-03-01T14:00:05Z.mp4"), 400, "end before start");
    assert_eq!(status("2026-03-01T13:00:00Z_2026-03-01T13:01:00Z.mp4"), 404, "no media");
    assert_eq!(status("2026-03-01T14:00:13Z_2026-03-01T14:00:15Z.mp4"), 404, "inside the gap");
    assert_eq!(status("2026-03-01T14:00:00Z_2026-03-03T14:00:00Z.mp4"), 400, "longer than the maximum");
    assert_eq!(status("yesterday_today.mp4"), 400, "bad times");

    // A signed URL for the clip plays in Chromium without any header; the quasi-stream too.
    let r = request_with_body(
        "POST",
        &format!("{}/v1/share", server.base),
        &[("Authorization", &format!("Bearer {}", env.token)), ("Content-Type", "application/json")],
        Some(format!("{{\"path\":\"/v1/clips/cam/{name}\"}}").as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let link: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let url = format!("{}{}", server.base, link["path"].as_str().unwrap());
    assert_eq!(request("GET", &url, &[]).body, whole.body);
    let s = request("GET", &format!("{url}&mode=stream"), &[]);
    assert_eq!(s.status, 200);
    let sf = out.path().join("stream.mp4");
    std::fs::write(&sf, &s.body).unwrap();
    assert_eq!(decode_errors(&sf), "", "the clip's quasi-stream decodes");
    let out = Command::new("node")
        .arg(root().join("tests/tools/browser_play.js"))
        .arg(&url)
        .args(["--rate", "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The first frame Chromium displays is the clip's first (A at 5.5 s), not the pre-roll from
    // the sync sample at 4 s that the edit list hides.
    let shot = out_dir.join("chromium-first.rgba");
    let o = Command::new("node").arg(root().join("tests/tools/first_frame.js")).arg(&url).arg(&shot).output().unwrap();
    assert!(o.status.success(), "{} {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (w, h) = (info["width"].as_u64().unwrap(), info["height"].as_u64().unwrap());
    assert_eq!((w, h), (320, 240), "{info}");
    let shown = std::fs::read(&shot).unwrap();
    let first_frame = |ignore_editlist: bool| {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-v", "error"]);
        if ignore_editlist {
            cmd.args(["-ignore_editlist", "1"]);
        }
        let o = cmd
            .arg("-i")
            .arg(out_dir.join("clip.mp4"))
            .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgba", "-"])
            .output()
            .unwrap();
        assert!(o.status.success());
        o.stdout
    };
    // Mean absolute difference of the colour channels, 0–255.
    let mad = |a: &[u8], b: &[u8]| {
        assert_eq!(a.len(), b.len());
        let (sum, n) = a
            .chunks(4)
            .zip(b.chunks(4))
            .fold((0u64, 0u64), |(s, n), (p, q)| (s + (0..3).map(|i| p[i].abs_diff(q[i]) as u64).sum::<u64>(), n + 3));
        sum as f64 / n as f64
    };
    let (to_first, to_preroll) = (mad(&shown, &first_frame(false)), mad(&shown, &first_frame(true)));
    eprintln!(
        "clips: Chromium's first frame differs from the clip's first frame by {to_first:.2}, from the pre-roll's by {to_preroll:.2}"
    );
    assert!(
        to_first < 4.0 && to_first * 4.0 < to_preroll,
        "first displayed frame: {to_first:.2} vs pre-roll {to_preroll:.2}"
    );
}

#[test]
fn a_day_and_a_camera_as_one_zip() {
    let env = Env::new("alice");
    for start in ["2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"] {
        let pl = fixture("s01_h264_aac_ts_2s").join("index.m3u8");
        let r = env.cli(&["import", "--user", "alice", "--camera", "cam", "--start", start, pl.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let pl = fixture("s02_h264_aac_fmp4_2s").join("index.m3u8");
    let r = env.cli(&[
        "import",
        "--user",
        "alice",
        "--camera",
        "cam",
        "--start",
        "2026-03-02T08:00:00Z",
        pl.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let server = env.serve();
    let dir = tempfile::tempdir().unwrap();
    let day_url = server.url("/cam/2026-03-01.zip");
    let zip = get(&day_url, &env.token);
    assert_eq!(zip.status, 200);
    assert_eq!(zip.header("content-type"), Some("application/zip"));
    let zpath = dir.path().join("day.zip");
    std::fs::write(&zpath, &zip.body).unwrap();
    let t = Command::new("unzip").arg("-t").arg(&zpath).output().unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stdout));
    let x = dir.path().join("x");
    assert!(Command::new("unzip").args(["-q", "-d"]).arg(&x).arg(&zpath).status().unwrap().success());
    for name in ["10-00-00.mp4", "11-00-00.mp4"] {
        let alone = get(&server.url(&format!("/cam/2026-03-01/{name}")), &env.token).body;
        assert_eq!(std::fs::read(x.join(name)).unwrap(), alone, "{name} in the ZIP is the MP4 fetched alone");
    }
    // The camera's ZIP holds every day.
    let cam = get(&server.url("/cam.zip"), &env.token);
    assert_eq!(cam.status, 200);
    let cpath = dir.path().join("cam.zip");
    std::fs::write(&cpath, &cam.body).unwrap();
    let l = Command::new("unzip").arg("-l").arg(&cpath).output().unwrap();
    let listing = String::from_utf8_lossy(&l.stdout);
    assert!(listing.contains("2026-03-02/08-00-00.mp4") && listing.contains("2026-03-01/10-00-00.mp4"), "{listing}");

    // A range in the middle of the central directory makes no member: no segment is read.
    let reads = || {
        let body = String::from_utf8(request("GET", &format!("{}/metrics", server.base), &[]).body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix("jitmux_store_reads_total "))
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    let len = zip.body.len();
    let cd = zip.body.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    let before = reads();
    let r = get_range(&day_url, &env.token, &format!("bytes={}-{}", cd + 10, len - 5));
    assert_eq!(r.status, 206);
    assert_eq!(r.body, zip.body[cd + 10..len - 4]);
    assert_eq!(reads(), before, "the central directory comes from the catalog alone");
    // curl -C - resumes a cut download.
    let part = dir.path().join("resumed.zip");
    std::fs::write(&part, &zip.body[..len / 2]).unwrap();
    let st = Command::new("curl")
        .args(["-s", "-f", "-C", "-", "-H", &format!("Authorization: Bearer {}", env.token), "-o"])
        .arg(&part)
        .arg(&day_url)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(&part).unwrap(), zip.body);
    assert_eq!(get(&server.url("/nope.zip"), &env.token).status, 404);
}
