//! The broadcast state machine on values: real fixture segments, no store, no catalog.

use super::*;
use crate::format::mp4::Layout;
use crate::model::{CameraId, RecordingId, full_file_etag};
use bytes::Bytes;

fn camera() -> Camera {
    Camera { id: CameraId(3), user_id: UserId(7), name: "porch".into() }
}

fn seg(set: &str, i: u32) -> Bytes {
    let p = format!("{}/fixtures/sets/{set}/seg_{i:05}.ts", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(p).unwrap())
}

fn playlist(names: &[&str], ended: bool) -> MediaPlaylist {
    let mut p = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n".to_string();
    for n in names {
        p += &format!("#EXTINF:2.0,\n{n}\n");
    }
    if ended {
        p += "#EXT-X-ENDLIST\n";
    }
    crate::format::m3u8::parse(p.as_bytes()).unwrap()
}

/// Uploads a TS segment the way the driver does (index, accept, store, add).
fn upload(bc: &mut Broadcast, name: &str, data: &Bytes) -> Result<(), IngestError> {
    let job = bc.segment_job(false).unwrap();
    let indexed = index_segment(name, job, data)?;
    let pending = bc.accept(name, indexed)?;
    bc.add_pending(name.to_string(), pending);
    Ok(())
}

/// The row the catalog would return for a new recording.
fn inserted(new: &NewRecording) -> Recording {
    Recording {
        id: RecordingId(11),
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
        live: new.live,
        codecs: new.codecs.clone(),
        modified_ms: new.modified_ms,
        skipped: new.skipped.clone(),
    }
}

/// The regression test for appends that fail after being counted: a refused catalog write
/// leaves no phantom segment in the layout, the ETag or the segment numbering, and the
/// broadcast goes on with the same segment.
#[test]
fn a_refused_append_is_taken_back_whole() {
    let set = "s13_h264_only_ts_2s";
    let data: Vec<Bytes> = (0..3).map(|i| seg(set, i)).collect();
    let names = ["seg_00000.ts", "seg_00001.ts", "seg_00002.ts"];
    let mut bc = Broadcast::new(camera());
    for (n, d) in names.iter().zip(&data) {
        upload(&mut bc, n, d).unwrap();
    }
    bc.set_playlist(playlist(&names, false));
    let Step::Start(new) = bc.next_step(1_000_000) else { panic!("the first segment starts the recording") };
    assert_eq!((new.segments.len(), new.segments[0].seq, new.live), (1, 0, true));
    bc.appended(inserted(&new));

    // The second append is refused by the catalog…
    let Step::Grow(first_try, s1) = bc.next_step(1_002_000) else { panic!("the second segment grows it") };
    assert!(matches!(bc.next_step(1_002_000), Step::Wait), "one append in flight at a time");
    bc.append_failed();
    assert_eq!(bc.len(), 1, "taken back");
    assert_eq!(bc.recording().unwrap().etag, new.etag, "the recording as the catalog has it");
    // …and made again at the next step, identical: nothing of the failed try remained.
    let Step::Grow(second_try, s1_again) = bc.next_step(1_002_000) else { panic!("retried") };
    assert_eq!((second_try.clone(), s1_again.clone()), (first_try, s1.clone()));
    assert_eq!(s1.seq, 1);
    bc.appended(second_try);
    let Step::Grow(rec, s2) = bc.next_step(1_004_000) else { panic!("third") };
    assert_eq!(s2.seq, 2);
    bc.appended(rec.clone());
    assert!(matches!(bc.next_step(1_004_000), Step::Wait));

    // The end: the file is exactly the three segments.
    bc.set_playlist(playlist(&names, true));
    assert!(matches!(bc.next_step(1_005_000), Step::End));
    let (builder, ended) = bc.end().unwrap();
    let indexes: Vec<SegmentIndex> = data.iter().map(|d| crate::format::ts::index_segment(d).unwrap()).collect();
    let inputs: Vec<SegmentInput> =
        indexes.iter().map(|i| SegmentInput { index: Arc::new(i.clone()), join_before: false }).collect();
    let whole = Layout::build(&inputs).unwrap();
    let layout = builder.layout().unwrap();
    assert_eq!((layout.head, layout.len_bytes), (whole.head.clone(), whole.len_bytes));
    assert_eq!((ended.len_bytes as u64, ended.head_len_bytes as usize), (whole.len_bytes, whole.head.len()));
    let encoded: Vec<Vec<u8>> = indexes.iter().map(SegmentIndex::encode).collect();
    let shas: Vec<String> = data.iter().map(|d| sha256_hex(d)).collect();
    let etag = full_file_etag(shas.iter().zip(&encoded).map(|(s, e)| (s.as_str(), e.as_slice(), false)));
    assert_eq!(ended.etag, etag);
}

/// A segment that never arrives becomes a gap once two later ones are in; a refused upload at
/// once; the timeline joins over both.
#[test]
fn missing_and_refused_segments_become_gaps() {
    let set = "s13_h264_only_ts_2s";
    let mut bc = Broadcast::new(camera());
    let names: Vec<String> = (0..5).map(|i| format!("seg_{i:05}.ts")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    upload(&mut bc, &names[0], &seg(set, 0)).unwrap();
    bc.set_playlist(playlist(&refs[..1], false));
    let Step::Start(new) = bc.next_step(0) else { panic!() };
    bc.appended(inserted(&new));
    // seg 1 never comes; seg 2 is refused (garbage); 3 and 4 arrive.
    assert!(upload(&mut bc, &names[2], &Bytes::from(vec![0x47u8; 188 * 4])).is_err());
    bc.reject(names[2].clone());
    upload(&mut bc, &names[3], &seg(set, 3)).unwrap();
    bc.set_playlist(playlist(&refs[..4], false));
    assert!(matches!(bc.next_step(0), Step::Wait), "seg 1 may still be uploading: one later segment is in");
    upload(&mut bc, &names[4], &seg(set, 4)).unwrap();
    bc.set_playlist(playlist(&refs, false));
    let Step::Grow(rec, s3) = bc.next_step(0) else { panic!("seg 1 given up: two later ones are in") };
    assert_eq!((s3.source_name.as_str(), s3.seq, s3.join_before), ("seg_00003.ts", 1, true));
    bc.appended(rec);
    let Step::Grow(rec, s4) = bc.next_step(0) else { panic!() };
    assert_eq!((s4.seq, s4.join_before), (2, false));
    bc.appended(rec);
    bc.set_playlist(playlist(&refs, true));
    assert!(matches!(bc.next_step(0), Step::End));
}

/// A track's codec is fixed by the first segment; parameter sets sent once are carried.
#[test]
fn codec_changes_are_refused_and_parameter_sets_carried() {
    let mut bc = Broadcast::new(camera());
    upload(&mut bc, "a.ts", &seg("c03_h264_params_once_ts", 0)).unwrap();
    bc.set_playlist(playlist(&["a.ts"], false));
    let Step::Start(new) = bc.next_step(0) else { panic!() };
    bc.appended(inserted(&new));
    // H.265 into an H.264 broadcast.
    let err = upload(&mut bc, "b.ts", &seg("s03_h265_aac_ts_1s", 0)).unwrap_err();
    assert!(matches!(err, IngestError::CodecChange { kind: crate::format::index::TrackKind::Video, .. }), "{err}");
    // A later segment of the stream without SPS/PPS is indexed with the carried ones.
    upload(&mut bc, "c.ts", &seg("c03_h264_params_once_ts", 1)).unwrap();
    bc.set_playlist(playlist(&["a.ts", "b.ts", "c.ts"], false));
    bc.reject("b.ts".into());
    let Step::Grow(_, s) = bc.next_step(0) else { panic!() };
    assert_eq!(s.source_name, "c.ts");
    // Alone, that segment cannot be indexed.
    let mut fresh = Broadcast::new(camera());
    assert!(matches!(
        upload(&mut fresh, "c.ts", &seg("c03_h264_params_once_ts", 1)),
        Err(IngestError::Unparsable { .. })
    ));
}

/// A broadcast saved to the catalog goes on on another node exactly as on the node that saved
/// it: the other node restores the stored part, catches up with the appended segments, and
/// makes the very same next append; a node whose copy is current needs no catch-up.
#[test]
fn a_saved_broadcast_goes_on_on_another_node() {
    let set = "s13_h264_only_ts_2s";
    let names: Vec<String> = (0..4).map(|i| format!("seg_{i:05}.ts")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut a = Broadcast::new(camera());
    let mut appended: Vec<(Segment, SegmentIndex)> = Vec::new();
    let mut rec = None;
    for i in 0..2 {
        upload(&mut a, &names[i], &seg(set, i as u32)).unwrap();
        a.set_playlist(playlist(&refs[..=i], false));
        let (r, s) = match a.next_step(1_000_000 + i as i64) {
            Step::Start(new) => (inserted(&new), new.segments[0].clone()),
            Step::Grow(r, s) => (r, s),
            other => panic!("{other:?}"),
        };
        appended.push((s.clone(), SegmentIndex::decode(&s.sample_index).unwrap()));
        a.appended(r.clone());
        rec = Some(r);
    }
    // Segment 2 uploaded to node A, not yet named by a playlist; an upload refused once and
    // then taken (a retry) is no gap.
    upload(&mut a, &names[2], &seg(set, 2)).unwrap();
    a.reject(names[3].clone());
    upload(&mut a, &names[3], &seg(set, 3)).unwrap();
    let saved = Saved::decode(&a.save().encode()).unwrap();
    assert_eq!((saved.recording, saved.segments), (Some(11), 2));

    // Node B never saw the broadcast: it restores and catches up with both appended segments.
    let mut b = Broadcast::new(camera());
    let behind = b.restore(saved, |_| None).unwrap();
    assert_eq!(behind, Some((RecordingId(11), 0)));
    b.catch_up(rec.clone().unwrap(), appended.clone()).unwrap();
    // Node A's copy is current: nothing to catch up.
    let again = Saved::decode(&a.save().encode()).unwrap();
    assert_eq!(a.restore(again, |_| None).unwrap(), None);

    for bc in [&mut a, &mut b] {
        bc.set_playlist(playlist(&refs, true));
    }
    let (Step::Grow(ra, sa), Step::Grow(rb, sb)) = (a.next_step(1_010_000), b.next_step(1_010_000)) else {
        panic!("both append segment 2");
    };
    assert_eq!((&ra, &sa), (&rb, &sb), "the same append on either node");
    assert_eq!((sa.seq, sa.source_name.as_str(), sa.join_before), (2, "seg_00002.ts", false));
    a.appended(ra);
    b.appended(rb);
    let (Step::Grow(ra, sa), Step::Grow(rb, sb)) = (a.next_step(1_012_000), b.next_step(1_012_000)) else {
        panic!("both append segment 3: its refusal was taken back");
    };
    assert_eq!((&ra, &sa), (&rb, &sb));
    assert_eq!((sa.seq, sa.join_before), (3, false));
}
