-- jitmux catalog, PostgreSQL dialect. Keep in step with ../sqlite/0002_codecs_sessions.sql.

-- RFC 6381 codecs of a recording's tracks, comma-separated ("avc1.640028,mp4a.40.2"), so that a
-- listing tells a browser whether it can play the file. Empty when unknown.
ALTER TABLE recordings ADD COLUMN codecs TEXT NOT NULL DEFAULT '';

-- Web page sessions, opened by signing in with an API token. Only the SHA-256 of the session id
-- (the cookie value) is kept; a session ends at expires_ms, on sign-out, or when its token is
-- revoked. csrf is the per-session anti-CSRF token the page sends back on unsafe requests.
CREATE TABLE sessions (
    id_sha256 TEXT PRIMARY KEY,
    token_id BIGINT NOT NULL REFERENCES tokens (id),
    csrf TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
