//! What a served file is made of.

use crate::catalog::Recording;
use crate::model::RecordingId;

/// A file as data: an ordered list of recording ranges. Layouts and caches are keyed by it.
/// Today every file of the tree is one whole recording; clips, concatenations, ZIP members and
/// exports are other specs over the same machinery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileSpec {
    pub parts: Vec<Part>,
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
    /// All of it.
    Whole,
}

impl FileSpec {
    /// The file that is one whole recording.
    pub fn whole(recording: RecordingId) -> FileSpec {
        FileSpec { parts: vec![Part { recording, range: MediaRange::Whole }] }
    }
}

/// A file ready to serve: its spec and the catalog row it was resolved against, which gives its
/// length, ETag and modification time without any layout (HEAD, listings and first bytes need no
/// sample index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    spec: FileSpec,
    rec: Recording,
}

impl File {
    /// The file that is the whole of `rec`, as the row says it is now.
    pub fn whole(rec: Recording) -> File {
        File { spec: FileSpec::whole(rec.id), rec }
    }

    pub fn spec(&self) -> &FileSpec {
        &self.spec
    }

    /// The recording it was resolved against.
    pub fn recording(&self) -> &Recording {
        &self.rec
    }

    /// Length of the full MP4, bytes.
    pub fn len_bytes(&self) -> u64 {
        self.rec.len_bytes.max(0) as u64
    }

    /// Length of its head (`ftyp` + `moov` + `mdat` header), bytes.
    pub fn head_len_bytes(&self) -> u64 {
        self.rec.head_len_bytes.max(0) as u64
    }

    /// Strong ETag value, without quotes.
    pub fn etag(&self) -> &str {
        &self.rec.etag
    }

    /// Modification time, unix ms ([`Recording::modified_ms`]).
    pub fn modified_ms(&self) -> i64 {
        self.rec.modified_ms
    }

    /// Whether it is still growing (a live broadcast).
    pub fn live(&self) -> bool {
        self.rec.live
    }

    /// The version of its rows: cached layouts are keyed by spec and version.
    pub(super) fn version(&self) -> i64 {
        self.rec.updated_ms
    }
}
