//! Signed URLs (HMAC-SHA256, rotating keys) and revocable API tokens.

use std::process::Command;

use crate::common::*;

fn share(env: &Env, user: &str, path: &str, args: &[&str]) -> Run {
    let mut a = vec!["share", "--user", user, path];
    a.extend_from_slice(args);
    env.cli(&a)
}

fn link(env: &Env, path: &str, args: &[&str]) -> String {
    let r = share(env, "alice", path, args);
    assert_eq!(r.code, 0, "share: {}", r.stderr);
    r.stdout.lines().last().unwrap().to_string()
}

fn set_param(url: &str, key: &str, value: &str) -> String {
    let (base, q) = url.split_once('?').unwrap();
    let q: Vec<String> = q
        .split('&')
        .map(|p| if p.starts_with(&format!("{key}=")) { format!("{key}={value}") } else { p.to_string() })
        .collect();
    format!("{base}?{}", q.join("&"))
}

fn anon(url: &str) -> Resp {
    request("GET", url, &[])
}

#[test]
fn signed_urls_work_without_a_token_and_refuse_tampering() {
    let env = Env::new("alice");
    env.add_user("bob");
    let a = env.import("alice", "front", &fixture("s13_h264_only_ts_2s").join("index.m3u8"));
    let b = env.import("bob", "back", &fixture("s14_h264_only_fmp4_2s").join("index.m3u8"));
    let server = env.serve();
    let full = get(&server.url(&a), &env.token).body;

    let l = link(&env, &a, &["--expires", "1h", "--modes", "file"]);
    let url = format!("{}{l}", server.base);
    let r = anon(&url);
    assert_eq!(r.status, 200);
    assert!(r.body == full, "same bytes as with a token");
    let part = request("GET", &url, &[("Range", "bytes=1000-1999")]);
    assert_eq!((part.status, &part.body[..]), (206, &full[1000..2000]));

    // Tampering with the path (to another file of alice's, to bob's), expiry, modes, user, key.
    let (_, q) = l.split_once('?').unwrap();
    let forbidden = [
        format!("{}{}?{q}", server.base, "/v1/files/front/2026-03-01/10-00-01.mp4"),
        format!("{}{}?{q}", server.base, b.replacen('/', "/v1/files/", 1)),
        set_param(&url, "exp", "4102444800"),
        set_param(&url, "modes", "file%2Cstream"),
        set_param(&url, "u", "bob"),
        set_param(&url, "kid", "000000000000"),
        set_param(&url, "sig", &"0".repeat(64)),
        format!("{url}&mode=stream"),
        url.split("&sig=").next().unwrap().to_string() + "&sig=",
    ];
    for f in &forbidden {
        let r = anon(f);
        assert_eq!(r.status, 403, "{f}");
        assert_eq!(String::from_utf8_lossy(&r.body).trim().lines().count(), 1);
    }
    assert!(String::from_utf8_lossy(&anon(&format!("{url}&mode=stream")).body).contains("does not allow mode stream"));

    // Expired.
    let short = format!("{}{}", server.base, link(&env, &a, &["--expires", "1"]));
    assert_eq!(anon(&short).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = anon(&short);
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("expired"));

    // Rotation keeps unexpired links; retiring the old key ends them.
    let old = format!("{}{}", server.base, link(&env, &a, &[]));
    let old_kid = old.split("kid=").nth(1).unwrap().split('&').next().unwrap().to_string();
    assert_eq!(env.cli(&["keys", "rotate"]).code, 0);
    let new = format!("{}{}", server.base, link(&env, &a, &["--modes", "stream"]));
    assert!(!new.contains(&old_kid), "new links use the new key");
    assert_eq!(anon(&old).status, 200);
    assert_eq!(anon(&format!("{new}&mode=stream")).status, 200);
    assert_eq!(env.cli(&["keys", "retire", &old_kid]).code, 0);
    assert_eq!(anon(&old).status, 403);
    assert_eq!(anon(&format!("{new}&mode=stream")).status, 200);

    // POST /v1/share, and its refusals; nobody can sign bob's file with alice's token.
    let auth = format!("Bearer {}", env.token);
    let agent = ureq::AgentBuilder::new().build();
    let resp = agent
        .post(&format!("{}/v1/share", server.base))
        .set("Authorization", &auth)
        .send_string(&format!(r#"{{"path":"{a}","expires_s":600,"modes":["file"]}}"#))
        .unwrap();
    let v: serde_json::Value = serde_json::from_reader(resp.into_reader()).unwrap();
    assert_eq!(anon(&v["url"].as_str().unwrap().replace("http://localhost", &server.base)).status, 200);
    for (body, status) in [
        (format!(r#"{{"path":"{b}"}}"#), 404),
        (r#"{"path":"/front/../x"}"#.to_string(), 400),
        (format!(r#"{{"path":"{a}","expires_s":0}}"#), 400),
        (format!(r#"{{"path":"{a}","modes":["admin"]}}"#), 400),
        ("not json".to_string(), 400),
    ] {
        let r = agent.post(&format!("{}/v1/share", server.base)).set("Authorization", &auth).send_string(&body);
        assert!(matches!(r, Err(ureq::Error::Status(s, _)) if s == status), "{body}");
    }
    assert!(matches!(
        agent.post(&format!("{}/v1/share", server.base)).send_string("{}"),
        Err(ureq::Error::Status(401, _))
    ));
}

#[test]
fn revoked_tokens_stop_working() {
    let env = Env::new("alice");
    let server = env.serve();
    let second =
        env.cli(&["user", "token", "add", "alice", "--name", "laptop"]).stdout.lines().last().unwrap().to_string();
    assert_eq!(get(&server.url("/"), &second).status, 200);
    let r = env.cli(&["user", "token", "revoke", "alice", "laptop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(get(&server.url("/"), &second).status, 401);
    assert_eq!(get(&server.url("/"), &env.token).status, 200, "other tokens stay");
    let list = env.cli(&["user", "token", "list", "alice"]).stdout;
    assert!(list.contains("default\t") && list.contains("laptop\t") && list.contains("revoked"), "{list}");
    assert_eq!(env.cli(&["user", "token", "revoke", "alice", "nope"]).code, 65);
}

#[test]
fn chromium_plays_a_signed_url_with_no_header() {
    let env = Env::new("alice");
    let path = env.import("alice", "cam", &fixture("s02_h264_aac_fmp4_2s").join("index.m3u8"));
    let server = env.serve();
    let url = format!("{}{}", server.base, link(&env, &path, &[]));
    let out = Command::new("node")
        .arg(root().join("tests/tools/browser_play.js"))
        .arg(&url)
        .args(["--rate", "16"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report} {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("node")
        .arg(root().join("tests/tools/stream_play.js"))
        .arg(format!("{url}&mode=stream"))
        .args(["--kbps", "4000", "--rate", "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
