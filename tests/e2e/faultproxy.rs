//! A fault-injecting HTTP/1.1 forwarding proxy for the S3 store: jitmux talks to the proxy
//! (`AWS_ENDPOINT_URL`), the proxy forwards to a real S3 server on loopback and, when told to,
//! answers `503 Slow Down`, cuts a response short, stalls, trickles or refuses connections.
//!
//! Requests are forwarded byte for byte (the `Host` header too: SigV4 signs it, and the store
//! checks the signature against the value it receives). Each client connection gets its own
//! thread and keeps alive; each request goes to the store on a fresh upstream connection.

// Not every test uses every fault.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What happens to a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer `503 Slow Down` (S3 XML error body, code `SlowDown`) without forwarding.
    Status503,
    /// Forward, but close the client connection after the response head and this many bytes of
    /// the body (as sent on the wire: chunk framing counts). A shorter body goes through whole,
    /// and the connection is closed after it.
    ResetAfter(u64),
    /// Forward, but wait this long between the response head and the body.
    Stall(Duration),
    /// Forward the response body at most this many bytes per second.
    Trickle(u64),
    /// Close the connection without reading or answering (store down). A `"*"` rule refuses a
    /// new connection on accept; on a kept-alive connection it applies when a request arrives.
    Refuse,
}

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
    <Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>";
const MAX_HEAD: usize = 64 * 1024;

/// A fault to apply to requests whose method matches; `left: None` means until `clear()`.
struct Rule {
    method: String,
    fault: Fault,
    left: Option<usize>,
}

/// State shared by the proxy handle, the accept loop and the connection threads.
struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    requests: AtomicUsize,
    faults: AtomicUsize,
    stop: AtomicBool,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

impl Shared {
    /// Takes the first rule matching `method`, counting down its uses. `None` is a new
    /// connection whose method is not known yet: only a `"*"` rule that refuses is taken then.
    fn take(&self, method: Option<&str>) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let i =
            rules.iter().position(|r| r.method == "*" || method.is_some_and(|m| r.method.eq_ignore_ascii_case(m)))?;
        if method.is_none() && rules[i].fault != Fault::Refuse {
            return None;
        }
        let fault = rules[i].fault;
        if let Some(left) = &mut rules[i].left {
            *left -= 1;
            if *left == 0 {
                rules.remove(i);
            }
        }
        self.faults.fetch_add(1, Ordering::SeqCst);
        Some(fault)
    }
}

/// The proxy; dropping it stops accepting and closes the client connections.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` ("127.0.0.1:PORT").
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("fault proxy: bind");
        let addr = listener.local_addr().expect("fault proxy: local addr");
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            rules: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            faults: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let accept_shared = shared.clone();
        let accept = thread::spawn(move || accept_loop(listener, accept_shared));
        FaultProxy { addr, shared, accept: Some(accept) }
    }

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` requests that match `method` (e.g. "GET", or "*" for any) get `fault`;
    /// later ones pass unchanged. Rules apply in the order they were added.
    pub fn inject(&self, method: &str, fault: Fault, n: usize) {
        if n > 0 {
            lock(&self.shared.rules).push(Rule { method: method.to_string(), fault, left: Some(n) });
        }
    }

    /// Every matching request gets `fault` until `clear()`.
    pub fn inject_always(&self, method: &str, fault: Fault) {
        lock(&self.shared.rules).push(Rule { method: method.to_string(), fault, left: None });
    }

    /// Removes all rules: later requests pass unchanged.
    pub fn clear(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Requests seen so far (connections refused on accept count as one each).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests that got a fault so far.
    pub fn faults(&self) -> usize {
        self.shared.faults.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        if TcpStream::connect(self.addr).is_ok()
            && let Some(accept) = self.accept.take()
        {
            let _ = accept.join();
        }
        for (_, conn) in lock(&self.shared.conns).drain() {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if shared.take(None).is_some() {
            shared.requests.fetch_add(1, Ordering::SeqCst);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.conns).insert(id, clone);
        }
        let shared = shared.clone();
        thread::spawn(move || {
            // Any I/O error just ends the connection.
            let _ = serve(stream, &shared);
            lock(&shared.conns).remove(&id);
        });
    }
}

/// Serves the requests of one client connection until it closes or a fault closes it.
fn serve(client: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    while let Some(head) = read_head(&mut reader)? {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let method = head.word(0).to_string();
        let fault = shared.take(Some(method.as_str()));
        if fault == Some(Fault::Refuse) {
            break;
        }
        if head.has_token("expect", "100-continue") {
            // The store's own `100 Continue` is skipped in `forward`.
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut request = head.raw.clone();
        copy_body(&mut reader, request_body(&head), &mut |data| {
            request.extend_from_slice(data);
            Ok(())
        })?;
        let keep = if fault == Some(Fault::Status503) {
            let body = if method.eq_ignore_ascii_case("HEAD") { "" } else { SLOW_DOWN };
            let response = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                SLOW_DOWN.len()
            );
            writer.write_all(response.as_bytes())?;
            true
        } else {
            forward(&request, &method, &shared.upstream, &mut writer, fault)?
        };
        if !keep || head.has_token("connection", "close") || matches!(fault, Some(Fault::ResetAfter(_))) {
            break;
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
    Ok(())
}

/// Sends one buffered request to the store and its response to the client, applying `fault`.
/// Returns whether the client connection may carry another request.
fn forward(
    request: &[u8],
    method: &str,
    upstream: &str,
    client: &mut TcpStream,
    fault: Option<Fault>,
) -> io::Result<bool> {
    let mut up = TcpStream::connect(upstream)?;
    let _ = up.set_nodelay(true);
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(request)?;
    let mut up = BufReader::new(up);
    let head = loop {
        let head = read_head(&mut up)?.ok_or_else(|| eof("store closed before responding"))?;
        if !(100..200).contains(&head.status()) {
            break head;
        }
    };
    client.write_all(&head.raw)?;
    if let Some(Fault::Stall(wait)) = fault {
        thread::sleep(wait);
    }
    let body = response_body(&head, method);
    let mut sent = 0;
    copy_body(&mut up, body, &mut |data| send_body(client, fault, &mut sent, data))?;
    Ok(!head.has_token("connection", "close") && !matches!(body, Body::UntilEof))
}

/// Writes response body bytes to the client, applying `ResetAfter` and `Trickle`.
fn send_body(client: &mut TcpStream, fault: Option<Fault>, sent: &mut u64, data: &[u8]) -> io::Result<()> {
    match fault {
        Some(Fault::ResetAfter(limit)) if data.len() as u64 > limit.saturating_sub(*sent) => {
            client.write_all(&data[..limit.saturating_sub(*sent) as usize])?;
            let _ = client.shutdown(Shutdown::Both);
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "injected reset"));
        }
        Some(Fault::Trickle(per_sec)) => {
            let per_sec = per_sec.max(1);
            for chunk in data.chunks((per_sec / 20).max(1) as usize) {
                client.write_all(chunk)?;
                thread::sleep(Duration::from_secs_f64(chunk.len() as f64 / per_sec as f64));
            }
        }
        _ => client.write_all(data)?,
    }
    *sent += data.len() as u64;
    Ok(())
}

/// A request or response head: the raw bytes (forwarded unchanged) and the parsed fields.
struct Head {
    raw: Vec<u8>,
    first: String,
    /// (lowercase name, trimmed value)
    headers: Vec<(String, String)>,
}

impl Head {
    /// A word of the first line: method or version, target or status.
    fn word(&self, i: usize) -> &str {
        self.first.split_whitespace().nth(i).unwrap_or("")
    }

    fn status(&self) -> u16 {
        self.word(1).parse().unwrap_or(0)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether any `name` header lists `token` (comma-separated, case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

/// How a message body is delimited.
#[derive(Clone, Copy)]
enum Body {
    Empty,
    Fixed(u64),
    Chunked,
    UntilEof,
}

fn request_body(head: &Head) -> Body {
    if head.has_token("transfer-encoding", "chunked") {
        Body::Chunked
    } else {
        head.content_length().map_or(Body::Empty, Body::Fixed)
    }
}

fn response_body(head: &Head, method: &str) -> Body {
    let status = head.status();
    if method.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304 {
        Body::Empty
    } else if head.has_token("transfer-encoding", "chunked") {
        Body::Chunked
    } else {
        head.content_length().map_or(Body::UntilEof, Body::Fixed)
    }
}

fn eof(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads a head up to its empty line; `None` on a clean end of stream before it starts.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let start = raw.len();
        if r.read_until(b'\n', &mut raw)? == 0 {
            return if raw.is_empty() { Ok(None) } else { Err(eof("end of stream in a head")) };
        }
        let line = &raw[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                raw.clear(); // a stray empty line between messages
                continue;
            }
            break;
        }
        if raw.len() > MAX_HEAD {
            return Err(invalid("head too long"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Some(Head { raw, first, headers }))
}

/// Reads one line including its `\n`, which must be there.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<()> {
    line.clear();
    if r.read_until(b'\n', line)? == 0 || !line.ends_with(b"\n") {
        return Err(eof("end of stream in a chunked body"));
    }
    Ok(())
}

/// Passes exactly `n` bytes from `r` to `sink`.
fn copy_exact(r: &mut impl BufRead, mut n: u64, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(eof("end of stream in a body"));
        }
        let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        sink(&buf[..k])?;
        r.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// Passes a body from `r` to `sink` as it is on the wire (chunk framing and trailers included).
fn copy_body(r: &mut impl BufRead, body: Body, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    match body {
        Body::Empty => Ok(()),
        Body::Fixed(n) => copy_exact(r, n, sink),
        Body::UntilEof => loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            let k = buf.len();
            sink(buf)?;
            r.consume(k);
        },
        Body::Chunked => {
            let mut line = Vec::new();
            loop {
                read_line(r, &mut line)?;
                sink(&line[..])?;
                let size = {
                    let text = String::from_utf8_lossy(&line);
                    u64::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                };
                let size = size.map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        read_line(r, &mut line)?;
                        sink(&line[..])?;
                        if line == b"\r\n" || line == b"\n" {
                            return Ok(());
                        }
                    }
                }
                copy_exact(r, size, sink)?;
                read_line(r, &mut line)?;
                sink(&line[..])?;
            }
        }
    }
}
