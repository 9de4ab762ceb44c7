//! The quasi-stream (`?mode=stream`): fragmented MP4 made as it is sent.

use std::process::Command;

use crate::common::*;

fn ffprobe_lines(file: &std::path::Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("ffprobe").args(["-v", "error"]).args(args).arg(file).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn quasi_stream_validates_against_the_source() {
    let sets = [
        ("s01_h264_aac_ts_2s", "auto"),
        ("s02_h264_aac_fmp4_2s", "auto"),
        ("s05_h264_aac_ts_discontinuity", "auto"),
        ("s06_h264_aac_fmp4_discontinuity", "auto"),
        ("s09_h264_aac_ts_ptswrap", "auto"),
        ("s11_aac_only_ts_2s", "sections"), // see media.rs on ffmpeg's HLS demuxer
        ("r04_iphone12_hevc_dv84_rot_fmp4", "auto"),
        ("r09_sony_avchd_ac3_ts", "auto"),
        ("c01_h264_2aac_lang_ts", "auto"),
        ("c03_h264_params_once_ts", "auto"),
    ];
    let env = Env::new("alice");
    let paths: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, (s, _))| env.import("alice", &format!("c{i}"), &fixture(s).join("index.m3u8")))
        .collect();
    let server = env.serve();
    let mut failed = Vec::new();
    for ((set, mode), path) in sets.iter().zip(&paths) {
        let out = Command::new("python3")
            .arg(root().join("tests/tools/validate.py"))
            .args(["--source-mode", mode, "--no-range"])
            .args(["--source", fixture(set).join("index.m3u8").to_str().unwrap()])
            .args(["--target", &format!("{}?mode=stream", server.url(path))])
            .args(["--header", &format!("Authorization: Bearer {}", env.token)])
            .output()
            .unwrap();
        eprintln!("== {set} (stream)\n{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            failed.push(*set);
        }
    }
    assert!(failed.is_empty(), "validate.py failed for {failed:?}");
    // Deterministic like the full file.
    let url = format!("{}?mode=stream&start=10", server.url(&paths[0]));
    assert!(get(&url, &env.token).body == get(&url, &env.token).body);
}

#[test]
fn start_lands_on_the_sync_sample_at_or_before() {
    let env = Env::new("alice");
    let path = env.import("alice", "cam", &fixture("s02_h264_aac_fmp4_2s").join("index.m3u8"));
    let server = env.serve();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.mp4");
    std::fs::write(&full, get(&format!("{}?mode=stream", server.url(&path)), &env.token).body).unwrap();
    // (pts, is_key) of every video packet of the whole stream.
    let packets: Vec<(f64, bool)> =
        ffprobe_lines(&full, &["-select_streams", "v:0", "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
            .iter()
            .map(|l| {
                let (pts, flags) = l.split_once(',').unwrap();
                (pts.parse().unwrap(), flags.starts_with('K'))
            })
            .collect();
    for start in [0.0f64, 7.5, 30.0, 30.1, 59.9, 500.0] {
        let part = dir.path().join("part.mp4");
        let r = get(&format!("{}?mode=stream&start={start}", server.url(&path)), &env.token);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), None, "streamed, not buffered");
        std::fs::write(&part, &r.body).unwrap();
        let first: f64 =
            ffprobe_lines(&part, &["-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "csv=p=0"])[0]
                .parse()
                .unwrap();
        let expect = packets.iter().rfind(|(pts, key)| *key && *pts <= start.max(packets[0].0)).unwrap().0;
        assert!(
            (first - expect).abs() < 1e-6,
            "start={start}: first video pts {first}, expected sync sample at {expect}"
        );
    }
    for bad in ["mode=bogus", "mode=stream&start=-1", "mode=stream&start=abc", "start=5"] {
        assert_eq!(get(&format!("{}?{bad}", server.url(&path)), &env.token).status, 400, "{bad}");
    }
}

#[test]
fn chromium_plays_a_quasi_stream_while_it_downloads() {
    let env = Env::new("alice");
    let path = env.import("alice", "cam", &fixture("s01_h264_aac_ts_2s").join("index.m3u8"));
    let server = env.serve();
    let out = Command::new("node")
        .arg(root().join("tests/tools/stream_play.js"))
        .arg(format!("{}?mode=stream", server.url(&path)))
        .args(["--header", &format!("Authorization: Bearer {}", env.token), "--kbps", "4000", "--rate", "8"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(out.status.success(), "{report} {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert!(v["playingMs"].as_f64().unwrap() < v["bodyDoneMs"].as_f64().unwrap(), "{v}");
}
