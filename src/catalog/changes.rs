//! Change announcements of live recordings to this node's viewers: each append and each end of a
//! broadcast, carrying the recording's new row, so that live viewers wake at once and need no
//! query of their own. What this node commits is announced directly; what other nodes commit
//! arrives as a PostgreSQL notification ([`super::Catalog::follow_notifications`]), or is seen by
//! the viewers' polling on SQLite.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::Recording;
use crate::model::RecordingId;

/// One followed recording: its channel to the viewers, and the segment count last announced.
struct Followed {
    tx: tokio::sync::watch::Sender<Option<Recording>>,
    segments: Option<i64>,
}

/// The latest announced state of each live recording that has viewers on this node.
#[derive(Default)]
pub struct Changes {
    followed: Mutex<HashMap<RecordingId, Followed>>,
}

impl Changes {
    /// Announces the new state of a recording (grown, or ended) to its viewers on this node.
    pub fn notify(&self, rec: &Recording) {
        self.announce(rec, None);
    }

    /// Announces recording `rec`, grown to `segments` segments, to its viewers on this node.
    pub fn notify_appended(&self, rec: &Recording, segments: i64) {
        self.announce(rec, Some(segments));
    }

    fn announce(&self, rec: &Recording, segments: Option<i64>) {
        let mut m = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = m.get_mut(&rec.id) {
            f.tx.send_replace(Some(rec.clone()));
            if segments.is_some() {
                f.segments = segments;
            }
        }
        m.retain(|_, f| f.tx.receiver_count() > 0);
    }

    /// A receiver of the states announced for recording `id` from now on (`None` until the first).
    pub fn subscribe(&self, id: RecordingId) -> tokio::sync::watch::Receiver<Option<Recording>> {
        let mut m = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        m.entry(id)
            .or_insert_with(|| Followed { tx: tokio::sync::watch::channel(None).0, segments: None })
            .tx
            .subscribe()
    }

    /// Whether a notification about recording `id` (grown to `segments`, or ended: `None`)
    /// needs a read: it has viewers here and this node has not already announced that much.
    pub fn wants(&self, id: RecordingId, segments: Option<i64>) -> bool {
        let m = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        match (m.get(&id), segments) {
            (Some(f), Some(n)) => f.tx.receiver_count() > 0 && f.segments.is_none_or(|known| n > known),
            (Some(f), None) => f.tx.receiver_count() > 0,
            (None, _) => false,
        }
    }

    /// The recordings with viewers on this node.
    pub fn followed(&self) -> Vec<RecordingId> {
        let m = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        m.iter().filter(|(_, f)| f.tx.receiver_count() > 0).map(|(id, _)| *id).collect()
    }
}
