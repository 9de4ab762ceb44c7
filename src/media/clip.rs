//! Clips by wall-clock time: the recordings of a camera that a range touches, cut into one file
//! ([`crate::format::mp4::clip`]) from their sample indexes alone.

use std::sync::Arc;

use bytes::Bytes;

use super::cache::LoadedFile;
use super::spec::ClipFacts;
use super::{ClipSpan, Cut, File, FileSpec, MediaError, MediaRange, Part, UserMedia};
use crate::catalog::{Catalog, Recording, Segment};
use crate::format::mp4::Layout;
use crate::format::mp4::clip::{self, Accuracy, ClipError, ClipRange, ClipSource, Gaps};
use crate::model::{CameraId, RecordingId};

impl Cut {
    /// The cut's parameters as the ETag and the file name see them:
    /// `START_END;accuracy;gaps` with unix ms times.
    pub fn params(&self) -> String {
        let accuracy = match self.accuracy {
            Accuracy::Frame => "frame",
            Accuracy::Keyframe => "keyframe",
        };
        let gaps = match self.gaps {
            Gaps::Keep => "keep",
            Gaps::Collapse => "collapse",
        };
        format!("{}_{};{accuracy};{gaps}", self.start_ms, self.end_ms)
    }
}

/// The clip `cut` of `camera`'s timeline, resolved: its recordings read from the catalog, its
/// layout built (or taken from the user's cache) from their sample indexes; no segment is read.
///
/// Errors: [`MediaError::Clip`] with [`ClipError::NoMedia`] when no recording presents anything
/// in the range, [`ClipError::Empty`] when it ends before it starts, [`ClipError::Layout`] when
/// the recordings' codecs differ; catalog errors.
pub async fn open_clip(catalog: &Catalog, media: &UserMedia, camera: CameraId, cut: Cut) -> Result<File, MediaError> {
    if cut.end_ms <= cut.start_ms {
        return Err(MediaError::Clip(ClipError::Empty));
    }
    let recs = catalog.recordings_overlapping(camera, cut.start_ms, cut.end_ms).await?;
    let Some(first) = recs.first().cloned() else {
        return Err(MediaError::Clip(ClipError::NoMedia));
    };
    let spec = FileSpec {
        parts: recs.iter().map(|r| Part { recording: r.id, range: MediaRange::Whole }).collect(),
        cut: Some(cut),
    };
    let version = recs.iter().map(|r| r.updated_ms).max().unwrap_or(0);
    media.refresh_grants(catalog).await?;
    let loaded = media.cache.load_with(spec.clone(), version, || build(catalog, recs.clone(), cut)).await?;
    let facts = ClipFacts {
        len_bytes: loaded.layout.len_bytes,
        head_len_bytes: loaded.head.len() as u64,
        etag: loaded.etag.clone(),
        modified_ms: recs.iter().map(|r| r.modified_ms).max().unwrap_or(0),
        version,
        spans: loaded.spans.clone(),
        duration_ms: (loaded.layout.movie_dur as i64 * 1000).div_euclid(crate::format::mp4::MOVIE_TIMESCALE as i64),
    };
    Ok(File::clip(spec, first, facts))
}

/// Builds a clip's layout: each recording's layout from its indexes, then the cut (blocking
/// pool). Two recordings at a time: one's index rows are read while another's layout is built,
/// and two layouts build on two cores.
async fn build(catalog: &Catalog, recs: Vec<Recording>, cut: Cut) -> Result<Arc<LoadedFile>, MediaError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    let t0 = std::time::Instant::now();
    let ids: Vec<RecordingId> = recs.iter().map(|r| r.id).collect();
    let parts: Vec<RecordingLayout> = futures::stream::iter(ids)
        .map(|id| {
            let catalog = catalog.clone();
            async move {
                let segs = catalog.segments(id).await?;
                tokio::task::spawn_blocking(move || recording_layout(id, &segs))
                    .await
                    .map_err(|e| MediaError::Task(e.to_string()))?
            }
        })
        .buffered(2)
        .try_collect()
        .await?;
    let loaded = tokio::task::spawn_blocking(move || -> Result<LoadedFile, MediaError> {
        let (layouts, objects): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        let with: Vec<usize> = (0..recs.len()).filter(|&i| layouts[i].is_some()).collect();
        let sources: Vec<ClipSource<'_>> = with
            .iter()
            .map(|&i| ClipSource {
                layout: layouts[i].as_ref().expect("filtered"),
                start_ns: recs[i].start_ms as i128 * 1_000_000,
            })
            .collect();
        let range = ClipRange {
            start_ns: cut.start_ms as i128 * 1_000_000,
            end_ns: cut.end_ms as i128 * 1_000_000,
            accuracy: cut.accuracy,
            gaps: cut.gaps,
        };
        let made = clip::clip(&sources, range).map_err(MediaError::Clip)?;
        let objects = made.sources.iter().map(|&(s, seg)| objects[with[s as usize]][seg as usize].clone()).collect();
        let spans = made
            .runs
            .iter()
            .map(|run| ClipSpan {
                recording: recs[with[run.source]].id,
                wall_start_ms: run.wall_start_ns.div_euclid(1_000_000) as i64,
                wall_end_ms: (run.wall_end_ns + 999_999).div_euclid(1_000_000) as i64,
                clip_start_ms: run.clip_start_ns.div_euclid(1_000_000) as i64,
            })
            .collect();
        let etag = crate::model::clip_etag(recs.iter().map(|r| (r.etag.as_str(), r.start_ms)), &cut.params());
        tracing::debug!(
            recordings = recs.len(),
            segments = made.layout.segments.len(),
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "clip built (indexes read, layouts built, cut)"
        );
        let mut layout = made.layout;
        Ok(LoadedFile { head: Bytes::from(std::mem::take(&mut layout.head)), layout, etag, objects, spans })
    })
    .await
    .map_err(|e| MediaError::Task(e.to_string()))??;
    Ok(Arc::new(loaded))
}

/// A recording's layout (headless: a clip reads its timing only; `None` when it has no samples
/// yet, a broadcast that just began) and the object of each of its segments.
type RecordingLayout = (Option<Layout>, Vec<(String, Option<String>)>);

/// Decodes `segs`' sample indexes and builds the layout of `recording` from them.
fn recording_layout(recording: RecordingId, segs: &[Segment]) -> Result<RecordingLayout, MediaError> {
    let mut inputs = Vec::with_capacity(segs.len());
    let mut objects = Vec::with_capacity(segs.len());
    for s in segs {
        inputs.push(super::cache::segment_input(recording, s, s.join_before)?);
        objects.push((s.object_key.clone(), s.object_etag.clone()));
    }
    match Layout::build_headless(&inputs) {
        Ok(l) => Ok((Some(l), objects)),
        Err(crate::format::mp4::LayoutError::Empty) => Ok((None, objects)),
        Err(e) => Err(MediaError::Layout(recording, e)),
    }
}
