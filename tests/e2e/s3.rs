//! Object storage on a real S3 server (SeaweedFS, SigV4): jitmux's own objects in a bucket,
//! archives indexed in place and scanned, isolation between users, a growing playlist followed
//! live, and the store failing underneath (through a fault-injecting proxy).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::faultproxy::{Fault, FaultProxy};
use crate::seaweed::Seaweed;

/// Sets checked from S3: MPEG-TS and fMP4, H.264 and H.265, a discontinuity, a gap, rotation,
/// two audio tracks with languages, parameter sets sent once.
const SETS: &[(&str, &str)] = &[
    ("s01_h264_aac_ts_2s", "index.m3u8"),
    ("s02_h264_aac_fmp4_2s", "index.m3u8"),
    ("s03_h265_aac_ts_1s", "index.m3u8"),
    ("s05_h264_aac_ts_discontinuity", "index.m3u8"),
    ("s08_h264_aac_fmp4_gap", "index_gaptag.m3u8"),
    ("r04_iphone12_hevc_dv84_rot_fmp4", "index.m3u8"),
    ("c01_h264_2aac_lang_ts", "index.m3u8"),
    ("c03_h264_params_once_ts", "index.m3u8"),
];

const STORE: &str = "s3://jitmux/node";

fn validate(source: &Path, target: &str, token: &str, ranges: bool) -> bool {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("tests/tools/validate.py"))
        .args(["--source", source.to_str().unwrap()])
        .args(["--target", target])
        .args(["--header", &format!("Authorization: Bearer {token}")]);
    if ranges {
        cmd.args(["--ranges", "16"]);
    }
    let out = cmd.output().unwrap();
    eprintln!("== {} → {target}\n{}", source.display(), String::from_utf8_lossy(&out.stdout));
    out.status.success()
}

fn last_line(r: &Run, what: &str) -> String {
    assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
    r.stdout.lines().last().unwrap().trim().to_string()
}

/// A counter's value on `/metrics` (summed over labels).
fn metric(server: &Server, name: &str) -> f64 {
    let body = String::from_utf8(request("GET", &format!("{}/metrics", server.base), &[]).body).unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn head_etag(server: &Server, path: &str, token: &str) -> (String, u64) {
    let r = request("HEAD", &server.url(path), &[("Authorization", &format!("Bearer {token}"))]);
    assert_eq!(r.status, 200, "HEAD {path}");
    (r.header("etag").unwrap().to_string(), r.header("content-length").unwrap().parse().unwrap())
}

#[test]
fn fixture_sets_from_s3_in_place_and_copied_validate() {
    let sw = Seaweed::start();
    sw.mkbucket("archive");
    sw.mkbucket("jitmux");
    for (set, _) in SETS {
        sw.put_dir(&format!("archive/alice/{set}"), &fixture(set));
    }
    let archive_before = sw.keys("archive", "");
    let env = Env::new("alice");
    let aws = sw.env();
    let cli = |args: &[&str]| {
        let mut all = vec!["--store", STORE];
        all.extend_from_slice(args);
        env.cli_env(&all, &aws)
    };
    last_line(&cli(&["user", "grant", "alice", "s3://archive/alice/"]), "grant");
    let start = ["--start", "2026-03-01T10:00:00Z"];
    let mut in_place = Vec::new();
    for (i, (set, playlist)) in SETS.iter().enumerate() {
        let url = format!("s3://archive/alice/{set}/{playlist}");
        let cam = format!("p{i:02}");
        let args = [&["import", "--user", "alice", "--camera", &cam][..], &start, &[&url]].concat();
        in_place.push(last_line(&cli(&args), &url));
    }
    // Nothing of the archives was copied: the node's bucket holds heads only.
    let node = sw.keys("jitmux", "node/");
    assert!(!node.is_empty() && node.iter().all(|k| k.contains("/heads/")), "node bucket after in-place: {node:?}");
    // Indexing again an unchanged playlist does nothing.
    let url0 = format!("s3://archive/alice/{}/{}", SETS[0].0, SETS[0].1);
    let again = cli(&[&["import", "--user", "alice", "--camera", "p00"][..], &start, &[&url0]].concat());
    assert_eq!(last_line(&again, "re-import"), in_place[0]);
    assert!(again.stderr.contains("unchanged"), "{}", again.stderr);

    // The same sets copied into the S3 store (objects jitmux writes).
    let mut copied = Vec::new();
    for (i, (set, playlist)) in SETS.iter().enumerate() {
        let cam = format!("c{i:02}");
        let local = fixture(set).join(playlist);
        let args = [&["import", "--user", "alice", "--camera", &cam][..], &start, &[local.to_str().unwrap()]].concat();
        copied.push(last_line(&cli(&args), set));
    }
    assert!(sw.keys("jitmux", "node/").iter().any(|k| k.contains("/segments/")), "copied segments in the bucket");

    let server = Server::start_env(env.data(), &["--store", STORE], &aws);
    // HEAD of every file reads no object at all (length, ETag, dates from the catalog).
    let reads = metric(&server, "jitmux_store_reads_total");
    let mut etags = Vec::new();
    for (p, c) in in_place.iter().zip(&copied) {
        let (a, b) = (head_etag(&server, p, &env.token), head_etag(&server, c, &env.token));
        assert_eq!(a, b, "in place and copied: same bytes, same ETag ({p}, {c})");
        etags.push(a);
    }
    assert_eq!(metric(&server, "jitmux_store_reads_total"), reads, "HEAD reads no object");

    let mut failed = Vec::new();
    for (i, (set, playlist)) in SETS.iter().enumerate() {
        let source = fixture(set).join(playlist);
        if !validate(&source, &server.url(&in_place[i]), &env.token, true) {
            failed.push(format!("in place {set}"));
        }
        // Copied: full validation on half the sets, byte equality with in place on all.
        if i % 2 == 0 && !validate(&source, &server.url(&copied[i]), &env.token, true) {
            failed.push(format!("copied {set}"));
        }
        let a = get(&server.url(&in_place[i]), &env.token);
        let b = get(&server.url(&copied[i]), &env.token);
        assert!(a.status == 200 && a.body == b.body, "{set}: in place and copied bytes differ");
        // The quasi-stream of an archive in place plays as well.
        if i < 3 {
            let out = env.dir.path().join(format!("stream{i}.mp4"));
            let s = get(&format!("{}?mode=stream", server.url(&in_place[i])), &env.token);
            assert_eq!(s.status, 200);
            std::fs::write(&out, &s.body).unwrap();
            if !validate(&source, out.to_str().unwrap(), &env.token, false) {
                failed.push(format!("stream {set}"));
            }
        }
    }
    assert!(failed.is_empty(), "validate.py failed for {failed:?}");

    // curl -C - resumes a download cut halfway, byte-identical.
    let url = server.url(&in_place[1]);
    let full = get(&url, &env.token).body;
    let part = env.dir.path().join("resume.mp4");
    std::fs::write(&part, &full[..full.len() / 2]).unwrap();
    let st = Command::new("curl")
        .args(["-sf", "-C", "-", "-o", part.to_str().unwrap(), "-H", &format!("Authorization: Bearer {}", env.token)])
        .arg(&url)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::read(&part).unwrap() == full, "resumed download differs");

    // Viewers of the same file cost one GET per segment on this node: a second full download
    // of a file already read is served from the cache.
    let gets = metric(&server, "jitmux_store_reads_total");
    let again = get(&url, &env.token);
    assert!(again.body == full);
    assert_eq!(metric(&server, "jitmux_store_reads_total"), gets, "a cached file costs no GET");
    assert!(metric(&server, "jitmux_chunk_cache_hits_total") > 0.0);
    assert_eq!(sw.keys("archive", ""), archive_before, "the archive bucket is never written");
}

/// The tree of a user as (camera path, ETag, length) of every file, via HEAD of the paths the
/// scans printed.
fn printed_paths(out: &str) -> Vec<String> {
    out.lines().filter_map(|l| l.split(" as ").nth(1)).map(|s| s.trim().to_string()).collect()
}

#[test]
fn scan_is_idempotent_resumable_and_follows_changes() {
    let sw = Seaweed::start();
    sw.mkbucket("cams");
    let sets = [("front", "s01_h264_aac_ts_2s"), ("back", "s02_h264_aac_fmp4_2s"), ("side", "s13_h264_only_ts_2s")];
    for (cam, set) in sets {
        sw.put_dir(&format!("cams/site/{cam}/{set}"), &fixture(set));
    }
    sw.put_dir("cams/site/yard/day1", &fixture("s11_aac_only_ts_2s"));
    let master = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(master.path(), "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nday1/index.m3u8\n").unwrap();
    sw.put("cams/site/yard/master.m3u8", master.path());
    let aws = sw.env();
    let scan_args = ["scan", "--user", "bob", "--jobs", "2", "s3://cams/site/"];

    let env = Env::new("bob");
    assert_eq!(env.cli_env(&["user", "grant", "bob", "s3://cams/site/"], &aws).code, 0);
    let first = env.cli_env(&scan_args, &aws);
    assert_eq!(first.code, 0, "{}{}", first.stdout, first.stderr);
    let summary = first.stdout.lines().last().unwrap();
    assert!(summary.contains("5 playlists, 4 imported") && summary.contains("1 master playlists skipped"), "{summary}");
    let mut paths = printed_paths(&first.stdout);
    paths.sort();
    assert_eq!(paths.len(), 4);
    assert!(paths.iter().any(|p| p.starts_with("/front/")) && paths.iter().any(|p| p.starts_with("/yard/")));

    // Idempotent: nothing new, nothing done.
    let second = env.cli_env(&scan_args, &aws);
    assert!(second.stdout.lines().last().unwrap().contains("0 imported, 0 replaced, 4 unchanged"), "{}", second.stdout);

    // Resumable: a scan killed after its first recording; the next run does the rest.
    let env2 = Env::new("bob");
    assert_eq!(env2.cli_env(&["user", "grant", "bob", "s3://cams/site/"], &aws).code, 0);
    let mut child = env2.spawn_cli(&["scan", "--user", "bob", "--jobs", "1", "s3://cams/site/"], &aws);
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("imported "), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
    let rest = env2.cli_env(&scan_args, &aws);
    assert_eq!(rest.code, 0, "{}", rest.stderr);
    let done_before = 4 - printed_paths(&rest.stdout).len();
    assert!(done_before >= 1, "{}", rest.stdout);
    assert!(rest.stdout.lines().last().unwrap().contains(&format!("{done_before} unchanged")), "{}", rest.stdout);
    // Both data dirs hold the same files, byte for byte: per camera, same ETag and length (file
    // names come from the time of the import: these fixtures have no PROGRAM-DATE-TIME).
    let (s1, s2) = (env.serve(), env2.serve());
    let by_camera = |server: &Server, token: &str, paths: &[String]| {
        let mut v: Vec<(String, (String, u64))> =
            paths.iter().map(|p| (p.split('/').nth(1).unwrap().to_string(), head_etag(server, p, token))).collect();
        v.sort();
        v
    };
    let mut paths2 = printed_paths(&rest.stdout);
    paths2.extend(printed_paths(&line));
    let resumed = by_camera(&s2, &env2.token, &paths2);
    assert_eq!(resumed.len(), 4 - (done_before - 1), "{}{line}", rest.stdout);
    let clean = by_camera(&s1, &env.token, &paths);
    assert!(resumed.iter().all(|r| clean.contains(r)), "{resumed:?} vs {clean:?}");

    // A playlist rewritten in the bucket (cut to three segments) replaces its recording.
    let front = paths.iter().find(|p| p.starts_with("/front/")).unwrap().clone();
    let before = head_etag(&s1, &front, &env.token);
    let text = std::fs::read_to_string(fixture("s01_h264_aac_ts_2s").join("index.m3u8")).unwrap();
    let mut cut = String::new();
    let mut n = 0;
    for l in text.lines() {
        if n == 3 && !l.starts_with("#EXT-X-ENDLIST") {
            continue;
        }
        cut.push_str(l);
        cut.push('\n');
        if !l.starts_with('#') && !l.is_empty() {
            n += 1;
        }
    }
    if !cut.contains("#EXT-X-ENDLIST") {
        cut.push_str("#EXT-X-ENDLIST\n");
    }
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), cut).unwrap();
    sw.put("cams/site/front/s01_h264_aac_ts_2s/index.m3u8", f.path());
    let third = env.cli_env(&scan_args, &aws);
    assert!(third.stdout.contains("1 replaced, 3 unchanged"), "{}", third.stdout);
    assert_eq!(printed_paths(&third.stdout), vec![front.clone()], "the replacement keeps the path");
    let after = head_etag(&s1, &front, &env.token);
    assert!(after.0 != before.0 && after.1 < before.1, "{before:?} → {after:?}");
}

#[test]
fn users_reach_only_their_grants() {
    let sw = Seaweed::start();
    sw.mkbucket("cams");
    sw.put_dir("cams/alice/front", &fixture("s01_h264_aac_ts_2s"));
    sw.put_dir("cams/bob/front", &fixture("s13_h264_only_ts_2s"));
    let aws = sw.env();
    let env = Env::new("alice");
    let bob_token = env.add_user("bob");
    let cli = |args: &[&str]| env.cli_env(args, &aws);
    assert_eq!(cli(&["user", "grant", "alice", "s3://cams/alice/"]).code, 0);
    // A grant must be a plain prefix.
    for bad in ["s3://cams/bob/../alice/", "s3://cams//alice/", "s3://cams/alice"] {
        let r = cli(&["user", "grant", "bob", bad]);
        assert_eq!(r.code, 65, "grant {bad}: {}", r.stderr);
    }
    // Without a grant covering it, bob cannot index alice's archive, whatever the spelling.
    for url in [
        "s3://cams/alice/front/index.m3u8",
        "s3://cams/bob/../alice/front/index.m3u8",
        "s3://cams/bob//front/index.m3u8",
    ] {
        let r = cli(&["import", "--user", "bob", "--camera", "x", url]);
        assert_eq!(r.code, 65, "bob import {url}: {}", r.stderr);
    }
    assert_eq!(cli(&["user", "grant", "bob", "s3://cams/bob/"]).code, 0);
    let r = cli(&["import", "--user", "bob", "--camera", "x", "s3://cams/alice/front/index.m3u8"]);
    assert!(r.code == 65 && r.stderr.contains("not granted"), "{}", r.stderr);
    let r = cli(&["scan", "--user", "bob", "s3://cams/"]);
    assert!(r.code == 65 && r.stderr.contains("not granted"), "{}", r.stderr);

    let path = last_line(
        &cli(&["import", "--user", "alice", "--camera", "front", "s3://cams/alice/front/index.m3u8"]),
        "alice import",
    );
    let bob_path = last_line(
        &cli(&["import", "--user", "bob", "--camera", "gate", "s3://cams/bob/front/index.m3u8"]),
        "bob import",
    );
    let server = Server::start_env(env.data(), &[], &aws);
    assert_eq!(get(&server.url(&path), &env.token).status, 200);
    assert_eq!(get(&server.url(&path), &bob_token).status, 404, "bob does not see alice's file");
    // Nor through a signed URL: bob cannot sign alice's path, and his own link moved onto her
    // path, or her link with his name, is refused.
    let r = cli(&["share", "--user", "bob", "--base", "", &path]);
    assert_ne!(r.code, 0, "bob signed alice's path: {}", r.stdout);
    let bob_link = last_line(&cli(&["share", "--user", "bob", "--base", "", &bob_path]), "bob share");
    assert_eq!(request("GET", &format!("{}{bob_link}", server.base), &[]).status, 200);
    let (_, q) = bob_link.split_once('?').unwrap();
    let moved = format!("{}/v1/files{path}?{q}", server.base);
    assert_eq!(request("GET", &moved, &[]).status, 403, "bob's link on alice's path");
    let alice_link = last_line(&cli(&["share", "--user", "alice", "--base", "", &path]), "alice share");
    let renamed = format!("{}{}", server.base, alice_link.replace("u=alice", "u=bob"));
    assert!(renamed.contains("u=bob"));
    assert_eq!(request("GET", &renamed, &[]).status, 403, "alice's link with bob's name");
    // A revoked grant stops reads within the grants' refresh time (2 s).
    assert_eq!(cli(&["user", "grant", "alice", "s3://cams/alice/", "--revoke"]).code, 0);
    let t0 = Instant::now();
    loop {
        // A range inside the media (past the head), so segments must be read.
        let r = get_range(&server.url(&path), &env.token, "bytes=200000-200999");
        if r.status == 403 {
            break;
        }
        assert_eq!(r.status, 206);
        assert!(t0.elapsed() < Duration::from_millis(2600), "still readable {:?} after the revoke", t0.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_growing_playlist_is_followed_live() {
    let sw = Seaweed::start();
    sw.mkbucket("cams");
    let set = fixture("s01_h264_aac_ts_2s");
    let text = std::fs::read_to_string(set.join("index.m3u8")).unwrap();
    let segs: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    let header: String = text.lines().take_while(|l| !l.starts_with("#EXTINF")).map(|l| format!("{l}\n")).collect();
    let header = header.replace("#EXT-X-PLAYLIST-TYPE:VOD\n", "") + "#EXT-X-PLAYLIST-TYPE:EVENT\n";
    let extinf: Vec<&str> = text.lines().filter(|l| l.starts_with("#EXTINF")).collect();
    let tmp = tempfile::tempdir().unwrap();
    let publish = |n: usize, ended: bool| {
        let mut p = header.clone();
        for i in 0..n {
            p.push_str(&format!("{}\n{}\n", extinf[i], segs[i]));
        }
        if ended {
            p.push_str("#EXT-X-ENDLIST\n");
        }
        let f = tmp.path().join("index.m3u8");
        std::fs::write(&f, p).unwrap();
        sw.put("cams/home/porch/index.m3u8", &f);
    };
    for s in &segs[..2] {
        sw.put(&format!("cams/home/porch/{s}"), &set.join(s));
    }
    publish(2, false);
    let aws = sw.env();
    let env = Env::new("carol");
    assert_eq!(env.cli_env(&["user", "grant", "carol", "s3://cams/home/"], &aws).code, 0);
    let server = Server::start_env(env.data(), &[], &aws);
    let mut scanner = env.spawn_cli(&["scan", "--user", "carol", "--watch", "0.3", "s3://cams/home/"], &aws);
    let live = format!("{}/v1/files/porch/live.mp4?mode=stream", server.base);
    let t0 = Instant::now();
    while get(&format!("{}/v1/files/porch/", server.base), &env.token).status != 200 {
        assert!(t0.elapsed() < Duration::from_secs(20), "live recording never appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Three viewers follow the live tail while the other pipeline keeps writing.
    let viewers: Vec<_> = (0..3)
        .map(|_| {
            let (url, token) = (live.clone(), env.token.clone());
            std::thread::spawn(move || {
                let resp = ureq::get(&url).set("Authorization", &format!("Bearer {token}")).call().unwrap();
                let mut body = Vec::new();
                resp.into_reader().read_to_end(&mut body).unwrap();
                body
            })
        })
        .collect();
    let misses = metric(&server, "jitmux_chunk_cache_misses_total");
    for n in 3..=segs.len() {
        sw.put(&format!("cams/home/porch/{}", segs[n - 1]), &set.join(segs[n - 1]));
        publish(n, false);
        std::thread::sleep(Duration::from_millis(400));
    }
    publish(segs.len(), true);
    let bodies: Vec<Vec<u8>> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    let _ = scanner.kill();
    let _ = scanner.wait();
    assert!(bodies[0].len() > 100_000 && bodies.iter().all(|b| *b == bodies[0]), "viewers got the same bytes");
    let new_misses = metric(&server, "jitmux_chunk_cache_misses_total") - misses;
    assert!(new_misses <= segs.len() as f64 + 2.0, "{new_misses} reads for {} segments and 3 viewers", segs.len());
    // The ended recording is a whole, valid file; the live capture plays what it showed.
    let listing = get(&format!("{}/v1/files/porch/", server.base), &env.token);
    assert_eq!(listing.status, 200);
    let out = tmp.path().join("live.mp4");
    std::fs::write(&out, &bodies[0]).unwrap();
    let probe = Command::new("ffprobe").args(["-v", "error", out.to_str().unwrap()]).output().unwrap();
    assert!(probe.status.success() && probe.stderr.is_empty(), "{}", String::from_utf8_lossy(&probe.stderr));
}

/// The store failing underneath: transient failures are retried to identical bytes, a store
/// that stays down gives a clear 503 and the service survives, a replaced object is refused.
#[test]
fn store_failures_are_retried_or_reported() {
    let sw = Seaweed::start();
    sw.mkbucket("cams");
    sw.put_dir("cams/dave/front", &fixture("s01_h264_aac_ts_2s"));
    sw.put_dir("cams/dave/back", &fixture("s02_h264_aac_fmp4_2s"));
    let env = Env::new("dave");
    let direct = sw.env();
    assert_eq!(env.cli_env(&["user", "grant", "dave", "s3://cams/dave/"], &direct).code, 0);
    let mut paths = Vec::new();
    for cam in ["front", "back"] {
        let url = format!("s3://cams/dave/{cam}/index.m3u8");
        paths.push(last_line(&env.cli_env(&["import", "--user", "dave", "--camera", cam, &url], &direct), cam));
    }
    let proxy = FaultProxy::start(&format!("127.0.0.1:{}", sw.port));
    let mut via = sw.env_via(&proxy.url());
    via.push(("JITMUX_STORE_RETRY_SECS".into(), "3".into()));
    // A cache of one byte: every request reads the store again.
    let server = Server::start_env(env.data(), &["--cache-bytes", "1"], &via);
    let expected: Vec<Vec<u8>> = paths.iter().map(|p| get(&server.url(p), &env.token).body).collect();
    assert!(expected.iter().all(|b| b.len() > 100_000));
    let check = |what: &str| {
        for (p, want) in paths.iter().zip(&expected) {
            let t = Instant::now();
            let r = get(&server.url(p), &env.token);
            eprintln!("{what} {p}: {} bytes in {:?}", r.body.len(), t.elapsed());
            assert!(r.status == 200 && r.body == *want, "{what}: {p} differs");
        }
    };
    let retries = metric(&server, "jitmux_store_retries_total");
    proxy.inject("GET", Fault::Status503, 3);
    check("503 x3");
    assert!(metric(&server, "jitmux_store_retries_total") >= retries + 3.0);
    proxy.inject("GET", Fault::ResetAfter(20_000), 2);
    check("reset mid-body x2");
    proxy.inject("GET", Fault::Stall(Duration::from_secs(2)), 1);
    check("2 s stall");
    proxy.inject_always("GET", Fault::Trickle(2 << 20));
    check("2 MB/s trickle");
    proxy.clear();

    // The store down for longer than the retry deadline: a clear 503, then service again.
    proxy.inject_always("*", Fault::Refuse);
    let r = get_range(&server.url(&paths[0]), &env.token, "bytes=300000-300999");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("object store unavailable"));
    proxy.clear();
    check("store back");

    // An archive object replaced behind jitmux's back is refused, never served: the middle
    // third of the segments get other bytes, and a range in the middle of the file is asked.
    let text = std::fs::read_to_string(fixture("s01_h264_aac_ts_2s").join("index.m3u8")).unwrap();
    let segs: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let other = fixture("s01_h264_aac_ts_2s").join(segs[0]);
    for s in &segs[segs.len() / 3..2 * segs.len() / 3] {
        sw.put(&format!("cams/dave/front/{s}"), &other);
    }
    let changed = metric(&server, "jitmux_store_changed_objects_total");
    let mid = expected[0].len() / 2;
    let r = get_range(&server.url(&paths[0]), &env.token, &format!("bytes={mid}-{}", mid + 999));
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("changed since it was indexed"));
    assert!(metric(&server, "jitmux_store_changed_objects_total") > changed);
    // Other files are still served.
    assert!(get(&server.url(&paths[1]), &env.token).body == expected[1]);
}

/// Live ingest from ffmpeg with jitmux's own objects in a bucket: segments, the file's head and
/// the finished recording all there, and the file whole.
#[test]
fn live_ingest_into_an_s3_store() {
    use crate::live::{decode_errors, encoder, mezzanine, recordings, wait_for};
    let sw = Seaweed::start();
    sw.mkbucket("jitmux");
    let env = Env::new("erin");
    let key = env.camera_add("erin", "porch");
    let dir = tempfile::tempdir().unwrap();
    let mezz = mezzanine(dir.path(), 6);
    let server = Server::start_env(env.data(), &["--store", STORE, "--ingest-idle-timeout", "5"], &sw.env());
    let mut ffmpeg = encoder(&mezz, &server.base, "porch", &key, "mpegts");
    wait_for("the broadcast to appear, live", 15, || recordings(&server, &env.token, "porch").iter().any(|r| r.1));
    assert!(ffmpeg.wait().unwrap().success());
    wait_for("the broadcast to end", 20, || recordings(&server, &env.token, "porch").iter().all(|r| !r.1));
    let keys = sw.keys("jitmux", "node/users/");
    let segments = keys.iter().filter(|k| k.contains("/segments/") && k.ends_with(".ts")).count();
    assert!(segments >= 5, "segments in the bucket: {keys:?}");
    assert!(keys.iter().any(|k| k.contains("/heads/")), "the ended file's head in the bucket: {keys:?}");
    let path = recordings(&server, &env.token, "porch")[0].0.clone();
    let r = get(&server.url(&path), &env.token);
    assert_eq!(r.status, 200);
    let out = dir.path().join("ingested.mp4");
    std::fs::write(&out, &r.body).unwrap();
    assert_eq!(decode_errors(&out), "", "the ingested file decodes cleanly");
    let frames = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&frames.stdout).trim(), "180", "6 s at 30 fps, every frame");
}
