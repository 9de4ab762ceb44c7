//! Live ingest through its driver, in process: a store that fails writes (the finished file's
//! head, a segment) and a catalog that refuses an append leave no phantom segment, and the
//! broadcast goes on to the same file an import of what arrived makes.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use jitmux::catalog::Catalog;
use jitmux::ingest::{Ingest, IngestError};
use jitmux::store::{LocalDirStore, ObjectStore, StoreError};

/// A local store whose writes fail for head objects always, and for one chosen key once.
struct FailingStore {
    inner: LocalDirStore,
    fail_once: std::sync::Mutex<Option<String>>,
    head_puts_refused: AtomicBool,
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StoreError> {
        let io = |what: &str| StoreError::Io { key: key.to_string(), source: std::io::Error::other(what.to_string()) };
        if key.contains("/heads/") {
            self.head_puts_refused.store(true, Ordering::SeqCst);
            return Err(io("injected: head writes fail"));
        }
        let fail = {
            let mut once = self.fail_once.lock().unwrap();
            let hit = once.as_deref() == Some(key);
            if hit {
                *once = None;
            }
            hit
        };
        if fail {
            return Err(io("injected: this segment's write fails"));
        }
        self.inner.put(key, data).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
}

fn seg(i: u32) -> Bytes {
    let p = format!("{}/fixtures/sets/s13_h264_only_ts_2s/seg_{i:05}.ts", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(p).unwrap())
}

fn playlist(n: u32, ended: bool) -> Bytes {
    let mut p = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n".to_string();
    for i in 0..n {
        p += &format!("#EXTINF:2.0,\nseg_{i:05}.ts\n");
    }
    if ended {
        p += "#EXT-X-ENDLIST\n";
    }
    Bytes::from(p)
}

#[tokio::test]
async fn failed_writes_leave_no_phantom_segment_and_the_broadcast_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    let catalog = Catalog::connect(&format!("sqlite:{}", db.display())).await.unwrap();
    let (user, _) = catalog.add_user("alice").await.unwrap();
    let cam = catalog.camera_get_or_create(user.id, "porch").await.unwrap();
    let seg2_key = jitmux::model::keys::segment(user.id, &jitmux::model::sha256_hex(&seg(2)), "ts");
    let store = Arc::new(FailingStore {
        inner: LocalDirStore::new(dir.path().join("objects")).unwrap(),
        fail_once: std::sync::Mutex::new(Some(seg2_key)),
        head_puts_refused: AtomicBool::new(false),
    });
    let ingest = Ingest::new(catalog.clone(), store.clone(), std::time::Duration::from_secs(30));
    // The catalog refuses to record segment 1 while `refuse` holds a row (a real SQLite error in
    // the append's transaction, as a lost connection would give).
    let admin = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display())).await.unwrap();
    for sql in [
        "CREATE TABLE refuse (x INTEGER)",
        "INSERT INTO refuse VALUES (1)",
        "CREATE TRIGGER refuse_seq_1 BEFORE INSERT ON segments WHEN NEW.seq = 1 AND EXISTS (SELECT 1 FROM refuse) \
         BEGIN SELECT RAISE(ABORT, 'injected: the catalog refuses this append'); END",
    ] {
        sqlx::query(sql).execute(&admin).await.unwrap();
    }

    ingest.upload(&cam, "seg_00000.ts", seg(0)).await.unwrap();
    ingest.upload(&cam, "index.m3u8", playlist(1, false)).await.unwrap();
    ingest.upload(&cam, "seg_00001.ts", seg(1)).await.unwrap();
    let refused = ingest.upload(&cam, "index.m3u8", playlist(2, false)).await;
    assert!(matches!(refused, Err(IngestError::Catalog(_))), "{refused:?}");
    let live = catalog.live_recording(cam.id).await.unwrap().unwrap();
    assert_eq!(catalog.segments(live.id).await.unwrap().len(), 1, "nothing of segment 1 is recorded");
    sqlx::query("DELETE FROM refuse").execute(&admin).await.unwrap();

    // Segment 2's object cannot be stored: it is refused and becomes a gap.
    let refused = ingest.upload(&cam, "seg_00002.ts", seg(2)).await;
    assert!(matches!(refused, Err(IngestError::Store(_))), "{refused:?}");
    ingest.upload(&cam, "seg_00003.ts", seg(3)).await.unwrap();
    // The next playlist appends segment 1 (retried), gives up 2, appends 3 and ends; storing the
    // finished file's head fails, which only costs its fast first bytes.
    ingest.upload(&cam, "index.m3u8", playlist(4, true)).await.unwrap();
    assert!(store.head_puts_refused.load(Ordering::SeqCst));

    let rec = catalog.recording_by_id(live.id).await.unwrap().unwrap();
    assert!(!rec.live, "ended by EXT-X-ENDLIST");
    let segs = catalog.segments(rec.id).await.unwrap();
    let got: Vec<(i64, &str, bool)> = segs.iter().map(|s| (s.seq, s.source_name.as_str(), s.join_before)).collect();
    assert_eq!(got, [(0, "seg_00000.ts", false), (1, "seg_00001.ts", false), (2, "seg_00003.ts", true)]);

    // The same segments imported with segment 2 marked as a gap make the very same file.
    let src = tempfile::tempdir().unwrap();
    let mut pl = "#EXTM3U\n#EXT-X-VERSION:8\n#EXT-X-TARGETDURATION:2\n".to_string();
    for i in 0..4u32 {
        let name = format!("seg_{i:05}.ts");
        if i == 2 {
            pl += "#EXT-X-GAP\n";
        } else {
            std::fs::write(src.path().join(&name), seg(i)).unwrap();
        }
        pl += &format!("#EXTINF:2.0,\n{name}\n");
    }
    pl += "#EXT-X-ENDLIST\n";
    std::fs::write(src.path().join("index.m3u8"), pl).unwrap();
    let plain: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(dir.path().join("objects2")).unwrap());
    let imported = jitmux::import::import_playlist(
        &catalog,
        plain.as_ref(),
        "alice",
        "import",
        &src.path().join("index.m3u8"),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!((rec.etag.as_str(), rec.len_bytes), (imported.etag.as_str(), imported.len_bytes));
    let media = Arc::new(jitmux::media::UserMedia::new(store.clone(), user.id, 2));
    let file = jitmux::media::File::whole(rec);
    let bytes = jitmux::media::read_range(&catalog, &media, &file, 0..file.len_bytes()).await.unwrap();
    assert_eq!(bytes.len() as u64, file.len_bytes(), "served from the layout (no head object)");
}

/// Two nodes (two catalog connections, two `Ingest`s, one store) on one PostgreSQL database take
/// one encoder's uploads in turn and at once, as behind a round-robin load balancer: the
/// broadcast is one recording with every segment once and in order, the same file an import of
/// the playlist makes; the second node's viewers are woken by the first node's appends
/// (`LISTEN/NOTIFY`).
#[tokio::test]
async fn two_nodes_assemble_one_broadcast_on_postgresql() {
    use sqlx::Executor;
    let pg = std::env::var("JITMUX_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = sqlx::PgPool::connect(&pg).await.expect("PostgreSQL at JITMUX_TEST_PG");
    let schema = format!("jitmux_ingest_{}", std::process::id());
    admin.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}").as_str()).await.unwrap();
    let url = format!("{pg}?options=-c%20search_path%3D{schema}");
    let result = async {
        let a = Catalog::connect(&url).await.unwrap();
        let b = Catalog::connect(&url).await.unwrap();
        let (user, _) = a.add_user("alice").await.unwrap();
        let cam = a.camera_get_or_create(user.id, "porch").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(dir.path().join("objects")).unwrap());
        let nodes = [
            Arc::new(Ingest::new(a.clone(), store.clone(), std::time::Duration::from_secs(30))),
            Arc::new(Ingest::new(b.clone(), store.clone(), std::time::Duration::from_secs(30))),
        ];
        tokio::spawn(b.clone().follow_notifications());
        let n = 30u32;
        let mut woken = None;
        for i in 0..n {
            // Segment i on one node while the playlist naming segment i-1 goes to the other,
            // at the same time.
            let seg_node = nodes[(i % 2) as usize].clone();
            let pl_node = nodes[((i + 1) % 2) as usize].clone();
            let c1 = cam.clone();
            let c2 = cam.clone();
            let s = tokio::spawn(async move { seg_node.upload(&c1, &format!("seg_{i:05}.ts"), seg(i)).await });
            let p = tokio::spawn(async move { pl_node.upload(&c2, "index.m3u8", playlist(i, false)).await });
            s.await.unwrap().unwrap();
            p.await.unwrap().unwrap();
            if i == 3 {
                let rec = a.live_recording(cam.id).await.unwrap().expect("live after the first playlists");
                woken = Some(b.changes().subscribe(rec.id));
                // Let the listener start before counting on it.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
        // Node B's viewers hear node A's appends.
        let mut rx = woken.unwrap();
        nodes[0].upload(&cam, "index.m3u8", playlist(n, false)).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("node B woken by node A's append")
            .unwrap();
        // Node B's LISTEN connection is cut (as a database failover or a network blip would):
        // it listens again and re-reads, and its viewers still hear the next append.
        let listening = "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%jitmux_live%' AND state = 'idle'";
        let pids: Vec<i32> = sqlx::query_scalar(listening).fetch_all(&admin).await.unwrap();
        assert!(!pids.is_empty(), "node B listens");
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&admin).await.unwrap();
        }
        let t0 = std::time::Instant::now();
        loop {
            let now: Vec<i32> = sqlx::query_scalar(listening).fetch_all(&admin).await.unwrap();
            if now.iter().any(|p| !pids.contains(p)) {
                break;
            }
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "node B listens again");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        rx.borrow_and_update();
        nodes[0].upload(&cam, "index.m3u8", playlist(n, true)).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .expect("node B woken after its listener reconnected")
            .unwrap();

        let rec = b.live_recording(cam.id).await.unwrap();
        assert!(rec.is_none(), "ended by EXT-X-ENDLIST");
        let recs = a.list_recordings(cam.id, &a.list_days(cam.id).await.unwrap()[0].name).await.unwrap();
        assert_eq!(recs.len(), 1, "one recording");
        let segs = a.segments(recs[0].id).await.unwrap();
        let names: Vec<String> = segs.iter().map(|s| s.source_name.clone()).collect();
        let want: Vec<String> = (0..n).map(|i| format!("seg_{i:05}.ts")).collect();
        assert_eq!(names, want, "every segment once, in order");
        assert!(segs.iter().enumerate().all(|(i, s)| s.seq == i as i64 && !s.join_before));

        let imported = jitmux::import::import_playlist(
            &a,
            store.as_ref(),
            "alice",
            "import",
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sets/s13_h264_only_ts_2s/index.m3u8"),
            None,
            None,
        )
        .await
        .unwrap();
        assert_eq!(a.segments(imported.id).await.unwrap().len(), segs.len(), "the fixture has {n} segments");
        assert_eq!(
            (recs[0].etag.as_str(), recs[0].len_bytes),
            (imported.etag.as_str(), imported.len_bytes),
            "the same file as the import"
        );
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    admin.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
