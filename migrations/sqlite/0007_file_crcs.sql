-- jitmux catalog, SQLite dialect. Keep in step with ../postgres/0007_file_crcs.sql.

-- The CRC-32 (ISO 3309, as ZIP uses it) of a full MP4, keyed by its strong ETag (which names its
-- bytes): computed the first time the file goes into a ZIP, so that later ZIPs know every
-- member's CRC, and so their headers and central directory, without producing the member.
CREATE TABLE file_crcs (
    etag TEXT PRIMARY KEY,
    crc32 BIGINT NOT NULL
);
