//! Many stateless nodes: `deploy/cluster.sh` (three `jitmux serve` on one fresh PostgreSQL
//! database and SeaweedFS, nginx in front, round robin) as people run it. Downloads resumed on
//! another node, ffmpeg's PUTs spread over all nodes, a node killed mid-broadcast, a node drained
//! under load.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::live::{decode_errors, encoder, hashes, mezzanine, wait_for};

/// One cluster at a time: each is 3 nodes, a load balancer and an S3 server on 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running local cluster; stopped on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub lb: String,
    pub nodes: Vec<String>,
    pub token: String,
}

fn script() -> PathBuf {
    root().join("deploy/cluster.sh")
}

impl Cluster {
    /// Starts the cluster on ports `base..`; `extra`: more `serve` flags for every node.
    pub fn start(base: u16, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(script())
            .args(["start", dir.path().to_str().unwrap(), &base.to_string()])
            .env("JITMUX_BIN", BIN)
            .env("CLUSTER_EXTRA", extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let mut c = Cluster { dir, env: Vec::new(), lb: String::new(), nodes: Vec::new(), token: String::new() };
        assert!(out.status.success(), "cluster.sh start failed");
        let text = std::fs::read_to_string(c.dir.path().join("env")).unwrap();
        for line in text.lines() {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim_matches(|ch| ch == '"' || ch == '\'').to_string();
            match k {
                "JITMUX_LB" => c.lb = v.clone(),
                "JITMUX_NODES" => c.nodes = v.split_whitespace().map(str::to_string).collect(),
                _ => {}
            }
            c.env.push((k.to_string(), v));
        }
        assert_eq!(c.nodes.len(), 3, "env: {text}");
        c.token = c.cli(&["user", "add", "alice"]).lines().last().unwrap().trim().to_string();
        c
    }

    /// Runs the CLI against the cluster's catalog and store; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN).args(args).envs(self.env.iter().cloned()).env("RUST_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "jitmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `cluster.sh node DIR n what` (`start`, `term`, `kill`).
    pub fn node(&self, n: usize, what: &str) {
        let st = Command::new(script())
            .args(["node", self.dir.path().to_str().unwrap(), &n.to_string(), what])
            .env("JITMUX_BIN", BIN)
            .status()
            .unwrap();
        assert!(st.success(), "cluster.sh node {n} {what}");
    }

    pub fn log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{n}.log"))).unwrap_or_default()
    }

    /// psql on the cluster's database; returns the output's first line.
    pub fn sql(&self, q: &str) -> String {
        let url = &self.env.iter().find(|(k, _)| k == "JITMUX_CATALOG_URL").unwrap().1;
        let out = Command::new("psql").args([url.as_str(), "-qAtc", q]).output().unwrap();
        assert!(out.status.success(), "psql {q}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["stop", self.dir.path().to_str().unwrap()]).status();
    }
}

/// `curl` with the cluster's token; returns (exit code, headers text).
fn curl(token: &str, args: &[&str], out: &Path) -> (i32, String) {
    let headers = out.with_extension("headers");
    let st = Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {token}"), "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(out)
        .args(args)
        .status()
        .unwrap();
    (st.code().unwrap_or(-1), std::fs::read_to_string(&headers).unwrap_or_default())
}

/// The value of header `name` in the last response of a `curl -D` dump.
fn header_of(dump: &str, name: &str) -> Option<String> {
    let last = dump.rsplit("HTTP/").next()?;
    last.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// A playlist naming fixture set `set`'s segments `times` times over, with a discontinuity
/// between the passes: a long recording made of small real segments.
fn repeated_playlist(dir: &Path, set: &str, times: usize) -> PathBuf {
    let src = std::fs::read_to_string(fixture(set).join("index.m3u8")).unwrap();
    let head: Vec<&str> = src.lines().take_while(|l| !l.starts_with("#EXTINF")).collect();
    let body: Vec<&str> = src
        .lines()
        .skip_while(|l| !l.starts_with("#EXTINF"))
        .filter(|l| !l.starts_with("#EXT-X-ENDLIST") && !l.trim().is_empty())
        .collect();
    let mut out = head.join("\n") + "\n";
    for i in 0..times {
        if i > 0 {
            out += "#EXT-X-DISCONTINUITY\n";
        }
        for l in &body {
            if l.starts_with('#') {
                out += &format!("{l}\n");
            } else {
                if !dir.join(l).exists() {
                    std::fs::copy(fixture(set).join(l), dir.join(l)).unwrap();
                }
                out += &format!("{l}\n");
            }
        }
    }
    out += "#EXT-X-ENDLIST\n";
    let p = dir.join(format!("{set}-x{times}.m3u8"));
    std::fs::write(&p, out).unwrap();
    p
}

/// Top-level boxes of `data` as (type, size), and whether they tile it exactly.
fn boxes(data: &[u8]) -> (Vec<(String, u64)>, bool) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let mut size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned();
        if size == 1 && at + 16 <= data.len() {
            size = u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap());
        }
        if size < 8 || at as u64 + size > data.len() as u64 {
            return (out, false);
        }
        out.push((kind, size));
        at += size as usize;
    }
    (out, at == data.len())
}

/// The sum of the samples of metric `name` whose labels contain every one of `labels`.
pub fn metric_sum(node: &str, name: &str, labels: &[&str]) -> f64 {
    let text = String::from_utf8(get(&format!("{node}/metrics"), "").body).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// First and last presentation instants (s) of a file's video samples, read from the packets
/// themselves: a quasi-stream's init declares the whole recording's duration even when the stream
/// ends early, so its format duration says nothing about how much it carried.
fn video_span(file: &Path) -> (f64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,duration_time"])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    let mut span = (f64::MAX, 0.0f64);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split(',').map(|v| v.trim().parse::<f64>().unwrap_or(0.0));
        let (pts, dur) = (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0));
        span = (span.0.min(pts), span.1.max(pts + dur));
    }
    span
}

fn ffprobe_duration(file: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0)
}

#[test]
fn a_download_resumes_on_another_node_byte_identical() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::start(18600, "");
    let work = tempfile::tempdir().unwrap();
    let pl = repeated_playlist(work.path(), "r02_intel_car_ts", 4);
    let path = c
        .cli(
            &["import", "--user", "alice", "--camera", "car", "--start", "2026-03-01T10:00:00Z"]
                .iter()
                .copied()
                .chain([pl.to_str().unwrap()])
                .collect::<Vec<_>>(),
        )
        .lines()
        .last()
        .unwrap()
        .to_string();
    // Every node gives the same length and ETag.
    let heads: Vec<Resp> = c
        .nodes
        .iter()
        .map(|n| request("HEAD", &format!("{n}/v1/files{path}"), &[("Authorization", &format!("Bearer {}", c.token))]))
        .collect();
    for h in &heads {
        assert_eq!(h.status, 200);
        assert_eq!(h.header("etag"), heads[0].header("etag"), "ETag equal on every node");
        assert_eq!(h.header("content-length"), heads[0].header("content-length"));
    }
    let whole = get(&format!("{}/v1/files{path}", c.nodes[0]), &c.token).body;
    assert!(whole.len() > 8 << 20, "a file large enough to interrupt ({} bytes)", whole.len());

    let out = work.path().join("download.mp4");
    let url = format!("{}/v1/files{path}", c.lb);
    // A download through the load balancer cut after 3 MiB (the client hangs up), then resumed
    // with `curl -C -` through the load balancer; round robin puts the resume on the next node.
    let first_node = {
        let resp = ureq::get(&url).set("Authorization", &format!("Bearer {}", c.token)).call().unwrap();
        let node = resp.header("x-jitmux-node").expect("X-Jitmux-Node").to_string();
        let mut part = vec![0u8; 3 << 20];
        resp.into_reader().read_exact(&mut part).unwrap();
        std::fs::write(&out, &part).unwrap();
        node
    };
    let got = std::fs::metadata(&out).unwrap().len();
    assert!(got > 0 && got < whole.len() as u64, "interrupted after {got} bytes");
    let (code, dump) = curl(&c.token, &["-C", "-", &url], &out);
    assert_eq!(code, 0);
    assert!(dump.contains(" 206"), "resumed with a 206: {dump}");
    let second_node = header_of(&dump, "x-jitmux-node").unwrap();
    assert_ne!(first_node, second_node, "the resume landed on another node");
    assert_eq!(header_of(&dump, "etag").as_deref(), heads[0].header("etag"));
    assert!(std::fs::read(&out).unwrap() == whole, "resumed download byte-identical");
    eprintln!("cluster: download cut on {first_node} after {got} bytes, resumed on {second_node}");

    // A web session opened on node 1 is good on every node.
    let r = request_with_body(
        "POST",
        &format!("{}/signin", c.nodes[0]),
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "same-origin")],
        Some(format!("token={}", c.token).as_bytes()),
    );
    assert_eq!(r.status, 303);
    let cookie = r.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    for n in &c.nodes {
        let page = request("GET", &format!("{n}/ui/"), &[("Cookie", &cookie)]);
        assert_eq!(page.status, 200, "the web session on {n}");
        let day = path.rsplit_once('/').unwrap().0;
        let list =
            request("GET", &format!("{n}/v1/files{day}/"), &[("Cookie", &cookie), ("Accept", "application/json")]);
        assert_eq!(list.status, 200, "the API with the web session on {n}");
    }

    // Signed URLs, listings and thumbnails from any node.
    let signed = c.cli(&["share", "--user", "alice", &path, "--base", &c.lb]).lines().last().unwrap().to_string();
    for n in &c.nodes {
        let u = signed.replace(&c.lb, n);
        let r = request("HEAD", &u, &[]);
        assert_eq!(r.status, 200, "signed URL on {n}");
        let thumb = path.replace(".mp4", ".jpg");
        assert_eq!(get(&format!("{n}/v1/thumbnails{thumb}"), &c.token).status, 200, "thumbnail on {n}");
        let day = path.rsplit_once('/').unwrap().0;
        let list = request(
            "GET",
            &format!("{n}/v1/files{day}/"),
            &[("Authorization", &format!("Bearer {}", c.token)), ("Accept", "application/json")],
        );
        assert_eq!(list.status, 200);
    }
}

/// The recording of camera `cam` as (tree path, live), from the catalog.
fn recording_of(c: &Cluster, cam: &str) -> Option<(String, bool, i64)> {
    let row = c.sql(&format!(
        "SELECT r.day || '/' || r.name || '|' || r.live || '|' || r.id FROM recordings r \
         JOIN cameras c ON c.id = r.camera_id WHERE c.name = '{cam}' ORDER BY r.id"
    ));
    let mut parts = row.lines().next()?.split('|');
    let path = format!("/{cam}/{}.mp4", parts.next()?);
    let live = parts.next()? == "1";
    Some((path, live, parts.next()?.parse().ok()?))
}

/// A live viewer: reads `url` to its end (or cut) into a file; returns (bytes, node).
fn viewer(url: String, token: String, out: PathBuf) -> std::thread::JoinHandle<(Vec<u8>, String)> {
    std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new().build();
        let mut body = Vec::new();
        let mut node = String::new();
        if let Ok(resp) = agent.get(&url).set("Authorization", &format!("Bearer {token}")).call() {
            node = resp.header("x-jitmux-node").unwrap_or_default().to_string();
            let _ = resp.into_reader().read_to_end(&mut body);
        }
        std::fs::write(&out, &body).unwrap();
        (body, node)
    })
}

#[test]
fn ffmpeg_through_the_load_balancer_is_archived_exactly_and_followed_on_every_node() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::start(18640, "--ingest-idle-timeout 10");
    let key = c.cli(&["camera", "add", "--user", "alice", "porch"]).lines().last().unwrap().trim().to_string();
    let work = tempfile::tempdir().unwrap();
    let mezz = mezzanine(work.path(), 60);
    let mut ffmpeg = encoder(&mezz, &c.lb, "porch", &key, "mpegts");
    wait_for("the broadcast to start", 20, || recording_of(&c, "porch").is_some_and(|r| r.1));
    // One live viewer on each node, from the start of the broadcast to its end.
    let viewers: Vec<_> = c
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            viewer(
                format!("{n}/v1/files/porch/live.mp4?mode=stream&start=0"),
                c.token.clone(),
                work.path().join(format!("viewer{i}.mp4")),
            )
        })
        .collect();
    assert!(ffmpeg.wait().unwrap().success());
    let seen: Vec<_> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    wait_for("the broadcast to end", 15, || recording_of(&c, "porch").is_some_and(|r| !r.1));
    let (path, _, id) = recording_of(&c, "porch").unwrap();
    assert_eq!(c.sql("SELECT count(*) FROM recordings"), "1", "one recording");
    // Round robin spread ffmpeg's PUTs over every node.
    for n in &c.nodes {
        let puts = metric_sum(n, "jitmux_http_requests_total", &["/v1/ingest/", "PUT", "201"]);
        assert!(puts >= 20.0, "{n} took {puts} ingest PUTs");
    }
    let segs: i64 = c.sql(&format!("SELECT count(*) FROM segments WHERE recording_id = {id}")).parse().unwrap();
    let gaps = c.sql(&format!("SELECT count(*) FROM segments WHERE recording_id = {id} AND join_before = 1"));
    assert_eq!(gaps, "0", "no gap");
    assert!(segs >= 59, "{segs} segments");
    let full = work.path().join("full.mp4");
    std::fs::write(&full, get(&format!("{}/v1/files{path}", c.lb), &c.token).body).unwrap();
    for s in ["0:v:0", "0:a:0"] {
        assert_eq!(hashes(&full, s, false), hashes(&mezz, s, false), "archived {s} equals the source, frame for frame");
    }
    let last = hashes(&full, "0:v:0", false).pop();
    for (i, (body, node)) in seen.iter().enumerate() {
        let f = work.path().join(format!("viewer{i}.mp4"));
        assert_eq!(node, &format!("node{}", i + 1));
        assert!(body.len() > 100_000, "viewer {i} got {} bytes", body.len());
        assert_eq!(decode_errors(&f), "", "viewer on node{} decodes cleanly", i + 1);
        let v = hashes(&f, "0:v:0", false);
        assert_eq!(v.len(), 1800, "viewer on node{} saw every frame", i + 1);
        assert_eq!(v.last(), last.as_ref());
    }
}

#[test]
fn a_node_killed_mid_broadcast_loses_at_most_one_segment() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::start(18680, "--ingest-idle-timeout 10");
    let key = c.cli(&["camera", "add", "--user", "alice", "porch"]).lines().last().unwrap().trim().to_string();
    let work = tempfile::tempdir().unwrap();
    let mezz = mezzanine(work.path(), 24);
    let mut ffmpeg = encoder(&mezz, &c.lb, "porch", &key, "mpegts");
    wait_for("the broadcast to start", 20, || recording_of(&c, "porch").is_some_and(|r| r.1));
    // A viewer on node 2, which is about to die.
    let doomed = viewer(
        format!("{}/v1/files/porch/live.mp4?mode=stream", c.nodes[1]),
        c.token.clone(),
        work.path().join("doomed.mp4"),
    );
    std::thread::sleep(Duration::from_secs(6));
    c.node(2, "kill");
    let t_kill = Instant::now();
    let (cut, _) = doomed.join().unwrap();
    assert!(!cut.is_empty());
    // The viewer reconnects through the load balancer and follows on.
    let resumed = viewer(
        format!("{}/v1/files/porch/live.mp4?mode=stream", c.lb),
        c.token.clone(),
        work.path().join("resumed.mp4"),
    );
    assert!(ffmpeg.wait().unwrap().success(), "ffmpeg went on");
    let (body, node) = resumed.join().unwrap();
    assert_ne!(node, "node2");
    assert!(body.len() > 50_000, "resumed viewer got {} bytes", body.len());
    assert_eq!(decode_errors(&work.path().join("resumed.mp4")), "", "resumed viewer decodes cleanly");
    wait_for("the broadcast to end", 15, || recording_of(&c, "porch").is_some_and(|r| !r.1));
    assert_eq!(c.sql("SELECT count(*) FROM recordings"), "1", "the broadcast continued in the same recording");
    let (path, _, id) = recording_of(&c, "porch").unwrap();
    let segs: i64 = c.sql(&format!("SELECT count(*) FROM segments WHERE recording_id = {id}")).parse().unwrap();
    let gaps: i64 =
        c.sql(&format!("SELECT count(*) FROM segments WHERE recording_id = {id} AND join_before = 1")).parse().unwrap();
    eprintln!(
        "cluster: node2 killed {:.1} s before the end; {segs} segments, {gaps} gaps",
        t_kill.elapsed().as_secs_f64()
    );
    assert!(gaps <= 1, "{gaps} gaps");
    assert!(segs >= 23 - gaps, "{segs} segments of 24");
    let full = work.path().join("full.mp4");
    std::fs::write(&full, get(&format!("{}/v1/files{path}", c.lb), &c.token).body).unwrap();
    assert_eq!(decode_errors(&full), "");
    if gaps == 0 {
        assert_eq!(hashes(&full, "0:v:0", false), hashes(&mezz, "0:v:0", false), "nothing lost");
    }
}

#[test]
fn a_drained_node_finishes_downloads_ends_streams_on_fragments_and_loses_no_segment() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::start(
        18720,
        "--ingest-idle-timeout 10 --drain-grace 1 --drain-timeout 30 --user-max-downloads 64 --user-max-streams 64",
    );
    let work = tempfile::tempdir().unwrap();
    let pl = repeated_playlist(work.path(), "r02_intel_car_ts", 8);
    let args =
        ["import", "--user", "alice", "--camera", "car", "--start", "2026-03-01T10:00:00Z", pl.to_str().unwrap()];
    let path = c.cli(&args).lines().last().unwrap().to_string();
    let whole = get(&format!("{}/v1/files{path}", c.nodes[1]), &c.token).body;
    let key = c.cli(&["camera", "add", "--user", "alice", "porch"]).lines().last().unwrap().trim().to_string();
    let mezz = mezzanine(work.path(), 20);
    let mut ffmpeg = encoder(&mezz, &c.lb, "porch", &key, "mpegts");
    wait_for("the broadcast to start", 20, || recording_of(&c, "porch").is_some_and(|r| r.1));

    // 20 slow full-file downloads and 20 slow quasi-stream viewers, all on node 1.
    let node1 = c.nodes[0].clone();
    let file_url = format!("{node1}/v1/files{path}");
    let downloads: Vec<_> = (0..20)
        .map(|i| {
            let (token, url, out) = (c.token.clone(), file_url.clone(), work.path().join(format!("dl{i}.mp4")));
            std::thread::spawn(move || {
                let (code, dump) = curl(&token, &["--limit-rate", "2M", &url], &out);
                (code, dump, out, Instant::now())
            })
        })
        .collect();
    let streams: Vec<_> = (0..20)
        .map(|i| {
            let (token, url, out) =
                (c.token.clone(), format!("{file_url}?mode=stream"), work.path().join(format!("st{i}.mp4")));
            std::thread::spawn(move || {
                let (code, dump) = curl(&token, &["--limit-rate", "1M", &url], &out);
                (code, dump, out)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let term_at = Instant::now();
    c.node(1, "term");
    // /readyz turns 503 while the listener still accepts, then the listener closes.
    let (mut unready_at, mut refused_at) = (None, None);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) && refused_at.is_none() {
        let addr = node1.strip_prefix("http://").unwrap();
        match std::net::TcpStream::connect(addr) {
            Err(_) => refused_at = Some(t0.elapsed()),
            Ok(_) => {
                if let Err(ureq::Error::Status(503, r)) = ureq::get(&format!("{node1}/readyz")).call() {
                    assert_eq!(r.header("connection"), Some("close"), "a draining node closes connections");
                    unready_at.get_or_insert(t0.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (unready_at, refused_at) = (unready_at.expect("/readyz turned 503"), refused_at.expect("listener closed"));
    assert!(unready_at < refused_at, "unready at {unready_at:?}, listener closed at {refused_at:?}");
    eprintln!("cluster: drain: /readyz 503 after {unready_at:?}, listener closed after {refused_at:?}");

    let mut in_flight = 0;
    for d in downloads {
        let (code, dump, out, done) = d.join().unwrap();
        in_flight += usize::from(done > term_at);
        assert_eq!(code, 0, "download completed: {dump}");
        assert_eq!(header_of(&dump, "x-jitmux-node").as_deref(), Some("node1"));
        assert!(std::fs::read(&out).unwrap() == whole, "download byte-identical");
    }
    // Every download was done before the drain's timeout, on the draining node, most of them
    // still running when the signal came.
    let downloads_done = t0.elapsed();
    assert!(in_flight >= 15, "only {in_flight} of 20 downloads were in flight at SIGTERM");
    assert!(downloads_done < Duration::from_secs(30), "downloads took {downloads_done:?}");
    let mut ended_early = 0;
    for s in streams {
        let (code, _dump, out) = s.join().unwrap();
        assert_eq!(code, 0, "the stream ended cleanly (no cut transfer)");
        let data = std::fs::read(&out).unwrap();
        let (bx, whole_boxes) = boxes(&data);
        assert!(whole_boxes, "the stream ends on a box boundary");
        assert_eq!(bx.last().map(|b| b.0.as_str()), Some("mdat"), "the stream ends after a whole fragment");
        assert_eq!(decode_errors(&out), "", "the stream decodes cleanly to its end");
        let got = video_span(&out).1;
        let total = ffprobe_duration(&work.path().join("dl0.mp4"));
        if got + 1.0 < total {
            ended_early += 1;
            // It resumes through the load balancer on another node.
            let resumed = work.path().join("resumed.mp4");
            let url = format!("{}/v1/files{path}?mode=stream&start={got:.3}", c.lb);
            let (code, dump) = curl(&c.token, &[&url], &resumed);
            assert_eq!(code, 0);
            assert_ne!(header_of(&dump, "x-jitmux-node").as_deref(), Some("node1"));
            assert_eq!(decode_errors(&resumed), "");
            let (from, to) = video_span(&resumed);
            let rest = to - from;
            assert!(got + rest + 2.5 >= total, "resumed from {got:.1} s: {rest:.1} s more of {total:.1}");
        }
    }
    eprintln!(
        "cluster: drain: 20 downloads ({in_flight} in flight at SIGTERM) complete and byte-identical {:.1} s after \
         SIGTERM; {ended_early} of 20 streams ended early on a fragment boundary, each resumed on another node",
        downloads_done.as_secs_f64()
    );
    assert!(ended_early >= 15, "{ended_early} of 20 streams were ended by the drain");
    // The broadcast loses nothing.
    assert!(ffmpeg.wait().unwrap().success());
    wait_for("the broadcast to end", 15, || recording_of(&c, "porch").is_some_and(|r| !r.1));
    let (live_path, _, id) = recording_of(&c, "porch").unwrap();
    assert_eq!(c.sql(&format!("SELECT count(*) FROM segments WHERE recording_id = {id} AND join_before = 1")), "0");
    let full = work.path().join("live.mp4");
    std::fs::write(&full, get(&format!("{}/v1/files{live_path}", c.lb), &c.token).body).unwrap();
    for s in ["0:v:0", "0:a:0"] {
        assert_eq!(hashes(&full, s, false), hashes(&mezz, s, false), "the broadcast lost nothing ({s})");
    }
    let log = c.log(1);
    assert!(log.contains("draining"), "node1 log: {log}");
}

/// `GET` of `bucket/key` on the cluster's S3 server, signed with its keys: (status, body).
fn s3_get(c: &Cluster, bucket_key: &str) -> (u16, Vec<u8>) {
    let var = |k: &str| c.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
    let user = format!("{}:{}", var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"));
    crate::seaweed::signed_curl(&var("AWS_ENDPOINT_URL"), &user, "GET", &format!("/{bucket_key}"))
}

fn job(c: &Cluster, id: i64) -> serde_json::Value {
    let r = get(&format!("{}/v1/exports/{id}", c.lb), &c.token);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

fn post_export(c: &Cluster, body: &serde_json::Value) -> i64 {
    let r = request_with_body(
        "POST",
        &format!("{}/v1/exports", c.lb),
        &[("Authorization", &format!("Bearer {}", c.token)), ("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"].as_i64().unwrap()
}

#[test]
fn an_export_of_20_clips_to_s3_outlives_a_killed_node_and_cancels() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Short leases, so a dead node's job is taken over within seconds; each job paced to
    // 1 MB/s, so it is still running when its node is killed.
    let c = Cluster::start(18720, "--export-lease 3 --export-max-rate 1000000");
    let st = Command::new(root().join("scripts/seaweed.sh"))
        .args(["mkbucket", c.dir.path().join("seaweed").to_str().unwrap(), "exports"])
        .status()
        .unwrap();
    assert!(st.success(), "mkbucket exports");
    c.cli(&["user", "grant", "alice", "s3://exports/alice/"]);
    let work = tempfile::tempdir().unwrap();
    let pl = repeated_playlist(work.path(), "r02_intel_car_ts", 4);
    c.cli(&["import", "--user", "alice", "--camera", "car", "--start", "2026-03-01T10:00:00Z", pl.to_str().unwrap()]);
    // 19 clips of 6 s and, in the middle, the whole 2 minutes (more than one 8 MiB part).
    let at = |s: f64| format!("2026-03-01T10:{:02}:{:06.3}Z", (s / 60.0) as u32, s % 60.0);
    let items: Vec<serde_json::Value> = (0..20)
        .map(|i| {
            let (a, b) = if i == 10 { (0.0, 120.0) } else { (i as f64 * 6.0 + 0.5, i as f64 * 6.0 + 6.5) };
            let accuracy = if i % 2 == 0 { "frame" } else { "keyframe" };
            serde_json::json!({
                "clip": {"camera": "car", "start": at(a), "end": at(b), "accuracy": accuracy},
                "name": format!("clip-{i:02}.mp4"),
            })
        })
        .collect();
    let id = post_export(&c, &serde_json::json!({"items": items, "destination": {"s3": "s3://exports/alice/run1/"}}));

    // Kill the node running it halfway, while it uploads the large item's parts.
    let t0 = Instant::now();
    let mut j;
    loop {
        j = job(&c, id);
        if j["items_done"].as_i64().unwrap() >= 10 && j["items"][10]["bytes_done"].as_i64().unwrap() > 1_000_000 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "job stuck: {j}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let holder = j["node"].as_str().unwrap().to_string();
    let n: usize = holder.strip_prefix("node").and_then(|s| s.split('#').next()).unwrap().parse().unwrap();
    let uploads = || {
        let (status, body) = s3_get(&c, "exports?uploads=");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        String::from_utf8_lossy(&body).matches("<UploadId>").count()
    };
    assert_eq!(uploads(), 1, "the large item is a multipart upload in progress");
    c.node(n, "kill");
    let before = job(&c, id);
    let done_before: Vec<serde_json::Value> =
        before["items"].as_array().unwrap().iter().filter(|i| i["state"] == "done").cloned().collect();
    assert!(done_before.len() < 20, "killed before the end: {before}");
    eprintln!("exports: killed node{n} ({holder}) with {} of 20 items done", done_before.len());

    // Another node resumes it once the lease has run out, without redoing what was done.
    let t1 = Instant::now();
    loop {
        j = job(&c, id);
        if j["state"] != "running" && j["state"] != "queued" {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(120), "job not finished: {j}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["runs"], 2, "claimed twice: {j}");
    assert_ne!(j["node"].as_str().unwrap(), holder, "finished by another node");
    assert_eq!(j["items_done"], 20);
    assert_eq!(j["bytes_done"], j["bytes_total"]);
    let items = j["items"].as_array().unwrap();
    for d in &done_before {
        let now = &items[d["item"].as_u64().unwrap() as usize];
        assert_eq!((&now["node"], &now["finished"]), (&d["node"], &d["finished"]), "item {} not redone", d["item"]);
    }
    let resumed = items.iter().filter(|i| i["node"] != holder.as_str()).count();
    assert_eq!(resumed, 20 - done_before.len(), "the other node did only the rest");
    eprintln!("exports: node {} finished the other {resumed} items in {:.1} s", j["node"], t1.elapsed().as_secs_f64());

    // Every object is the clip served over HTTP, byte for byte, with the recorded ETag.
    for (i, item) in items.iter().enumerate() {
        let clip = &item["spec"]["clip"];
        let url = format!(
            "{}/v1/clips/car/{}_{}.mp4?accuracy={}",
            c.lb,
            clip["start"].as_str().unwrap(),
            clip["end"].as_str().unwrap(),
            clip["accuracy"].as_str().unwrap()
        );
        let served = get(&url, &c.token);
        assert_eq!(served.status, 200, "{url}");
        let (status, object) = s3_get(&c, &format!("exports/alice/run1/clip-{i:02}.mp4"));
        assert_eq!(status, 200, "clip-{i:02}.mp4");
        assert!(object == served.body, "clip-{i:02}.mp4 is byte-identical to {url}");
        assert_eq!(served.header("etag").map(|e| e.trim_matches('"')), item["etag"].as_str());
        assert_eq!(item["location"], format!("s3://exports/alice/run1/clip-{i:02}.mp4"));
    }
    assert_eq!(uploads(), 0, "the dead node's multipart upload was aborted by its successor");
    let (_, big) = s3_get(&c, "exports/alice/run1/clip-10.mp4");
    assert!(big.len() > 8 << 20, "the whole-recording clip went up in parts ({} bytes)", big.len());

    // `jitmux export` into the bucket from the command line: the same object again; run twice,
    // it keeps what is there.
    let list = work.path().join("items.json");
    let one = serde_json::json!([{"clip": items[0]["spec"]["clip"].clone(), "name": "cli-00.mp4"}]);
    std::fs::write(&list, one.to_string()).unwrap();
    let args = ["export", "--user", "alice", "--to", "s3://exports/alice/cli/", "--items", list.to_str().unwrap()];
    assert!(c.cli(&args).contains("1 written"));
    assert!(s3_get(&c, "exports/alice/cli/cli-00.mp4").1 == s3_get(&c, "exports/alice/run1/clip-00.mp4").1);
    assert!(c.cli(&args).contains("1 kept"));

    // Cancel: a second job, stopped after a few items; nothing more is written.
    let id2 = post_export(
        &c,
        &serde_json::json!({"items": items.iter().map(|i| i["spec"].clone()).collect::<Vec<_>>(), "destination": {"s3": "s3://exports/alice/run2/"}}),
    );
    wait_for("a few items of the second job", 60, || job(&c, id2)["items_done"].as_i64().unwrap() >= 3);
    let r =
        request("DELETE", &format!("{}/v1/exports/{id2}", c.lb), &[("Authorization", &format!("Bearer {}", c.token))]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    std::thread::sleep(Duration::from_secs(3));
    let k = job(&c, id2);
    assert_eq!(k["state"], "cancelled");
    std::thread::sleep(Duration::from_secs(3));
    let k2 = job(&c, id2);
    assert_eq!(k2["items_done"], k["items_done"], "no item finished after the cancel");
    let done = k2["items_done"].as_u64().unwrap() as usize;
    assert!(done < 20, "{k2}");
    for i in 0..20 {
        let (status, _) = s3_get(&c, &format!("exports/alice/run2/clip-{i:02}.mp4"));
        assert_eq!(status == 200, k2["items"][i]["state"] == "done", "run2/clip-{i:02}.mp4: {status}");
    }
    let r =
        request("DELETE", &format!("{}/v1/exports/{id}", c.lb), &[("Authorization", &format!("Bearer {}", c.token))]);
    assert_eq!(r.status, 409, "a finished job cannot be cancelled");
    eprintln!("exports: cancelled the second job with {done} of 20 items written");
}
