-- jitmux catalog, SQLite dialect. Keep in step with ../postgres/0008_exports.sql.

-- Export jobs: items (clips or files of a user's tree) copied to a destination by whichever node
-- claims the job. A claim is a lease: the node renews lease_until_ms while it works; a job whose
-- lease ran out (its node died) is claimed again by another node, which skips the items already
-- done. Only the lease holder (node) writes a running job's rows.
CREATE TABLE exports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id BIGINT NOT NULL REFERENCES users (id),
    -- JSON: {"s3": "s3://BUCKET/PREFIX/"} or {"zip": {}}.
    destination TEXT NOT NULL,
    -- queued, running, succeeded, failed, cancelled.
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    finished_ms BIGINT,
    -- The node holding (or last holding) the lease, and until when it holds it, unix ms.
    node TEXT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    -- How many times the job was claimed (1 + resumptions).
    runs BIGINT NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX exports_by_state ON exports (state, id);
CREATE INDEX exports_by_user ON exports (user_id, id);

CREATE TABLE export_items (
    export_id BIGINT NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    -- Position in the job, from 0.
    seq BIGINT NOT NULL,
    -- JSON: {"clip": {...}} or {"path": "CAMERA/DAY/NAME.mp4"}, as posted.
    spec TEXT NOT NULL,
    -- Object name under the destination.
    name TEXT NOT NULL,
    -- pending, done, failed.
    state TEXT NOT NULL,
    -- The item's full length, once resolved, and how much of it was written.
    len_bytes BIGINT,
    bytes_done BIGINT NOT NULL DEFAULT 0,
    -- Strong ETag of the bytes written.
    etag TEXT,
    -- An S3 multipart upload in progress (aborted by whoever resumes the item).
    upload_id TEXT,
    -- The node that finished the item, and when.
    node TEXT,
    finished_ms BIGINT,
    error TEXT,
    PRIMARY KEY (export_id, seq)
);
