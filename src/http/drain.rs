//! Graceful drain: how a node leaves a cluster without cutting anyone off.
//!
//! On SIGTERM (or SIGINT) the node
//! 1. reports unready on `/readyz` (`/healthz`, liveness, stays 200), and answers every request
//!    with `Connection: close`, so the load balancer stops sending it new work and clients open
//!    their next connection elsewhere; it still accepts for `--drain-grace`;
//! 2. then closes its listener ([`Drain::close`]): idle keep-alive connections close, every
//!    quasi-stream and live viewer ends after the fragment it is sending (never inside a sample),
//!    so the player reconnects through the load balancer and resumes with `start=` or a Range;
//! 3. lets full-file downloads and ingest uploads in flight finish, for up to
//!    `--drain-timeout`; then exits. A second signal exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;

/// A node's drain state; cheap to clone.
#[derive(Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

struct Inner {
    draining: AtomicBool,
    /// `true` once the listener closes: streams end, connections shut down.
    closing: tokio::sync::watch::Sender<bool>,
    /// `X-Jitmux-Node` value (`--node-name`), if any.
    node: Option<HeaderValue>,
}

impl Drain {
    /// A serving node named `node` (sent as `X-Jitmux-Node` when given).
    pub fn new(node: Option<&str>) -> Self {
        let node = node.filter(|n| !n.is_empty()).and_then(|n| HeaderValue::from_str(n).ok());
        Drain {
            inner: Arc::new(Inner {
                draining: AtomicBool::new(false),
                closing: tokio::sync::watch::channel(false).0,
                node,
            }),
        }
    }

    /// Step 1: unready, `Connection: close` on every response.
    pub fn begin(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Step 2: stop accepting, end streams at their next fragment boundary, shut connections
    /// down once their requests are answered.
    pub fn close(&self) {
        self.begin();
        self.inner.closing.send_replace(true);
    }

    /// `true` once [`Self::close`] was called: what streams and connections watch.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }
}

/// Middleware: `X-Jitmux-Node` on every response, and `Connection: close` while draining
/// (RFC 9112 §9.6: the client opens its next request's connection elsewhere).
pub async fn headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if let Some(node) = &state.drain.inner.node {
        h.insert("x-jitmux-node", node.clone());
    }
    if state.drain.is_draining() {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// `GET /healthz`: liveness, 200 while the process runs (draining included).
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: readiness for a load balancer: 200 when the node takes new work (not draining,
/// and the catalog answers within a second), else 503 with the reason.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.drain.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    match tokio::time::timeout(std::time::Duration::from_secs(1), state.catalog.ping()).await {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("catalog unavailable: {e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "catalog unavailable: no answer within 1 s\n").into_response(),
    }
}
