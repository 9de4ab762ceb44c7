//! Output bytes pinned: the SHA-256 of the full MP4 and of the quasi-stream (from the start and
//! from 10 s) of representative fixture playlists. Any change to these bytes must bump
//! `FORMAT_VERSION` (it is hashed into every ETag) and update this table in the same commit.
//! In process, on the embedded catalog and store; no ffmpeg needed.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use jitmux::catalog::Catalog;
use jitmux::http::{AppState, app};
use jitmux::store::{LocalDirStore, ObjectStore};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

/// (set, full file, stream from 0, stream from 10 s): first 16 hex digits of SHA-256.
#[rustfmt::skip]
const PINNED: &[(&str, &str, &str, &str)] = &[
    ("s01_h264_aac_ts_2s", "332101f1a271c2ac", "a9493d9377e61f6a", "971b61051064185b"),
    ("s02_h264_aac_fmp4_2s", "1bc1d8452fef6643", "ee043f30e6783acf", "d6446d3bc995d04d"),
    ("s03_h265_aac_ts_1s", "894bc58495835cb4", "7b697493896e7fc9", "f8954149ad3e7ce1"),
    ("s04_h265_aac_fmp4_1s", "e6802291a75b973f", "33c37a0d5e555f01", "e3fb3cbbc6eb8f0f"),
    ("s05_h264_aac_ts_discontinuity", "67f13299e18e56c6", "978a91704c2c269a", "be44af6dc217e38c"),
    ("s06_h264_aac_fmp4_discontinuity", "08cd3e29f36bb5e4", "37008320ab2728d0", "d7f5888ea879f5bc"),
    ("s07_h264_aac_ts_gap", "b7d1d330644a381a", "fbef0bcea0fa7b9c", "01dddc8e5ba03358"),
    ("s08_h264_aac_fmp4_gap", "bb6e3049f9351d3c", "3bb3c840dea79438", "6716b1811eb596c7"),
    ("s09_h264_aac_ts_ptswrap", "332101f1a271c2ac", "a9493d9377e61f6a", "971b61051064185b"),
    ("s10_h264_aac_fmp4_bigtfdt", "2807c65fc35e50ce", "2f636e98014332b7", "f8fc0452114122c8"),
    ("s11_aac_only_ts_2s", "fc26652e78af6487", "9d73f5196bf1fa09", "80b95dbecf791354"),
    ("s12_aac_only_fmp4_2s", "d1c4c61b4c687944", "e8409d8784075726", "4ca428719da357ba"),
    ("s13_h264_only_ts_2s", "e5246e4c04f21a42", "7732749b14c94e0e", "dd5ee48e2eabe854"),
    ("s14_h264_only_fmp4_2s", "34acfb855fd4ee9d", "09a97e0127c10ad7", "cc07e2a6c1debc06"),
    ("r02_intel_car_ts", "2f455194a39dac62", "d6c34f6bc2038e2f", "4b68268a984f5d78"),
    ("r04_iphone12_hevc_dv84_rot_fmp4", "08fa27aaafe57b5a", "36ff64b99f341172", "28c7f4b691bef9bb"),
    ("r04_iphone12_hevc_dv84_rot_ts", "75f7bac30de18f89", "1eeb26ea0b336e50", "e3cc40c37bc9a8f4"),
    ("r06_iphone6_rot_vfr_fmp4", "6620037dc88eec85", "0b11786373379a81", "641aa5de3853e8ca"),
    ("r06_iphone6_rot_vfr_ts", "ac3157fe995f28a5", "f3f67b3a5cae7900", "6f03631502ff9722"),
    ("r07_h264_high_bframes_vfr_ts", "542b2e5ebbbf19ef", "ad634c20f5dc803f", "a19211b28edc580b"),
    ("r09_sony_avchd_ac3_fmp4", "f7d1eb3fff571bc0", "50b1ac0dec4cfe4d", "50b1ac0dec4cfe4d"),
    ("r09_sony_avchd_ac3_ts", "8f42357e06ff35f8", "4fae37796956b24c", "4fae37796956b24c"),
    ("c01_h264_2aac_lang_ts", "39cd37c1027316eb", "994ed1011975f051", "30d0e0eeaa65449d"),
    ("c02_h264_2aac_lang_fmp4", "504aa7189b5e44eb", "66343282326120ba", "3de8b722e431ee11"),
    ("c03_h264_params_once_ts", "7f6b7e593b599b2f", "8150e06196d5c71b", "e01ed04dbfa6d5ce"),
    ("c04_h265_params_once_ts", "b810cb04880a8f00", "05c5b0f81eb23ee9", "cd94e2869fc81f71"),
];

#[tokio::test]
async fn output_bytes_are_pinned() {
    assert_eq!(jitmux::format::mp4::FORMAT_VERSION, 1, "bumped: update PINNED below with the new bytes");
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::connect(&format!("sqlite:{}", dir.path().join("catalog.db").display())).await.unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDirStore::new(dir.path().join("objects")).unwrap());
    let (_, token) = catalog.add_user("p").await.unwrap();
    let mut paths = Vec::new();
    for (set, ..) in PINNED {
        let playlist =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sets").join(set).join("index.m3u8");
        let start = jitmux::model::parse_rfc3339_ms("2026-03-01T10:00:00Z");
        let rec =
            jitmux::import::import_playlist(&catalog, store.as_ref(), "p", set, &playlist, start, None).await.unwrap();
        paths.push(format!("/v1/files/{set}/{}/{}.mp4", rec.day, rec.name));
    }
    let app = app(AppState::new(
        catalog,
        store,
        std::time::Duration::from_secs(30),
        Default::default(),
        std::time::Duration::from_secs(300),
    ));
    let mut got = Vec::new();
    for ((set, ..), path) in PINNED.iter().zip(&paths) {
        let mut h = Vec::new();
        for q in ["", "?mode=stream", "?mode=stream&start=10"] {
            let req = Request::get(format!("{path}{q}"))
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{set}{q}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            h.push(hex::encode(&Sha256::digest(&body)[..8]));
        }
        got.push((set.to_string(), h[0].clone(), h[1].clone(), h[2].clone()));
    }
    let want: Vec<_> =
        PINNED.iter().map(|(s, a, b, c)| (s.to_string(), a.to_string(), b.to_string(), c.to_string())).collect();
    let table: String = got.iter().map(|(s, a, b, c)| format!("    (\"{s}\", \"{a}\", \"{b}\", \"{c}\"),\n")).collect();
    assert_eq!(got, want, "output bytes changed; bump FORMAT_VERSION and pin:\n{table}");
}
