//! Output bytes pinned: the SHA-256 of the full MP4 and of the quasi-stream (from the start and
//! from 10 s) of representative fixture playlists; any change updates this table in the same
//! commit. A change to the full MP4's bytes must also bump `FORMAT_VERSION`: it is hashed into
//! every ETag, and a full file is cached and resumed by its ETag. The quasi-stream has no ETag
//! and is never stored (`no-store`), so a change to its bytes alone needs no bump.
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
    ("s01_h264_aac_ts_2s", "332101f1a271c2ac", "32de412d5f787950", "198158ef18737560"),
    ("s02_h264_aac_fmp4_2s", "1bc1d8452fef6643", "198bd24ba3c70da3", "7fd963a1d7378cfe"),
    ("s03_h265_aac_ts_1s", "894bc58495835cb4", "b42881d775357bdb", "442dfdca792736ad"),
    ("s04_h265_aac_fmp4_1s", "e6802291a75b973f", "8b87e6f23d308e16", "6c8d55ba104dbd57"),
    ("s05_h264_aac_ts_discontinuity", "67f13299e18e56c6", "ac22e38b8bb4053b", "f3db600317212c34"),
    ("s06_h264_aac_fmp4_discontinuity", "08cd3e29f36bb5e4", "6c3fa4761b72efd3", "a9705dba29ddcc59"),
    ("s07_h264_aac_ts_gap", "b7d1d330644a381a", "1254c7a375947dc3", "32ce9b05d33e69b9"),
    ("s08_h264_aac_fmp4_gap", "bb6e3049f9351d3c", "5a7f97bb3920bec0", "2d5fde4c448f5d29"),
    ("s09_h264_aac_ts_ptswrap", "332101f1a271c2ac", "32de412d5f787950", "198158ef18737560"),
    ("s10_h264_aac_fmp4_bigtfdt", "2807c65fc35e50ce", "5a879a1f7f68506b", "36392f232a3d8c28"),
    ("s11_aac_only_ts_2s", "fc26652e78af6487", "320b7bc2ce2a1b41", "8b7a8b87aed38bbc"),
    ("s12_aac_only_fmp4_2s", "d1c4c61b4c687944", "9715d591a40164c5", "129c574748b568c8"),
    ("s13_h264_only_ts_2s", "e5246e4c04f21a42", "85f4b5af97302342", "46ebece034a88ee1"),
    ("s14_h264_only_fmp4_2s", "34acfb855fd4ee9d", "1f2baa304e051500", "971fa52819971092"),
    ("r02_intel_car_ts", "2f455194a39dac62", "454bebc1e299ec5b", "1deca15a37681a50"),
    ("r04_iphone12_hevc_dv84_rot_fmp4", "08fa27aaafe57b5a", "c907532f789d2665", "473b68a5a255a1c9"),
    ("r04_iphone12_hevc_dv84_rot_ts", "75f7bac30de18f89", "251af23a9ac101cf", "e13c8f26a0eea253"),
    ("r06_iphone6_rot_vfr_fmp4", "6620037dc88eec85", "7f7aabecad0d4dff", "e8ab578b9a772739"),
    ("r06_iphone6_rot_vfr_ts", "ac3157fe995f28a5", "5f1dbc7a2d0eaba4", "bc28037e79a9b8ca"),
    ("r07_h264_high_bframes_vfr_ts", "542b2e5ebbbf19ef", "cc21d49515ef44b3", "ae213088e0d1c04d"),
    ("r09_sony_avchd_ac3_fmp4", "f7d1eb3fff571bc0", "d1abc3fcb8e3f0bb", "d1abc3fcb8e3f0bb"),
    ("r09_sony_avchd_ac3_ts", "8f42357e06ff35f8", "611fb47debed9840", "611fb47debed9840"),
    ("c01_h264_2aac_lang_ts", "39cd37c1027316eb", "f03d22455702078a", "3de5a1c28fec3bda"),
    ("c02_h264_2aac_lang_fmp4", "504aa7189b5e44eb", "9d5175f76716a3e3", "408bc424bb7a1b7b"),
    ("c03_h264_params_once_ts", "7f6b7e593b599b2f", "d8cc3c7f260ee64a", "185d589d0fe07e57"),
    ("c04_h265_params_once_ts", "b810cb04880a8f00", "0dd9e126697ad251", "e8217a16b2e96f3e"),
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
    assert_eq!(got, want, "output bytes changed (full file: bump FORMAT_VERSION too); pin:\n{table}");
}
