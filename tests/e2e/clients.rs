//! The client matrix: real downloaders and players nobody here wrote, against the real server
//! (`tests/tools/client_matrix.py`: aria2c, wget resume and mirror, rclone's http remote,
//! GStreamer playbin, ffmpeg seeking over HTTP, curl), on an H.264 and an H.265 recording, with
//! a token and through a signed URL.

use std::process::Command;

use crate::common::*;

#[test]
fn client_matrix_h264_and_h265() {
    let env = Env::new("alice");
    let recordings = [("h264", "s01_h264_aac_ts_2s", "10:00:00"), ("h265", "s03_h265_aac_ts_1s", "11:00:00")];
    let paths: Vec<String> = recordings
        .iter()
        .map(|(_, set, at)| {
            let r = env.cli(&[
                "import",
                "--user",
                "alice",
                "--camera",
                "front",
                "--start",
                &format!("2026-03-01T{at}Z"),
                fixture(set).join("index.m3u8").to_str().unwrap(),
            ]);
            assert_eq!(r.code, 0, "import {set}: {}", r.stderr);
            r.stdout.lines().last().unwrap().trim().to_string()
        })
        .collect();
    let server = env.serve();
    let work = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for ((label, set, _), path) in recordings.iter().zip(&paths) {
        let share = env.cli(&["share", "--user", "alice", path, "--expires", "1h", "--base", &server.base]);
        assert_eq!(share.code, 0, "share: {}", share.stderr);
        let signed = share.stdout.lines().last().unwrap().trim().to_string();
        let out = Command::new("python3")
            .arg(root().join("tests/tools/client_matrix.py"))
            .args(["--base", &server.base, "--token", &env.token, "--tree-root", "/front/"])
            .args(["--file", path, "--signed-url", &signed, "--label", label])
            .args(["--source", fixture(set).join("index.m3u8").to_str().unwrap()])
            .args(["--workdir", work.path().to_str().unwrap()])
            .output()
            .unwrap();
        eprintln!(
            "== {label} ({set})\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            failed.push(*label);
        }
    }
    assert!(failed.is_empty(), "client matrix failed for {failed:?}");
}

/// aria2c opens at most one connection per MiB (`-k 1M`): on a file of 8 MiB or more it uses all
/// 8, each a separate Range request, and the pieces make up the same bytes as one plain GET.
#[test]
fn aria2c_with_8_connections_on_a_large_file() {
    // A long recording: the 60 s H.264 set five times over, joined at discontinuities.
    let src = fixture("s01_h264_aac_ts_2s");
    let dir = tempfile::tempdir().unwrap();
    let mut playlist = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n");
    let mut segs: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".ts"))
        .collect();
    segs.sort();
    for round in 0..5 {
        if round > 0 {
            playlist.push_str("#EXT-X-DISCONTINUITY\n");
        }
        for s in &segs {
            let name = format!("r{round}_{s}");
            std::fs::copy(src.join(s), dir.path().join(&name)).unwrap();
            playlist.push_str(&format!("#EXTINF:2.0,\n{name}\n"));
        }
    }
    playlist.push_str("#EXT-X-ENDLIST\n");
    std::fs::write(dir.path().join("index.m3u8"), playlist).unwrap();
    let env = Env::new("alice");
    let path = env.import("alice", "long", &dir.path().join("index.m3u8"));
    let server = env.serve();
    let plain = get(&server.url(&path), &env.token).body;
    assert!(plain.len() > 8 << 20, "{} bytes", plain.len());
    let out = dir.path().join("out");
    let log = dir.path().join("aria2c.log");
    let r = Command::new("aria2c")
        .args(["-x", "8", "-s", "8", "-k", "1M", "--header", &format!("Authorization: Bearer {}", env.token)])
        .args(["--file-allocation=none", "--console-log-level=error", "--log-level=debug", "--summary-interval=0"])
        .arg(format!("--log={}", log.display()))
        .arg("-d")
        .arg(&out)
        .args(["-o", "long.mp4", &server.url(&path)])
        .output()
        .unwrap();
    assert!(r.status.success(), "aria2c: {}", String::from_utf8_lossy(&r.stderr));
    let got = std::fs::read(out.join("long.mp4")).unwrap();
    assert!(got == plain, "aria2c's file differs from a plain GET ({} vs {} bytes)", got.len(), plain.len());
    let log = std::fs::read_to_string(&log).unwrap();
    let ranges = log.lines().filter(|l| l.starts_with("Range: bytes=")).count();
    assert!(ranges >= 7, "aria2c made {ranges} Range requests (8 connections: the first is a plain GET)");
}
