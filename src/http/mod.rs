//! The HTTP layer: the only module that knows axum, hyper and status codes. It may use every
//! other layer; none uses it.
//!
//! ```text
//! GET  /v1/files/                              cameras          (JSON with Accept: application/json, else HTML)
//! GET  /v1/files/{camera}/                     days
//! GET  /v1/files/{camera}/{YYYY-MM-DD}/        recordings, as NAME.mp4
//! GET|HEAD /v1/files/{camera}/{day}/{NAME}.mp4 the MP4 (RFC 9110 ranges and conditionals); ?mode=stream
//! GET|HEAD /v1/files/{camera}.zip, /v1/files/{camera}/{day}.zip   a directory as one stored ZIP
//! GET|HEAD /v1/clips/{camera}/{START}_{END}.mp4 a wall-clock range across recordings; ?accuracy, ?gaps
//! GET  /v1/thumbnails/{camera}/{day}/{NAME}.jpg
//! PUT  /v1/ingest/{camera}/{file}              live ingest (ingest key)
//! POST|GET /v1/exports, GET|DELETE /v1/exports/{id}   export jobs; GET /v1/exports/{id}.zip a ZIP job's result
//! POST /v1/share                               signed URLs
//! GET  /v1/me, /v1/openapi.json, /metrics, /healthz (liveness), /readyz (readiness; drain)
//! GET  /, /ui/…                                the web page (session cookie)
//! ```
//! Requests carry `Authorization: Bearer TOKEN`, a session cookie, or a signed URL's query, and
//! see only their user's tree. Errors are a status with a one-line `text/plain` reason, chosen
//! in [`error`] alone.

pub mod auth;
pub mod clips;
pub mod drain;
pub mod error;
pub mod exports;
pub mod files;
mod ingest;
pub mod instance;
pub mod listing;
mod me;
pub mod metrics;
pub mod openapi;
pub mod ranges;
pub mod share;
mod thumbnails;
pub mod ui;
pub mod zips;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, put};

pub use error::ApiError;
use instance::{Instances, Limits};

use crate::catalog::Catalog;
use crate::ingest::Ingest;
use crate::store::{CountingStore, ObjectStore};

/// Shared state of the service; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Catalog,
    /// The node's object store (reads counted for `/metrics`).
    pub store: Arc<dyn ObjectStore>,
    /// Per-user program instances (media caches, limits, scoped storage).
    pub instances: Arc<Instances>,
    pub ingest: Arc<Ingest>,
    /// Graceful drain ([`drain`]).
    pub drain: drain::Drain,
    /// Longest clip served ([`clips`]), ms.
    pub clip_max_ms: i64,
}

impl AppState {
    /// State over `catalog` and `store`; live broadcasts end after `idle_timeout` without
    /// uploads; user instances have `limits` and are evicted after `instance_idle`.
    pub fn new(
        catalog: Catalog,
        store: Arc<dyn ObjectStore>,
        idle_timeout: Duration,
        limits: Limits,
        instance_idle: Duration,
    ) -> Self {
        metrics::handle();
        let store: Arc<dyn ObjectStore> = Arc::new(CountingStore::new(store));
        AppState {
            instances: Arc::new(Instances::new(store.clone(), limits, instance_idle)),
            ingest: Arc::new(Ingest::new(catalog.clone(), store.clone(), idle_timeout)),
            catalog,
            store,
            drain: drain::Drain::new(None),
            clip_max_ms: clips::DEFAULT_CLIP_MAX_MS,
        }
    }
}

/// The router: the API, the web page, metrics and health, each request measured and traced.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/files", get(files::files))
        .route("/v1/files/", get(files::files))
        .route("/v1/files/{*path}", get(files::files))
        .route("/v1/clips/{*path}", get(clips::clip))
        .route("/v1/ingest/{camera}/{file}", put(ingest::put).post(ingest::put))
        .route("/v1/exports", get(exports::list).post(exports::create))
        .route("/v1/exports/{id}", get(exports::get_one).delete(exports::cancel))
        .route("/v1/share", axum::routing::post(share::share))
        .route("/v1/me", get(me::me))
        .route("/v1/thumbnails/{*path}", get(thumbnails::thumbnail))
        .route("/v1/openapi.json", get(|| async { axum::Json(openapi::document()) }))
        .route("/healthz", get(drain::healthz))
        .route("/readyz", get(drain::readyz))
        .route("/metrics", get(metrics::metrics));
    api.merge(ui::routes())
        .route_layer(axum::middleware::from_fn(metrics::measure))
        .layer(axum::middleware::from_fn_with_state(state.clone(), drain::headers))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `app` on `listener`, one task per connection, until `closing` turns `true`; then
/// stops accepting, shuts every connection down gracefully (idle ones close, busy ones after
/// their response) and returns once all have closed (the caller bounds that wait).
///
/// HTTP/1 connections allow half-closure: ffmpeg's HLS muxer closes its side right after the
/// last chunk of a PUT without waiting for the answer, and the upload must still be processed
/// (hyper would otherwise drop the request at that EOF).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    mut closing: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, _) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { drop(closing.wait_for(|c| *c).await) } => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut closing = closing.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let done = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = async { drop(closing.wait_for(|c| *c).await) } => None,
            };
            let r = match done {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                tracing::debug!("connection: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!(connections = conns.len(), "listener closed; waiting for open connections");
    while conns.join_next().await.is_some() {}
    Ok(())
}
