//! `/metrics` (Prometheus text exposition) from the `metrics` facade and its Prometheus
//! exporter, and the middleware that measures every request.
//!
//! Request metrics, by matched route (`/v1/files/{*path}`, not the path itself) and status:
//! `jitmux_http_requests_total`, `jitmux_http_request_duration_seconds` (time to the response
//! head), `jitmux_http_response_bytes_total` (body bytes actually sent), and
//! `jitmux_http_bodies_in_flight` (bodies being sent now). Other layers record their own:
//! `jitmux_store_reads_total`, `jitmux_store_read_bytes_total`, `jitmux_instances_alive`, …
//!
//! Origin offload, the key figure of a caching origin in front of object storage:
//! `jitmux_http_response_bytes_total` (served) against `jitmux_store_read_bytes_total` (read),
//! GETs per served body as `jitmux_store_reads_total` against `jitmux_media_bodies_total`, and
//! `jitmux_chunk_cache_{hits,misses}_total`.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// The process's Prometheus recorder, installed on first use (one per process: the `metrics`
/// facade has one global recorder). `None` if another recorder was installed first.
pub fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let h = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("jitmux_http_request_duration_seconds".into()),
                    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                )
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(h)
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("jitmux_http_requests_total", "HTTP requests answered, by route, method and status.");
    describe_histogram!(
        "jitmux_http_request_duration_seconds",
        Unit::Seconds,
        "Time from request to response head, by route."
    );
    describe_counter!("jitmux_http_response_bytes_total", Unit::Bytes, "Response body bytes sent, by route.");
    describe_gauge!("jitmux_http_bodies_in_flight", "Response bodies being sent now.");
    describe_counter!("jitmux_store_reads_total", "Object store range reads.");
    describe_counter!("jitmux_store_read_bytes_total", Unit::Bytes, "Bytes read from the object store.");
    describe_counter!("jitmux_store_writes_total", "Objects written to the store.");
    describe_counter!("jitmux_store_written_bytes_total", Unit::Bytes, "Bytes written to the object store.");
    describe_gauge!("jitmux_instances_alive", "User program instances alive.");
    describe_counter!(
        "jitmux_store_retries_total",
        "Object store requests retried after a transient failure (5xx, throttling, timeout, reset)."
    );
    describe_counter!(
        "jitmux_store_changed_objects_total",
        "Archive objects found replaced since they were indexed (412 on If-Match); never served."
    );
    describe_counter!(
        "jitmux_chunk_cache_hits_total",
        "Segments and heads served from the node's cache, or waited for while another request read them."
    );
    describe_counter!(
        "jitmux_chunk_cache_misses_total",
        "Segments and heads read from the store into the node's cache."
    );
    describe_counter!("jitmux_chunk_cache_evictions_total", "Entries dropped from the node's cache to stay in bounds.");
    describe_gauge!("jitmux_chunk_cache_bytes", Unit::Bytes, "Bytes held by the node's cache.");
    describe_counter!(
        "jitmux_media_bodies_total",
        "Bodies made: byte ranges of full files (kind=file) and quasi-streams (kind=stream)."
    );
    describe_counter!("jitmux_instances_created_total", "User program instances created.");
    describe_counter!("jitmux_instances_evicted_total", "User program instances evicted when idle.");
}

/// `GET /metrics`.
pub async fn metrics(State(_): State<AppState>) -> Response {
    let body = handle().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Measures one request: counts it by route, method and status, times it to its response head,
/// and wraps its body to count the bytes sent and the bodies in flight.
pub async fn measure(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = req.method().as_str().to_string();
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("jitmux_http_request_duration_seconds", "route" => route.clone())
        .record(t0.elapsed().as_secs_f64());
    metrics::counter!("jitmux_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    resp.map(|b| Body::new(Metered::new(b, route)))
}

/// A response body that counts its bytes and holds an in-flight gauge until dropped.
struct Metered {
    inner: Body,
    bytes: metrics::Counter,
}

impl Metered {
    fn new(inner: Body, route: String) -> Self {
        metrics::gauge!("jitmux_http_bodies_in_flight").increment(1.0);
        Metered { inner, bytes: metrics::counter!("jitmux_http_response_bytes_total", "route" => route) }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        metrics::gauge!("jitmux_http_bodies_in_flight").decrement(1.0);
    }
}

impl http_body::Body for Metered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            self.bytes.increment(d.len() as u64);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
