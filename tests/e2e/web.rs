//! The web page: sign-in sessions (cookie flags, CSRF, login CSRF, revocation, sign-out),
//! thumbnails, other users' paths, and a Playwright run in headless Chromium that signs in, sees
//! the thumbnails, plays a finished recording from its full MP4 (duration known at once, a seek
//! near the end plays to the end), cuts a clip with in and out points, checks the quasi-stream's
//! duration, and watches a live broadcast.

use std::process::Command;

use crate::common::*;
use crate::live::{encoder, mezzanine, wait_for};

/// Signs in through the form; returns the session cookie value and the Set-Cookie header.
fn sign_in(base: &str, token: &str) -> (String, String) {
    let r = request_with_body(
        "POST",
        &format!("{base}/signin"),
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "same-origin")],
        Some(format!("token={token}").as_bytes()),
    );
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/")), "{}", String::from_utf8_lossy(&r.body));
    let set = r.header("set-cookie").unwrap().to_string();
    let value = set.strip_prefix("jitmux_session=").unwrap().split(';').next().unwrap().to_string();
    (value, set)
}

fn with_cookie(method: &str, url: &str, cookie: &str, extra: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let c = format!("jitmux_session={cookie}");
    let mut h = vec![("Cookie", c.as_str())];
    h.extend_from_slice(extra);
    request_with_body(method, url, &h, body)
}

fn csrf_of(page: &str) -> String {
    page.split("name=csrf content=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

#[test]
fn web_sign_in_sessions_csrf_and_thumbnails() {
    let env = Env::new("alice");
    let bob = env.add_user("bob");
    let rec = env.import("alice", "garage", &fixture("s01_h264_aac_ts_2s").join("index.m3u8"));
    let hevc = env.import("alice", "attic", &fixture("s03_h265_aac_ts_1s").join("index.m3u8"));
    let interlaced = env.import("alice", "sony", &fixture("r09_sony_avchd_ac3_fmp4").join("index.m3u8"));
    let server = env.serve();
    let base = &server.base.clone();

    // Not signed in: the form; /ui/ sends there.
    let r = request("GET", &format!("{base}/"), &[]);
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("name=token"));
    assert!(r.header("content-security-policy").unwrap().contains("script-src 'self'"));
    assert_eq!(request("GET", &format!("{base}/ui/"), &[]).header("location"), Some("/"));

    // Refused sign-ins set no cookie: cross-site (login CSRF), bad token, empty.
    for (headers, body, status) in [
        (vec![("Sec-Fetch-Site", "cross-site")], format!("token={}", env.token), 403),
        (vec![("Origin", "http://evil.example")], format!("token={}", env.token), 403),
        (vec![], "token=jm_0000".to_string(), 401),
        (vec![], "token=".to_string(), 400),
    ] {
        let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
        h.extend(headers);
        let r = request_with_body("POST", &format!("{base}/signin"), &h, Some(body.as_bytes()));
        assert_eq!(r.status, status, "{body}");
        assert!(r.header("set-cookie").is_none());
    }

    // Signed in: the cookie is HttpOnly and SameSite=Strict; the session reads the tree.
    let (cookie, set) = sign_in(base, &env.token);
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert_eq!(request("GET", &format!("{base}/"), &[("Cookie", &format!("jitmux_session={cookie}"))]).status, 303);
    let (cam, day) = {
        let p: Vec<&str> = rec.trim_start_matches('/').split('/').collect();
        (p[0].to_string(), p[1].to_string())
    };
    let page = with_cookie("GET", &format!("{base}/ui/{cam}/{day}/"), &cookie, &[], None);
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let html = String::from_utf8_lossy(&page.body).into_owned();
    let csrf = csrf_of(&html);
    let thumb_url = format!("{base}/v1/thumbnails{}", rec.replace(".mp4", ".jpg"));
    assert!(html.contains(&format!("src=\"/v1/thumbnails{}\"", rec.replace(".mp4", ".jpg"))), "{html}");
    assert!(html.contains("data-codecs=\"avc1.") && html.contains(",mp4a.40.2\""), "{html}");
    let hevc_page =
        with_cookie("GET", &format!("{base}/ui{}", &hevc[..hevc.rfind('/').unwrap() + 1]), &cookie, &[], None);
    assert!(String::from_utf8_lossy(&hevc_page.body).contains("data-codecs=\"hev1."));
    let listing = with_cookie("GET", &server.url("/"), &cookie, &[("Accept", "application/json")], None);
    assert_eq!(listing.status, 200, "the API takes the session too");

    // Thumbnails: a JPEG, the same bytes every time and after a restart; none for H.265.
    let t1 = with_cookie("GET", &thumb_url, &cookie, &[], None);
    assert_eq!((t1.status, t1.header("content-type")), (200, Some("image/jpeg")));
    assert_eq!(&t1.body[..3], &[0xff, 0xd8, 0xff]);
    assert_eq!(get(&thumb_url, &env.token).body, t1.body, "bearer token works too");
    let h = with_cookie("GET", &format!("{base}/v1/thumbnails{}", hevc.replace(".mp4", ".jpg")), &cookie, &[], None);
    assert_eq!(h.status, 404);
    assert!(String::from_utf8_lossy(&h.body).contains("H.264 only"));
    let i = get(&format!("{base}/v1/thumbnails{}", interlaced.replace(".mp4", ".jpg")), &env.token);
    assert_eq!(i.status, 404);
    assert!(String::from_utf8_lossy(&i.body).contains("interlaced"), "openh264 decodes progressive H.264 only");

    // Changing state on a session needs its CSRF token.
    let share = format!("{base}/v1/share");
    let body = format!(r#"{{"path":"{rec}","modes":["stream"]}}"#);
    let no_csrf = with_cookie("POST", &share, &cookie, &[], Some(body.as_bytes()));
    assert_eq!(no_csrf.status, 403);
    let wrong = with_cookie("POST", &share, &cookie, &[("X-CSRF-Token", "jm_0")], Some(body.as_bytes()));
    assert_eq!(wrong.status, 403);
    let ok = with_cookie("POST", &share, &cookie, &[("X-CSRF-Token", &csrf)], Some(body.as_bytes()));
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let link: serde_json::Value = serde_json::from_slice(&ok.body).unwrap();
    let stream = request("GET", &format!("{base}{}&mode=stream", link["path"].as_str().unwrap()), &[]);
    assert_eq!((stream.status, &stream.body[4..8]), (200, &b"ftyp"[..]), "the page's player URL plays");

    // Bob's session sees none of alice's tree, thumbnails or files, and cannot tell them from
    // paths that never existed.
    let (bob_cookie, _) = sign_in(base, &bob);
    for (url, never) in [
        (format!("{base}/ui/{cam}/"), format!("{base}/ui/nocam/")),
        (format!("{base}/ui/{cam}/{day}/"), format!("{base}/ui/{cam}x/{day}/")),
        (thumb_url.clone(), thumb_url.replace(&cam, "nocam")),
        (server.url(&rec), server.url(&rec.replace(&cam, "nocam"))),
    ] {
        let a = with_cookie("GET", &url, &bob_cookie, &[], None);
        let b = with_cookie("GET", &never, &bob_cookie, &[], None);
        assert_eq!((a.status, &a.body), (404, &b.body), "{url}");
    }
    let bob_ui =
        String::from_utf8_lossy(&with_cookie("GET", &format!("{base}/ui/"), &bob_cookie, &[], None).body).into_owned();
    assert!(!bob_ui.contains(&cam) && bob_ui.contains("No cameras yet"));

    // Thumbnail bytes survive a restart (stored, deterministic).
    drop(server);
    let server = env.serve();
    let t2 = with_cookie("GET", &thumb_url.replace(base, &server.base), &cookie, &[], None);
    assert_eq!(t2.body, t1.body, "sessions and thumbnails survive a restart");
    let base = &server.base;

    // Sign-out needs the CSRF token, then ends the session.
    let out = format!("{base}/signout");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(with_cookie("POST", &out, &cookie, &form, Some(b"csrf=jm_0")).status, 403);
    let r = with_cookie("POST", &out, &cookie, &form, Some(format!("csrf={csrf}").as_bytes()));
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(with_cookie("GET", &format!("{base}/ui/"), &cookie, &[], None).status, 303);
    assert_eq!(with_cookie("GET", &server.url("/"), &cookie, &[], None).status, 401);

    // Revoking the token ends its sessions.
    let laptop =
        env.cli(&["user", "token", "add", "alice", "--name", "laptop"]).stdout.lines().last().unwrap().to_string();
    let (c2, _) = sign_in(base, &laptop);
    assert_eq!(with_cookie("GET", &format!("{base}/ui/"), &c2, &[], None).status, 200);
    assert_eq!(env.cli(&["user", "token", "revoke", "alice", "laptop"]).code, 0);
    assert_eq!(with_cookie("GET", &format!("{base}/ui/"), &c2, &[], None).status, 303);
}

/// Playwright (playwright-core, /usr/bin/chromium) drives the page: sign in, thumbnails and the
/// day's ZIP link (downloaded), a finished recording played from its signed full MP4 (its whole duration at
/// `loadedmetadata`, a seek near the end playing on to the end), in and out points making the clip
/// link, which downloads the clip, the quasi-stream's duration (`mehd`) at `loadedmetadata`, an H.265 recording offered for
/// download, and a live broadcast from a real encoder (ffmpeg HLS PUT) watched for several
/// seconds. Screenshots go to `target/web-ui/`.
#[test]
fn playwright_signs_in_sees_thumbnails_plays_and_watches_live() {
    assert!(std::path::Path::new("/usr/bin/chromium").exists(), "install chromium (scripts/test.sh does)");
    let env = Env::new("alice");
    let rec = env.import("alice", "garage", &fixture("s01_h264_aac_ts_2s").join("index.m3u8"));
    env.import("alice", "garage", &fixture("s05_h264_aac_ts_discontinuity").join("index.m3u8"));
    let hevc = env.import("alice", "attic", &fixture("s03_h265_aac_ts_1s").join("index.m3u8"));
    let key = env.camera_add("alice", "porch");
    let server = env.serve();
    let mezz = mezzanine(env.data(), 40);
    let mut ffmpeg = encoder(&mezz, &server.base, "porch", &key, "mpegts");
    let token = env.token.clone();
    wait_for("the broadcast to start", 30, || get(&server.url("/porch/live.mp4"), &token).status == 200);

    let out_dir = root().join("target/web-ui");
    let day = &rec[..rec.rfind('/').unwrap() + 1];
    let hevc_day = &hevc[..hevc.rfind('/').unwrap() + 1];
    let out = Command::new("node")
        .arg(root().join("tests/tools/web_ui.js"))
        .args([&server.base, &env.token, "--day", day, "--hevc-day", hevc_day, "--live", "porch"])
        .arg("--out")
        .arg(&out_dir)
        .args(["--rate", "4", "--watch", "6", "--timeout", "90", "--clips", "--zips", "--exports"])
        .output()
        .unwrap();
    let _ = ffmpeg.kill();
    let _ = ffmpeg.wait();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("web_ui: {report}\nscreenshots: {}", out_dir.display());
    assert!(out.status.success(), "{report} {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    let steps = v["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["signed in", "thumbnails", "played to end", "stream duration", "exported", "hevc", "watched live"]
    );
    assert_eq!(steps[1]["cards"], 2, "both recordings of the day listed with thumbnails");
    let played = &steps[2];
    let listed = played["listedS"].as_f64().unwrap();
    assert!(listed > 20.0, "s01 is a 30 s recording: {played}");
    assert!((played["durationAtMetadata"].as_f64().unwrap() - listed).abs() < 0.1, "{played}");
    assert!((steps[3]["duration"].as_f64().unwrap() - listed).abs() < 0.1, "quasi-stream: {}", steps[3]);
    let clip = &played["clip"];
    assert_eq!((clip["status"].as_u64(), clip["type"].as_str()), (Some(200), Some("video/mp4")), "{clip}");
    let zip = &steps[1]["zip"];
    assert_eq!(zip["status"].as_u64(), Some(200), "the day's ZIP link downloads: {zip}");
    for f in ["recordings.png", "hevc.png", "live.png"] {
        assert!(out_dir.join(f).metadata().unwrap().len() > 10_000, "{f} saved");
    }
}
