//! The catalog against both backends: SQLite (embedded default) and PostgreSQL, with the same
//! code. PostgreSQL is `JITMUX_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`); the
//! test fails rather than skips when it is unreachable, so CI cannot pass without it.

use jitmux::catalog::{Catalog, CatalogError, NewRecording, Segment};

fn pg_url() -> String {
    std::env::var("JITMUX_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn exercise(cat: &Catalog) {
    let suffix: u64 = rand_suffix();
    let name = format!("u{suffix}");
    let (user, token) = cat.add_user(&name).await.unwrap();
    assert!(matches!(cat.add_user(&name).await, Err(CatalogError::Conflict(_))));
    assert_eq!(cat.user_by_token(&token).await.unwrap(), Some(user.clone()));
    assert_eq!(cat.user_by_token("jm_nope").await.unwrap(), None);
    let t2 = cat.add_token(user.id, "second").await.unwrap();
    assert_eq!(cat.user_by_token(&t2).await.unwrap().unwrap().id, user.id);

    assert_eq!(cat.revoke_tokens(user.id, "second").await.unwrap(), 1);
    assert_eq!(cat.user_by_token(&t2).await.unwrap(), None, "revoked");
    let tokens = cat.list_tokens(user.id).await.unwrap();
    assert_eq!(
        tokens.iter().map(|t| (t.name.as_str(), t.revoked_ms.is_some())).collect::<Vec<_>>(),
        [("default", false), ("second", true)]
    );

    // Web sessions: opened by an unrevoked token, closed on sign-out or when the token is revoked.
    assert_eq!(cat.open_session(&t2, 60_000).await.unwrap(), None, "revoked token opens no session");
    let (u, sid, csrf) = cat.open_session(&token, 60_000).await.unwrap().unwrap();
    assert_eq!(u, user);
    assert_eq!(cat.session(&sid).await.unwrap(), Some((user.clone(), csrf.clone())));
    assert_eq!(cat.session(&csrf).await.unwrap(), None, "the CSRF token is no session id");
    cat.close_session(&sid).await.unwrap();
    assert_eq!(cat.session(&sid).await.unwrap(), None, "closed");
    let t3 = cat.add_token(user.id, "web").await.unwrap();
    let (_, sid3, _) = cat.open_session(&t3, 60_000).await.unwrap().unwrap();
    let (_, expired, _) = cat.open_session(&t3, -1).await.unwrap().unwrap();
    assert_eq!(cat.session(&expired).await.unwrap(), None, "expired");
    assert_eq!(cat.revoke_tokens(user.id, "web").await.unwrap(), 1);
    assert_eq!(cat.session(&sid3).await.unwrap(), None, "token revoked");

    let (k1, s1) = cat.current_signing_key().await.unwrap();
    assert_eq!(cat.signing_key(&k1).await.unwrap(), Some(s1.clone()));
    let (k2, _) = cat.rotate_signing_key().await.unwrap();
    assert_eq!(cat.current_signing_key().await.unwrap().0, k2, "the newest key signs");
    assert_eq!(cat.signing_key(&k1).await.unwrap(), Some(s1), "older keys still verify");
    assert!(cat.retire_signing_key(&k1).await.unwrap());
    assert_eq!(cat.signing_key(&k1).await.unwrap(), None);

    let cam = cat.camera_get_or_create(user.id, "front").await.unwrap();
    let key = cat.new_ingest_key(cam.id).await.unwrap();
    assert_eq!(cat.camera_by_ingest_key(&key).await.unwrap(), Some(cam.clone()));
    assert_eq!(cat.user_by_token(&key).await.unwrap(), None, "an ingest key is no API token");
    assert_eq!(cat.camera_get_or_create(user.id, "front").await.unwrap(), cam);
    let seg = |seq| Segment {
        seq,
        source_name: format!("seg_{seq}.ts"),
        object_key: format!("users/{}/segments/{seq}.ts", user.id),
        init_key: None,
        object_etag: None,
        init_etag: None,
        sha256: "ab".repeat(32),
        len_bytes: 1000,
        extinf_ms: 2000,
        join_before: seq == 1,
        sample_index: vec![1, 2, 3, seq as u8],
    };
    let new = NewRecording {
        camera_id: cam.id,
        day: "2026-03-01".into(),
        name: "10-00-00".into(),
        start_ms: 1_772_359_200_000,
        duration_ms: 4000,
        len_bytes: 123_456,
        head_len_bytes: 4096,
        etag: "v1-x".into(),
        format_version: 1,
        updated_ms: 1_772_359_300_000,
        live: false,
        codecs: "avc1.640028,mp4a.40.2".into(),
        modified_ms: 1_772_359_204_000,
        skipped: "PID 0x0103: private data (stream_type 0x06)".into(),
        source: None,
        segments: vec![seg(0), seg(1)],
    };
    let r1 = cat.insert_recording(&new).await.unwrap();
    let r2 = cat.insert_recording(&new).await.unwrap();
    assert_eq!((r1.name.as_str(), r2.name.as_str()), ("10-00-00", "10-00-00-2"), "names are made unique");
    assert_eq!(cat.segments(r1.id).await.unwrap(), vec![seg(0), seg(1)]);
    assert_eq!(cat.recording(cam.id, "2026-03-01", "10-00-00").await.unwrap(), Some(r1.clone()));
    assert_eq!(r1.codecs, "avc1.640028,mp4a.40.2");
    assert_eq!((r1.modified_ms, r1.skipped.as_str()), (new.modified_ms, new.skipped.as_str()));
    let recs = cat.list_recordings(cam.id, "2026-03-01").await.unwrap();
    assert_eq!(recs.len(), 2);
    let days = cat.list_days(cam.id).await.unwrap();
    assert_eq!((days[0].name.as_str(), days[0].len_bytes, days[0].duration_ms), ("2026-03-01", 246_912, 8000));
    assert_eq!(days[0].modified_ms, new.modified_ms, "a directory's time is its newest recording's");
    let cams = cat.list_cameras(user.id).await.unwrap();
    assert_eq!((cams[0].name.as_str(), cams[0].len_bytes), ("front", 246_912));
    assert_eq!(cat.live_recording(cam.id).await.unwrap(), None);
    cat.set_layout(r1.id, 99, 40, "v2-y", 2).await.unwrap();
    let r = cat.recording(cam.id, "2026-03-01", "10-00-00").await.unwrap().unwrap();
    assert_eq!((r.len_bytes, r.head_len_bytes, r.etag.as_str(), r.format_version), (99, 40, "v2-y", 2));
    assert!(r.modified_ms > new.modified_ms, "bytes laid out anew: modified now");

    // Indexed in place: segments by URL and ETag, the playlist's URL and ETag, replaced whole.
    let url = format!("s3://cams/{}/front/index.m3u8", user.name);
    let mut placed = new.clone();
    placed.name = "11-00-00".into();
    placed.source = Some((url.clone(), Some("\"p1\"".into())));
    placed.segments = vec![Segment {
        object_key: format!("s3://cams/{}/front/0.ts", user.name),
        object_etag: Some("\"s0\"".into()),
        ..seg(0)
    }];
    let p1 = cat.insert_recording(&placed).await.unwrap();
    let found = cat.recording_by_source(user.id, &url).await.unwrap().map(|(r, e)| (r.id, e));
    assert_eq!(found, Some((p1.id, Some("\"p1\"".into()))));
    assert_eq!(cat.segments(p1.id).await.unwrap(), placed.segments);
    placed.source = Some((url.clone(), Some("\"p2\"".into())));
    placed.segments.push(seg(1));
    let p2 = cat.replace_recording(p1.id, &placed).await.unwrap();
    assert_eq!(p2.name, "11-00-00", "the replacement takes the old name");
    // (SQLite may give the new row the id of the one it replaced.)
    if p2.id != p1.id {
        assert_eq!(cat.recording_by_id(p1.id).await.unwrap(), None);
        assert!(cat.segments(p1.id).await.unwrap().is_empty());
    }
    assert_eq!(cat.segments(p2.id).await.unwrap(), placed.segments);
    let found = cat.recording_by_source(user.id, &url).await.unwrap().map(|(r, e)| (r.id, e));
    assert_eq!(found, Some((p2.id, Some("\"p2\"".into()))));

    let g = format!("s3://cams/{}/", user.name);
    cat.grant(user.id, &g).await.unwrap();
    cat.grant(user.id, &g).await.unwrap();
    assert_eq!(cat.grants(user.id).await.unwrap(), vec![g.clone()]);
    assert!(cat.revoke_grant(user.id, &g).await.unwrap());
    assert!(!cat.revoke_grant(user.id, &g).await.unwrap());
    assert!(cat.grants(user.id).await.unwrap().is_empty());
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 ^ (std::process::id() as u64) << 40
}

#[tokio::test]
async fn sqlite_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("catalog.db").display());
    exercise(&Catalog::connect(&url).await.unwrap()).await;
    // Re-opening applies no migration twice.
    exercise(&Catalog::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_catalog() {
    // A fresh schema per run, so migrations start from nothing whatever the database holds.
    use sqlx::Executor;
    let admin = sqlx::PgPool::connect(&pg_url()).await.expect("PostgreSQL at JITMUX_TEST_PG");
    let schema = format!("jitmux_test_{}", rand_suffix() % 1_000_000_000);
    admin.execute(format!("CREATE SCHEMA {schema}").as_str()).await.unwrap();
    let sep = if pg_url().contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}options=-c%20search_path%3D{schema}", pg_url());
    let result = async {
        exercise(&Catalog::connect(&url).await.unwrap()).await;
        exercise(&Catalog::connect(&url).await.unwrap()).await;
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
        .bind(&schema)
        .fetch_one(&admin)
        .await
        .unwrap();
    admin.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(tables, 13, "migrations created the twelve tables and _sqlx_migrations in {schema}");
}

#[tokio::test]
async fn bad_url_is_rejected() {
    assert!(matches!(Catalog::connect("mysql://x").await, Err(CatalogError::BadUrl(_))));
}
