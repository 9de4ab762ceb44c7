//! The media layer alone: any byte range of a file and its quasi-stream are made with no HTTP
//! request and no `AppState`, and they equal the bytes the server sends for the same file; so
//! does a whole file made into a writer's buffers (what an export writes).

use std::sync::Arc;

use axum::body::Body;
use futures::StreamExt;
use http::Request;
use http_body_util::BodyExt;
use jitmux::catalog::Catalog;
use jitmux::http::{AppState, app};
use jitmux::media::{self, File, UserMedia};
use jitmux::store::{LocalDirStore, ObjectStore};
use tower::ServiceExt;

/// The whole of `file` made by a [`media::Filler`] into buffers of `upto` bytes, each checked to
/// be filled to `upto` (but the last) without being reallocated.
async fn filled(catalog: &Catalog, media: &Arc<UserMedia>, file: &File, upto: usize) -> Vec<u8> {
    let mut f = media::filler(catalog.clone(), media.clone(), file.clone());
    let (mut out, mut last) = (Vec::new(), false);
    loop {
        // A prefix already in the buffer (as a direct-I/O buffer's alignment padding) is kept.
        let mut buf = Vec::with_capacity(upto + 3);
        buf.extend_from_slice(b"pad");
        let cap = buf.capacity();
        let buf = f.fill(buf, upto + 3).await.unwrap();
        assert_eq!(buf.capacity(), cap, "a fill never reallocates");
        assert_eq!(&buf[..3], b"pad");
        if buf.len() == 3 {
            return out;
        }
        assert!(!last, "only the last buffer is short");
        last = buf.len() < upto + 3;
        out.extend_from_slice(&buf[3..]);
    }
}

/// The local store read only through its async reads, as an S3 store is (a filler reads such a
/// store ahead on the async runtime instead of on its blocking thread).
struct AsyncReads(Arc<dyn ObjectStore>);

#[async_trait::async_trait]
impl ObjectStore for AsyncReads {
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, jitmux::store::StoreError> {
        self.0.get_range(key, range).await
    }
    async fn put(&self, key: &str, data: bytes::Bytes) -> Result<(), jitmux::store::StoreError> {
        self.0.put(key, data).await
    }
    async fn head(&self, key: &str) -> Result<Option<u64>, jitmux::store::StoreError> {
        self.0.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), jitmux::store::StoreError> {
        self.0.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, jitmux::store::StoreError> {
        self.0.list(prefix).await
    }
}

async fn server_bytes(app: &axum::Router, token: &str, uri: &str, range: Option<String>) -> (u16, Vec<u8>) {
    let mut req = Request::get(uri).header("authorization", format!("Bearer {token}"));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
}

#[tokio::test]
async fn any_range_and_the_stream_through_media_equal_what_the_server_sends() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::connect(&format!("sqlite:{}", dir.path().join("catalog.db").display())).await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(dir.path().join("objects")).unwrap());
    let (user, token) = catalog.add_user("alice").await.unwrap();
    let router = app(AppState::new(
        catalog.clone(),
        store.clone(),
        std::time::Duration::from_secs(30),
        Default::default(),
        std::time::Duration::from_secs(300),
    ));
    // A separate UserMedia from the server's own: nothing is shared but the catalog and store.
    let media = Arc::new(UserMedia::new(store.clone(), user.id, 2));
    let remote = Arc::new(UserMedia::new(Arc::new(AsyncReads(store.clone())), user.id, 2));
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for set in ["s01_h264_aac_ts_2s", "s06_h264_aac_fmp4_discontinuity", "c01_h264_2aac_lang_ts"] {
        let playlist =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sets").join(set).join("index.m3u8");
        let start = jitmux::model::parse_rfc3339_ms("2026-03-01T10:00:00Z");
        let rec = jitmux::import::import_playlist(&catalog, store.as_ref(), "alice", set, &playlist, start, None)
            .await
            .unwrap();
        let uri = format!("/v1/files/{set}/{}/{}.mp4", rec.day, rec.name);
        let (camera, rec_start) = (rec.camera_id, rec.start_ms);
        let file = File::whole(rec);
        let len = file.len_bytes();

        let whole = media::read_range(&catalog, &media, &file, 0..len).await.unwrap();
        let (status, sent) = server_bytes(&router, &token, &uri, None).await;
        assert_eq!(status, 200);
        assert!(whole[..] == sent[..], "{set}: the whole file");

        // Made into buffers: smaller than the head, odd, larger than chunks, larger than the file.
        for upto in [1000, 65_537, 1 << 20, 8 << 20] {
            assert!(filled(&catalog, &media, &file, upto).await == whole, "{set}: filled, {upto}-byte buffers");
            let read_ahead = filled(&catalog, &remote, &file, upto).await;
            assert!(read_ahead == whole, "{set}: filled from async reads, {upto}-byte buffers");
        }
        // Frame-accurate clips from inside a GOP to inside another: chunks cut at both ends.
        for (from, to) in [(1_300, 5_700), (2_010, 2_990)] {
            let cut = media::Cut {
                start_ms: rec_start + from,
                end_ms: rec_start + to,
                accuracy: media::Accuracy::Frame,
                gaps: media::Gaps::Keep,
            };
            let clip = media::open_clip(&catalog, &media, camera, cut).await.unwrap();
            let want = media::read_range(&catalog, &media, &clip, 0..clip.len_bytes()).await.unwrap();
            // A clip's layout is made where it is opened.
            let remote_clip = media::open_clip(&catalog, &remote, camera, cut).await.unwrap();
            for upto in [4_099, 1 << 20] {
                assert!(filled(&catalog, &media, &clip, upto).await == want, "{set}: clip {from}..{to} ms, {upto}");
                let read_ahead = filled(&catalog, &remote, &remote_clip, upto).await;
                assert!(read_ahead == want, "{set}: clip {from}..{to} ms from async reads, {upto}");
            }
        }

        // Ranges anywhere: in the head, across head and mdat, inside and across chunks, the end.
        let head = file.head_len_bytes();
        let mut ranges = vec![0..1, 0..head, head - 1..head + 1, len - 1..len, head..len];
        for _ in 0..40 {
            let a = rnd() % len;
            let b = a + 1 + rnd() % (len - a).min(3 << 20);
            ranges.push(a..b);
        }
        for r in ranges {
            let part = media::read_range(&catalog, &media, &file, r.clone()).await.unwrap();
            assert!(part[..] == whole[r.start as usize..r.end as usize], "{set}: media range {r:?}");
            let (status, sent) =
                server_bytes(&router, &token, &uri, Some(format!("bytes={}-{}", r.start, r.end - 1))).await;
            assert_eq!(status, 206);
            assert!(part[..] == sent[..], "{set}: range {r:?} equals the server's");
        }

        // The quasi-stream, from the start and from 10 s.
        for start in [None, Some(10.0)] {
            let mut made = Vec::new();
            let mut s = media::fragments(catalog.clone(), media.clone(), file.clone(), start, media::never_stop());
            while let Some(piece) = s.next().await {
                made.extend_from_slice(&piece.unwrap());
            }
            let q = start.map_or("?mode=stream".to_string(), |s| format!("?mode=stream&start={s}"));
            let (status, sent) = server_bytes(&router, &token, &format!("{uri}{q}"), None).await;
            assert_eq!(status, 200);
            assert!(made == sent, "{set}: quasi-stream {q}");
        }
    }
}
