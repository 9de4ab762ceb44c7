//! Live ingest and the live tail, driven by the real ffmpeg HLS muxer (`-re`, `-method PUT`,
//! 1 s segments) while viewers watch.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// An 8 s H.264 (1 s GOP, B-frames) + AAC mezzanine made by a real encoder.
pub fn mezzanine(dir: &Path, secs: u32) -> std::path::PathBuf {
    let out = dir.join("mezz.nut");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-f", "lavfi"])
        .args(["-i", "sine=frequency=800:beep_factor=4:sample_rate=48000", "-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "30", "-bf", "2", "-pix_fmt", "yuv420p"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "nut"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// ffmpeg as the encoder: `-re`, 1 s segments, PUT to jitmux.
pub fn encoder(mezz: &Path, base: &str, camera: &str, key: &str, seg_type: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-i"])
        .arg(mezz)
        .args(["-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_segment_type", seg_type])
        .args(["-method", "PUT", "-ignore_io_errors", "1", "-headers", &format!("Authorization: Bearer {key}\r\n")])
        .arg(format!("{base}/v1/ingest/{camera}/index.m3u8"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn json(url: &str, token: &str) -> serde_json::Value {
    let r = request("GET", url, &[("Authorization", &format!("Bearer {token}")), ("Accept", "application/json")]);
    if r.status != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&r.body).unwrap()
}

/// The camera's recordings (name, live) of today (UTC).
pub fn recordings(server: &Server, token: &str, camera: &str) -> Vec<(String, bool)> {
    let cam = json(&server.url(&format!("/{camera}/")), token);
    let mut out = Vec::new();
    for day in cam["entries"].as_array().cloned().unwrap_or_default() {
        let day = day["name"].as_str().unwrap().to_string();
        let recs = json(&server.url(&format!("/{camera}/{day}/")), token);
        for r in recs["entries"].as_array().unwrap() {
            out.push((format!("/{camera}/{day}/{}", r["name"].as_str().unwrap()), r["live"].as_bool().unwrap()));
        }
    }
    out
}

pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// framemd5 hashes of `stream`'s frames, decoded as players do (or with the edit list ignored).
pub fn hashes(file: &Path, stream: &str, ignore_editlist: bool) -> Vec<String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error"]);
    if ignore_editlist {
        cmd.args(["-ignore_editlist", "1"]);
    }
    let out = cmd
        .arg("-i")
        .arg(file)
        .args(["-map", stream, "-fps_mode", "passthrough", "-f", "framemd5", "-"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_string())
        .collect()
}

pub fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(file).args(["-f", "null", "-"]).output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn broadcast_with_viewers(seg_type: &str) {
    let env = Env::new("alice");
    let key = env.camera_add("alice", "porch");
    let dir = tempfile::tempdir().unwrap();
    let mezz = mezzanine(dir.path(), 8);
    let server = Server::start(env.data(), &["--ingest-idle-timeout", "5"]);
    let mut ffmpeg = encoder(&mezz, &server.base, "porch", &key, seg_type);

    wait_for("the broadcast to appear, live", 15, || recordings(&server, &env.token, "porch").iter().any(|r| r.1));
    let (path, _) = recordings(&server, &env.token, "porch").remove(0);
    // Viewers: two live tails and one from the start, all followed to the end of the broadcast.
    let viewers: Vec<_> = ["", "", "&start=0"]
        .iter()
        .map(|q| {
            let url = format!("{}/v1/files/porch/live.mp4?mode=stream{q}", server.base);
            let token = env.token.clone();
            std::thread::spawn(move || get(&url, &token))
        })
        .collect();
    // Chromium plays the live tail.
    let chromium = (seg_type == "mpegts").then(|| {
        Command::new("node")
            .arg(root().join("tests/tools/stream_play.js"))
            .arg(format!("{}/v1/files/porch/live.mp4?mode=stream", server.base))
            .args(["--header", &format!("Authorization: Bearer {}", env.token), "--kbps", "100000", "--rate", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    });
    // The growing full file is a valid MP4 of what has landed so far.
    let snap = get(&server.url(&path), &env.token);
    assert_eq!(snap.status, 200);
    let snap_file = dir.path().join("snapshot.mp4");
    std::fs::write(&snap_file, &snap.body).unwrap();
    assert_eq!(decode_errors(&snap_file), "", "snapshot during the broadcast decodes cleanly");

    assert!(ffmpeg.wait().unwrap().success());
    let tails: Vec<_> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    wait_for("the broadcast to end", 10, || !recordings(&server, &env.token, "porch")[0].1);

    let full = get(&server.url(&path), &env.token);
    assert_ne!(full.header("etag"), snap.header("etag"), "the ETag changes as the file grows");
    assert!(full.body.len() > snap.body.len());
    let full_file = dir.path().join("full.mp4");
    std::fs::write(&full_file, &full.body).unwrap();
    for s in ["0:v:0", "0:a:0"] {
        let src = hashes(&mezz, s, false);
        assert_eq!(hashes(&full_file, s, true), src, "{seg_type}: recording {s} equals what was ingested");
    }
    let last_v = hashes(&full_file, "0:v:0", true).pop();
    for (i, t) in tails.iter().enumerate() {
        assert_eq!(t.status, 200);
        let f = dir.path().join(format!("tail{i}.mp4"));
        std::fs::write(&f, &t.body).unwrap();
        assert_eq!(decode_errors(&f), "", "{seg_type}: tail {i} decodes cleanly");
        let v = hashes(&f, "0:v:0", false);
        assert!(v.len() >= 90, "{seg_type}: tail {i} has {} frames", v.len());
        assert_eq!(v.last(), last_v.as_ref(), "{seg_type}: tail {i} followed to the last frame");
    }
    assert_eq!(hashes(&dir.path().join("tail2.mp4"), "0:v:0", false).len(), 240, "start=0 sees every frame");
    if let Some(chromium) = chromium {
        let out = chromium.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        eprintln!("chromium live tail: {report}");
        assert!(out.status.success(), "{report}");
    }
}

#[test]
fn live_ts_broadcast_with_viewers() {
    broadcast_with_viewers("mpegts");
}

#[test]
fn live_fmp4_broadcast_with_viewers() {
    broadcast_with_viewers("fmp4");
}

fn put(base: &str, camera: &str, file: &str, key: &str, body: &[u8]) -> u16 {
    let agent = ureq::AgentBuilder::new().build();
    let r = agent
        .put(&format!("{base}/v1/ingest/{camera}/{file}"))
        .set("Authorization", &format!("Bearer {key}"))
        .send_bytes(body);
    match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, _)) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bad_uploads_are_refused_and_the_broadcast_goes_on() {
    let env = Env::new("alice");
    let key = env.camera_add("alice", "porch");
    let other = env.camera_add("alice", "garden");
    let server = Server::start(env.data(), &["--ingest-idle-timeout", "3", "--ingest-max-upload", "3000000"]);
    let set = fixture("s13_h264_only_ts_2s");
    let seg = |i: u32| std::fs::read(set.join(format!("seg_{i:05}.ts"))).unwrap();
    let playlist = |n: u32, end: bool| {
        let mut p = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n".to_string();
        for i in 0..n {
            p += &format!("#EXTINF:2.0,\nseg_{i:05}.ts\n");
        }
        if end {
            p += "#EXT-X-ENDLIST\n";
        }
        p
    };
    let b = &server.base;
    assert_eq!(put(b, "porch", "seg_00000.ts", &key, &seg(0)), 201);
    assert_eq!(put(b, "porch", "index.m3u8", &key, playlist(1, false).as_bytes()), 201);
    // Wrong camera for the key, a user token as ingest key, an ingest key used to read.
    assert_eq!(put(b, "porch", "seg_00001.ts", &other, &seg(1)), 403);
    assert_eq!(put(b, "porch", "seg_00001.ts", &env.token, &seg(1)), 401);
    assert_eq!(get(&server.url("/"), &key).status, 401);
    // Garbage, oversize, a wrong codec (H.265 into an H.264 broadcast), unknown kinds of file.
    assert_eq!(put(b, "porch", "seg_00001.ts", &key, &vec![0x47u8; 188 * 10]), 422);
    assert_eq!(put(b, "porch", "big.ts", &key, &vec![0u8; 3_000_001]), 413);
    let hevc = std::fs::read(fixture("s03_h265_aac_ts_1s").join("seg_00000.ts")).unwrap();
    assert_eq!(put(b, "porch", "seg_00002.ts", &key, &hevc), 422);
    assert_eq!(put(b, "porch", "notes.txt", &key, b"hello"), 415);
    assert_eq!(put(b, "porch", "index.m3u8", &key, b"not a playlist"), 422);
    // A connection cut in the middle of a segment upload stores nothing.
    {
        use std::io::Write;
        let addr = b.strip_prefix("http://").unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let body = seg(3);
        write!(s, "PUT /v1/ingest/porch/seg_00003.ts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
        s.write_all(&body[..body.len() / 2]).unwrap();
    }
    // The broadcast goes on: seg 1 and 2 are refused uploads (gaps), 3 arrives whole now, then 4.
    assert_eq!(put(b, "porch", "seg_00003.ts", &key, &seg(3)), 201);
    assert_eq!(put(b, "porch", "seg_00004.ts", &key, &seg(4)), 201);
    assert_eq!(put(b, "porch", "index.m3u8", &key, playlist(5, true).as_bytes()), 201);
    let recs = recordings(&server, &env.token, "porch");
    assert_eq!(recs.len(), 1);
    assert!(!recs[0].1, "ended by EXT-X-ENDLIST");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("r.mp4");
    std::fs::write(&f, get(&server.url(&recs[0].0), &env.token).body).unwrap();
    assert_eq!(decode_errors(&f), "");
    assert_eq!(hashes(&f, "0:v:0", true).len(), 180, "segments 0, 3 and 4");
}

/// An encoder that sends SPS/PPS only with its very first IDR: every later segment is indexed
/// with the parameter sets the broadcast has seen, across a server restart too, and the recording
/// decodes frame for frame like the source. Also two audio tracks with their languages.
#[test]
fn live_ingest_carries_parameter_sets_and_every_audio_track() {
    for (set, camera) in [("c03_h264_params_once_ts", "porch"), ("c01_h264_2aac_lang_ts", "yard")] {
        let env = Env::new("alice");
        let key = env.camera_add("alice", camera);
        let src = fixture(set);
        let seg = |i: u32| std::fs::read(src.join(format!("seg_{i:05}.ts"))).unwrap();
        let playlist = |n: u32, end: bool| {
            let mut p = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n".to_string();
            for i in 0..n {
                p += &format!("#EXTINF:2.0,\nseg_{i:05}.ts\n");
            }
            if end {
                p += "#EXT-X-ENDLIST\n";
            }
            p
        };
        let mut server = Server::start(env.data(), &["--ingest-idle-timeout", "30"]);
        for i in 0..6 {
            if i == 3 {
                // A restart: the broadcast resumes with the parameter sets it had seen.
                drop(server);
                server = Server::start(env.data(), &["--ingest-idle-timeout", "30"]);
            }
            assert_eq!(put(&server.base, camera, &format!("seg_{i:05}.ts"), &key, &seg(i)), 201, "{set} seg {i}");
            assert_eq!(put(&server.base, camera, "index.m3u8", &key, playlist(i + 1, i == 5).as_bytes()), 201);
        }
        let recs = recordings(&server, &env.token, camera);
        assert_eq!(recs.len(), 1, "{set}: {recs:?}");
        assert!(!recs[0].1, "ended by EXT-X-ENDLIST");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.mp4");
        std::fs::write(&f, get(&server.url(&recs[0].0), &env.token).body).unwrap();
        assert_eq!(decode_errors(&f), "", "{set}");
        let out = Command::new("python3")
            .arg(root().join("tests/tools/validate.py"))
            .args(["--source", src.join("index.m3u8").to_str().unwrap(), "--target", f.to_str().unwrap()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{set}: validate.py\n{stdout}");
        assert!(stdout.contains("[PASS] streams"), "{stdout}");
    }
}

#[test]
fn server_restart_during_a_broadcast_keeps_recordings_consistent() {
    let env = Env::new("alice");
    let key = env.camera_add("alice", "porch");
    let dir = tempfile::tempdir().unwrap();
    let mezz = mezzanine(dir.path(), 10);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--listen", listen.as_str(), "--ingest-idle-timeout", "4"];
    let server = Server::start(env.data(), &args);
    let mut ffmpeg = encoder(&mezz, &server.base, "porch", &key, "mpegts");
    wait_for("the broadcast to appear", 15, || !recordings(&server, &env.token, "porch").is_empty());
    std::thread::sleep(Duration::from_millis(2500));
    drop(server); // killed mid-broadcast
    std::thread::sleep(Duration::from_millis(1000));
    let server = Server::start(env.data(), &args);
    assert!(ffmpeg.wait().unwrap().success());
    wait_for("every recording to end", 15, || recordings(&server, &env.token, "porch").iter().all(|r| !r.1));
    let recs = recordings(&server, &env.token, "porch");
    assert!(!recs.is_empty());
    let mut frames = 0;
    for (path, _) in &recs {
        let f = dir.path().join("r.mp4");
        let r = get(&server.url(path), &env.token);
        assert_eq!(r.status, 200);
        std::fs::write(&f, &r.body).unwrap();
        assert_eq!(decode_errors(&f), "", "{path} decodes cleanly");
        frames += hashes(&f, "0:v:0", true).len();
    }
    // Segments PUT while the server was down are lost; everything else is there, resumed into
    // the same recording.
    assert!((180..=300).contains(&frames), "{frames} frames in {recs:?}");
    assert_eq!(recs.len(), 1, "the broadcast resumed after the restart: {recs:?}");
}

/// Sequence numbers of the `moof` boxes of a fragmented MP4.
fn fragment_sequences(data: &[u8]) -> Vec<u32> {
    let (mut p, mut out) = (0usize, Vec::new());
    while p + 24 <= data.len() {
        let size = u32::from_be_bytes(data[p..p + 4].try_into().unwrap()) as usize;
        if &data[p + 4..p + 8] == b"moof" {
            out.push(u32::from_be_bytes(data[p + 20..p + 24].try_into().unwrap()));
        }
        if size < 8 {
            break;
        }
        p += size;
    }
    out
}

#[test]
fn a_slow_live_viewer_skips_ahead_and_never_blocks_ingest() {
    let env = Env::new("alice");
    let key = env.camera_add("alice", "porch");
    let dir = tempfile::tempdir().unwrap();
    // 26 × 1 s segments of ~1 MB (8 Mb/s), more than socket buffers hold during a 16 s stall.
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "26"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-b:v", "8M", "-minrate", "8M", "-maxrate", "8M"])
        .args([
            "-bufsize",
            "2M",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_list_size",
            "0",
        ])
        .arg("-hls_segment_filename")
        .arg(dir.path().join("seg_%05d.ts"))
        .arg(dir.path().join("index.m3u8"))
        .status()
        .unwrap();
    assert!(st.success());
    let server = env.serve();
    let base = server.base.clone();
    let token = env.token.clone();
    let start_viewer = move || {
        use std::io::{BufRead, BufReader, Read, Write};
        let addr = base.strip_prefix("http://").unwrap().to_string();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /v1/files/porch/live.mp4?mode=stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        while line != "\r\n" {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        let (mut body, mut stalled) = (Vec::new(), false);
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            if n == 0 {
                return body;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
            if !stalled {
                stalled = true;
                std::thread::sleep(Duration::from_secs(16)); // stops reading
            }
        }
    };
    let mut viewer = None;
    let mut playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n".to_string();
    let t0 = Instant::now();
    let mut late = Duration::ZERO;
    for i in 0..26u32 {
        let name = format!("seg_{i:05}.ts");
        let started = Instant::now();
        assert_eq!(put(&server.base, "porch", &name, &key, &std::fs::read(dir.path().join(&name)).unwrap()), 201);
        playlist += &format!("#EXTINF:1.0,\n{name}\n");
        let end = if i == 25 { "#EXT-X-ENDLIST\n" } else { "" };
        assert_eq!(put(&server.base, "porch", "index.m3u8", &key, format!("{playlist}{end}").as_bytes()), 201);
        late = late.max(started.elapsed());
        if i == 1 {
            viewer = Some(std::thread::spawn(start_viewer.clone()));
        }
        std::thread::sleep((t0 + Duration::from_secs(i as u64 + 1)).saturating_duration_since(Instant::now()));
    }
    assert!(late < Duration::from_millis(500), "ingest was slowed by the stalled viewer: {late:?}");
    let body = viewer.unwrap().join().unwrap();
    let seqs = fragment_sequences(&body);
    assert!(seqs.windows(2).any(|w| w[1] > w[0] + 1), "the viewer skipped ahead: {seqs:?}");
    assert_eq!(seqs.last(), Some(&26), "and followed to the end: {seqs:?}");
    let f = dir.path().join("tail.mp4");
    std::fs::write(&f, &body).unwrap();
    assert_eq!(decode_errors(&f), "", "the stream stays decodable across the skip ({seqs:?})");
}
