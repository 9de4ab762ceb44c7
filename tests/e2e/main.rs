//! End-to-end tests of the `jitmux` binary: import real segment sets, serve them, and check the
//! MP4s as a user's tools would (ffprobe, ffmpeg framemd5 against the source, HTTP ranges).

mod access;
mod browser;
mod clients;
mod clips;
mod cluster;
mod common;
mod exports;
mod faultproxy;
mod live;
mod media;
#[path = "../support/multipart.rs"]
mod multipart;
mod robustness;
mod s3;
mod seaweed;
mod stream;
mod web;
