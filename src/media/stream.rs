//! The quasi-stream: a file as a fragmented MP4 made as it is sent, and for a live recording the
//! live tail that follows it as segments land.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::body::{BodyStream, Piece, Tx, file_pieces, send_pieces, spawn_producer};
use super::{File, MediaError, UserMedia};
use crate::catalog::Catalog;
use crate::format::frag;
use crate::format::index::TrackKind;
use crate::format::mp4::{Layout, LayoutError};

/// A live viewer more than this many segments behind the newest skips ahead to the newest
/// segment that begins with a sync sample.
pub const MAX_BEHIND_SEGMENTS: u32 = 4;

/// How often a live viewer re-reads the catalog on SQLite, where no notification tells of
/// another process's appends (on PostgreSQL every node hears them, and viewers never poll).
const LIVE_POLL: Duration = Duration::from_secs(1);

/// Tells quasi-streams to end at their next fragment boundary (`true`): a draining node ends its
/// streams cleanly so that players reconnect elsewhere and resume with `start=`.
pub type Stop = tokio::sync::watch::Receiver<bool>;

/// A [`Stop`] that never turns `true` (a stream nobody drains: tests, exports).
pub fn never_stop() -> Stop {
    tokio::sync::watch::channel(false).1
}

/// The quasi-stream of `file`: a fragmented MP4 (ISO/IEC 14496-12 §8.8) from the sync sample at
/// or before `start_s` (seconds), one `moof` + `mdat` per segment whose `mdat` holds exactly the
/// bytes the full file holds for those samples. Memory is bounded (a few pieces in flight and
/// queued); dropping the stream stops the producer.
///
/// For a live recording it is the live tail: without `start_s` it starts at the newest segment
/// that begins with a sync sample (the latest GOP, at once), then sends a fragment as each new
/// segment lands (announced by the catalog, whichever node appended), skips ahead when the
/// viewer falls more than [`MAX_BEHIND_SEGMENTS`] behind, and ends when the broadcast ends.
///
/// When `stop` turns `true` the stream ends after the fragment being sent (never inside one).
pub fn fragments(catalog: Catalog, media: Arc<UserMedia>, file: File, start_s: Option<f64>, stop: Stop) -> BodyStream {
    metrics::counter!("jitmux_media_bodies_total", "kind" => "stream").increment(1);
    spawn_producer("stream", move |tx| async move { produce(&catalog, &media, file, start_s, stop, &tx).await })
}

async fn produce(
    catalog: &Catalog,
    media: &Arc<UserMedia>,
    mut file: File,
    start_s: Option<f64>,
    mut stop: Stop,
    tx: &Tx,
) -> Result<(), MediaError> {
    let stopped = |stop: &Stop| *stop.borrow();
    let id = file.recording().id;
    // Subscribe before reading, so no append between the two is missed.
    let mut changes = catalog.changes().subscribe(id);
    let mut loaded = media.load(catalog, &file).await?;
    // A finished recording's init says its whole duration (`mehd`); a live one may still grow.
    let duration = (!file.live()).then_some(loaded.layout.movie_dur);
    if tx.send(Ok(Bytes::from(frag::init_segment(&loaded.layout, duration)))).await.is_err() {
        return Ok(());
    }
    let (mut next, mut from) = match start_s {
        Some(s) => frag::start_point(&loaded.layout, s),
        None if file.live() => (newest_sync_segment(&loaded.layout, 0), Vec::new()),
        None => frag::start_point(&loaded.layout, 0.0),
    };
    loop {
        if stopped(&stop) {
            return Ok(());
        }
        let n = loaded.layout.segments.len() as u32;
        if file.live() && n.saturating_sub(next) > MAX_BEHIND_SEGMENTS {
            next = newest_sync_segment(&loaded.layout, next);
            from.clear();
        }
        if next < n {
            let layout = &loaded.layout;
            let first = next;
            // A fragment's pieces are made together, so ending between segments ends between
            // fragments.
            let stop_at = stop.clone();
            let segments = futures::stream::iter(first..n).take_while(move |_| std::future::ready(!*stop_at.borrow()));
            let pieces = segments.flat_map(|s| {
                let mut pieces = Vec::new();
                let from: &[Option<u32>] = if s == first { &from } else { &[] };
                if let Some(plan) = frag::plan_fragment(layout, s, from) {
                    match frag::fragment_header(layout, &plan) {
                        Ok(head) => {
                            pieces.push(Piece::Static(Bytes::from(head)));
                            for t in &plan.trafs {
                                file_pieces(layout, t.file_range.clone(), &mut pieces);
                            }
                        }
                        Err(e) => pieces.push(Piece::Fail(MediaError::Layout(id, LayoutError::Fragment(e)))),
                    }
                }
                futures::stream::iter(pieces)
            });
            if !send_pieces(media, &loaded, pieces, u64::MAX, tx).await? {
                return Ok(());
            }
            next = n;
            from.clear();
        }
        if !file.live() || stopped(&stop) {
            return Ok(());
        }
        // Wait for the recording to grow or end: announced by the catalog (this node's appends at
        // once, other nodes' through PostgreSQL notifications), or seen by polling on SQLite. A
        // closed receiver (viewer gone) or `stop` ends the stream, here between fragments.
        let poll = catalog.polls_for_changes();
        loop {
            let now = tokio::select! {
                _ = changes.changed() => changes.borrow_and_update().clone(),
                _ = tokio::time::sleep(LIVE_POLL), if poll => {
                    Some(catalog.recording_by_id(id).await?.ok_or(MediaError::Gone(id))?)
                }
                _ = stopping(&mut stop) => return Ok(()),
                _ = tx.closed() => return Ok(()),
            };
            let old = file.recording();
            if let Some(now) = now.filter(|n| n.updated_ms > old.updated_ms || n.live != old.live) {
                file = File::whole(now);
                break;
            }
        }
        loaded = media.load(catalog, &file).await?;
    }
}

/// Resolves once `stop` is `true`; never if its sender is gone (nobody can stop the stream).
async fn stopping(stop: &mut Stop) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The newest segment at or after `at_least` whose video samples begin with a sync sample (any
/// segment for audio-only recordings); `at_least` if none.
fn newest_sync_segment(layout: &Layout, at_least: u32) -> u32 {
    let Some(video) = layout.tracks.iter().find(|t| t.kind == TrackKind::Video) else {
        return (layout.segments.len() as u32).saturating_sub(1).max(at_least);
    };
    video
        .runs
        .iter()
        .rev()
        .find(|r| r.segment >= at_least && video.samples.get(r.first as usize).is_some_and(|s| s.sync))
        .map_or(at_least, |r| r.segment)
}
