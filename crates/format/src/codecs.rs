//! What a sample entry holds, read back: the RFC 6381 `codecs` parameter of a track (so a page
//! can ask its browser `canPlayType('video/mp4; codecs="…"')` before offering a player), and the
//! H.264 parameter sets of an `avcC` (so one sync sample can be handed to a decoder alone).
//!
//! Input is always a complete sample entry box as [`super::index::TrackConfig::sample_entry`]
//! holds it: `avc1`/`avc3` + `avcC`, `hev1`/`hvc1` + `hvcC`, `mp4a` + `esds`, `ac-3` + `dac3`.

use super::FormatError;
use super::boxes::Boxes;
use super::bytes::Reader;

/// Size of the VisualSampleEntry fields between the box header and the first child box
/// (ISO/IEC 14496-12 §12.1.3), bytes.
const VISUAL_FIELDS_LEN: usize = 78;
/// Size of the AudioSampleEntry (version 0) fields before the first child box (§12.2.3), bytes.
const AUDIO_FIELDS_LEN: usize = 28;

/// The sample entry's FourCC and the body of its configuration box (`avcC`, `hvcC`, `esds`), if
/// it is of a type that has one and the box is present.
fn sample_entry_config(entry: &[u8]) -> Result<([u8; 4], Option<&[u8]>), FormatError> {
    let b = Boxes::new(entry, 0, entry.len()).next().ok_or_else(|| FormatError::new(0, "empty sample entry"))??;
    if b.end != entry.len() {
        return Err(FormatError::new(0, "sample entry size does not match its bytes"));
    }
    let (fields, config) = match &b.fourcc {
        b"avc1" | b"avc3" => (VISUAL_FIELDS_LEN, b"avcC"),
        b"hev1" | b"hvc1" => (VISUAL_FIELDS_LEN, b"hvcC"),
        b"mp4a" => (AUDIO_FIELDS_LEN, b"esds"),
        _ => return Ok((b.fourcc, None)),
    };
    for child in Boxes::new(entry, (b.body + fields).min(b.end), b.end) {
        let child = child?;
        if &child.fourcc == config {
            return Ok((b.fourcc, Some(&entry[child.body..child.end])));
        }
    }
    Ok((b.fourcc, None))
}

/// The RFC 6381 §3.3 codecs parameter of one track: `avc1.PPCCLL` (ISO/IEC 14496-15 Annex E.2),
/// `hev1.P.C.TL.CC…` / `hvc1.…` (Annex E.3), `mp4a.40.AOT` (RFC 6381 §3.3), `ac-3`. Any other or
/// unreadable entry gives its FourCC alone.
pub fn codec_string(sample_entry: &[u8]) -> Result<String, FormatError> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    let (fourcc, child) = sample_entry_config(sample_entry)?;
    let name = String::from_utf8_lossy(&fourcc).into_owned();
    let Some(body) = child else { return Ok(name) };
    match &fourcc {
        b"avc1" | b"avc3" => {
            let b = body.get(1..4).ok_or_else(|| FormatError::new(0, "avcC too short"))?;
            Ok(format!("{name}.{}", hex(b)))
        }
        b"hev1" | b"hvc1" => {
            if body.len() < 13 {
                return Err(FormatError::new(0, "hvcC too short"));
            }
            let space = ["", "A", "B", "C"][(body[1] >> 6) as usize];
            let tier = if body[1] & 0x20 != 0 { 'H' } else { 'L' };
            let profile_idc = body[1] & 0x1f;
            // The 32 compatibility flags in reverse bit order, hex without leading zeros.
            let compat = u32::from_be_bytes(body[2..6].try_into().expect("4 bytes")).reverse_bits();
            let mut s = format!("{name}.{space}{profile_idc}.{compat:X}.{tier}{}", body[12]);
            let constraints = &body[6..12];
            let used = constraints.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            for c in &constraints[..used] {
                s.push_str(&format!(".{c:X}"));
            }
            Ok(s)
        }
        b"mp4a" => Ok(format!("{name}.{}", mp4a_suffix(body)?)),
        _ => Ok(name),
    }
}

/// `40.AOT` (or the bare object type in hex when not MPEG-4 audio) from an `esds` payload
/// (FullBox header + ES_Descriptor, ISO/IEC 14496-1 §7.2.6.5).
fn mp4a_suffix(esds: &[u8]) -> Result<String, FormatError> {
    let mut r = Reader::new(esds, 0);
    r.skip(4, "esds version and flags")?;
    expect_descriptor(&mut r, 0x03)?;
    r.skip(2, "ES_ID")?;
    let flags = r.u8("ES_Descriptor flags")?;
    if flags & 0x80 != 0 {
        r.skip(2, "dependsOn_ES_ID")?;
    }
    if flags & 0x40 != 0 {
        let n = r.u8("URLlength")? as usize;
        r.skip(n, "URLstring")?;
    }
    if flags & 0x20 != 0 {
        r.skip(2, "OCR_ES_Id")?;
    }
    expect_descriptor(&mut r, 0x04)?;
    let oti = r.u8("objectTypeIndication")?;
    if oti != 0x40 {
        return Ok(format!("{oti:X}"));
    }
    r.skip(12, "DecoderConfigDescriptor fields")?;
    expect_descriptor(&mut r, 0x05)?;
    let b0 = r.u8("AudioSpecificConfig")?;
    let mut aot = u32::from(b0 >> 3);
    if aot == 31 {
        let b1 = r.u8("AudioSpecificConfig")?;
        aot = 32 + ((u32::from(b0 & 7) << 3) | u32::from(b1 >> 5));
    }
    Ok(format!("40.{aot}"))
}

/// Reads a descriptor tag (which must be `tag`) and its expandable size (ISO/IEC 14496-1 §8.3.3).
fn expect_descriptor(r: &mut Reader, tag: u8) -> Result<usize, FormatError> {
    let at = r.offset();
    if r.u8("descriptor tag")? != tag {
        return Err(FormatError::new(at, format!("expected descriptor tag {tag}")));
    }
    let mut size = 0usize;
    for _ in 0..4 {
        let b = r.u8("descriptor size")?;
        size = (size << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok(size)
}

/// The SPS and PPS NAL units (header byte included) of an `avc1`/`avc3` sample entry's `avcC`
/// (ISO/IEC 14496-15 §5.3.3.1), and its NAL length size in bytes. `avc3` entries may carry none:
/// their parameter sets are in-band.
pub fn avcc_parameter_sets(sample_entry: &[u8]) -> Result<AvcParameterSets<'_>, FormatError> {
    let (fourcc, avcc) = sample_entry_config(sample_entry)?;
    let (b"avc1" | b"avc3", Some(avcc)) = (&fourcc, avcc) else {
        return Err(FormatError::new(0, "not an H.264 sample entry with avcC"));
    };
    let mut r = Reader::new(avcc, 0);
    r.skip(4, "avcC version, profile, compatibility, level")?;
    let length_size = (r.u8("lengthSizeMinusOne")? & 3) as usize + 1;
    let n_sps = (r.u8("numOfSequenceParameterSets")? & 0x1f) as usize;
    let sps = parameter_sets(&mut r, n_sps)?;
    let n_pps = r.u8("numOfPictureParameterSets")? as usize;
    let pps = parameter_sets(&mut r, n_pps)?;
    Ok(AvcParameterSets { sps, pps, length_size })
}

/// What [`avcc_parameter_sets`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcParameterSets<'a> {
    pub sps: Vec<&'a [u8]>,
    pub pps: Vec<&'a [u8]>,
    /// Bytes of each NAL unit's length prefix in samples (1, 2 or 4).
    pub length_size: usize,
}

fn parameter_sets<'a>(r: &mut Reader<'a>, count: usize) -> Result<Vec<&'a [u8]>, FormatError> {
    (0..count)
        .map(|_| {
            let n = r.u16("parameter set length")? as usize;
            r.take(n, "parameter set")
        })
        .collect()
}

/// The Annex B byte stream (ISO/IEC 14496-10 Annex B) that decodes one H.264 sync sample on its
/// own: the `avcC` SPS and PPS, then the sample's SPS, PPS and slice NAL units (types 1, 5, 7,
/// 8), each after a 4-byte start code. SEI, AUD and filler are left out: a lone-picture decoder
/// needs none of them. `sample` is the sample as stored in MP4 (length-prefixed NAL units).
pub fn h264_sync_sample_annexb(sample_entry: &[u8], sample: &[u8]) -> Result<Vec<u8>, FormatError> {
    let ps = avcc_parameter_sets(sample_entry)?;
    let mut out = Vec::with_capacity(sample.len() + 256);
    for nal in ps.sps.iter().chain(&ps.pps) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    let mut r = Reader::new(sample, 0);
    let mut slices = 0;
    while r.remaining() > 0 {
        let len = match ps.length_size {
            1 => r.u8("NAL length")? as usize,
            2 => r.u16("NAL length")? as usize,
            _ => r.u32("NAL length")? as usize,
        };
        let nal = r.take(len, "NAL unit")?;
        let kind = nal.first().map_or(0, |h| h & 0x1f);
        if matches!(kind, 1 | 5 | 7 | 8) {
            slices += usize::from(matches!(kind, 1 | 5));
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
    }
    if slices == 0 {
        return Err(FormatError::new(0, "sample has no slice NAL unit"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{audio, h26x};

    // High profile, level 2.1 SPS and its PPS, from fixtures/sets/s01_h264_aac_ts_2s/seg_00000.ts.
    #[rustfmt::skip]
    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x15, 0xac, 0xd9, 0x41, 0xe0, 0x8f, 0xeb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x62, 0xd9, 0x60];
    const PPS: &[u8] = &[0x68, 0xef, 0x86, 0x72, 0xc0];

    #[test]
    fn avc_codec_string_and_parameter_sets() {
        let cfg = h26x::avc_config(&[SPS], &[PPS]).unwrap();
        assert_eq!(codec_string(&cfg.sample_entry).unwrap(), "avc1.640015");
        let ps = avcc_parameter_sets(&cfg.sample_entry).unwrap();
        assert_eq!(ps, AvcParameterSets { sps: vec![SPS], pps: vec![PPS], length_size: 4 });
    }

    #[test]
    fn sync_sample_keeps_parameter_sets_and_slices_only() {
        let cfg = h26x::avc_config(&[SPS], &[PPS]).unwrap();
        let (aud, sei, idr) = ([0x09u8, 0xf0], [0x06u8, 0x05, 0x01, 0x80], [0x65u8, 0x88, 0x84, 0x21]);
        let mut sample = Vec::new();
        for nal in [&aud[..], &sei, &idr] {
            sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            sample.extend_from_slice(nal);
        }
        let annexb = h264_sync_sample_annexb(&cfg.sample_entry, &sample).unwrap();
        let nals: Vec<&[u8]> = h26x::nal_units(&annexb).collect();
        assert_eq!(nals, vec![SPS, PPS, &idr[..]]);
        let no_slice = &sample[..6 + 8];
        assert!(h264_sync_sample_annexb(&cfg.sample_entry, no_slice).is_err());
        assert!(h264_sync_sample_annexb(&cfg.sample_entry, &sample[..sample.len() - 1]).is_err());
    }

    #[test]
    fn audio_codec_strings() {
        let h = audio::parse_adts_header(&[0xff, 0xf1, 0x50, 0x80, 0x02, 0x1f, 0xfc], 0).unwrap();
        assert_eq!(codec_string(&audio::mp4a_sample_entry(&h)).unwrap(), "mp4a.40.2");
    }

    #[test]
    fn hevc_codec_string() {
        // hvcC of Main profile, level 3.1, main tier, compatibility flags 0x60000000, constraint
        // byte 0x90 (ISO/IEC 14496-15 Annex E.3 example: hev1.1.6.L93.90).
        let mut hvcc = vec![1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93];
        hvcc.extend_from_slice(&[0; 10]);
        let mut entry = Vec::new();
        entry.extend_from_slice(&((8 + 78 + 8 + hvcc.len()) as u32).to_be_bytes());
        entry.extend_from_slice(b"hev1");
        entry.extend_from_slice(&[0; 78]);
        entry.extend_from_slice(&((8 + hvcc.len()) as u32).to_be_bytes());
        entry.extend_from_slice(b"hvcC");
        entry.extend_from_slice(&hvcc);
        assert_eq!(codec_string(&entry).unwrap(), "hev1.1.6.L93.90");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\0\0\0\x10avc1", b"\0\0\0\x08avc1"] {
            let _ = codec_string(bad);
            let _ = avcc_parameter_sets(bad);
        }
    }
}
