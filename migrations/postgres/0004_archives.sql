-- jitmux catalog, PostgreSQL dialect. Keep in step with ../sqlite/0004_archives.sql.

-- Archives indexed in place (`jitmux import s3://…`, `jitmux scan`): a segment's object_key
-- (and init_key) is then its URL, s3://BUCKET/KEY, and these hold the object's ETag as the store
-- gave it at import; every read sends If-Match with it. NULL for jitmux's own objects, whose
-- keys are content hashes.
ALTER TABLE segments ADD COLUMN object_etag TEXT;
ALTER TABLE segments ADD COLUMN init_etag TEXT;

-- The playlist a recording was indexed from in place, and that playlist's ETag then: a scan
-- skips a playlist whose ETag is unchanged and re-indexes one that changed.
ALTER TABLE recordings ADD COLUMN source_url TEXT;
ALTER TABLE recordings ADD COLUMN source_etag TEXT;
CREATE INDEX recordings_source_url ON recordings (source_url);

-- Archive prefixes (s3://BUCKET/PREFIX/) a user's instance may read and index.
CREATE TABLE grants (
    user_id BIGINT NOT NULL REFERENCES users (id),
    url TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, url)
);
