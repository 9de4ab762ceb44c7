//! The catalog: users, tokens, web sessions, cameras, recordings and their segments' sample
//! indexes, in SQLite (embedded default, `<data-dir>/catalog.db`) or PostgreSQL (`postgres://…`),
//! through one code path: `sqlx`'s `Any` driver with portable SQL (`$n` placeholders,
//! `RETURNING`), and per-backend migrations under `migrations/{sqlite,postgres}` that differ only
//! in identity and blob types. Rows are read by column name ([`sqlx::FromRow`]).
//!
//! Times are unix milliseconds (`*_ms`); sizes are bytes (`*_bytes`).
//!
//! The reads every request makes (token, session, camera, recording, live recording, signing
//! key) are single-flight ([`coalesce`]); the live recordings' changes are announced to the
//! node's viewers ([`changes`]): at once for what this node commits, and on PostgreSQL for what
//! any node commits, through `LISTEN/NOTIFY` ([`Catalog::follow_notifications`]).
//!
//! A live broadcast in progress is assembled here, not in one node's memory
//! ([`Catalog::lock_broadcast`]): per camera, writers take the camera row's lock (PostgreSQL: a
//! row lock; SQLite: the database's write lock), so that two nodes taking the same encoder's
//! uploads at once never interleave, duplicate or drop a segment.

mod changes;
mod coalesce;
mod exports;
mod live;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use changes::Changes;
use coalesce::Coalesce;
pub use exports::{ExportItemRow, ExportJob, ExportState, ExportTotals, ItemOutcome, ItemState, Lease};
pub use live::{LockedBroadcast, NOTIFY_CHANNEL};

use crate::model::{CameraId, RecordingId, UserId, now_ms};

/// Catalog errors.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database failed or is unreachable.
    #[error("catalog: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("catalog migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported catalog URL {0:?}: use sqlite:PATH or postgres://…")]
    BadUrl(String),
    /// The request conflicts with what is stored (a name already taken).
    #[error("{0}")]
    Conflict(String),
    /// A stored value cannot be what it claims (a signing key that is not hex).
    #[error("catalog holds a corrupt value: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, CatalogError>;

/// A user: the owner of a virtual file tree.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub name: String,
}

/// A camera of a user; recordings hang under it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Camera {
    pub id: CameraId,
    pub user_id: UserId,
    pub name: String,
}

/// A recording: one `.mp4` in the tree at `<camera>/<day>/<name>.mp4`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub id: RecordingId,
    pub camera_id: CameraId,
    /// `YYYY-MM-DD`, UTC day of `start_ms`.
    pub day: String,
    /// File name without `.mp4`.
    pub name: String,
    /// Wall-clock start, unix ms.
    pub start_ms: i64,
    pub duration_ms: i64,
    /// Size of the full MP4 as laid out by `format_version`.
    pub len_bytes: i64,
    /// Length of its head (`ftyp` + `moov` + `mdat` header), stored as the object
    /// [`crate::model::keys::head`] so that a first request needs no layout (finished recordings).
    pub head_len_bytes: i64,
    /// Strong ETag value (without quotes) of the full MP4.
    pub etag: String,
    /// [`crate::format::mp4::FORMAT_VERSION`] that `len_bytes` and `etag` were computed with.
    pub format_version: i64,
    /// Last change of the row (import, append, end), unix ms; strictly increasing per append,
    /// it keys cached layouts. Not what clients see: that is `modified_ms`.
    pub updated_ms: i64,
    /// A live broadcast is still appending segments.
    pub live: bool,
    /// RFC 6381 codecs of its tracks, comma-separated (`avc1.640028,mp4a.40.2`); empty when
    /// unknown.
    pub codecs: String,
    /// The file's modification time (`Last-Modified`, listings), unix ms: the wall-clock end
    /// for a finished recording, the last append for a live one, the re-layout time after a
    /// format change.
    pub modified_ms: i64,
    /// Source streams the file does not carry, one per line; empty when none.
    pub skipped: String,
}

/// A `recordings` row as stored (`live` is a `BIGINT` 0/1 in both dialects).
#[derive(sqlx::FromRow)]
struct RecordingRow {
    id: RecordingId,
    camera_id: CameraId,
    day: String,
    name: String,
    start_ms: i64,
    duration_ms: i64,
    len_bytes: i64,
    head_len_bytes: i64,
    etag: String,
    format_version: i64,
    updated_ms: i64,
    live: i64,
    codecs: String,
    modified_ms: i64,
    skipped: String,
}

impl From<RecordingRow> for Recording {
    fn from(r: RecordingRow) -> Recording {
        Recording {
            id: r.id,
            camera_id: r.camera_id,
            day: r.day,
            name: r.name,
            start_ms: r.start_ms,
            duration_ms: r.duration_ms,
            len_bytes: r.len_bytes,
            head_len_bytes: r.head_len_bytes,
            etag: r.etag,
            format_version: r.format_version,
            updated_ms: r.updated_ms,
            live: r.live != 0,
            codecs: r.codecs,
            modified_ms: r.modified_ms,
            skipped: r.skipped,
        }
    }
}

/// One stored segment of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Position in the recording, from 0.
    pub seq: i64,
    /// URI of the segment in its playlist.
    pub source_name: String,
    /// Object store key of the segment bytes, stored unchanged.
    pub object_key: String,
    /// Object store key of the fMP4 init segment it needs, if any.
    pub init_key: Option<String>,
    /// For a segment indexed in place (`object_key` is `s3://BUCKET/KEY`): the object's ETag at
    /// import, sent as `If-Match` on every read. `None` for jitmux's own objects.
    pub object_etag: Option<String>,
    /// The same for `init_key`.
    pub init_etag: Option<String>,
    /// Hex SHA-256 of the segment bytes.
    pub sha256: String,
    pub len_bytes: i64,
    /// `#EXTINF` duration, ms.
    pub extinf_ms: i64,
    /// Timeline does not continue into this segment (discontinuity, gap, missing segment).
    pub join_before: bool,
    /// [`crate::format::index::SegmentIndex::encode`] bytes.
    pub sample_index: Vec<u8>,
}

/// A `segments` row as stored (`join_before` is a `BIGINT` 0/1).
#[derive(sqlx::FromRow)]
struct SegmentRow {
    seq: i64,
    source_name: String,
    object_key: String,
    init_key: Option<String>,
    object_etag: Option<String>,
    init_etag: Option<String>,
    sha256: String,
    len_bytes: i64,
    extinf_ms: i64,
    join_before: i64,
    sample_index: Vec<u8>,
}

impl From<SegmentRow> for Segment {
    fn from(r: SegmentRow) -> Segment {
        Segment {
            seq: r.seq,
            source_name: r.source_name,
            object_key: r.object_key,
            init_key: r.init_key,
            object_etag: r.object_etag,
            init_etag: r.init_etag,
            sha256: r.sha256,
            len_bytes: r.len_bytes,
            extinf_ms: r.extinf_ms,
            join_before: r.join_before != 0,
            sample_index: r.sample_index,
        }
    }
}

/// A recording to insert, with its segments.
#[derive(Debug, Clone)]
pub struct NewRecording {
    pub camera_id: CameraId,
    pub day: String,
    /// Wanted name; `-2`, `-3`, … is appended when taken.
    pub name: String,
    pub start_ms: i64,
    pub duration_ms: i64,
    pub len_bytes: i64,
    pub head_len_bytes: i64,
    pub etag: String,
    pub format_version: i64,
    pub updated_ms: i64,
    pub live: bool,
    /// See [`Recording::codecs`].
    pub codecs: String,
    /// See [`Recording::modified_ms`].
    pub modified_ms: i64,
    /// See [`Recording::skipped`].
    pub skipped: String,
    /// For a recording indexed in place: its playlist's URL and ETag at import.
    pub source: Option<(String, Option<String>)>,
    pub segments: Vec<Segment>,
}

/// A directory entry summary: a name and what is under it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DirSummary {
    pub name: String,
    /// Sum of the recordings' `len_bytes`.
    pub len_bytes: i64,
    pub duration_ms: i64,
    /// Latest `modified_ms` under it (unix ms).
    pub modified_ms: i64,
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenInfo {
    pub name: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A handle on the catalog database; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    reads: std::sync::Arc<Reads>,
    changes: std::sync::Arc<Changes>,
    /// The PostgreSQL URL (for the `LISTEN` connection); `None` on SQLite.
    pg_url: Option<std::sync::Arc<str>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Catalog")
    }
}

/// The reads that every request makes, coalesced.
#[derive(Default)]
struct Reads {
    user_by_token: Coalesce<String, Option<User>>,
    user_by_name: Coalesce<String, Option<User>>,
    camera: Coalesce<(UserId, String), Option<Camera>>,
    recording: Coalesce<(CameraId, String, String), Option<Recording>>,
    live_recording: Coalesce<CameraId, Option<Recording>>,
    signing_key: Coalesce<String, Option<Vec<u8>>>,
    session: Coalesce<String, Option<(User, String)>>,
}

/// Hex SHA-256 of an API token, the only form in which tokens are stored.
pub fn token_hash(token: &str) -> String {
    crate::model::sha256_hex(token.as_bytes())
}

const REC_SELECT: &str = "SELECT id, camera_id, day, name, start_ms, duration_ms, len_bytes, head_len_bytes, \
                          etag, format_version, updated_ms, live, codecs, modified_ms, skipped FROM recordings";

impl Catalog {
    /// Opens (creating it if needed) the catalog at `url` (`sqlite:PATH`, `sqlite::memory:`,
    /// `postgres://…`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Catalog> {
        sqlx::any::install_default_drivers();
        let (url, sqlite) = if url.starts_with("sqlite:") {
            let u =
                if url.contains('?') || url.contains(":memory:") { url.to_string() } else { format!("{url}?mode=rwc") };
            (u, true)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), false)
        } else {
            return Err(CatalogError::BadUrl(url.to_string()));
        };
        let mut opts = AnyPoolOptions::new().max_connections(if sqlite { 4 } else { 8 });
        if sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        if sqlite {
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        } else {
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        }
        let pg_url = (!sqlite).then(|| std::sync::Arc::from(url.as_str()));
        Ok(Catalog { pool, reads: Default::default(), changes: Default::default(), pg_url })
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The change announcements of this node's live recordings ([`Changes`]).
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Creates user `name` and a first API token named `default`; returns the user and the token
    /// (shown once; only its hash is stored). Errors with `Conflict` if the name is taken.
    pub async fn add_user(&self, name: &str) -> Result<(User, String)> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT id FROM users WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?;
        if exists.is_some() {
            return Err(CatalogError::Conflict(format!("user {name:?} already exists")));
        }
        let id: UserId = sqlx::query_scalar("INSERT INTO users (name, created_ms) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(now_ms())
            .fetch_one(&mut *tx)
            .await?;
        let token = new_token();
        sqlx::query("INSERT INTO tokens (user_id, name, token_sha256, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind("default")
            .bind(token_hash(&token))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((User { id, name: name.to_string() }, token))
    }

    /// Adds an API token named `name` for `user`; returns the token (shown once).
    pub async fn add_token(&self, user: UserId, name: &str) -> Result<String> {
        let token = new_token();
        sqlx::query("INSERT INTO tokens (user_id, name, token_sha256, created_ms) VALUES ($1, $2, $3, $4)")
            .bind(user)
            .bind(name)
            .bind(token_hash(&token))
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(token)
    }

    /// The user named `name`.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        self.reads.user_by_name.run(name.to_string(), || self.user_by_name_query(name)).await
    }

    async fn user_by_name_query(&self, name: &str) -> Result<Option<User>> {
        let q = sqlx::query_as("SELECT id, name FROM users WHERE name = $1").bind(name);
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// The user with id `id`.
    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>> {
        let q = sqlx::query_as("SELECT id, name FROM users WHERE id = $1").bind(id);
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// The user owning the unrevoked API token `token`.
    pub async fn user_by_token(&self, token: &str) -> Result<Option<User>> {
        self.reads.user_by_token.run(token.to_string(), || self.user_by_token_query(token)).await
    }

    async fn user_by_token_query(&self, token: &str) -> Result<Option<User>> {
        Ok(self.token_owner(token).await?.map(|o| o.user()))
    }

    /// The unrevoked API token `token` and the user owning it.
    async fn token_owner(&self, token: &str) -> Result<Option<TokenOwner>> {
        let q = sqlx::query_as(
            "SELECT t.id AS token_id, u.id AS user_id, u.name AS user_name FROM tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.token_sha256 = $1 AND t.revoked_ms IS NULL",
        )
        .bind(token_hash(token));
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// Opens a web session for the unrevoked API token `token`, lasting `lifetime_ms`: returns the
    /// user, the session id (the cookie value; only its hash is stored) and the session's CSRF
    /// token, or `None` for an unknown or revoked token. Expired sessions are deleted on the way.
    pub async fn open_session(&self, token: &str, lifetime_ms: i64) -> Result<Option<(User, String, String)>> {
        let Some(owner) = self.token_owner(token).await? else { return Ok(None) };
        let (id, csrf) = (new_token(), new_token());
        let now = now_ms();
        sqlx::query("DELETE FROM sessions WHERE expires_ms < $1").bind(now).execute(&self.pool).await?;
        sqlx::query(
            "INSERT INTO sessions (id_sha256, token_id, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&id))
        .bind(owner.token_id)
        .bind(&csrf)
        .bind(now)
        .bind(now + lifetime_ms)
        .execute(&self.pool)
        .await?;
        Ok(Some((owner.user(), id, csrf)))
    }

    /// The user and CSRF token of web session `id`, if it is open: not expired, not closed, and
    /// its API token not revoked.
    pub async fn session(&self, id: &str) -> Result<Option<(User, String)>> {
        self.reads.session.run(id.to_string(), || self.session_query(id)).await
    }

    async fn session_query(&self, id: &str) -> Result<Option<(User, String)>> {
        let q = sqlx::query_as::<_, SessionRow>(
            "SELECT u.id AS user_id, u.name AS user_name, s.csrf FROM sessions s \
             JOIN tokens t ON t.id = s.token_id JOIN users u ON u.id = t.user_id \
             WHERE s.id_sha256 = $1 AND s.expires_ms > $2 AND t.revoked_ms IS NULL",
        )
        .bind(token_hash(id))
        .bind(now_ms());
        Ok(q.fetch_optional(&self.pool).await?.map(|r| (User { id: r.user_id, name: r.user_name }, r.csrf)))
    }

    /// Closes web session `id` (sign-out).
    pub async fn close_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1").bind(token_hash(id)).execute(&self.pool).await?;
        Ok(())
    }

    /// The camera `name` of `user`, created if missing.
    pub async fn camera_get_or_create(&self, user: UserId, name: &str) -> Result<Camera> {
        if let Some(c) = self.camera(user, name).await? {
            return Ok(c);
        }
        let id: CameraId =
            sqlx::query_scalar("INSERT INTO cameras (user_id, name, created_ms) VALUES ($1, $2, $3) RETURNING id")
                .bind(user)
                .bind(name)
                .bind(now_ms())
                .fetch_one(&self.pool)
                .await?;
        Ok(Camera { id, user_id: user, name: name.to_string() })
    }

    /// The camera `name` of `user`.
    pub async fn camera(&self, user: UserId, name: &str) -> Result<Option<Camera>> {
        self.reads.camera.run((user, name.to_string()), || self.camera_query(user, name)).await
    }

    async fn camera_query(&self, user: UserId, name: &str) -> Result<Option<Camera>> {
        let q = sqlx::query_as("SELECT id, user_id, name FROM cameras WHERE user_id = $1 AND name = $2")
            .bind(user)
            .bind(name);
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// Inserts a recording and all its segments in one transaction (all or nothing), choosing a
    /// free name (`name`, `name-2`, …) in its day directory.
    pub async fn insert_recording(&self, r: &NewRecording) -> Result<Recording> {
        self.insert_or_replace(r, None).await
    }

    /// Replaces recording `old` (of the same camera) by `r` in one transaction: readers see
    /// the old recording or the new one, never neither or both. Used when a playlist indexed in
    /// place changed.
    pub async fn replace_recording(&self, old: RecordingId, r: &NewRecording) -> Result<Recording> {
        self.insert_or_replace(r, Some(old)).await
    }

    async fn insert_or_replace(&self, r: &NewRecording, old: Option<RecordingId>) -> Result<Recording> {
        let mut tx = self.pool.begin().await?;
        // Take the write lock first (SQLite: waits under busy_timeout instead of failing when
        // two imports race; PostgreSQL: a row lock that orders writers of one camera).
        lock_camera(&mut tx, r.camera_id).await?;
        if let Some(old) = old {
            sqlx::query("DELETE FROM segments WHERE recording_id = $1").bind(old).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM recordings WHERE id = $1 AND camera_id = $2")
                .bind(old)
                .bind(r.camera_id)
                .execute(&mut *tx)
                .await?;
        }
        let rec = insert_recording_in(&mut tx, r).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// The user's cameras with totals, by name.
    pub async fn list_cameras(&self, user: UserId) -> Result<Vec<DirSummary>> {
        let q = sqlx::query_as(
            "SELECT c.name AS name, CAST(COALESCE(SUM(r.len_bytes), 0) AS BIGINT) AS len_bytes, \
             CAST(COALESCE(SUM(r.duration_ms), 0) AS BIGINT) AS duration_ms, \
             COALESCE(MAX(r.modified_ms), MAX(c.created_ms)) AS modified_ms \
             FROM cameras c LEFT JOIN recordings r ON r.camera_id = c.id \
             WHERE c.user_id = $1 GROUP BY c.id, c.name ORDER BY c.name",
        )
        .bind(user);
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// The camera's day directories with totals, by day.
    pub async fn list_days(&self, camera: CameraId) -> Result<Vec<DirSummary>> {
        let q = sqlx::query_as(
            "SELECT day AS name, CAST(SUM(len_bytes) AS BIGINT) AS len_bytes, \
             CAST(SUM(duration_ms) AS BIGINT) AS duration_ms, MAX(modified_ms) AS modified_ms \
             FROM recordings WHERE camera_id = $1 GROUP BY day ORDER BY day",
        )
        .bind(camera);
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// The recordings of one camera and day, by start time then name.
    pub async fn list_recordings(&self, camera: CameraId, day: &str) -> Result<Vec<Recording>> {
        let sql = format!("{REC_SELECT} WHERE camera_id = $1 AND day = $2 ORDER BY start_ms, name");
        let q = sqlx::query_as::<_, RecordingRow>(&sql).bind(camera).bind(day);
        Ok(q.fetch_all(&self.pool).await?.into_iter().map(Recording::from).collect())
    }

    /// The recordings of one camera whose wall-clock span `[start_ms, start_ms + duration_ms)`
    /// overlaps `[from_ms, to_ms)` (unix ms), by start time then name: what a clip of that range
    /// is made of.
    pub async fn recordings_overlapping(&self, camera: CameraId, from_ms: i64, to_ms: i64) -> Result<Vec<Recording>> {
        let sql = format!(
            "{REC_SELECT} WHERE camera_id = $1 AND start_ms < $3 AND start_ms + duration_ms > $2 ORDER BY start_ms, name"
        );
        let q = sqlx::query_as::<_, RecordingRow>(&sql).bind(camera).bind(from_ms).bind(to_ms);
        Ok(q.fetch_all(&self.pool).await?.into_iter().map(Recording::from).collect())
    }

    /// The CRC-32 recorded for the full MP4 with strong ETag `etag`, if any.
    pub async fn file_crc(&self, etag: &str) -> Result<Option<u32>> {
        let q = sqlx::query_scalar::<_, i64>("SELECT crc32 FROM file_crcs WHERE etag = $1").bind(etag);
        Ok(q.fetch_optional(&self.pool).await?.map(|v| v as u32))
    }

    /// Records the CRC-32 of the full MP4 with strong ETag `etag` (the same bytes always give the
    /// same CRC: a second writer changes nothing).
    pub async fn set_file_crc(&self, etag: &str, crc32: u32) -> Result<()> {
        sqlx::query("INSERT INTO file_crcs (etag, crc32) VALUES ($1, $2) ON CONFLICT (etag) DO NOTHING")
            .bind(etag)
            .bind(crc32 as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The recording at `<camera>/<day>/<name>.mp4`.
    pub async fn recording(&self, camera: CameraId, day: &str, name: &str) -> Result<Option<Recording>> {
        self.reads
            .recording
            .run((camera, day.to_string(), name.to_string()), || self.recording_query(camera, day, name))
            .await
    }

    async fn recording_query(&self, camera: CameraId, day: &str, name: &str) -> Result<Option<Recording>> {
        let sql = format!("{REC_SELECT} WHERE camera_id = $1 AND day = $2 AND name = $3");
        let q = sqlx::query_as::<_, RecordingRow>(&sql).bind(camera).bind(day).bind(name);
        Ok(q.fetch_optional(&self.pool).await?.map(Recording::from))
    }

    /// Segments of a recording in playlist order.
    pub async fn segments(&self, recording: RecordingId) -> Result<Vec<Segment>> {
        self.first_segments(recording, i64::MAX).await
    }

    /// The first `n` segments of a recording in playlist order.
    pub async fn first_segments(&self, recording: RecordingId, n: i64) -> Result<Vec<Segment>> {
        self.segment_range(recording, 0, n).await
    }

    /// The segments of a recording from `seq` on, in playlist order (a node catching up with a
    /// live broadcast other nodes appended to).
    pub async fn segments_from(&self, recording: RecordingId, seq: i64) -> Result<Vec<Segment>> {
        self.segment_range(recording, seq, i64::MAX).await
    }

    async fn segment_range(&self, recording: RecordingId, from_seq: i64, n: i64) -> Result<Vec<Segment>> {
        let q = sqlx::query_as::<_, SegmentRow>(
            "SELECT seq, source_name, object_key, init_key, object_etag, init_etag, sha256, len_bytes, \
             extinf_ms, join_before, sample_index FROM segments WHERE recording_id = $1 AND seq >= $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(recording)
        .bind(from_seq)
        .bind(n);
        Ok(q.fetch_all(&self.pool).await?.into_iter().map(Segment::from).collect())
    }

    /// API tokens of a user, oldest first.
    pub async fn list_tokens(&self, user: UserId) -> Result<Vec<TokenInfo>> {
        let q =
            sqlx::query_as("SELECT name, created_ms, revoked_ms FROM tokens WHERE user_id = $1 ORDER BY id").bind(user);
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// Revokes the user's unrevoked tokens named `name`; returns how many.
    pub async fn revoke_tokens(&self, user: UserId, name: &str) -> Result<u64> {
        let r =
            sqlx::query("UPDATE tokens SET revoked_ms = $1 WHERE user_id = $2 AND name = $3 AND revoked_ms IS NULL")
                .bind(now_ms())
                .bind(user)
                .bind(name)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected())
    }

    /// The signing key used for new signed URLs, `(kid, secret)`: the newest unretired one, made
    /// if there is none.
    pub async fn current_signing_key(&self) -> Result<(String, Vec<u8>)> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT kid, secret_hex FROM signing_keys WHERE retired_ms IS NULL ORDER BY created_ms DESC, kid DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some((kid, hex)) => {
                let secret = decode_secret(&kid, &hex)?;
                Ok((kid, secret))
            }
            None => self.rotate_signing_key().await,
        }
    }

    /// Adds a new signing key, which signs from now on; older keys still verify. Its creation
    /// time is later than every other key's, even for two rotations within one millisecond, so
    /// "the newest key" is always one key.
    pub async fn rotate_signing_key(&self) -> Result<(String, Vec<u8>)> {
        use rand::RngCore;
        let mut secret = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let mut kid = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut kid);
        let kid = hex::encode(kid);
        sqlx::query(
            "INSERT INTO signing_keys (kid, secret_hex, created_ms) \
             SELECT $1, $2, CASE WHEN MAX(created_ms) >= $3 THEN MAX(created_ms) + 1 ELSE $3 END FROM signing_keys",
        )
        .bind(&kid)
        .bind(hex::encode(&secret))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok((kid, secret))
    }

    /// The secret of unretired signing key `kid`.
    pub async fn signing_key(&self, kid: &str) -> Result<Option<Vec<u8>>> {
        self.reads.signing_key.run(kid.to_string(), || self.signing_key_query(kid)).await
    }

    async fn signing_key_query(&self, kid: &str) -> Result<Option<Vec<u8>>> {
        let hex: Option<String> =
            sqlx::query_scalar("SELECT secret_hex FROM signing_keys WHERE kid = $1 AND retired_ms IS NULL")
                .bind(kid)
                .fetch_optional(&self.pool)
                .await?;
        hex.map(|h| decode_secret(kid, &h)).transpose()
    }

    /// Retires signing key `kid`: links signed with it stop working. Returns whether it existed.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE signing_keys SET retired_ms = $1 WHERE kid = $2 AND retired_ms IS NULL")
            .bind(now_ms())
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Sets a new ingest key for `camera` (replacing any previous one); returns the key (shown
    /// once; only its hash is stored).
    pub async fn new_ingest_key(&self, camera: CameraId) -> Result<String> {
        let key = format!("jmi_{}", &new_token()[3..]);
        sqlx::query("UPDATE cameras SET ingest_key_sha256 = $1 WHERE id = $2")
            .bind(token_hash(&key))
            .bind(camera)
            .execute(&self.pool)
            .await?;
        Ok(key)
    }

    /// The camera with id `id`.
    pub async fn camera_by_id(&self, id: CameraId) -> Result<Option<Camera>> {
        let q = sqlx::query_as("SELECT id, user_id, name FROM cameras WHERE id = $1").bind(id);
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// The camera that ingest key `key` may write to.
    pub async fn camera_by_ingest_key(&self, key: &str) -> Result<Option<Camera>> {
        let q =
            sqlx::query_as("SELECT id, user_id, name FROM cameras WHERE ingest_key_sha256 = $1").bind(token_hash(key));
        Ok(q.fetch_optional(&self.pool).await?)
    }

    /// The camera's most recent live recording, if any.
    pub async fn live_recording(&self, camera: CameraId) -> Result<Option<Recording>> {
        self.reads.live_recording.run(camera, || self.live_recording_query(camera)).await
    }

    async fn live_recording_query(&self, camera: CameraId) -> Result<Option<Recording>> {
        let sql = format!("{REC_SELECT} WHERE camera_id = $1 AND live = 1 ORDER BY start_ms DESC, id DESC LIMIT 1");
        let q = sqlx::query_as::<_, RecordingRow>(&sql).bind(camera);
        Ok(q.fetch_optional(&self.pool).await?.map(Recording::from))
    }

    /// The recording with id `id`.
    pub async fn recording_by_id(&self, id: RecordingId) -> Result<Option<Recording>> {
        let sql = format!("{REC_SELECT} WHERE id = $1");
        let q = sqlx::query_as::<_, RecordingRow>(&sql).bind(id);
        Ok(q.fetch_optional(&self.pool).await?.map(Recording::from))
    }

    /// Appends `segment` to the live recording `rec` and records the grown file (`rec`'s length,
    /// head length, ETag, duration, change and modification times, codecs, skipped streams) in
    /// one transaction; then announces `rec` to this node's viewers.
    pub async fn append_segment(&self, rec: &Recording, segment: &Segment) -> Result<()> {
        self.append_segments(rec, std::slice::from_ref(segment)).await
    }

    /// [`Self::append_segment`] for several segments at once (a growing playlist indexed in
    /// place gained them since the last scan), in one transaction.
    pub async fn append_segments(&self, rec: &Recording, segments: &[Segment]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        append_in(&mut tx, rec, segments).await?;
        if let Some(last) = segments.last() {
            live::notify_in(self, &mut tx, rec.id, Some(last.seq + 1)).await?;
        }
        tx.commit().await?;
        if let Some(last) = segments.last() {
            self.changes.notify_appended(rec, last.seq + 1);
        }
        Ok(())
    }

    /// Records the playlist ETag a live recording indexed in place was last brought up to.
    pub async fn set_source_etag(&self, recording: RecordingId, etag: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE recordings SET source_etag = $1 WHERE id = $2")
            .bind(etag)
            .bind(recording)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks `rec` as no longer live (the broadcast ended) and announces it to its viewers.
    pub async fn end_live(&self, rec: &mut Recording) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        end_in(&mut tx, rec).await?;
        live::notify_in(self, &mut tx, rec.id, None).await?;
        tx.commit().await?;
        self.changes.notify(rec);
        Ok(())
    }

    /// Ends every live recording not changed since `before_ms` whose camera has no broadcast in
    /// progress (a growing playlist no longer scanned, a broadcast from an older version);
    /// returns how many.
    pub async fn end_idle_live(&self, before_ms: i64) -> Result<u64> {
        // A broadcast in progress is ended by its own idle end, which stores the file's head.
        let r = sqlx::query(
            "UPDATE recordings SET live = 0 WHERE live = 1 AND updated_ms < $1 \
             AND camera_id NOT IN (SELECT camera_id FROM broadcasts)",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// The user's recording indexed in place from the playlist at `url`, with the playlist's
    /// ETag recorded then.
    pub async fn recording_by_source(&self, user: UserId, url: &str) -> Result<Option<(Recording, Option<String>)>> {
        let sql = "SELECT r.id AS id FROM recordings r JOIN cameras c ON c.id = r.camera_id \
                   WHERE c.user_id = $1 AND r.source_url = $2 ORDER BY r.id LIMIT 1";
        let id: Option<RecordingId> = sqlx::query_scalar(sql).bind(user).bind(url).fetch_optional(&self.pool).await?;
        let Some(id) = id else { return Ok(None) };
        let etag: Option<String> = sqlx::query_scalar("SELECT source_etag FROM recordings WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(self.recording_by_id(id).await?.map(|r| (r, etag)))
    }

    /// Grants `user` read access to archives under `url` (`s3://BUCKET/PREFIX/`); granting twice
    /// is a no-op.
    pub async fn grant(&self, user: UserId, url: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let have: Option<String> = sqlx::query_scalar("SELECT url FROM grants WHERE user_id = $1 AND url = $2")
            .bind(user)
            .bind(url)
            .fetch_optional(&mut *tx)
            .await?;
        if have.is_none() {
            sqlx::query("INSERT INTO grants (user_id, url, created_ms) VALUES ($1, $2, $3)")
                .bind(user)
                .bind(url)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Withdraws a grant; false if there was none.
    pub async fn revoke_grant(&self, user: UserId, url: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM grants WHERE user_id = $1 AND url = $2")
            .bind(user)
            .bind(url)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The archive prefixes granted to `user`, sorted.
    pub async fn grants(&self, user: UserId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT url FROM grants WHERE user_id = $1 ORDER BY url")
            .bind(user)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Records a recomputed layout (after a format version change); its bytes changed now, so
    /// does its modification time.
    pub async fn set_layout(
        &self,
        recording: RecordingId,
        len_bytes: i64,
        head_len_bytes: i64,
        etag: &str,
        format_version: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE recordings SET len_bytes = $1, head_len_bytes = $2, etag = $3, format_version = $4, \
             modified_ms = $5 WHERE id = $6",
        )
        .bind(len_bytes)
        .bind(head_len_bytes)
        .bind(etag)
        .bind(format_version)
        .bind(now_ms())
        .bind(recording)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// An unrevoked token and its owner.
#[derive(sqlx::FromRow)]
struct TokenOwner {
    token_id: i64,
    user_id: UserId,
    user_name: String,
}

impl TokenOwner {
    fn user(self) -> User {
        User { id: self.user_id, name: self.user_name }
    }
}

/// An open session's owner and CSRF token.
#[derive(sqlx::FromRow)]
struct SessionRow {
    user_id: UserId,
    user_name: String,
    csrf: String,
}

fn decode_secret(kid: &str, hex_secret: &str) -> Result<Vec<u8>> {
    match hex::decode(hex_secret) {
        Ok(s) if !s.is_empty() => Ok(s),
        _ => Err(CatalogError::Corrupt(format!("signing key {kid} is not a hex secret"))),
    }
}

/// Takes the write lock of camera `camera` for the rest of transaction `tx` (SQLite: the
/// database's write lock, waited for under busy_timeout; PostgreSQL: the camera row's lock).
async fn lock_camera(tx: &mut sqlx::Transaction<'_, sqlx::Any>, camera: CameraId) -> Result<()> {
    sqlx::query("UPDATE cameras SET name = name WHERE id = $1").bind(camera).execute(&mut **tx).await?;
    Ok(())
}

/// Inserts recording `r` and its segments in transaction `tx` (the camera locked), choosing a
/// free name (`name`, `name-2`, …) in its day directory.
async fn insert_recording_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, r: &NewRecording) -> Result<Recording> {
    let taken: Vec<String> = sqlx::query_scalar("SELECT name FROM recordings WHERE camera_id = $1 AND day = $2")
        .bind(r.camera_id)
        .bind(&r.day)
        .fetch_all(&mut **tx)
        .await?;
    let name = (1..)
        .map(|i| if i == 1 { r.name.clone() } else { format!("{}-{i}", r.name) })
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| unreachable!("an unbounded range always yields a free name"));
    let id: RecordingId = sqlx::query_scalar(
        "INSERT INTO recordings (camera_id, day, name, start_ms, duration_ms, len_bytes, head_len_bytes, \
         etag, format_version, updated_ms, live, codecs, modified_ms, skipped, source_url, source_etag) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) RETURNING id",
    )
    .bind(r.camera_id)
    .bind(&r.day)
    .bind(&name)
    .bind(r.start_ms)
    .bind(r.duration_ms)
    .bind(r.len_bytes)
    .bind(r.head_len_bytes)
    .bind(&r.etag)
    .bind(r.format_version)
    .bind(r.updated_ms)
    .bind(r.live as i64)
    .bind(&r.codecs)
    .bind(r.modified_ms)
    .bind(&r.skipped)
    .bind(r.source.as_ref().map(|s| s.0.clone()))
    .bind(r.source.as_ref().and_then(|s| s.1.clone()))
    .fetch_one(&mut **tx)
    .await?;
    for s in &r.segments {
        insert_segment(tx, id, s).await?;
    }
    Ok(Recording {
        id,
        camera_id: r.camera_id,
        day: r.day.clone(),
        name,
        start_ms: r.start_ms,
        duration_ms: r.duration_ms,
        len_bytes: r.len_bytes,
        head_len_bytes: r.head_len_bytes,
        etag: r.etag.clone(),
        format_version: r.format_version,
        updated_ms: r.updated_ms,
        live: r.live,
        codecs: r.codecs.clone(),
        modified_ms: r.modified_ms,
        skipped: r.skipped.clone(),
    })
}

/// Marks `rec` as no longer live in transaction `tx`.
async fn end_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, rec: &mut Recording) -> Result<()> {
    sqlx::query("UPDATE recordings SET live = 0 WHERE id = $1").bind(rec.id).execute(&mut **tx).await?;
    rec.live = false;
    Ok(())
}

/// Appends `segments` to recording `rec` and records its grown file (`rec`'s length, head
/// length, ETag, duration, change and modification times, codecs, skipped streams) in
/// transaction `tx`.
async fn append_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, rec: &Recording, segments: &[Segment]) -> Result<()> {
    for segment in segments {
        insert_segment(tx, rec.id, segment).await?;
    }
    sqlx::query(
        "UPDATE recordings SET duration_ms = $1, len_bytes = $2, head_len_bytes = $3, etag = $4, \
         format_version = $5, updated_ms = $6, modified_ms = $7, codecs = $8, skipped = $9 WHERE id = $10",
    )
    .bind(rec.duration_ms)
    .bind(rec.len_bytes)
    .bind(rec.head_len_bytes)
    .bind(&rec.etag)
    .bind(rec.format_version)
    .bind(rec.updated_ms)
    .bind(rec.modified_ms)
    .bind(&rec.codecs)
    .bind(&rec.skipped)
    .bind(rec.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_segment(tx: &mut sqlx::Transaction<'_, sqlx::Any>, recording: RecordingId, s: &Segment) -> Result<()> {
    sqlx::query(
        "INSERT INTO segments (recording_id, seq, source_name, object_key, init_key, object_etag, init_etag, \
         sha256, len_bytes, extinf_ms, join_before, sample_index) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(recording)
    .bind(s.seq)
    .bind(&s.source_name)
    .bind(&s.object_key)
    .bind(&s.init_key)
    .bind(&s.object_etag)
    .bind(&s.init_etag)
    .bind(&s.sha256)
    .bind(s.len_bytes)
    .bind(s.extinf_ms)
    .bind(s.join_before as i64)
    .bind(&s.sample_index)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Counts the SQL statements this process sends to the catalog, as
/// `jitmux_catalog_statements_total` on `/metrics`, from sqlx's own per-statement event (target
/// `sqlx::query`), whatever the log filter prints. The cost of an operation in catalog round
/// trips reads off it (e.g. statements per appended live segment).
pub struct StatementCounter;

impl StatementCounter {
    /// The tracing layer, filtered to sqlx's statement events.
    pub fn layer<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>>()
    -> impl tracing_subscriber::Layer<S> {
        use tracing_subscriber::Layer as _;
        StatementCounter
            .with_filter(tracing_subscriber::filter::Targets::new().with_target("sqlx::query", tracing::Level::TRACE))
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementCounter {
    fn on_event(&self, _event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        metrics::counter!("jitmux_catalog_statements_total").increment(1);
    }
}

/// A new random API token: `jm_` + 64 hex digits (256 bits).
fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("jm_{}", hex::encode(b))
}
