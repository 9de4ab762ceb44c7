//! Signed URLs (HMAC-SHA256, rotating keys) and revocable API tokens.

use std::process::Command;

use crate::common::*;

/// `jitmux share` printing the path and query alone (`--base ""`), for tests to prefix.
fn share(env: &Env, user: &str, path: &str, args: &[&str]) -> Run {
    let mut a = vec!["share", "--base", "", "--user", user, path];
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
    // Without --base the printed link is a whole URL on the default address.
    let r = env.cli(&["share", "--user", "alice", &a]);
    assert!(r.stdout.trim().starts_with(&format!("http://127.0.0.1:8080/v1/files{a}?")), "{}", r.stdout);

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

/// Opens a quasi-stream and keeps it open without reading past the headers.
fn hold_stream(base: &str, path: &str, token: &str) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /v1/files{path}?mode=stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut head = vec![0u8; 12];
    s.read_exact(&mut head).unwrap();
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn metric(base: &str, name: &str) -> u64 {
    let body = String::from_utf8(request("GET", &format!("{base}/metrics"), &[]).body).unwrap();
    body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap().parse().unwrap()
}

#[test]
fn per_user_limits_me_and_instance_eviction() {
    let env = Env::new("alice");
    let bob = env.add_user("bob");
    // A 20-minute recording (s01 twenty times over), so a stream outlasts the socket buffers.
    let long = tempfile::tempdir().unwrap();
    let mut pl = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n".to_string();
    for rep in 0..20 {
        if rep > 0 {
            pl += "#EXT-X-DISCONTINUITY\n";
        }
        for i in 0..30 {
            pl += &format!("#EXTINF:2.0,\nseg_{i:05}.ts\n");
        }
    }
    pl += "#EXT-X-ENDLIST\n";
    for i in 0..30 {
        let name = format!("seg_{i:05}.ts");
        std::fs::copy(fixture("s01_h264_aac_ts_2s").join(&name), long.path().join(&name)).unwrap();
    }
    std::fs::write(long.path().join("index.m3u8"), pl).unwrap();
    let a = env.import("alice", "front", &long.path().join("index.m3u8"));
    let b = env.import("bob", "back", &fixture("s02_h264_aac_fmp4_2s").join("index.m3u8"));
    let server = Server::start(env.data(), &["--user-max-streams", "1", "--user-idle-evict", "1"]);
    let before = get(&server.url(&a), &env.token).body;

    let (held, status) = hold_stream(&server.base, &a, &env.token);
    assert!(status.contains(" 200"), "{status}");
    let r = get(&format!("{}?mode=stream", server.url(&a)), &env.token);
    assert_eq!(r.status, 429, "a second stream of alice's");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(get(&format!("{}?mode=stream", server.url(&b)), &bob).status, 200, "bob is not limited by alice");
    assert_eq!(get(&server.url(&a), &env.token).status, 200, "downloads have their own limit");
    let me: serde_json::Value =
        serde_json::from_slice(&get(&format!("{}/v1/me", server.base), &env.token).body).unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["limits"]["max_streams"], 1);
    assert_eq!(me["active"]["streams"], 1);
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(get(&format!("{}?mode=stream", server.url(&a)), &env.token).status, 200, "slot freed by disconnect");

    // Idle instances are evicted and re-created with no change in the bytes served.
    let created = metric(&server.base, "jitmux_instances_created_total");
    assert!(created >= 2);
    std::thread::sleep(std::time::Duration::from_millis(2000));
    assert!(metric(&server.base, "jitmux_instances_evicted_total") >= 2);
    assert_eq!(metric(&server.base, "jitmux_instances_alive"), 0);
    assert!(get(&server.url(&a), &env.token).body == before);
    assert_eq!(metric(&server.base, "jitmux_instances_created_total"), created + 1);
}

#[test]
fn openapi_description_and_schemathesis_find_no_server_error() {
    let env = Env::new("alice");
    env.import("alice", "front", &fixture("s13_h264_only_ts_2s").join("index.m3u8"));
    let server = env.serve();
    let doc: serde_json::Value =
        serde_json::from_slice(&request("GET", &format!("{}/v1/openapi.json", server.base), &[]).body).unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for p in [
        "/v1/files/{path}",
        "/v1/thumbnails/{path}",
        "/v1/share",
        "/v1/ingest/{camera}/{file}",
        "/v1/me",
        "/v1/exports",
        "/v1/exports/{id}",
    ] {
        assert!(paths.iter().any(|x| x.as_str() == p), "{p} in {paths:?}");
    }
    let st = which("st").expect("schemathesis's `st` (pip install schemathesis; scripts/test.sh does)");
    let out = Command::new(st)
        .args(["run", &format!("{}/v1/openapi.json", server.base)])
        .args(["-H", &format!("Authorization: Bearer {}", env.token), "--checks", "not_a_server_error"])
        .args(["-n", "40", "--request-timeout", "20", "--seed", "1"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{}",
        report.lines().filter(|l| l.contains("passed") || l.contains("generated")).collect::<Vec<_>>().join("\n")
    );
    assert!(out.status.success(), "schemathesis found failures:\n{report}");
    assert!(report.contains("passed"), "{report}");
}

fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(cmd)).find(|p| p.is_file())
}

/// Another user's ETags, recording names and signed-URL parameters give bob no byte and no hint:
/// every probe of alice's tree answers exactly what a path that never existed answers.
#[test]
fn another_users_etags_and_ids_give_no_hint() {
    let env = Env::new("alice");
    let bob = env.add_user("bob");
    let a = env.import("alice", "front", &fixture("s13_h264_only_ts_2s").join("index.m3u8"));
    let b = env.import("bob", "back", &fixture("s14_h264_only_fmp4_2s").join("index.m3u8"));
    let server = env.serve();
    let alice_etag = get(&server.url(&a), &env.token).header("etag").unwrap().to_string();
    let bob_auth = format!("Bearer {bob}");
    let never = a.replace("front", "nocam");
    let probe = |path: &str, extra: &[(&str, &str)]| {
        let mut h = vec![("Authorization", bob_auth.as_str())];
        h.extend_from_slice(extra);
        let r = request("GET", &server.url(path), &h);
        let etag = r.header("etag").map(str::to_string);
        (r.status, r.body, etag)
    };
    let refused = probe(&never, &[]);
    assert_eq!(refused.0, 404);
    for extra in [
        vec![],
        vec![("If-None-Match", alice_etag.as_str())],
        vec![("If-Match", alice_etag.as_str())],
        vec![("If-Range", alice_etag.as_str()), ("Range", "bytes=0-99")],
        vec![("Range", "bytes=0-99")],
    ] {
        assert_eq!(probe(&a, &extra), refused, "alice's path with {extra:?}");
    }
    // The ETag, its hash part or the recording's name as a path of bob's tree: nothing.
    let hash = alice_etag.trim_matches('"').to_string();
    for p in
        [format!("/{hash}"), format!("/front/{hash}.mp4"), format!("/back/{hash}.mp4"), "/1".into(), "/front/1".into()]
    {
        assert_eq!(probe(&p, &[]).0, 404, "{p}");
    }
    // Alice's ETag on bob's own file is just a non-matching validator.
    let own = probe(&b, &[("If-None-Match", alice_etag.as_str())]);
    assert_eq!(own.0, 200);
    assert_ne!(own.2.as_deref(), Some(alice_etag.as_str()));
    // A signed URL of bob's made to name alice's file (user, path swapped) is refused with the
    // same reason as any bad signature.
    let l = share(&env, "bob", &b, &[]).stdout.lines().last().unwrap().to_string();
    let q = l.split_once('?').unwrap().1.replace("u=bob", "u=alice");
    let r = anon(&format!("{}{}?{q}", server.base, a.replacen('/', "/v1/files/", 1)));
    assert_eq!(r.status, 403);
    let r2 = anon(&format!("{}{}?{q}", server.base, never.replacen('/', "/v1/files/", 1)));
    assert_eq!((r.status, r.body), (r2.status, r2.body));
}
