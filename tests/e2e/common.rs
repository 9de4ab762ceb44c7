//! Shared helpers: run the real `jitmux` binary on a temporary data dir, start servers, make
//! HTTP requests.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_jitmux");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(set: &str) -> PathBuf {
    root().join("fixtures/sets").join(set)
}

/// A data dir with a user whose token is known.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub token: String,
}

/// Output of one CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub fn new(user: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Env { dir, token: String::new() };
        env.token = env.add_user(user);
        env
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[])
    }

    /// A CLI run with extra environment variables (an S3 endpoint and credentials).
    pub fn cli_env(&self, args: &[&str], envs: &[(String, String)]) -> Run {
        let out = Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts a CLI command in the background (a `scan --watch`, a scan to be killed), stdout
    /// piped, stderr dropped.
    pub fn spawn_cli(&self, args: &[&str], envs: &[(String, String)]) -> std::process::Child {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn add_user(&self, name: &str) -> String {
        let r = self.cli(&["user", "add", name]);
        assert_eq!(r.code, 0, "user add: {}", r.stderr);
        r.stdout.lines().last().unwrap().trim().to_string()
    }

    /// Imports a playlist; returns the tree path printed on the last line.
    pub fn import(&self, user: &str, camera: &str, playlist: &Path) -> String {
        let r = self.cli(&[
            "import",
            "--user",
            user,
            "--camera",
            camera,
            "--start",
            "2026-03-01T10:00:00Z",
            playlist.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "import {}: {}", playlist.display(), r.stderr);
        r.stdout.lines().last().unwrap().trim().to_string()
    }

    pub fn serve(&self) -> Server {
        Server::start(self.data(), &[])
    }

    /// Creates a camera of `user`; returns its ingest key.
    pub fn camera_add(&self, user: &str, camera: &str) -> String {
        let r = self.cli(&["camera", "add", "--user", user, camera]);
        assert_eq!(r.code, 0, "camera add: {}", r.stderr);
        r.stdout.lines().last().unwrap().trim().to_string()
    }
}

/// A running `jitmux serve`; killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts `jitmux serve` on a free port (`--listen` in `extra` overrides it).
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Server::start_env(data, extra, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_env(data: &Path, extra: &[&str], envs: &[(String, String)]) -> Server {
        let listen = if extra.contains(&"--listen") { vec![] } else { vec!["--listen", "127.0.0.1:0"] };
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .arg("serve")
            .args(listen)
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let base = line.trim().strip_prefix("listening on ").expect("listening line").to_string();
        Server { child, base }
    }

    pub fn url(&self, tree_path: &str) -> String {
        format!("{}/v1/files{}", self.base, tree_path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, headers (lower-case names), body.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    request_with_body(method, url, headers, None)
}

/// A request with an optional body; redirects are not followed.
pub fn request_with_body(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let mut req = agent.request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let sent = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let resp = match sent {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .iter()
        .map(|n| (n.to_lowercase(), resp.header(n).unwrap_or_default().to_string()))
        .collect();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).unwrap();
    Resp { status, headers, body }
}

pub fn get(url: &str, token: &str) -> Resp {
    request("GET", url, &[("Authorization", &format!("Bearer {token}"))])
}

/// `GET` of `range` (`bytes=…`) with a bearer token.
pub fn get_range(url: &str, token: &str, range: &str) -> Resp {
    request("GET", url, &[("Authorization", &format!("Bearer {token}")), ("Range", range)])
}

/// Sends `GET raw_path` exactly as given (no client-side normalisation of `..` or `%2F`) and
/// returns the status code.
pub fn raw_get_status(base: &str, raw_path: &str, token: &str) -> u16 {
    use std::io::Write;
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {raw_path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}
