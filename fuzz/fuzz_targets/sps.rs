//! H.264 / H.265 SPS parsers. The first input byte selects the codec (even: H.264, odd: H.265),
//! the rest is the SPS NAL unit (header included). On success: the display width is computable,
//! and the sample entry written from it (`avc_config` / `hevc_config`) is read back by
//! `codecs::codec_string` as `avc1.…` / `hev1.…`.
#![no_main]

use jitmux_format::{codecs, h26x};
use libfuzzer_sys::fuzz_target;

/// A PPS and a VPS that are only copied into the configuration record.
const PPS_264: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
const PPS_265: &[u8] = &[0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
const VPS_265: &[u8] = &[
    0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x00,
    0x03, 0x00, 0x5d, 0x95, 0x98, 0x09,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, nal)) = data.split_first() else { return };
    if sel & 1 == 0 {
        let Ok(sps) = h26x::parse_h264_sps(nal) else { return };
        let _ = sps.display_width();
        let cfg = h26x::avc_config(&[nal], &[PPS_264]);
        if nal.len() <= u16::MAX as usize {
            let cfg = cfg.expect("avc_config of a parsed SPS");
            let s = codecs::codec_string(&cfg.sample_entry).expect("codec_string of our avc1");
            assert!(s.starts_with("avc1."), "{s}");
        }
    } else {
        let Ok(sps) = h26x::parse_h265_sps(nal) else { return };
        let _ = sps.display_width();
        let cfg = h26x::hevc_config(&[VPS_265], &[nal], &[PPS_265]);
        if nal.len() <= u16::MAX as usize {
            let cfg = cfg.expect("hevc_config of a parsed SPS");
            let s = codecs::codec_string(&cfg.sample_entry).expect("codec_string of our hev1");
            assert!(s.starts_with("hev1."), "{s}");
        }
    }
});
