//! jitmux: a just-in-time archive transmux HTTP service.
//!
//! Cameras and encoders leave recordings as HLS segments (MPEG-TS or fMP4/CMAF; H.264/H.265,
//! AAC/AC-3) in object storage. jitmux indexes each segment once at import and then presents,
//! for every user, a virtual file tree in which each recording is a progressive `.mp4` whose
//! length, ETag and `moov` are known from the catalog alone; its bytes are produced on request,
//! transmuxed (never re-encoded) from exactly the segments a byte range touches.
//!
//! Layers, dependencies pointing one way (ARCHITECTURE.md has the rule and the invariants):
//!
//! - [`format`] (the `jitmux-format` crate): the sans-IO core; demux, sample index, MP4 layout.
//! - [`model`]: ids, tree paths, share modes, object keys, the ETag.
//! - [`catalog`]: users, tokens, cameras, recordings, segment indexes (SQLite or PostgreSQL).
//! - [`store`]: the object store trait; local directory, scoped and counting stores.
//! - [`media`]: files as recording ranges made into bytes (any range, the quasi-stream),
//!   thumbnails; no HTTP.
//! - [`ingest`]: live ingest from encoders; a state machine per broadcast plus its driver.
//! - [`import`]: playlist → stored segments + catalog rows, all or nothing.
//! - [`share`]: signed URLs (HMAC-SHA256, rotating keys).
//! - [`http`]: the HTTP API, the web page, metrics: the only layer that knows axum.
//! - [`cli`]: the command line.

pub mod catalog;
pub mod cli;
pub use jitmux_format as format;
pub mod http;
pub mod import;
pub mod ingest;
pub mod jobs;
pub mod media;
pub mod model;
pub mod share;
pub mod store;
