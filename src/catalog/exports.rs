//! Export jobs as a queue in the catalog: any node claims a queued job, or one whose lease ran
//! out, and holds it by renewing its lease; only the holder writes the job's rows.
//!
//! On PostgreSQL the claim is one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`: nodes
//! claiming at once each get a different job and never wait for one another. SQLite (one writer
//! at a time) runs the same statement without the locking clause. Lease times are the nodes'
//! clocks (unix ms), so nodes need clocks in step (NTP) to well within a lease.

use super::{Catalog, Result};
use crate::model::{ExportId, UserId, now_ms};

/// Where an export job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    Queued,
    Running,
    Succeeded,
    /// Finished with at least one item failed (the others were exported).
    Failed,
    Cancelled,
}

impl ExportState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportState::Queued => "queued",
            ExportState::Running => "running",
            ExportState::Succeeded => "succeeded",
            ExportState::Failed => "failed",
            ExportState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> ExportState {
        match s {
            "queued" => ExportState::Queued,
            "running" => ExportState::Running,
            "succeeded" => ExportState::Succeeded,
            "cancelled" => ExportState::Cancelled,
            _ => ExportState::Failed,
        }
    }

    /// Whether the job is over (nothing will change it any more).
    pub fn finished(self) -> bool {
        !matches!(self, ExportState::Queued | ExportState::Running)
    }
}

/// Where an item of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Pending,
    Done,
    Failed,
}

impl ItemState {
    fn parse(s: &str) -> ItemState {
        match s {
            "done" => ItemState::Done,
            "failed" => ItemState::Failed,
            _ => ItemState::Pending,
        }
    }
}

/// An export job's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    pub id: ExportId,
    pub user_id: UserId,
    /// The destination as posted (JSON).
    pub destination: String,
    pub state: ExportState,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
    /// The node holding (or that last held) the job.
    pub node: Option<String>,
    /// How many times the job was claimed: 1, plus one per resumption on another node.
    pub runs: i64,
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: ExportId,
    user_id: UserId,
    destination: String,
    state: String,
    created_ms: i64,
    updated_ms: i64,
    finished_ms: Option<i64>,
    node: Option<String>,
    runs: i64,
    error: Option<String>,
}

impl From<JobRow> for ExportJob {
    fn from(r: JobRow) -> ExportJob {
        ExportJob {
            id: r.id,
            user_id: r.user_id,
            destination: r.destination,
            state: ExportState::parse(&r.state),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            finished_ms: r.finished_ms,
            node: r.node,
            runs: r.runs,
            error: r.error,
        }
    }
}

const JOB_SELECT: &str =
    "SELECT id, user_id, destination, state, created_ms, updated_ms, finished_ms, node, runs, error FROM exports";

/// One item of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItemRow {
    /// Position in the job, from 0.
    pub seq: i64,
    /// The item as posted (JSON).
    pub spec: String,
    /// Object name under the destination.
    pub name: String,
    pub state: ItemState,
    /// Full length once resolved, bytes.
    pub len_bytes: Option<i64>,
    /// Bytes written so far (the whole length once done).
    pub bytes_done: i64,
    /// Strong ETag of what was written.
    pub etag: Option<String>,
    /// An S3 multipart upload left in progress.
    pub upload_id: Option<String>,
    /// The node that finished it, and when (unix ms).
    pub node: Option<String>,
    pub finished_ms: Option<i64>,
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ItemRow {
    seq: i64,
    spec: String,
    name: String,
    state: String,
    len_bytes: Option<i64>,
    bytes_done: i64,
    etag: Option<String>,
    upload_id: Option<String>,
    node: Option<String>,
    finished_ms: Option<i64>,
    error: Option<String>,
}

impl From<ItemRow> for ExportItemRow {
    fn from(r: ItemRow) -> ExportItemRow {
        ExportItemRow {
            seq: r.seq,
            spec: r.spec,
            name: r.name,
            state: ItemState::parse(&r.state),
            len_bytes: r.len_bytes,
            bytes_done: r.bytes_done,
            etag: r.etag,
            upload_id: r.upload_id,
            node: r.node,
            finished_ms: r.finished_ms,
            error: r.error,
        }
    }
}

/// A job's items counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportTotals {
    pub items: i64,
    pub done: i64,
    pub failed: i64,
    /// Sum of the resolved items' lengths, bytes, and how many items are resolved.
    pub len_bytes: i64,
    pub resolved: i64,
    pub bytes_done: i64,
    /// The failed items' positions and errors.
    pub errors: Vec<(i64, String)>,
}

impl ExportTotals {
    /// `items` counted.
    pub fn of(items: &[ExportItemRow]) -> ExportTotals {
        let mut t = ExportTotals::default();
        for i in items {
            t.items += 1;
            match i.state {
                ItemState::Done => t.done += 1,
                ItemState::Failed => {
                    t.failed += 1;
                    t.errors.push((i.seq, i.error.clone().unwrap_or_default()));
                }
                ItemState::Pending => {}
            }
            if let Some(n) = i.len_bytes {
                t.len_bytes += n;
                t.resolved += 1;
            }
            t.bytes_done += i.bytes_done;
        }
        t
    }
}

/// What renewing a lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still ours, extended.
    Held,
    /// The user cancelled the job.
    Cancelled,
    /// Another node holds it now (ours ran out), or it is gone.
    Lost,
}

/// How an item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Done { len_bytes: i64, etag: String },
    Failed(String),
}

/// The condition under which node `$2` may write job `$1`: it holds the running job.
const HELD: &str = "EXISTS (SELECT 1 FROM exports WHERE id = $1 AND node = $2 AND state = 'running')";

impl Catalog {
    /// Queues a job of `user` to `destination` (JSON) with `items` (spec JSON, object name).
    pub async fn create_export(
        &self,
        user: UserId,
        destination: &str,
        items: &[(String, String)],
    ) -> Result<ExportJob> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let sql = "INSERT INTO exports (user_id, destination, state, created_ms, updated_ms) \
                   VALUES ($1, $2, 'queued', $3, $3) \
                   RETURNING id, user_id, destination, state, created_ms, updated_ms, finished_ms, node, runs, error";
        let job: JobRow = sqlx::query_as(sql).bind(user).bind(destination).bind(now).fetch_one(&mut *tx).await?;
        for (seq, (spec, name)) in items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO export_items (export_id, seq, spec, name, state) VALUES ($1, $2, $3, $4, 'pending')",
            )
            .bind(job.id)
            .bind(seq as i64)
            .bind(spec)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(job.into())
    }

    /// `user`'s latest jobs (at most `limit`), newest first, each with its totals.
    pub async fn exports(&self, user: UserId, limit: i64) -> Result<Vec<(ExportJob, ExportTotals)>> {
        let sql = format!("{JOB_SELECT} WHERE user_id = $1 ORDER BY id DESC LIMIT $2");
        let jobs: Vec<JobRow> = sqlx::query_as(&sql).bind(user).bind(limit).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            let totals = self.export_totals(j.id).await?;
            out.push((j.into(), totals));
        }
        Ok(out)
    }

    /// Job `id` of `user` with its items, in order.
    pub async fn export(&self, user: UserId, id: ExportId) -> Result<Option<(ExportJob, Vec<ExportItemRow>)>> {
        let sql = format!("{JOB_SELECT} WHERE id = $1 AND user_id = $2");
        let Some(job) = sqlx::query_as::<_, JobRow>(&sql).bind(id).bind(user).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        Ok(Some((job.into(), self.export_items(id).await?)))
    }

    /// The items of job `id`, in order.
    pub async fn export_items(&self, id: ExportId) -> Result<Vec<ExportItemRow>> {
        let sql = "SELECT seq, spec, name, state, len_bytes, bytes_done, etag, upload_id, node, finished_ms, error \
                   FROM export_items WHERE export_id = $1 ORDER BY seq";
        let rows: Vec<ItemRow> = sqlx::query_as(sql).bind(id).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(ExportItemRow::from).collect())
    }

    /// Job `id`'s items counted.
    pub async fn export_totals(&self, id: ExportId) -> Result<ExportTotals> {
        Ok(ExportTotals::of(&self.export_items(id).await?))
    }

    /// Cancels job `id` of `user` if it is queued or running; returns the job as it is then
    /// (`None`: no such job). A running job's node notices at its next lease renewal.
    pub async fn cancel_export(&self, user: UserId, id: ExportId) -> Result<Option<ExportJob>> {
        let now = now_ms();
        sqlx::query(
            "UPDATE exports SET state = 'cancelled', finished_ms = $3, updated_ms = $3 \
             WHERE id = $1 AND user_id = $2 AND state IN ('queued', 'running')",
        )
        .bind(id)
        .bind(user)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let sql = format!("{JOB_SELECT} WHERE id = $1 AND user_id = $2");
        Ok(sqlx::query_as::<_, JobRow>(&sql).bind(id).bind(user).fetch_optional(&self.pool).await?.map(Into::into))
    }

    /// Claims the oldest job that is queued, or running with its lease run out (its node died
    /// or left), for `node` until `lease_ms` from now. `None`: nothing to do.
    pub async fn claim_export(&self, node: &str, lease_ms: i64) -> Result<Option<ExportJob>> {
        let now = now_ms();
        let lock = if self.pg_url.is_some() { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE exports SET state = 'running', node = $1, lease_until_ms = $2, updated_ms = $3, runs = runs + 1 \
             WHERE id = (SELECT id FROM exports \
                         WHERE state = 'queued' OR (state = 'running' AND lease_until_ms < $3) \
                         ORDER BY id LIMIT 1{lock}) \
             AND (state = 'queued' OR (state = 'running' AND lease_until_ms < $3)) \
             RETURNING id, user_id, destination, state, created_ms, updated_ms, finished_ms, node, runs, error"
        );
        let row: Option<JobRow> =
            sqlx::query_as(&sql).bind(node).bind(now + lease_ms).bind(now).fetch_optional(&self.pool).await?;
        Ok(row.map(Into::into))
    }

    /// Extends `node`'s lease on job `id` by `lease_ms` from now and records `progress` (item
    /// `seq` has `bytes` written), if the node still holds it.
    pub async fn renew_export(
        &self,
        id: ExportId,
        node: &str,
        lease_ms: i64,
        progress: Option<(i64, i64)>,
    ) -> Result<Lease> {
        let now = now_ms();
        let renewed = sqlx::query(
            "UPDATE exports SET lease_until_ms = $3, updated_ms = $4 WHERE id = $1 AND node = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(node)
        .bind(now + lease_ms)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 1 {
            if let Some((seq, bytes)) = progress {
                let sql = format!(
                    "UPDATE export_items SET bytes_done = $4 WHERE export_id = $1 AND seq = $3 AND state = 'pending' AND {HELD}"
                );
                sqlx::query(&sql).bind(id).bind(node).bind(seq).bind(bytes).execute(&self.pool).await?;
            }
            return Ok(Lease::Held);
        }
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM exports WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(if state.as_deref() == Some("cancelled") { Lease::Cancelled } else { Lease::Lost })
    }

    /// Records item `seq`'s resolved length and the multipart upload it is written through (if
    /// any), as lease holder `node`. Returns whether the node still holds the job.
    pub async fn start_export_item(
        &self,
        id: ExportId,
        node: &str,
        seq: i64,
        len_bytes: i64,
        upload_id: Option<&str>,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE export_items SET len_bytes = $4, upload_id = $5, bytes_done = 0 \
             WHERE export_id = $1 AND seq = $3 AND state = 'pending' AND {HELD}"
        );
        let n = sqlx::query(&sql)
            .bind(id)
            .bind(node)
            .bind(seq)
            .bind(len_bytes)
            .bind(upload_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Records how item `seq` ended, as lease holder `node`. Returns whether the node still
    /// holds the job (if not, nothing was written).
    pub async fn finish_export_item(&self, id: ExportId, node: &str, seq: i64, outcome: &ItemOutcome) -> Result<bool> {
        let now = now_ms();
        let (state, len, etag, error) = match outcome {
            ItemOutcome::Done { len_bytes, etag } => ("done", Some(*len_bytes), Some(etag.as_str()), None),
            ItemOutcome::Failed(e) => ("failed", None, None, Some(e.as_str())),
        };
        let sql = format!(
            "UPDATE export_items SET state = $4, len_bytes = COALESCE($5, len_bytes), \
             bytes_done = COALESCE($5, bytes_done), etag = $6, error = $7, node = $2, finished_ms = $8, \
             upload_id = NULL WHERE export_id = $1 AND seq = $3 AND state = 'pending' AND {HELD}"
        );
        let n = sqlx::query(&sql)
            .bind(id)
            .bind(node)
            .bind(seq)
            .bind(state)
            .bind(len)
            .bind(etag)
            .bind(error)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Ends job `id` held by `node` as `state` (succeeded or failed) with an optional error.
    pub async fn finish_export(
        &self,
        id: ExportId,
        node: &str,
        state: ExportState,
        error: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        let n = sqlx::query(
            "UPDATE exports SET state = $3, error = $4, finished_ms = $5, updated_ms = $5, lease_until_ms = 0 \
             WHERE id = $1 AND node = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(node)
        .bind(state.as_str())
        .bind(error)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives job `id` up (a node draining): its lease ends now, so another node claims it at
    /// once and resumes it.
    pub async fn release_export(&self, id: ExportId, node: &str) -> Result<()> {
        sqlx::query("UPDATE exports SET lease_until_ms = 0 WHERE id = $1 AND node = $2 AND state = 'running'")
            .bind(id)
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
