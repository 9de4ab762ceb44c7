//! Live ingest cost per appended segment over a long broadcast: 1800 segments (an hour of 2 s
//! segments), timing each append at the start, the middle and the end. Flat is the goal: an
//! append extends the file incrementally (LayoutBuilder, ETag hasher) instead of laying out the
//! whole recording again.
//!
//!   cargo bench --bench live_append            (release build; about a minute)
//!
//! Two measures per segment:
//! - `state machine`: the broadcast alone (index on upload, then the append step: layout
//!   extended, summary, ETag), no I/O;
//! - `driver`: the whole ingest of one segment and its playlist through `Ingest::upload` on the
//!   embedded SQLite catalog and local store (parse, hash, store, one catalog transaction).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jitmux::catalog::{Camera, Catalog, NewRecording, Recording};
use jitmux::ingest::Ingest;
use jitmux::ingest::broadcast::{Broadcast, Step, index_segment};
use jitmux::model::{CameraId, RecordingId, UserId};
use jitmux::store::{LocalDirStore, ObjectStore};

const SEGMENTS: usize = 1800;
/// ffmpeg's default HLS window (`-hls_list_size 5`).
const WINDOW: usize = 5;

fn fixture_segments() -> Vec<Bytes> {
    let dir = format!("{}/fixtures/sets/s01_h264_aac_ts_2s", env!("CARGO_MANIFEST_DIR"));
    (0..30).map(|i| Bytes::from(std::fs::read(format!("{dir}/seg_{i:05}.ts")).unwrap())).collect()
}

fn playlist(last: usize) -> Bytes {
    let first = (last + 1).saturating_sub(WINDOW);
    let mut p = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
    for i in first..=last {
        p += &format!("#EXTINF:2.0,\nseg_{i:05}.ts\n");
    }
    Bytes::from(p)
}

fn row(new: &NewRecording) -> Recording {
    Recording {
        id: RecordingId(1),
        camera_id: new.camera_id,
        day: new.day.clone(),
        name: new.name.clone(),
        start_ms: new.start_ms,
        duration_ms: new.duration_ms,
        len_bytes: new.len_bytes,
        head_len_bytes: new.head_len_bytes,
        etag: new.etag.clone(),
        format_version: new.format_version,
        updated_ms: new.updated_ms,
        live: true,
        codecs: new.codecs.clone(),
        modified_ms: new.modified_ms,
        skipped: new.skipped.clone(),
    }
}

fn report(what: &str, times: &[Duration]) {
    let median = |r: std::ops::Range<usize>| {
        let mut v: Vec<Duration> = times[r].to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let (a, b, c) = (median(0..100), median(850..950), median(SEGMENTS - 100..SEGMENTS));
    println!(
        "{what:>14}: median per append  segments 1-100 {:>8.3} ms   851-950 {:>8.3} ms   1701-1800 {:>8.3} ms   (end/start {:.2})",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        c.as_secs_f64() * 1e3,
        c.as_secs_f64() / a.as_secs_f64()
    );
}

fn state_machine(segs: &[Bytes]) -> Vec<Duration> {
    let cam = Camera { id: CameraId(1), user_id: UserId(1), name: "bench".into() };
    let mut bc = Broadcast::new(cam);
    let mut times = Vec::with_capacity(SEGMENTS);
    for i in 0..SEGMENTS {
        let name = format!("seg_{i:05}.ts");
        let data = &segs[i % segs.len()];
        let t0 = Instant::now();
        let job = bc.segment_job(false).unwrap();
        let indexed = index_segment(&name, job, data).unwrap();
        let pending = bc.accept(&name, indexed).unwrap();
        bc.add_pending(name, pending);
        bc.set_playlist(jitmux::format::m3u8::parse(&playlist(i)).unwrap());
        match bc.next_step(i as i64 * 2000) {
            Step::Start(new) => bc.appended(row(&new)),
            Step::Grow(rec, _) => bc.appended(rec),
            other => panic!("segment {i}: {other:?}"),
        }
        times.push(t0.elapsed());
    }
    assert_eq!(bc.len(), SEGMENTS);
    times
}

async fn driver(segs: &[Bytes]) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::connect(&format!("sqlite:{}", dir.path().join("catalog.db").display())).await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(dir.path().join("objects")).unwrap());
    let (user, _) = catalog.add_user("bench").await.unwrap();
    let cam = catalog.camera_get_or_create(user.id, "bench").await.unwrap();
    let ingest = Ingest::new(catalog.clone(), store, Duration::from_secs(3600));
    let mut times = Vec::with_capacity(SEGMENTS);
    for i in 0..SEGMENTS {
        let t0 = Instant::now();
        ingest.upload(&cam, &format!("seg_{i:05}.ts"), segs[i % segs.len()].clone()).await.unwrap();
        ingest.upload(&cam, "index.m3u8", playlist(i)).await.unwrap();
        times.push(t0.elapsed());
    }
    let rec = catalog.live_recording(cam.id).await.unwrap().unwrap();
    assert_eq!(catalog.segments(rec.id).await.unwrap().len(), SEGMENTS);
    times
}

fn main() {
    let segs = fixture_segments();
    println!("{SEGMENTS} appended segments (s01: 2 s H.264 + AAC, 60 video + 94 audio samples each)");
    report("state machine", &state_machine(&segs));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    report("driver", &rt.block_on(driver(&segs)));
}
