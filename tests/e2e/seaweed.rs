//! A real S3 server for the tests: SeaweedFS on loopback through `scripts/seaweed.sh`, with an
//! access key configured (every request SigV4-signed; anonymous access refused).

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};

use crate::common::root;

/// S3 ports of the instances this test binary starts: 8 ports each (`scripts/seaweed.sh`), so
/// 10 apart; below 55000 as SeaweedFS requires.
static NEXT_PORT: AtomicU16 = AtomicU16::new(18400);

/// A running SeaweedFS; stopped on drop.
pub struct Seaweed {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn script(args: &[&str]) -> std::process::Output {
    Command::new("bash").arg(root().join("scripts/seaweed.sh")).args(args).output().unwrap()
}

impl Seaweed {
    /// Starts an instance on the next free ports.
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().unwrap();
        loop {
            let port = NEXT_PORT.fetch_add(10, Ordering::SeqCst);
            assert!(port < 19400, "no free SeaweedFS ports");
            let out = script(&["start", dir.path().to_str().unwrap(), &port.to_string()]);
            if out.status.success() {
                return Seaweed { dir, port };
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("in use"), "seaweed start: {err}{}", String::from_utf8_lossy(&out.stdout));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a jitmux process needs to reach it (credentials, region, endpoint).
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_via(&self.endpoint())
    }

    /// The same, with the endpoint replaced (a fault proxy in front).
    pub fn env_via(&self, endpoint: &str) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "jitmuxtest".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "jitmuxtestsecret".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), endpoint.into()),
            // No profile or instance metadata lookups on the test machine.
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    pub fn mkbucket(&self, bucket: &str) {
        let out = script(&["mkbucket", self.dir.path().to_str().unwrap(), bucket]);
        assert!(out.status.success(), "mkbucket {bucket}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Uploads `file` as `bucket/key`.
    pub fn put(&self, bucket_key: &str, file: &Path) {
        let out = script(&["put", self.dir.path().to_str().unwrap(), bucket_key, file.to_str().unwrap()]);
        assert!(out.status.success(), "put {bucket_key}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Uploads every file of `dir` (not recursive) under `bucket/prefix/`.
    pub fn put_dir(&self, bucket_prefix: &str, dir: &Path) {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names.into_iter().filter(|p| p.is_file()) {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            self.put(&format!("{bucket_prefix}/{name}"), &p);
        }
    }

    /// A signed request with curl: (status, body).
    pub fn curl(&self, method: &str, path_and_query: &str) -> (u16, Vec<u8>) {
        signed_curl(&self.endpoint(), "jitmuxtest:jitmuxtestsecret", method, path_and_query)
    }

    /// Keys under `bucket/prefix` (first 1000).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        // Query parameters in sorted order and '/' escaped: curl's SigV4 signs the query as written.
        let prefix = prefix.replace('/', "%2F");
        let (status, body) = self.curl("GET", &format!("/{bucket}?list-type=2&prefix={prefix}"));
        assert_eq!(status, 200, "list {bucket}/{prefix}: {}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&body);
        text.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_string).collect()
    }
}

/// A SigV4-signed request with curl to the S3 server at `endpoint` with `user` (`KEY:SECRET`):
/// (status, body).
pub fn signed_curl(endpoint: &str, user: &str, method: &str, path_and_query: &str) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .args(["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", user])
        .arg(format!("{endpoint}{path_and_query}"))
        .output()
        .unwrap();
    let mut body = out.stdout;
    let nl = body.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[nl + 1..]).trim().parse().unwrap_or(0);
    body.truncate(nl);
    (status, body)
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = script(&["stop", self.dir.path().to_str().unwrap()]);
    }
}
