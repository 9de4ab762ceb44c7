//! Audio bitstream helpers: ADTS headers (ISO/IEC 14496-3 §1.A.2), the `mp4a` + `esds` sample
//! entry (ISO/IEC 14496-12 §12.2.3, 14496-14 §5.6, 14496-1 §7.2.6), AC-3 syncframe headers
//! (ETSI TS 102 366 §4.4.1) and the `ac-3` + `dac3` sample entry (ETSI TS 102 366 Annex F).

use super::FormatError;
use super::boxes::BoxWriter;

/// Sampling frequencies in Hz by `sampling_frequency_index` (ISO/IEC 14496-3 §1.6.3.4, Table 1.18).
const AAC_RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// AAC samples per frame (one raw data block, `frameLengthFlag` 0).
pub const AAC_FRAME_SAMPLES: u32 = 1024;
/// AC-3 samples per syncframe (6 audio blocks of 256), ETSI TS 102 366 §4.1.
pub const AC3_FRAME_SAMPLES: u32 = 1536;

/// A parsed ADTS frame header (ISO/IEC 14496-3 §1.A.2.2.1 `adts_fixed_header` and
/// `adts_variable_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// Header size in bytes: 7, or 9 with `adts_error_check` (protection_absent = 0).
    pub header_len: usize,
    /// `profile_ObjectType` (audio object type − 1).
    pub profile: u8,
    pub sampling_frequency_index: u8,
    pub channel_configuration: u8,
    /// Whole frame size in bytes, header included (`frame_length`).
    pub frame_length: usize,
}

impl AdtsHeader {
    /// Sampling frequency in Hz.
    pub fn sample_rate(&self) -> u32 {
        AAC_RATES[self.sampling_frequency_index as usize]
    }
    /// Number of output channels (`channel_configuration` 7 is 8 channels, §1.6.3.5 Table 1.19).
    pub fn channels(&self) -> u16 {
        if self.channel_configuration == 7 { 8 } else { self.channel_configuration as u16 }
    }
    /// The 2-byte AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): audioObjectType (5 bits),
    /// samplingFrequencyIndex (4), channelConfiguration (4), GASpecificConfig flags all 0.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let aot = self.profile + 1;
        [
            (aot << 3) | (self.sampling_frequency_index >> 1),
            ((self.sampling_frequency_index & 1) << 7) | (self.channel_configuration << 3),
        ]
    }
}

/// Whether `b` starts with the ADTS syncword 0xFFF and layer 0 (ISO/IEC 14496-3 §1.A.2.2.1).
pub fn is_adts_sync(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0xff && b[1] & 0xf6 == 0xf0
}

/// Parses the ADTS header at the start of `b` (at least 7 bytes; `offset` is its absolute byte
/// offset, for errors). Errors on a bad syncword, reserved sampling frequency index, channel
/// configuration 0 (PCE-defined, unsupported), a frame shorter than its header, or more than one
/// raw data block per frame (unsupported).
pub fn parse_adts_header(b: &[u8], offset: u64) -> Result<AdtsHeader, FormatError> {
    if b.len() < 7 {
        return Err(FormatError::new(offset, "truncated ADTS header"));
    }
    if !is_adts_sync(b) {
        return Err(FormatError::new(offset, "bad ADTS syncword"));
    }
    let protection_absent = b[1] & 1 == 1;
    let profile = b[2] >> 6;
    let sampling_frequency_index = (b[2] >> 2) & 0xf;
    let channel_configuration = ((b[2] & 1) << 2) | (b[3] >> 6);
    let frame_length = (((b[3] & 3) as usize) << 11) | ((b[4] as usize) << 3) | (b[5] >> 5) as usize;
    let raw_blocks = (b[6] & 3) as usize + 1;
    let header_len = if protection_absent { 7 } else { 9 };
    if sampling_frequency_index as usize >= AAC_RATES.len() {
        return Err(FormatError::new(offset, format!("bad ADTS sampling_frequency_index {sampling_frequency_index}")));
    }
    if channel_configuration == 0 {
        return Err(FormatError::new(offset, "unsupported: ADTS channel_configuration 0"));
    }
    if raw_blocks != 1 {
        return Err(FormatError::new(offset, format!("unsupported: ADTS frame with {raw_blocks} raw data blocks")));
    }
    if frame_length < header_len {
        return Err(FormatError::new(offset, format!("bad ADTS frame_length {frame_length}")));
    }
    Ok(AdtsHeader { header_len, profile, sampling_frequency_index, channel_configuration, frame_length })
}

/// Writes the AudioSampleEntry fields (ISO/IEC 14496-12 §12.2.3, version 0) after the box header:
/// `samplerate` is in Hz, stored as 16.16 (0 when it does not fit in 16 bits).
fn audio_sample_entry_fields(w: &mut BoxWriter, channels: u16, sample_rate: u32) {
    w.zeros(6); // reserved
    w.u16(1); // data_reference_index
    w.zeros(8); // reserved
    w.u16(channels);
    w.u16(16); // samplesize
    w.u16(0); // pre_defined
    w.u16(0); // reserved
    w.u32(if sample_rate <= 0xffff { sample_rate << 16 } else { 0 });
}

/// Builds the `mp4a` sample entry with its `esds` box (ISO/IEC 14496-14 §5.6; descriptors of
/// ISO/IEC 14496-1 §7.2.6 with 1-byte lengths): ES_ID 0, objectTypeIndication 0x40, streamType 5,
/// zero buffer size and bitrates, DecoderSpecificInfo = the AudioSpecificConfig, SLConfig 0x02.
pub fn mp4a_sample_entry(h: &AdtsHeader) -> Vec<u8> {
    let asc = h.audio_specific_config();
    let mut w = BoxWriter::with_capacity(96);
    w.start(b"mp4a");
    audio_sample_entry_fields(&mut w, h.channels(), h.sample_rate());
    w.start_full(b"esds", 0, 0);
    let dsi_len = 2 + asc.len() as u8;
    let dcd_len = 13 + dsi_len;
    w.u8(0x03); // ES_DescrTag
    w.u8(3 + 2 + dcd_len + 3);
    w.u16(0); // ES_ID
    w.u8(0); // streamDependenceFlag, URL_Flag, OCRstreamFlag, streamPriority
    w.u8(0x04); // DecoderConfigDescrTag
    w.u8(dcd_len);
    w.u8(0x40); // objectTypeIndication: Audio ISO/IEC 14496-3
    w.u8(0x15); // streamType 5 (audio) << 2 | upStream 0 | reserved 1
    w.u24(0); // bufferSizeDB
    w.u32(0); // maxBitrate
    w.u32(0); // avgBitrate
    w.u8(0x05); // DecSpecificInfoTag
    w.u8(asc.len() as u8);
    w.bytes(&asc);
    w.u8(0x06); // SLConfigDescrTag
    w.u8(1);
    w.u8(0x02); // predefined: reserved for use in MP4 files
    w.end();
    w.end();
    w.finish()
}

/// AC-3 frame size in 16-bit words by `frmsizecod` (ETSI TS 102 366 Table 4.13), for fscod
/// 0 (48 kHz), 1 (44.1 kHz), 2 (32 kHz).
const AC3_WORDS: [[u16; 38]; 3] = [
    [
        64, 64, 80, 80, 96, 96, 112, 112, 128, 128, 160, 160, 192, 192, 224, 224, 256, 256, 320, 320, 384, 384, 448,
        448, 512, 512, 640, 640, 768, 768, 896, 896, 1024, 1024, 1152, 1152, 1280, 1280,
    ],
    [
        69, 70, 87, 88, 104, 105, 121, 122, 139, 140, 174, 175, 208, 209, 243, 244, 278, 279, 348, 349, 417, 418, 487,
        488, 557, 558, 696, 697, 835, 836, 975, 976, 1114, 1115, 1253, 1254, 1393, 1394,
    ],
    [
        96, 96, 120, 120, 144, 144, 168, 168, 192, 192, 240, 240, 288, 288, 336, 336, 384, 384, 480, 480, 576, 576,
        672, 672, 768, 768, 960, 960, 1152, 1152, 1344, 1344, 1536, 1536, 1728, 1728, 1920, 1920,
    ],
];

/// A parsed AC-3 syncframe header (ETSI TS 102 366 §4.4.1 `syncinfo` and the start of `bsi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ac3Header {
    pub fscod: u8,
    pub frmsizecod: u8,
    pub bsid: u8,
    pub bsmod: u8,
    pub acmod: u8,
    pub lfeon: bool,
    /// Syncframe size in bytes.
    pub frame_size: usize,
}

impl Ac3Header {
    /// Sampling frequency in Hz (Table 4.1).
    pub fn sample_rate(&self) -> u32 {
        [48000, 44100, 32000][self.fscod as usize]
    }
}

/// Whether `b` starts with the AC-3 syncword 0x0B77.
pub fn is_ac3_sync(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] == 0x0b && b[1] == 0x77
}

/// Parses the AC-3 syncframe header at the start of `b` (at least 8 bytes; `offset` is its
/// absolute byte offset, for errors). Errors on a bad syncword, reserved fscod/frmsizecod, or a
/// bsid above 8 (E-AC-3 and later are unsupported).
pub fn parse_ac3_header(b: &[u8], offset: u64) -> Result<Ac3Header, FormatError> {
    if b.len() < 8 {
        return Err(FormatError::new(offset, "truncated AC-3 header"));
    }
    if !is_ac3_sync(b) {
        return Err(FormatError::new(offset, "bad AC-3 syncword"));
    }
    let fscod = b[4] >> 6;
    let frmsizecod = b[4] & 0x3f;
    let bsid = b[5] >> 3;
    let bsmod = b[5] & 7;
    if bsid > 8 {
        return Err(FormatError::new(offset, format!("unsupported: AC-3 bsid {bsid} (E-AC-3?)")));
    }
    if fscod == 3 || frmsizecod > 37 {
        return Err(FormatError::new(offset, format!("bad AC-3 fscod {fscod} / frmsizecod {frmsizecod}")));
    }
    // bsi after bsmod: acmod (3), then cmixlev/surmixlev/dsurmod (2 each) as acmod dictates, lfeon.
    let bits = u16::from_be_bytes([b[6], b[7]]);
    let acmod = (bits >> 13) as u8;
    let mut pos = 3;
    if acmod & 1 == 1 && acmod != 1 {
        pos += 2; // cmixlev
    }
    if acmod & 4 == 4 {
        pos += 2; // surmixlev
    }
    if acmod == 2 {
        pos += 2; // dsurmod
    }
    let lfeon = (bits >> (15 - pos)) & 1 == 1;
    let frame_size = AC3_WORDS[fscod as usize][frmsizecod as usize] as usize * 2;
    Ok(Ac3Header { fscod, frmsizecod, bsid, bsmod, acmod, lfeon, frame_size })
}

/// Builds the `ac-3` AudioSampleEntry (channelcount 2, samplesize 16; ETSI TS 102 366 §F.3) with
/// its `dac3` box (§F.4): fscod, bsid, bsmod, acmod, lfeon, bit_rate_code = frmsizecod >> 1.
pub fn ac3_sample_entry(h: &Ac3Header) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(64);
    w.start(b"ac-3");
    audio_sample_entry_fields(&mut w, 2, h.sample_rate());
    w.start(b"dac3");
    let v = ((h.fscod as u32) << 22)
        | ((h.bsid as u32) << 17)
        | ((h.bsmod as u32) << 14)
        | ((h.acmod as u32) << 11)
        | ((h.lfeon as u32) << 10)
        | (((h.frmsizecod >> 1) as u32) << 5);
    w.u24(v);
    w.end();
    w.end();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_header_and_esds() {
        // AAC LC, 48 kHz (index 3), stereo, 7-byte header, frame_length 371.
        let len = 371usize;
        let hdr = [0xff, 0xf1, 0x4c, 0x80 | ((len >> 11) as u8), (len >> 3) as u8, ((len & 7) << 5) as u8 | 0x1f, 0xfc];
        let h = parse_adts_header(&hdr, 0).unwrap();
        assert_eq!((h.header_len, h.profile, h.sample_rate(), h.channels(), h.frame_length), (7, 1, 48000, 2, 371));
        assert_eq!(h.audio_specific_config(), [0x11, 0x90]);
        let e = mp4a_sample_entry(&h);
        assert_eq!(e.len(), 36 + 12 + 27);
        assert_eq!(&e[4..8], b"mp4a");
        assert_eq!(&e[24..28], &[0, 2, 0, 16]);
        assert_eq!(&e[32..36], &[0xbb, 0x80, 0, 0]);
        assert_eq!(&e[e.len() - 7..], &[0x05, 2, 0x11, 0x90, 0x06, 1, 2]);
        let mut two_blocks = hdr;
        two_blocks[6] |= 1;
        let err = parse_adts_header(&two_blocks, 5).unwrap_err();
        assert_eq!(err.what, "unsupported: ADTS frame with 2 raw data blocks");
        let mut no_chan = hdr;
        no_chan[3] &= 0x3f;
        assert!(parse_adts_header(&no_chan, 0).is_err());
        assert!(parse_adts_header(&hdr[..6], 0).is_err());
    }

    #[test]
    fn ac3_header_and_dac3() {
        // 48 kHz, frmsizecod 28 (384 kbit/s), bsid 8, bsmod 0, acmod 7 (3/2), lfeon 1.
        // acmod 7: cmixlev + surmixlev, then lfeon: bits 111 cc ss 1 ...
        let b = [0x0b, 0x77, 0, 0, 28, 8 << 3, 0b1110_0001, 0b0000_0000];
        let h = parse_ac3_header(&b, 0).unwrap();
        assert_eq!((h.fscod, h.frmsizecod, h.bsid, h.acmod, h.lfeon, h.frame_size), (0, 28, 8, 7, true, 1536));
        let e = ac3_sample_entry(&h);
        assert_eq!(&e[4..8], b"ac-3");
        assert_eq!(&e[e.len() - 7..e.len() - 3], b"dac3");
        let v = u32::from_be_bytes([0, e[e.len() - 3], e[e.len() - 2], e[e.len() - 1]]);
        assert_eq!(v, (8 << 17) | (7 << 11) | (1 << 10) | (14 << 5));
        // acmod 2 (stereo): dsurmod then lfeon = 0.
        let b = [0x0b, 0x77, 0, 0, 0x40 | 10, 6 << 3, 0b0101_1000, 0];
        let h = parse_ac3_header(&b, 0).unwrap();
        assert_eq!((h.acmod, h.lfeon, h.frame_size, h.sample_rate()), (2, false, 348, 44100));
        let e_ac3 = [0x0b, 0x77, 0, 0, 0, 16 << 3, 0, 0];
        assert!(parse_ac3_header(&e_ac3, 0).is_err());
    }
}
