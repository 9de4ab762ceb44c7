-- jitmux catalog, PostgreSQL dialect. Keep in step with ../sqlite/0003_modified_tracks.sql.

-- The modification time a recording's file shows (Last-Modified, listings): its wall-clock end
-- (start + duration) for a finished recording, its last append for a live one, and the time its
-- bytes were laid out anew after a format change. Unix ms.
ALTER TABLE recordings ADD COLUMN modified_ms BIGINT NOT NULL DEFAULT 0;
UPDATE recordings SET modified_ms = CASE WHEN live = 1 THEN updated_ms ELSE start_ms + duration_ms END;

-- Source streams the file does not carry (data, subtitles, codecs MP4 cannot hold), one per
-- line ("PID 0x0102: SCTE-35 splice information (stream_type 0x86)"); empty when none.
ALTER TABLE recordings ADD COLUMN skipped TEXT NOT NULL DEFAULT '';
