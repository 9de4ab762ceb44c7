//! jitmux: a just-in-time archive transmux HTTP service.
//!
//! Cameras and encoders leave recordings as HLS segments (MPEG-TS or fMP4/CMAF; H.264/H.265,
//! AAC/AC-3) in object storage. jitmux indexes each segment once at import and then presents,
//! for every user, a virtual file tree in which each recording is a progressive `.mp4` whose
//! length, ETag and `moov` are known from the catalog alone; its bytes are produced on request,
//! transmuxed (never re-encoded) from exactly the segments a byte range touches.
//!
//! - [`format`]: the sans-IO core (demux, sample index, MP4 layout); no tokio, SQL or files.
//! - [`catalog`]: users, tokens, cameras, recordings, segment indexes (SQLite or PostgreSQL).
//! - [`store`]: the object store trait and the local-directory implementation.
//! - [`import`]: playlist → stored segments + catalog rows, all or nothing.
//! - [`instance`]: per-user program instances: caches, limits, storage scoped to the user.
//! - [`ingest`]: live ingest from encoders (ffmpeg HLS PUT) into growing live recordings.
//! - [`share`]: signed URLs (HMAC-SHA256, rotating keys) for players and sharing.
//! - [`service`], [`vfile`]: the HTTP API and the virtual MP4 entity served with `http-serve`.
//! - [`web`], [`thumb`]: the web page (sessions, tree, player) and recording thumbnails.

pub mod catalog;
pub use jitmux_format as format;
pub mod import;
pub mod ingest;
pub mod instance;
pub mod openapi;
pub mod ranges;
pub mod service;
pub mod share;
pub mod store;
pub mod thumb;
pub mod vfile;
pub mod web;
