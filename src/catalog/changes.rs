//! Change notifications of live recordings on this node: the catalog announces every append and
//! every end of a broadcast it commits, carrying the recording's new row, so that live viewers
//! wake at once and need no query of their own. Viewers also re-read the catalog now and then,
//! which is how ingest on another node reaches them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::Recording;
use crate::model::RecordingId;

/// The latest announced state of each live recording that has viewers on this node.
#[derive(Default)]
pub struct Changes {
    senders: Mutex<HashMap<RecordingId, tokio::sync::watch::Sender<Option<Recording>>>>,
}

impl Changes {
    /// Announces the new state of a recording (grown, or ended) to its viewers on this node.
    pub fn notify(&self, rec: &Recording) {
        let mut m = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = m.get(&rec.id) {
            tx.send_replace(Some(rec.clone()));
        }
        m.retain(|_, tx| tx.receiver_count() > 0);
    }

    /// A receiver of the states announced for recording `id` from now on (`None` until the first).
    pub fn subscribe(&self, id: RecordingId) -> tokio::sync::watch::Receiver<Option<Recording>> {
        let mut m = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        m.entry(id).or_insert_with(|| tokio::sync::watch::channel(None).0).subscribe()
    }
}
