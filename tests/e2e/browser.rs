//! Headless Chromium plays the H.264 outputs to the end (metadata, a seek to the middle, play to
//! `ended`, decoded frames), through its own HTTP Range requests. Needs /usr/bin/chromium and
//! tests/tools/node_modules (scripts/test.sh installs both).

use std::process::Command;

use crate::common::*;

#[test]
fn chromium_plays_h264_outputs_to_the_end() {
    assert!(std::path::Path::new("/usr/bin/chromium").exists(), "install chromium (scripts/test.sh does)");
    let env = Env::new("alice");
    let sets = ["s01_h264_aac_ts_2s", "s02_h264_aac_fmp4_2s", "r02_intel_car_ts", "r06_iphone6_rot_vfr_fmp4"];
    let paths: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| env.import("alice", &format!("c{i}"), &fixture(s).join("index.m3u8")))
        .collect();
    let server = env.serve();
    for (set, path) in sets.iter().zip(&paths) {
        let out = Command::new("node")
            .arg(root().join("tests/tools/browser_play.js"))
            .arg(server.url(path))
            .args(["--header", &format!("Authorization: Bearer {}", env.token), "--rate", "16", "--timeout", "120"])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        eprintln!("{set}: {report}");
        assert!(out.status.success(), "{set}: {report} {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
        assert_eq!(v["ended"], true, "{set}");
        assert!(v["decodedFrames"].as_u64().unwrap() > 0, "{set}");
    }
}
