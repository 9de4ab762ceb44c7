//! What a served file is made of.

use crate::catalog::Recording;
use crate::format::mp4::clip::{Accuracy, Gaps};
use crate::model::RecordingId;

/// A file as data: an ordered list of recording ranges. Layouts and caches are keyed by it.
/// A file of the tree is one whole recording; a clip is the recordings a wall-clock range
/// touches, cut by a [`Cut`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileSpec {
    pub parts: Vec<Part>,
    /// The wall-clock range taken from the parts; `None`: all of them, joined.
    pub cut: Option<Cut>,
}

/// One recording range of a [`FileSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Part {
    pub recording: RecordingId,
    pub range: MediaRange,
}

/// Which of a recording's media a [`Part`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaRange {
    /// All of it (a clip's [`Cut`] then takes its range of the wall clock).
    Whole,
}

/// A clip's range and how it is cut ([`crate::format::mp4::clip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cut {
    /// Wall-clock start (inclusive) and end (exclusive), unix ms.
    pub start_ms: i64,
    pub end_ms: i64,
    pub accuracy: Accuracy,
    pub gaps: Gaps,
}

impl FileSpec {
    /// The file that is one whole recording.
    pub fn whole(recording: RecordingId) -> FileSpec {
        FileSpec { parts: vec![Part { recording, range: MediaRange::Whole }], cut: None }
    }
}

/// One recording's span presented by a clip, and where it is in the clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipSpan {
    pub recording: RecordingId,
    /// Wall-clock span presented, unix ms (rounded down, end rounded up).
    pub wall_start_ms: i64,
    pub wall_end_ms: i64,
    /// Where `wall_start_ms` is presented in the clip, ms.
    pub clip_start_ms: i64,
}

/// A file ready to serve: its spec and the catalog rows it was resolved against, which give its
/// length, ETag and modification time (for a whole recording without any layout: HEAD, listings
/// and first bytes need no sample index; for a clip from its layout, built from the indexes
/// alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    spec: FileSpec,
    /// The recording (a clip's first).
    rec: Recording,
    clip: Option<ClipFacts>,
}

/// What a clip's layout says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClipFacts {
    pub len_bytes: u64,
    pub head_len_bytes: u64,
    pub etag: String,
    pub modified_ms: i64,
    /// Keys cached layouts: the largest `updated_ms` of its recordings.
    pub version: i64,
    pub spans: Vec<ClipSpan>,
    /// Presentation duration, ms.
    pub duration_ms: i64,
}

impl File {
    /// The file that is the whole of `rec`, as the row says it is now.
    pub fn whole(rec: Recording) -> File {
        File { spec: FileSpec::whole(rec.id), rec, clip: None }
    }

    /// A clip of `recs` (not empty) with the facts its layout gave.
    pub(super) fn clip(spec: FileSpec, rec: Recording, facts: ClipFacts) -> File {
        File { spec, rec, clip: Some(facts) }
    }

    pub fn spec(&self) -> &FileSpec {
        &self.spec
    }

    /// The recording it was resolved against (a clip's first).
    pub fn recording(&self) -> &Recording {
        &self.rec
    }

    /// Length of the full MP4, bytes.
    pub fn len_bytes(&self) -> u64 {
        match &self.clip {
            Some(c) => c.len_bytes,
            None => self.rec.len_bytes.max(0) as u64,
        }
    }

    /// Length of its head (`ftyp` + `moov` + `mdat` header), bytes.
    pub fn head_len_bytes(&self) -> u64 {
        match &self.clip {
            Some(c) => c.head_len_bytes,
            None => self.rec.head_len_bytes.max(0) as u64,
        }
    }

    /// Strong ETag value, without quotes.
    pub fn etag(&self) -> &str {
        match &self.clip {
            Some(c) => &c.etag,
            None => &self.rec.etag,
        }
    }

    /// Modification time, unix ms ([`Recording::modified_ms`]; a clip's: its recordings' latest).
    pub fn modified_ms(&self) -> i64 {
        match &self.clip {
            Some(c) => c.modified_ms,
            None => self.rec.modified_ms,
        }
    }

    /// Whether it is still growing (a live broadcast). A clip is a snapshot: never.
    pub fn live(&self) -> bool {
        self.clip.is_none() && self.rec.live
    }

    /// A clip's spans per recording, in clip order; empty for a whole recording.
    pub fn clip_spans(&self) -> &[ClipSpan] {
        self.clip.as_ref().map_or(&[], |c| &c.spans)
    }

    /// Presentation duration, ms.
    pub fn duration_ms(&self) -> i64 {
        self.clip.as_ref().map_or(self.rec.duration_ms, |c| c.duration_ms)
    }

    /// Whether its head is stored as an object (whole recordings; a clip's is in its layout).
    pub(super) fn head_stored(&self) -> bool {
        self.clip.is_none()
    }

    /// The version of its rows: cached layouts are keyed by spec and version.
    pub(super) fn version(&self) -> i64 {
        self.clip.as_ref().map_or(self.rec.updated_ms, |c| c.version)
    }
}
