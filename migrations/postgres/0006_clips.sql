-- jitmux catalog, PostgreSQL dialect. Keep in step with ../sqlite/0006_clips.sql.

-- Clips look up a camera's recordings by wall-clock time.
CREATE INDEX recordings_camera_start ON recordings (camera_id, start_ms);
