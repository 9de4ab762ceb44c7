//! Live broadcasts across nodes: the per-camera lock under which a broadcast is assembled, and
//! the notifications that wake every node's viewers when any node appends.
//!
//! On PostgreSQL each append or end sends, inside its transaction, `NOTIFY` on
//! [`NOTIFY_CHANNEL`] with the payload `R N` ("recording R has N segments") or `R end`: the
//! database delivers it at commit, to every node listening ([`Catalog::follow_notifications`]),
//! never for a rolled-back write. Bytes never travel this way; a woken node reads the
//! recording's row and its viewers read segments from the store. Notifications sent while a
//! listener is disconnected are lost, so after each reconnection the node re-reads every
//! recording its viewers follow. SQLite has no notifications: viewers poll instead
//! ([`Catalog::polls_for_changes`]).

use std::time::Duration;

use super::{Catalog, NewRecording, Recording, Result, Segment, append_in, end_in, insert_recording_in, lock_camera};
use crate::model::{CameraId, RecordingId};

/// The PostgreSQL notification channel of live appends and ends.
pub const NOTIFY_CHANNEL: &str = "jitmux_live";

/// Sends the notification of an append (`segments`: the recording's segment count after it) or
/// of an end (`None`) in transaction `tx`; PostgreSQL delivers it at commit. Nothing on SQLite.
pub(super) async fn notify_in(
    catalog: &Catalog,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rec: RecordingId,
    segments: Option<i64>,
) -> Result<()> {
    if catalog.pg_url.is_none() {
        return Ok(());
    }
    let payload = match segments {
        Some(n) => format!("{} {n}", rec.0),
        None => format!("{} end", rec.0),
    };
    sqlx::query("SELECT pg_notify($1, $2)").bind(NOTIFY_CHANNEL).bind(payload).execute(&mut **tx).await?;
    Ok(())
}

/// What a notification says: the recording, and its segment count (`None`: it ended).
fn parse_note(payload: &str) -> Option<(RecordingId, Option<i64>)> {
    let (id, what) = payload.split_once(' ')?;
    let id = RecordingId(id.parse().ok()?);
    match what {
        "end" => Some((id, None)),
        n => Some((id, Some(n.parse().ok()?))),
    }
}

/// One camera's broadcast locked for a change: a transaction that holds the camera's write lock
/// from [`Catalog::lock_broadcast`] to [`commit`](Self::commit) (dropping it rolls everything
/// back). Appends and ends made through it are announced only once committed.
pub struct LockedBroadcast {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    catalog: Catalog,
    camera: CameraId,
    /// The broadcast's stored state when locked (`None`: no broadcast in progress).
    pub state: Option<Vec<u8>>,
    /// When the stored state was last written (the last upload), unix ms.
    updated_ms: i64,
    announce: Vec<(Recording, Option<i64>)>,
}

impl Catalog {
    /// Whether live viewers must poll the catalog to see other processes' appends (SQLite);
    /// on PostgreSQL notifications wake them.
    pub fn polls_for_changes(&self) -> bool {
        self.pg_url.is_none()
    }

    /// Locks camera `camera`'s broadcast (see [`LockedBroadcast`]); waits while another node
    /// holds it.
    pub async fn lock_broadcast(&self, camera: CameraId) -> Result<LockedBroadcast> {
        let mut tx = self.pool.begin().await?;
        lock_camera(&mut tx, camera).await?;
        let row: Option<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT state, updated_ms FROM broadcasts WHERE camera_id = $1")
                .bind(camera)
                .fetch_optional(&mut *tx)
                .await?;
        let (state, updated_ms) = match row {
            Some((s, t)) => (Some(s), t),
            None => (None, 0),
        };
        Ok(LockedBroadcast { tx, catalog: self.clone(), camera, state, updated_ms, announce: Vec::new() })
    }

    /// The stored state of camera `camera`'s broadcast as last committed, without locking it
    /// (what indexing an upload needs before the lock is taken).
    pub async fn broadcast_state(&self, camera: CameraId) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT state FROM broadcasts WHERE camera_id = $1")
            .bind(camera)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Cameras whose broadcast saw no upload since `before_ms` (unix ms).
    pub async fn idle_broadcasts(&self, before_ms: i64) -> Result<Vec<CameraId>> {
        Ok(sqlx::query_scalar("SELECT camera_id FROM broadcasts WHERE updated_ms < $1 ORDER BY camera_id")
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Wakes this node's live viewers whenever any node appends to or ends a recording they
    /// follow, forever (spawn it once per node; returns at once on SQLite). After a lost
    /// connection it listens again on a new one and then re-reads every followed recording,
    /// since notifications sent meanwhile are lost. A woken recording costs one catalog read per node,
    /// whatever the number of its viewers here.
    pub async fn follow_notifications(self) {
        let Some(url) = self.pg_url.clone() else { return };
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("catalog notifications: connect: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                tracing::warn!("catalog notifications: listen: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            // Anything committed before LISTEN took effect was not heard.
            self.reread_followed().await;
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => match parse_note(n.payload()) {
                        Some((id, segments)) => {
                            if self.changes.wants(id, segments) {
                                self.reread(id).await;
                            }
                        }
                        None => tracing::warn!("catalog notifications: bad payload {:?}", n.payload()),
                    },
                    Ok(None) => {
                        // The connection was lost: what was sent meanwhile is lost. Listen
                        // again on a new connection, then re-read (in that order, so that no
                        // append falls between the two).
                        tracing::warn!("catalog notifications: connection lost; listening again");
                        metrics::counter!("jitmux_catalog_listen_reconnects_total").increment(1);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("catalog notifications: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                }
            }
        }
    }

    async fn reread_followed(&self) {
        for id in self.changes.followed() {
            self.reread(id).await;
        }
    }

    async fn reread(&self, id: RecordingId) {
        metrics::counter!("jitmux_catalog_live_rereads_total").increment(1);
        match self.recording_by_id(id).await {
            Ok(Some(rec)) => self.changes.notify(&rec),
            Ok(None) => {}
            Err(e) => tracing::warn!(recording = %id, "catalog notifications: re-read: {e}"),
        }
    }
}

impl LockedBroadcast {
    /// Whether the broadcast saw no upload since `before_ms` (unix ms).
    pub fn idle_since(&self, before_ms: i64) -> bool {
        self.updated_ms < before_ms
    }

    /// Inserts the broadcast's recording with its first segment(s).
    pub async fn insert_recording(&mut self, r: &NewRecording) -> Result<Recording> {
        let rec = insert_recording_in(&mut self.tx, r).await?;
        let n = r.segments.last().map(|s| s.seq + 1);
        self.announce_later(&rec, n).await?;
        Ok(rec)
    }

    /// Appends `segment` to recording `rec` (its new row).
    pub async fn append_segment(&mut self, rec: &Recording, segment: &Segment) -> Result<()> {
        append_in(&mut self.tx, rec, std::slice::from_ref(segment)).await?;
        self.announce_later(rec, Some(segment.seq + 1)).await
    }

    /// Marks `rec` as no longer live.
    pub async fn end_live(&mut self, rec: &mut Recording) -> Result<()> {
        end_in(&mut self.tx, rec).await?;
        self.announce_later(rec, None).await
    }

    /// Stores the broadcast's state; `now_ms` is the time of the upload (for the idle end).
    pub async fn save(&mut self, state: &[u8], now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO broadcasts (camera_id, state, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (camera_id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
        )
        .bind(self.camera)
        .bind(state)
        .bind(now_ms)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Forgets the broadcast's state (it ended).
    pub async fn clear(&mut self) -> Result<()> {
        sqlx::query("DELETE FROM broadcasts WHERE camera_id = $1").bind(self.camera).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Commits every change made through this lock, releases it, then announces the appends
    /// and ends to this node's viewers (other nodes hear the notifications sent in the
    /// transaction).
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        for (rec, n) in &self.announce {
            match n {
                Some(n) => self.catalog.changes.notify_appended(rec, *n),
                None => self.catalog.changes.notify(rec),
            }
        }
        Ok(())
    }

    async fn announce_later(&mut self, rec: &Recording, segments: Option<i64>) -> Result<()> {
        notify_in(&self.catalog, &mut self.tx, rec.id, segments).await?;
        self.announce.retain(|(r, _)| r.id != rec.id);
        self.announce.push((rec.clone(), segments));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_parse() {
        assert_eq!(parse_note("12 7"), Some((RecordingId(12), Some(7))));
        assert_eq!(parse_note("12 end"), Some((RecordingId(12), None)));
        assert_eq!(parse_note("x 7"), None);
        assert_eq!(parse_note("12"), None);
    }
}
