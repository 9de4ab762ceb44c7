-- jitmux catalog, PostgreSQL dialect. Keep in step with ../sqlite/0005_broadcasts.sql.

-- A live broadcast in progress, assembled in the catalog so that any node may take any of the
-- encoder's uploads: the uploads not yet appended, the last playlist's entries not yet consumed,
-- init segments, gaps, parameter sets carried (a JSON document written by src/ingest). Writers
-- lock the camera row first (`UPDATE cameras SET name = name`), then read, change and write this
-- row and the recording in one transaction. updated_ms is the last upload, for the idle end.
CREATE TABLE broadcasts (
    camera_id BIGINT PRIMARY KEY REFERENCES cameras (id),
    state BYTEA NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX broadcasts_updated_ms ON broadcasts (updated_ms);
