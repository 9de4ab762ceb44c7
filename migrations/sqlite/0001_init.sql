-- jitmux catalog, SQLite dialect. Keep in step with ../postgres/0001_init.sql: same tables,
-- columns and meaning; only identity and blob types differ.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL
);

-- API tokens: only the SHA-256 of the token is kept.
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);

CREATE TABLE cameras (
    id INTEGER PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- SHA-256 of the camera's ingest key: write-only access to this camera's live ingest.
    ingest_key_sha256 TEXT UNIQUE,
    UNIQUE (user_id, name)
);

-- One recording is one file in the tree: <camera>/<day>/<name>.mp4.
CREATE TABLE recordings (
    id INTEGER PRIMARY KEY,
    camera_id BIGINT NOT NULL REFERENCES cameras (id),
    day TEXT NOT NULL,
    name TEXT NOT NULL,
    start_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    len_bytes BIGINT NOT NULL,
    -- ftyp + moov + mdat header length; those bytes are also stored as an object (see vfile.rs).
    head_len_bytes BIGINT NOT NULL,
    etag TEXT NOT NULL,
    format_version BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    -- 1 while a live broadcast is still appending segments.
    live BIGINT NOT NULL DEFAULT 0,
    UNIQUE (camera_id, day, name)
);

-- Segments of a recording in playlist order, with their sample index.
CREATE TABLE segments (
    recording_id BIGINT NOT NULL REFERENCES recordings (id),
    seq BIGINT NOT NULL,
    -- URI of the segment in its playlist.
    source_name TEXT NOT NULL,
    object_key TEXT NOT NULL,
    init_key TEXT,
    sha256 TEXT NOT NULL,
    len_bytes BIGINT NOT NULL,
    extinf_ms BIGINT NOT NULL,
    join_before BIGINT NOT NULL,
    sample_index BLOB NOT NULL,
    PRIMARY KEY (recording_id, seq)
);

-- HMAC-SHA256 keys for signed URLs. The newest unretired key signs; every unretired key
-- verifies, so rotating keeps unexpired links working until the old key is retired.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    secret_hex TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    retired_ms BIGINT
);
