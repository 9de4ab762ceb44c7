//! Export jobs on one node (SQLite): a job to a ZIP with clips and a recording, a failed item
//! reported per item, the ZIP downloaded and checked member by member against the files fetched
//! alone; refusals; and `jitmux export` into a directory, resumed, and left to the page cache.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn post_json(url: &str, token: &str, body: &serde_json::Value) -> Resp {
    request_with_body(
        "POST",
        url,
        &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

fn json(r: &Resp) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)))
}

/// Polls job `id` until it has finished; returns its status.
pub fn wait_finished(base: &str, token: &str, id: i64, timeout: Duration) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let j = json(&get(&format!("{base}/v1/exports/{id}"), token));
        if !matches!(j["state"].as_str(), Some("queued" | "running")) {
            return j;
        }
        assert!(t0.elapsed() < timeout, "job {id} still {} after {timeout:?}: {j}", j["state"]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_export_job_to_a_zip_and_the_cli_into_a_directory() {
    let env = Env::new("alice");
    for start in ["2026-03-01T10:00:00Z", "2026-03-01T10:01:00Z"] {
        let pl = fixture("s01_h264_aac_ts_2s").join("index.m3u8");
        let r = env.cli(&["import", "--user", "alice", "--camera", "cam", "--start", start, pl.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let server = env.serve();
    let base = &server.base;
    let tok = &env.token;
    // Clips across the two recordings, one keyframe-accurate with its own name, a recording, and
    // a clip where there is no media.
    let items = serde_json::json!([
        {"clip": {"camera": "cam", "start": "2026-03-01T10:00:50Z", "end": "2026-03-01T10:01:10.500Z"}},
        {"clip": {"camera": "cam", "start": "2026-03-01T10:00:05Z", "end": "2026-03-01T10:00:15Z", "accuracy": "keyframe"}, "name": "kf/first.mp4"},
        {"path": "cam/2026-03-01/10-01-00.mp4"},
        {"clip": {"camera": "cam", "start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:01:00Z"}},
    ]);
    let r =
        post_json(&format!("{base}/v1/exports"), tok, &serde_json::json!({"items": items, "destination": {"zip": {}}}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = json(&r)["id"].as_i64().unwrap();
    assert_eq!(r.header("location"), Some(format!("/v1/exports/{id}").as_str()));
    let job = wait_finished(base, tok, id, Duration::from_secs(60));
    assert_eq!(job["state"], "failed", "one item has no media: {job}");
    assert_eq!((job["items_done"].as_i64(), job["items_failed"].as_i64()), (Some(3), Some(1)), "{job}");
    assert_eq!(job["errors"][0]["item"], 3);
    assert_eq!(job["errors"][0]["error"], "no media in the range");
    assert_eq!(job["bytes_done"], job["bytes_total"]);
    let listed = json(&get(&format!("{base}/v1/exports"), tok));
    assert_eq!(listed["exports"][0]["id"].as_i64(), Some(id));

    // The ZIP of the items done: each member is the file fetched alone.
    let zip_url = format!("{base}{}", job["download"].as_str().expect("download link"));
    let zip = get(&zip_url, tok);
    assert_eq!(zip.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let zpath = dir.path().join("export.zip");
    std::fs::write(&zpath, &zip.body).unwrap();
    let t = Command::new("unzip").arg("-t").arg(&zpath).output().unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stdout));
    let x = dir.path().join("x");
    assert!(Command::new("unzip").args(["-q", "-d"]).arg(&x).arg(&zpath).status().unwrap().success());
    let alone = [
        (
            "cam/2026-03-01T10:00:50Z_2026-03-01T10:01:10.5Z.mp4",
            "/v1/clips/cam/2026-03-01T10:00:50Z_2026-03-01T10:01:10.500Z.mp4",
        ),
        ("kf/first.mp4", "/v1/clips/cam/2026-03-01T10:00:05Z_2026-03-01T10:00:15Z.mp4?accuracy=keyframe"),
        ("cam/2026-03-01/10-01-00.mp4", "/v1/files/cam/2026-03-01/10-01-00.mp4"),
    ];
    let items_status = json(&get(&format!("{base}/v1/exports/{id}"), tok))["items"].clone();
    for (n, (member, url)) in alone.iter().enumerate() {
        let f = get(&format!("{base}{url}"), tok);
        assert_eq!(f.status, 200, "{url}");
        assert!(std::fs::read(x.join(member)).unwrap() == f.body, "{member} in the ZIP is {url}");
        let etag = f.header("etag").unwrap().trim_matches('"').to_string();
        assert_eq!(items_status[n]["etag"].as_str(), Some(etag.as_str()), "item {n} records the ETag of its bytes");
    }
    // Ranges of the ZIP.
    let r = get_range(&zip_url, tok, "bytes=100-199");
    assert_eq!((r.status, &r.body[..]), (206, &zip.body[100..200]));

    // Refusals.
    let bad = |body: serde_json::Value, status: u16| {
        let r = post_json(&format!("{base}/v1/exports"), tok, &body);
        assert_eq!(r.status, status, "{body}: {}", String::from_utf8_lossy(&r.body));
    };
    bad(serde_json::json!({"items": [], "destination": {"zip": {}}}), 400);
    bad(
        serde_json::json!({"items": [{"path": "cam/2026-03-01/10-01-00.mp4"}, {"path": "cam/2026-03-01/10-01-00.mp4"}], "destination": {"zip": {}}}),
        400,
    );
    bad(
        serde_json::json!({"items": [{"clip": {"camera": "cam", "start": "yesterday", "end": "2026-03-01T10:01:10Z"}}], "destination": {"zip": {}}}),
        400,
    );
    bad(
        serde_json::json!({"items": [{"path": "cam/2026-03-01/10-01-00.mp4", "name": "../x.mp4"}], "destination": {"zip": {}}}),
        400,
    );
    bad(
        serde_json::json!({"items": [{"path": "cam/2026-03-01/10-01-00.mp4"}], "destination": {"s3": "s3://elsewhere/x/"}}),
        403,
    );
    assert_eq!(
        request("DELETE", &format!("{base}/v1/exports/{id}"), &[("Authorization", &format!("Bearer {tok}"))]).status,
        409
    );
    let bob = env.add_user("bob");
    assert_eq!(get(&format!("{base}/v1/exports/{id}"), &bob).status, 404, "another user's job");
    assert_eq!(get(&format!("{base}/v1/exports/{id}.zip"), &bob).status, 404);
    assert_eq!(get(&format!("{base}/v1/exports"), "nope").status, 401);

    // The CLI: the same items into a directory; a second run keeps what is there.
    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        let mut args = vec!["export", "--user", "alice", "--to", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        env.cli(&args)
    };
    let r = run(&["cam/2026-03-01T10:00:50Z_2026-03-01T10:01:10.500Z.mp4", "cam/2026-03-01/10-01-00.mp4"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("2 written"), "{}", r.stdout);
    for (member, _) in [alone[0], alone[2]] {
        assert!(std::fs::read(out.join(member)).unwrap() == std::fs::read(x.join(member)).unwrap(), "{member}");
    }
    let r = run(&["cam/2026-03-01/10-01-00.mp4", "cam/2026-03-01T12:00:00Z_2026-03-01T12:01:00Z.mp4"]);
    assert_eq!(r.code, 65, "an item failed: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("1 kept") && r.stderr.contains("no media in the range"), "{}{}", r.stdout, r.stderr);
    // Left to the page cache (--no-sync): the same bytes; not for S3.
    let cached = dir.path().join("cached");
    let r = env.cli(&[
        "export",
        "--user",
        "alice",
        "--no-sync",
        "--to",
        cached.to_str().unwrap(),
        "cam/2026-03-01/10-01-00.mp4",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let member = alone[2].0;
    assert!(std::fs::read(cached.join(member)).unwrap() == std::fs::read(x.join(member)).unwrap(), "{member}");
    let r =
        env.cli(&["export", "--user", "alice", "--no-sync", "--to", "s3://bucket/x/", "cam/2026-03-01/10-01-00.mp4"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--no-sync: for a directory"), "{}", r.stderr);
}
