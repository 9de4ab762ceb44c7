//! MPEG-TS demuxer (ISO/IEC 13818-1): turns one stored segment into a [`SegmentIndex`] at import,
//! and at serve time transmuxes one [`Chunk`] of it (Annex B → length-prefixed NAL units, ADTS →
//! raw AAC frames, AC-3 syncframes as they are).
//!
//! Both directions share the same PES assembly ([`EsCollector`]) and framing code, so the sizes
//! computed at import and the bytes produced at serve time agree by construction; the transmux
//! still checks every size against the index.

use super::FormatError;
use super::audio::{self, AAC_FRAME_SAMPLES, AC3_FRAME_SAMPLES};
use super::boxes::UNITY_MATRIX;
use super::h26x;
use super::index::{
    Chunk, Codec, Container, ParamCarry, Sample, SegmentIndex, TrackConfig, TrackIndex, TrackKind, UNDETERMINED,
};
use crate::bail_at;

/// Transport packet size in bytes (ISO/IEC 13818-1 §2.4.3.2).
const PKT: usize = 188;
/// 2^33: PTS/DTS are 33-bit counters of a 90 kHz clock (ISO/IEC 13818-1 §2.4.3.7).
const TS_WRAP: u64 = 1 << 33;

/// Parses one stored MPEG-TS segment (whole file bytes) into its sample index, with no
/// parameter sets carried from earlier segments: [`index_segment_with`] with a fresh
/// [`ParamCarry`].
pub fn index_segment(data: &[u8]) -> Result<SegmentIndex, FormatError> {
    index_segment_with(data, &mut ParamCarry::default()).map(|s| s.index)
}

/// One MPEG-TS segment indexed: its sample index and the streams it does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsSegment {
    pub index: SegmentIndex,
    /// Elementary streams of the program that are not carried (data, subtitles, codecs an MP4
    /// cannot hold), one line each: `PID 0x0102: SCTE-35 splice information (stream_type 0x86)`.
    pub skipped: Vec<String>,
}

/// Parses one stored MPEG-TS segment (whole file bytes) into its sample index.
///
/// Takes the first PAT program's PMT and carries every H.264 (`stream_type` 0x1B) and H.265
/// (0x24) video stream and every AAC ADTS (0x0F) and AC-3 (0x81, or 0x06 with an AC-3
/// descriptor) audio stream, each with its ISO 639 language (descriptor 0x0A); other streams
/// are listed in [`TsSegment::skipped`]. Errors when no stream can be carried, naming the
/// first unsupported audio/video codec if there is one. Video times are 90 kHz, audio times in
/// samples; all are relative to [`SegmentIndex::ts_origin_90k`] (the first PTS/DTS in the
/// segment) with 33-bit wraps removed. Each track gets one chunk.
///
/// A video stream whose segment holds no SPS/PPS (VPS/SPS/PPS for H.265) gets the sample entry
/// of the same track in `carry` (the last parameter sets this stream sent, in an earlier
/// segment); the sample entries found are remembered in `carry` for the next segment.
pub fn index_segment_with(data: &[u8], carry: &mut ParamCarry) -> Result<TsSegment, FormatError> {
    check_length(data)?;
    let streams = find_streams(data)?;
    let mut collectors: Vec<EsCollector> =
        streams.carried.iter().map(|st| EsCollector::new(st.codec.kind() == TrackKind::Audio, 0)).collect();
    let mut origin: Option<u64> = None;
    for (i, pkt) in data.chunks_exact(PKT).enumerate() {
        let off = (i * PKT) as u64;
        let p = parse_packet(pkt, off)?;
        let ts = if let Some(k) = streams.carried.iter().position(|st| st.pid == p.pid) {
            collectors[k].push(&p, off)?
        } else if p.pusi && origin.is_none() && streams.other_pids.contains(&p.pid) {
            parse_pes_header(p.payload, 0).ok().and_then(|h| h.pts.or(h.dts))
        } else {
            None
        };
        if origin.is_none() {
            origin = ts;
        }
    }
    let Some(origin) = origin else {
        bail_at!(0, "no PES with a timestamp in segment");
    };
    let mut tracks = Vec::new();
    let mut video_n = 0;
    for (st, es) in streams.carried.iter().zip(&collectors) {
        let t = match st.codec.kind() {
            TrackKind::Video => {
                let carried = carry.video(video_n, st.codec);
                video_n += 1;
                index_video(es, st.pid, st.codec, origin, carried)?
            }
            TrackKind::Audio => index_audio(es, st.pid, st.codec, origin)?,
        };
        if let Some(mut t) = t {
            t.config.language = st.language;
            tracks.push(t);
        }
    }
    if tracks.is_empty() {
        bail_at!(0, "no audio or video PES in segment");
    }
    let idx = SegmentIndex { container: Container::Ts, ts_origin_90k: Some(origin), tracks };
    idx.validate()?;
    carry.remember(&idx);
    Ok(TsSegment { index: idx, skipped: streams.skipped })
}

/// Serve-time transmux of one chunk: `src` is exactly the stored segment bytes
/// `[chunk.src_start, chunk.src_end)`; appends exactly `chunk.len_bytes` output bytes to `out`
/// (4-byte length-prefixed NAL units for video, raw AAC frames without ADTS headers, AC-3
/// syncframes as is), or errors if the bytes do not match the index (sample count or a size
/// differs). On error `out` is left as it was. Error offsets are relative to `src`.
pub fn transmux_chunk(track: &TrackIndex, chunk: &Chunk, src: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let before = out.len();
    let r = transmux_inner(track, chunk, src, out);
    if r.is_err() {
        out.truncate(before);
    }
    r
}

fn transmux_inner(track: &TrackIndex, chunk: &Chunk, src: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    if src.len() as u64 != chunk.src_end - chunk.src_start {
        bail_at!(0, "chunk source is {} bytes, index says {}", src.len(), chunk.src_end - chunk.src_start);
    }
    check_length(src)?;
    let first = chunk.first_sample as usize;
    let Some(samples) = track.samples.get(first..first + chunk.samples as usize) else {
        bail_at!(0, "chunk samples out of range");
    };
    let pid = track.config.source_id;
    with_thread_es(src.len(), |es| {
        for (i, pkt) in src.chunks_exact(PKT).enumerate() {
            let off = (i * PKT) as u64;
            let p = parse_packet(pkt, off)?;
            if p.pid as u32 == pid {
                es.push(&p, off)?;
            }
        }
        convert(track, chunk, samples, es, out)
    })
}

/// Runs `f` with an empty collector (no packet tracking) whose buffer, with room for `capacity`
/// bytes, is this thread's and reused from call to call: a fresh one per chunk would fault its
/// pages in anew each time. A buffer grown past 64 MiB is not kept.
fn with_thread_es<T>(capacity: usize, f: impl FnOnce(&mut EsCollector) -> T) -> T {
    thread_local! {
        static ES_BYTES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut es = EsCollector::new(false, 0);
    es.bytes = ES_BYTES.take();
    es.bytes.clear();
    es.bytes.reserve(capacity);
    let r = f(&mut es);
    if es.bytes.capacity() <= 64 << 20 {
        ES_BYTES.set(std::mem::take(&mut es.bytes));
    }
    r
}

/// The rest of [`transmux_chunk`]: the collected samples of `es` (the chunk's `samples` of
/// `track`) appended to `out`, each checked against the index.
fn convert(
    track: &TrackIndex,
    chunk: &Chunk,
    samples: &[Sample],
    es: &EsCollector,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let first = chunk.first_sample as usize;
    let src_len = (chunk.src_end - chunk.src_start) as usize;
    out.reserve(chunk.len_bytes as usize);
    let start = out.len();
    let mut n = 0usize;
    let check = |n: usize, len: usize, at: usize| -> Result<(), FormatError> {
        match samples.get(n) {
            Some(s) if s.len_bytes as usize == len => Ok(()),
            Some(s) => bail_at!(at, "sample {} is {len} bytes, index says {}", first + n, s.len_bytes),
            None => bail_at!(at, "more samples than the index's {}", samples.len()),
        }
    };
    match track.config.codec {
        Codec::H264 | Codec::H265 => {
            for au in access_units(es) {
                let len = h26x::annexb_to_length_prefixed(es.au_bytes(&au), out);
                check(n, len, es.pes[au.first].pos)?;
                n += 1;
            }
        }
        Codec::Aac | Codec::Ac3 => {
            let mut frames = AudioFrames::new(&es.bytes, track.config.codec);
            while let Some(f) = frames.next_frame()? {
                let payload = &es.bytes[f.start + f.header_len..f.start + f.len];
                check(n, payload.len(), f.start)?;
                out.extend_from_slice(payload);
                n += 1;
            }
        }
    }
    if n != samples.len() {
        bail_at!(src_len, "chunk has {n} samples, index says {}", samples.len());
    }
    if (out.len() - start) as u64 != chunk.len_bytes {
        bail_at!(src_len, "chunk is {} bytes, index says {}", out.len() - start, chunk.len_bytes);
    }
    Ok(())
}

/// The one chunk of a track in an MPEG-TS segment: all its samples, from the first packet of the
/// first sample's PES to `src_end` (bytes).
fn whole_segment_chunk(samples: &[Sample], src_end: u64) -> Chunk {
    Chunk {
        first_sample: 0,
        samples: samples.len() as u32,
        src_start: samples[0].src_offset,
        src_end,
        len_bytes: samples.iter().map(|s| s.len_bytes as u64).sum(),
    }
}

/// Checks that `data` is a non-empty whole number of 188-byte packets (the sync byte of each is
/// checked as it is parsed, [`parse_packet`]).
fn check_length(data: &[u8]) -> Result<(), FormatError> {
    if data.is_empty() {
        bail_at!(0, "empty segment");
    }
    let trailing = data.len() % PKT;
    if trailing != 0 {
        let at = data.len() - trailing;
        bail_at!(at, "truncated segment: {trailing} trailing bytes at offset {at}");
    }
    Ok(())
}

/// One transport packet's header fields and payload.
struct Packet<'a> {
    pid: u16,
    /// `payload_unit_start_indicator`.
    pusi: bool,
    /// Payload after the adaptation field (empty when there is none).
    payload: &'a [u8],
    /// Offset of `payload` inside the 188-byte packet.
    payload_at: usize,
}

/// Parses a transport packet header and adaptation field length (ISO/IEC 13818-1 §2.4.3.2,
/// §2.4.3.4); `off` is the packet's byte offset, for errors.
#[inline(always)]
fn parse_packet(pkt: &[u8], off: u64) -> Result<Packet<'_>, FormatError> {
    if pkt[0] != 0x47 {
        bail_at!(off, "lost sync at offset {off}");
    }
    let pusi = pkt[1] & 0x40 != 0;
    let pid = u16::from_be_bytes([pkt[1] & 0x1f, pkt[2]]);
    let afc = (pkt[3] >> 4) & 3;
    let mut at = 4;
    if afc & 2 != 0 {
        at = 5 + pkt[4] as usize;
        if at > PKT {
            bail_at!(off + 4, "adaptation_field_length {} too large", pkt[4]);
        }
    }
    let payload: &[u8] = if afc & 1 != 0 { &pkt[at..] } else { &[] };
    Ok(Packet { pid, pusi: pusi && afc & 1 != 0, payload, payload_at: at })
}

/// One elementary stream that is carried.
struct Carried {
    pid: u16,
    codec: Codec,
    /// ISO 639-2 code from the stream's ISO_639_language_descriptor, `und` without one.
    language: [u8; 3],
}

/// The streams chosen from the PMT.
struct Streams {
    /// Carried streams: video in PMT order, then audio in PMT order.
    carried: Vec<Carried>,
    /// Other elementary stream PIDs of the program (only looked at for the timestamp origin).
    other_pids: Vec<u16>,
    /// Descriptions of the streams not carried.
    skipped: Vec<String>,
}

/// Reassembles the first complete PSI section with `table_id` on `pid` (ISO/IEC 13818-1
/// §2.4.4): returns it (header to CRC) and the offset of the packet where it starts.
fn find_section(data: &[u8], pid: u16, table_id: u8) -> Result<Option<(Vec<u8>, u64)>, FormatError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0u64;
    let mut collecting = false;
    for (i, pkt) in data.chunks_exact(PKT).enumerate() {
        let off = (i * PKT) as u64;
        let p = parse_packet(pkt, off)?;
        if p.pid != pid || p.payload.is_empty() {
            continue;
        }
        if p.pusi {
            let ptr = p.payload[0] as usize;
            if 1 + ptr > p.payload.len() {
                bail_at!(off + p.payload_at as u64, "PSI pointer_field {ptr} past packet end");
            }
            buf.clear();
            buf.extend_from_slice(&p.payload[1 + ptr..]);
            start = off;
            collecting = true;
        } else if collecting {
            buf.extend_from_slice(p.payload);
        } else {
            continue;
        }
        if buf.len() >= 3 {
            let need = 3 + (u16::from_be_bytes([buf[1] & 0x0f, buf[2]]) as usize);
            if buf.len() >= need {
                collecting = false;
                if buf[0] == table_id {
                    buf.truncate(need);
                    return Ok(Some((buf, start)));
                }
            }
        }
    }
    Ok(None)
}

/// What a PMT entry is to us.
enum StreamKind {
    Video(Codec),
    Audio(Codec),
    /// An audio or video codec we cannot transmux, with its name.
    Unsupported(&'static str),
    /// Anything else (data, subtitles, private streams), with a name when we know one.
    Other(Option<&'static str>),
}

/// Classifies a PMT elementary stream by `stream_type` (ISO/IEC 13818-1 Table 2-34, ATSC A/52
/// for 0x81/0x87) and, for PES private data (0x06), its descriptors (ETSI EN 300 468 AC-3 0x6A /
/// E-AC-3 0x7A / DTS 0x7B; registration descriptor 0x05, §2.6.8).
fn classify(stream_type: u8, descriptors: &[u8]) -> StreamKind {
    use StreamKind::*;
    match stream_type {
        0x1b => Video(Codec::H264),
        0x24 => Video(Codec::H265),
        0x0f => Audio(Codec::Aac),
        0x81 => Audio(Codec::Ac3),
        0x01 => Unsupported("MPEG-1 video"),
        0x02 => Unsupported("MPEG-2 video"),
        0x10 => Unsupported("MPEG-4 Visual"),
        0x1e => Unsupported("MPEG-4 Visual"),
        0x1f => Unsupported("H.264 SVC"),
        0x20 => Unsupported("H.264 MVC"),
        0x21 => Unsupported("JPEG 2000"),
        0x25 => Unsupported("H.265 temporal sub-bitstream"),
        0x32 => Unsupported("JPEG XS"),
        0x33 => Unsupported("H.266"),
        0x42 => Unsupported("AVS"),
        0xd1 => Unsupported("Dirac"),
        0xea => Unsupported("VC-1"),
        0x03 | 0x04 => Unsupported("MPEG-1/2 audio"),
        0x11 => Unsupported("AAC LATM"),
        0x1c => Unsupported("MPEG-4 audio"),
        0x2d | 0x2e => Unsupported("MPEG-H 3D audio"),
        0x80 => Unsupported("LPCM"),
        0x82 | 0x85 | 0x8a => Unsupported("DTS"),
        0x83 => Unsupported("Dolby TrueHD"),
        0x84 | 0x87 | 0xa1 => Unsupported("E-AC-3"),
        0x05 => Other(Some("private sections")),
        0x0d => Other(Some("DSM-CC")),
        0x15 => Other(Some("timed metadata (ID3/KLV)")),
        0x86 => Other(Some("SCTE-35 splice information")),
        0x90 => Other(Some("DVB/PGS subtitles")),
        0x06 => {
            let mut d = descriptors;
            while d.len() >= 2 {
                let (tag, len) = (d[0], d[1] as usize);
                let body = &d[2..(2 + len).min(d.len())];
                match (tag, body) {
                    (0x6a, _) | (0x05, [b'A', b'C', b'-', b'3', ..]) => return Audio(Codec::Ac3),
                    (0x7a, _) | (0x05, [b'E', b'A', b'C', b'3', ..]) => return Unsupported("E-AC-3"),
                    (0x7b, _) | (0x05, [b'D', b'T', b'S', b'1'..=b'3', ..]) => return Unsupported("DTS"),
                    (0x05, [b'O', b'p', b'u', b's', ..]) => return Unsupported("Opus"),
                    (0x05, [b'A', b'C', b'-', b'4', ..]) => return Unsupported("AC-4"),
                    (0x05, [b'B', b'S', b'S', b'D', ..]) => return Unsupported("SMPTE 302M audio"),
                    (0x05, [b'V', b'C', b'-', b'1', ..]) => return Unsupported("VC-1"),
                    (0x05, [b'K', b'L', b'V', b'A', ..]) => return Other(Some("KLV metadata")),
                    (0x05, [b'I', b'D', b'3', b' ', ..]) => return Other(Some("ID3 metadata")),
                    (0x56, _) => return Other(Some("DVB teletext")),
                    (0x59, _) => return Other(Some("DVB subtitles")),
                    _ => {}
                }
                d = &d[(2 + len).min(d.len())..];
            }
            Other(Some("private data"))
        }
        _ => Other(None),
    }
}

/// The language of an ISO_639_language_descriptor (tag 0x0A, ISO/IEC 13818-1 §2.6.18) among
/// `descriptors`, lower-cased; `und` when absent or not three letters.
fn iso639_language(descriptors: &[u8]) -> [u8; 3] {
    let mut d = descriptors;
    while d.len() >= 2 {
        let (tag, len) = (d[0], d[1] as usize);
        let body = &d[2..(2 + len).min(d.len())];
        if tag == 0x0a && body.len() >= 3 && body[..3].iter().all(u8::is_ascii_alphabetic) {
            return [body[0], body[1], body[2]].map(|c| c.to_ascii_lowercase());
        }
        d = &d[(2 + len).min(d.len())..];
    }
    UNDETERMINED
}

/// Finds the PAT (§2.4.4.3), the first program's PMT (§2.4.4.8) and picks the streams.
fn find_streams(data: &[u8]) -> Result<Streams, FormatError> {
    let Some((pat, pat_off)) = find_section(data, 0, 0x00)? else {
        bail_at!(0, "no PAT in segment");
    };
    if pat.len() < 12 {
        bail_at!(pat_off, "PAT section too short");
    }
    let pmt_pid = pat[8..pat.len() - 4]
        .chunks_exact(4)
        .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| u16::from_be_bytes([e[2] & 0x1f, e[3]]));
    let Some(pmt_pid) = pmt_pid else {
        bail_at!(pat_off, "PAT lists no program");
    };
    let Some((pmt, pmt_off)) = find_section(data, pmt_pid, 0x02)? else {
        bail_at!(0, "no PMT (PID {pmt_pid:#06x}) in segment");
    };
    if pmt.len() < 16 {
        bail_at!(pmt_off, "PMT section too short");
    }
    let end = pmt.len() - 4;
    let mut pos = 12 + (u16::from_be_bytes([pmt[10] & 0x0f, pmt[11]]) as usize);
    let mut s = Streams { carried: Vec::new(), other_pids: Vec::new(), skipped: Vec::new() };
    let mut unsupported: Option<String> = None;
    while pos + 5 <= end {
        let stream_type = pmt[pos];
        let pid = u16::from_be_bytes([pmt[pos + 1] & 0x1f, pmt[pos + 2]]);
        let info_len = u16::from_be_bytes([pmt[pos + 3] & 0x0f, pmt[pos + 4]]) as usize;
        let desc_end = pos + 5 + info_len;
        if desc_end > end {
            bail_at!(pmt_off, "PMT ES_info_length {info_len} past section end");
        }
        let descriptors = &pmt[pos + 5..desc_end];
        let what = match classify(stream_type, descriptors) {
            StreamKind::Video(codec) | StreamKind::Audio(codec)
                if s.carried.len() < super::index::MAX_TRACKS && !s.carried.iter().any(|c| c.pid == pid) =>
            {
                s.carried.push(Carried { pid, codec, language: iso639_language(descriptors) });
                pos = desc_end;
                continue;
            }
            StreamKind::Video(_) | StreamKind::Audio(_) => "one stream too many",
            StreamKind::Unsupported(name) => {
                let e = format!("unsupported codec: PID {pid:#06x} stream_type {stream_type:#04x} ({name})");
                unsupported.get_or_insert(e);
                name
            }
            StreamKind::Other(name) => name.unwrap_or("data"),
        };
        s.other_pids.push(pid);
        s.skipped.push(format!("PID {pid:#06x}: {what} (stream_type {stream_type:#04x})"));
        pos = desc_end;
    }
    if s.carried.is_empty() {
        match unsupported {
            Some(e) => bail_at!(pmt_off, "{e}"),
            None => bail_at!(pmt_off, "no audio or video stream in PMT"),
        }
    }
    // Video first, each kind in PMT order.
    s.carried.sort_by_key(|c| c.codec.kind());
    Ok(s)
}

/// The fields of a PES header we use (ISO/IEC 13818-1 §2.4.3.6-7).
struct PesHeader {
    /// Bytes from `packet_start_code_prefix` to the first payload byte.
    header_len: usize,
    /// Payload bytes per `PES_packet_length`; `None` when it is 0 (unbounded, video).
    payload_len: Option<usize>,
    /// Raw 33-bit 90 kHz timestamps.
    pts: Option<u64>,
    dts: Option<u64>,
}

/// Reads a 33-bit PTS/DTS field (5 bytes with marker bits).
fn read_timestamp(b: &[u8]) -> u64 {
    (((b[0] >> 1) & 7) as u64) << 30
        | (b[1] as u64) << 22
        | ((b[2] >> 1) as u64) << 15
        | (b[3] as u64) << 7
        | (b[4] >> 1) as u64
}

/// Parses the PES header at the start of `p`, the payload of a packet with
/// `payload_unit_start_indicator` set; the whole header must be in this packet. `off` is the
/// absolute offset of `p[0]`, for errors.
fn parse_pes_header(p: &[u8], off: u64) -> Result<PesHeader, FormatError> {
    if p.len() < 6 || p[..3] != [0, 0, 1] {
        bail_at!(off, "missing PES start code");
    }
    let stream_id = p[3];
    let packet_len = u16::from_be_bytes([p[4], p[5]]) as usize;
    // Stream ids without the optional PES header (Table 2-22 note, §2.4.3.7).
    if matches!(stream_id, 0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff) {
        let payload_len = (packet_len != 0).then_some(packet_len);
        return Ok(PesHeader { header_len: 6, payload_len, pts: None, dts: None });
    }
    if p.len() < 9 {
        bail_at!(off, "PES header spans packets");
    }
    if p[6] & 0xc0 != 0x80 {
        bail_at!(off + 6, "bad PES header marker bits {:#04x}", p[6]);
    }
    let flags = p[7] >> 6;
    let hdl = p[8] as usize;
    let header_len = 9 + hdl;
    if header_len > p.len() {
        bail_at!(off + 8, "PES header of {header_len} bytes spans packets");
    }
    let (mut pts, mut dts) = (None, None);
    match flags {
        0 => {}
        1 => bail_at!(off + 7, "PES PTS_DTS_flags '01' is forbidden"),
        2 if hdl >= 5 => pts = Some(read_timestamp(&p[9..14])),
        3 if hdl >= 10 => {
            pts = Some(read_timestamp(&p[9..14]));
            dts = Some(read_timestamp(&p[14..19]));
        }
        _ => bail_at!(off + 8, "PES_header_data_length {hdl} too short for PTS/DTS"),
    }
    let payload_len = if packet_len == 0 {
        None
    } else {
        match packet_len.checked_sub(3 + hdl) {
            Some(n) => Some(n),
            None => bail_at!(off + 4, "PES_packet_length {packet_len} shorter than its header"),
        }
    };
    Ok(PesHeader { header_len, payload_len, pts, dts })
}

/// One PES of the collected stream.
#[derive(Debug, Clone, Copy)]
struct PesInfo {
    /// Position of its first payload byte in [`EsCollector::bytes`].
    pos: usize,
    /// Offset of its first transport packet.
    first_pkt: u64,
    /// End offset of the last transport packet that contributed payload (or its header).
    last_end: u64,
    pts: Option<u64>,
    dts: Option<u64>,
}

/// PES assembly for one PID: concatenates PES payloads (headers stripped) into one elementary
/// stream buffer and remembers where each PES starts. Data before the first PES start is skipped.
struct EsCollector {
    bytes: Vec<u8>,
    pes: Vec<PesInfo>,
    /// With `track_packets`: per contributing packet, (stream length after it, packet end offset).
    pkt_ends: Vec<(usize, u64)>,
    track_packets: bool,
    /// Payload bytes still allowed in the current PES (`PES_packet_length` ≠ 0).
    remaining: Option<usize>,
}

impl EsCollector {
    fn new(track_packets: bool, capacity: usize) -> Self {
        EsCollector {
            bytes: Vec::with_capacity(capacity),
            pes: Vec::new(),
            pkt_ends: Vec::new(),
            track_packets,
            remaining: None,
        }
    }

    /// Adds one packet of the PID at byte offset `off`; returns the first timestamp (PTS, else
    /// DTS) of a PES header it starts.
    fn push(&mut self, p: &Packet, off: u64) -> Result<Option<u64>, FormatError> {
        let mut data = p.payload;
        let mut ts = None;
        if p.pusi {
            let h = parse_pes_header(data, off + p.payload_at as u64)?;
            self.pes.push(PesInfo {
                pos: self.bytes.len(),
                first_pkt: off,
                last_end: off + PKT as u64,
                pts: h.pts,
                dts: h.dts,
            });
            data = &data[h.header_len..];
            self.remaining = h.payload_len;
            ts = h.pts.or(h.dts);
        } else if self.pes.is_empty() {
            return Ok(None);
        }
        let take = match &mut self.remaining {
            Some(r) => {
                let n = data.len().min(*r);
                *r -= n;
                n
            }
            None => data.len(),
        };
        if take > 0 {
            self.bytes.extend_from_slice(&data[..take]);
            if let Some(last) = self.pes.last_mut() {
                last.last_end = off + PKT as u64;
            }
            if self.track_packets {
                self.pkt_ends.push((self.bytes.len(), off + PKT as u64));
            }
        }
        Ok(ts)
    }

    /// End of the elementary stream bytes of PES `i`.
    fn pes_end(&self, i: usize) -> usize {
        self.pes.get(i + 1).map_or(self.bytes.len(), |p| p.pos)
    }

    fn au_bytes(&self, au: &AccessUnit) -> &[u8] {
        &self.bytes[self.pes[au.first].pos..self.pes_end(au.last)]
    }

    /// End offset of the transport packet holding stream byte `pos - 1` (`pos` ≥ 1).
    fn packet_end_of(&self, pos: usize) -> u64 {
        let i = self.pkt_ends.partition_point(|&(end, _)| end < pos);
        self.pkt_ends.get(i).map_or(0, |&(_, off)| off)
    }
}

/// A video access unit: PES `first..=last` (a PES with a PTS and the PTS-less PES after it).
#[derive(Debug, Clone, Copy)]
struct AccessUnit {
    first: usize,
    last: usize,
}

/// Groups PES into access units: a PES with a PTS starts one, a PES without continues the previous
/// one; PTS-less PES before the first PTS are skipped.
fn access_units(es: &EsCollector) -> impl Iterator<Item = AccessUnit> + '_ {
    let mut i = es.pes.iter().position(|p| p.pts.is_some()).unwrap_or(es.pes.len());
    std::iter::from_fn(move || {
        if i >= es.pes.len() {
            return None;
        }
        let first = i;
        i += 1;
        while i < es.pes.len() && es.pes[i].pts.is_none() {
            i += 1;
        }
        Some(AccessUnit { first, last: i - 1 })
    })
}

/// `v − origin` on the 33-bit 90 kHz clock, as the representative in [−2^32, 2^32).
fn rel_90k(v: u64, origin: u64) -> i64 {
    let d = v.wrapping_sub(origin) & (TS_WRAP - 1);
    if d >= TS_WRAP / 2 { d as i64 - TS_WRAP as i64 } else { d as i64 }
}

/// Builds the video track from the collected PES: one sample per access unit. Without
/// parameter sets in the segment, `carried` (the same track's config from an earlier segment)
/// gives the sample entry.
fn index_video(
    es: &EsCollector,
    pid: u16,
    codec: Codec,
    origin: u64,
    carried: Option<&TrackConfig>,
) -> Result<Option<TrackIndex>, FormatError> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut ps_au: Option<AccessUnit> = None;
    let mut ps_sync = false;
    let mut end = 0u64;
    for au in access_units(es) {
        let head = &es.pes[au.first];
        let bytes = es.au_bytes(&au);
        let len = h26x::length_prefixed_len(bytes);
        let Ok(len_bytes) = u32::try_from(len) else {
            bail_at!(head.first_pkt, "access unit of {len} bytes too large");
        };
        let sync = match codec {
            Codec::H265 => h26x::h265_is_sync(bytes),
            _ => h26x::h264_is_sync(bytes),
        };
        if ps_au.is_none() || (sync && !ps_sync) {
            ps_au = Some(au);
            ps_sync = sync;
        }
        let pts = rel_90k(head.pts.unwrap_or(0), origin);
        let dts = head.dts.map_or(pts, |d| rel_90k(d, origin));
        let Ok(cts_offset) = i32::try_from(pts - dts) else {
            bail_at!(head.first_pkt, "PTS − DTS out of range");
        };
        if let Some(prev) = samples.last_mut() {
            prev.dur = u32::try_from(dts - prev.dts).unwrap_or(0);
        }
        samples.push(Sample { dts, dur: 0, cts_offset, len_bytes, sync, src_offset: head.first_pkt });
        end = es.pes[au.last].last_end;
    }
    let Some(ps_au) = ps_au else { return Ok(None) };
    let (sample_entry, width, height) = match video_config(es, codec, ps_au)? {
        Some(cfg) => (cfg.sample_entry, cfg.width, cfg.height),
        None => match carried {
            Some(c) => (c.sample_entry.clone(), c.width, c.height),
            None => {
                let sets = if codec == Codec::H265 { "VPS/SPS/PPS" } else { "SPS/PPS" };
                bail_at!(
                    es.pes[ps_au.first].first_pkt,
                    "{codec:?} stream without {sets}, and no earlier segment of the stream sent them"
                )
            }
        },
    };
    let chunk = whole_segment_chunk(&samples, end);
    let config = TrackConfig {
        codec,
        timescale: 90000,
        sample_entry,
        width,
        height,
        matrix: UNITY_MATRIX,
        source_id: pid as u32,
        language: UNDETERMINED,
    };
    Ok(Some(TrackIndex { config, samples, chunks: vec![chunk] }))
}

/// Builds the sample entry from the parameter sets of access unit `au`, falling back to the
/// first parameter sets of the segment for any kind that `au` lacks. Identical copies are
/// listed once. `None` when the segment lacks a kind of parameter set altogether.
fn video_config(es: &EsCollector, codec: Codec, au: AccessUnit) -> Result<Option<h26x::VideoConfig>, FormatError> {
    let types: [u8; 3] = if codec == Codec::H265 { [32, 33, 34] } else { [0xff, 7, 8] };
    let nal_type: fn(&[u8]) -> u8 = if codec == Codec::H265 { h26x::h265_nal_type } else { h26x::h264_nal_type };
    let mut sets: [Vec<&[u8]>; 3] = Default::default();
    fn collect<'b>(bytes: &'b [u8], types: [u8; 3], nal_type: fn(&[u8]) -> u8, sets: &mut [Vec<&'b [u8]>; 3]) {
        for n in h26x::nal_units(bytes) {
            if let Some(k) = types.iter().position(|&t| t == nal_type(n))
                && !sets[k].contains(&n)
            {
                sets[k].push(n);
            }
        }
    }
    collect(es.au_bytes(&au), types, nal_type, &mut sets);
    let needed = if codec == Codec::H265 { 0..3 } else { 1..3 };
    if sets[needed.clone()].iter().any(|s| s.is_empty()) {
        let mut all: [Vec<&[u8]>; 3] = Default::default();
        collect(&es.bytes, types, nal_type, &mut all);
        for k in needed.clone() {
            if sets[k].is_empty() {
                sets[k] = all[k].iter().take(1).copied().collect();
            }
        }
    }
    if sets[needed].iter().any(|s| s.is_empty()) {
        return Ok(None);
    }
    let at = es.pes[au.first].first_pkt;
    let r = match codec {
        Codec::H265 => h26x::hevc_config(&sets[0], &sets[1], &sets[2]),
        _ => h26x::avc_config(&sets[1], &sets[2]),
    };
    r.map(Some).map_err(|e| FormatError::new(at, e.what))
}

/// One audio frame in the collected stream.
#[derive(Debug, Clone, Copy)]
struct AudioFrame {
    /// Position of its first byte in the stream.
    start: usize,
    /// Whole frame size in bytes.
    len: usize,
    /// Header bytes dropped at transmux (ADTS header; 0 for AC-3).
    header_len: usize,
    /// Sampling rate in Hz.
    rate: u32,
    /// The sample entry to use if this is the first frame.
    config: AudioConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AudioConfig {
    Adts(audio::AdtsHeader),
    Ac3(audio::Ac3Header),
}

/// Splits an ADTS or AC-3 elementary stream into frames. A frame must start right where the
/// previous one ended; where no syncword is found (stream start, junk) it scans for the next
/// syncword whose frame is followed by another syncword or the end of data. A partial frame at
/// the end is dropped.
struct AudioFrames<'a> {
    bytes: &'a [u8],
    codec: Codec,
    pos: usize,
    /// Whether `pos` is where the previous frame ended: only then is a frame taken without
    /// checking that another follows it. The first frame is always checked, so that a scan
    /// from a chunk's first packet (transmux) finds the frames a scan from the segment's start
    /// (import) found.
    after_frame: bool,
}

impl<'a> AudioFrames<'a> {
    fn new(bytes: &'a [u8], codec: Codec) -> Self {
        AudioFrames { bytes, codec, pos: 0, after_frame: false }
    }

    fn is_sync(&self, at: usize) -> bool {
        let b = &self.bytes[at.min(self.bytes.len())..];
        if self.codec == Codec::Aac { audio::is_adts_sync(b) } else { audio::is_ac3_sync(b) }
    }

    /// Parses the header at `at`; `Ok(None)` when the data ends inside the header.
    fn header(&self, at: usize) -> Result<Option<AudioFrame>, FormatError> {
        let b = &self.bytes[at..];
        let off = at as u64;
        Ok(Some(match self.codec {
            Codec::Aac => {
                if b.len() < 7 {
                    return Ok(None);
                }
                let h = audio::parse_adts_header(b, off)?;
                let (len, header_len, rate) = (h.frame_length, h.header_len, h.sample_rate());
                AudioFrame { start: at, len, header_len, rate, config: AudioConfig::Adts(h) }
            }
            _ => {
                if b.len() < 8 {
                    return Ok(None);
                }
                let h = audio::parse_ac3_header(b, off)?;
                AudioFrame {
                    start: at,
                    len: h.frame_size,
                    header_len: 0,
                    rate: h.sample_rate(),
                    config: AudioConfig::Ac3(h),
                }
            }
        }))
    }

    fn next_frame(&mut self) -> Result<Option<AudioFrame>, FormatError> {
        let n = self.bytes.len();
        let frame = if self.after_frame && self.is_sync(self.pos) {
            self.header(self.pos)?
        } else {
            // (Re)synchronise: first syncword at or after `pos` with a valid header whose frame
            // is followed by a syncword or the end of the data.
            let mut found = None;
            let mut at = self.pos;
            while at + 1 < n {
                if self.is_sync(at) {
                    match self.header(at) {
                        Ok(Some(f)) if at + f.len >= n || self.is_sync(at + f.len) => {
                            found = Some(f);
                            break;
                        }
                        Ok(None) => break,
                        _ => {}
                    }
                }
                at += 1;
            }
            found
        };
        match frame {
            Some(f) if f.start + f.len <= n => {
                self.pos = f.start + f.len;
                self.after_frame = true;
                Ok(Some(f))
            }
            _ => {
                self.pos = n;
                Ok(None)
            }
        }
    }
}

/// Builds the audio track: one sample per complete ADTS frame / AC-3 syncframe.
fn index_audio(es: &EsCollector, pid: u16, codec: Codec, origin: u64) -> Result<Option<TrackIndex>, FormatError> {
    let dur = if codec == Codec::Aac { AAC_FRAME_SAMPLES } else { AC3_FRAME_SAMPLES };
    let mut frames = AudioFrames::new(&es.bytes, codec);
    let mut samples: Vec<Sample> = Vec::new();
    let mut first: Option<AudioFrame> = None;
    let mut pes_i = 0usize;
    let mut last_pes: Option<usize> = None;
    let mut end = 0u64;
    while let Some(f) = frames.next_frame()? {
        while pes_i + 1 < es.pes.len() && es.pes[pes_i + 1].pos <= f.start {
            pes_i += 1;
        }
        let pes = &es.pes[pes_i];
        let cfg = *first.get_or_insert(f);
        if f.rate != cfg.rate {
            bail_at!(pes.first_pkt, "audio sample rate changes from {} to {} Hz", cfg.rate, f.rate);
        }
        let rate = f.rate as i64;
        let expected = samples.last().map(|s| s.dts + dur as i64);
        let dts = match pes.pts {
            Some(pts) if last_pes != Some(pes_i) => {
                let t = rel_90k(pts, origin) * rate;
                let computed = (2 * t + 90000).div_euclid(2 * 90000);
                match expected {
                    Some(e) if 2 * (computed - e).abs() <= dur as i64 => e,
                    _ => computed,
                }
            }
            _ => match expected {
                Some(e) => e,
                None => bail_at!(pes.first_pkt, "audio PES without PTS at the start of the segment"),
            },
        };
        last_pes = Some(pes_i);
        let len_bytes = (f.len - f.header_len) as u32;
        samples.push(Sample { dts, dur, cts_offset: 0, len_bytes, sync: true, src_offset: pes.first_pkt });
        end = es.packet_end_of(f.start + f.len);
    }
    let Some(first) = first else { return Ok(None) };
    let sample_entry = match first.config {
        AudioConfig::Adts(h) => audio::mp4a_sample_entry(&h),
        AudioConfig::Ac3(h) => audio::ac3_sample_entry(&h),
    };
    let chunk = whole_segment_chunk(&samples, end);
    let config = TrackConfig {
        codec,
        timescale: first.rate,
        sample_entry,
        width: 0,
        height: 0,
        matrix: UNITY_MATRIX,
        source_id: pid as u32,
        language: UNDETERMINED,
    };
    Ok(Some(TrackIndex { config, samples, chunks: vec![chunk] }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn set_dir(name: &str) -> PathBuf {
        let local = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/sets")).join(name);
        if local.exists() { local } else { Path::new("/work/shared/fixtures/sets/real").join(name) }
    }

    fn segments(name: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(set_dir(name))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ts"))
            .collect();
        v.sort();
        v
    }

    /// Whether to check every indexed segment against FFmpeg's own demuxer (`ffprobe`, `ffmpeg`):
    /// the full suite (`scripts/test.sh`) sets `JITMUX_FFMPEG_CHECKS=1`; plain `cargo test` needs
    /// no FFmpeg.
    fn cross_check() -> bool {
        std::env::var_os("JITMUX_FFMPEG_CHECKS").is_some()
    }

    /// One `ffprobe -show_packets` packet.
    #[derive(Debug)]
    struct ProbePacket {
        pid: u32,
        pts: Option<u64>,
        dts: Option<u64>,
        key: bool,
    }

    /// Packets per ffprobe, or `None` when ffprobe is not installed.
    fn ffprobe(path: &Path) -> Option<Vec<ProbePacket>> {
        if !cross_check() {
            return None;
        }
        let run = |args: &[&str]| {
            let o = Command::new("ffprobe").args(["-v", "error"]).args(args).arg(path).output().ok()?;
            o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let fields = |line: &str| -> std::collections::HashMap<String, String> {
            line.split('|').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let streams = run(&["-show_entries", "stream=index,id", "-of", "compact"])?;
        let mut pids = std::collections::HashMap::new();
        for l in streams.lines().filter(|l| l.starts_with("stream")) {
            let f = fields(l);
            let id = u32::from_str_radix(f["id"].trim_start_matches("0x"), 16).unwrap();
            pids.insert(f["index"].clone(), id);
        }
        let out = run(&["-show_packets", "-show_entries", "packet=stream_index,pts,dts,flags", "-of", "compact"])?;
        let mut v = Vec::new();
        for l in out.lines().filter(|l| l.starts_with("packet")) {
            let f = fields(l);
            v.push(ProbePacket {
                pid: pids[&f["stream_index"]],
                pts: f["pts"].parse::<i64>().ok().map(|t| t.rem_euclid(TS_WRAP as i64) as u64),
                dts: f["dts"].parse::<i64>().ok().map(|t| t.rem_euclid(TS_WRAP as i64) as u64),
                key: f["flags"].starts_with('K'),
            });
        }
        Some(v)
    }

    /// Raw packet payloads of stream `pid` as ffmpeg demuxes them (`-c copy -f data`).
    fn ffmpeg_stream_bytes(path: &Path, map: &str) -> Option<Vec<u8>> {
        if !cross_check() {
            return None;
        }
        let o = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", map, "-c", "copy", "-f", "data", "-"])
            .output()
            .ok()?;
        o.status.success().then_some(o.stdout)
    }

    fn abs_90k(origin: u64, rel: i64) -> u64 {
        (origin as i64 + rel).rem_euclid(TS_WRAP as i64) as u64
    }

    /// Figures of one indexed segment, for the test log.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Figures {
        video: usize,
        video_sync: usize,
        audio: usize,
    }

    /// Indexes and transmuxes every segment of a set, checks everything against ffprobe/ffmpeg,
    /// returns per-segment figures.
    fn check_set(name: &str, max: usize) -> Vec<Figures> {
        let mut figs = Vec::new();
        for path in segments(name).into_iter().take(max) {
            let data = std::fs::read(&path).unwrap();
            let idx = index_segment(&data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(SegmentIndex::decode(&idx.encode()).unwrap(), idx);
            let origin = idx.ts_origin_90k.unwrap();
            let mut fig = Figures::default();
            for t in &idx.tracks {
                assert_eq!(t.chunks.len(), 1);
                let c = &t.chunks[0];
                let src = &data[c.src_start as usize..c.src_end as usize];
                let mut out = vec![0xaa];
                transmux_chunk(t, c, src, &mut out).unwrap();
                let out = &out[1..];
                assert_eq!(out.len() as u64, c.len_bytes);
                for w in t.samples.windows(2) {
                    assert!(w[1].dts > w[0].dts, "{}: non-monotonic dts", path.display());
                    assert_eq!(w[0].dur as i64, w[1].dts - w[0].dts);
                }
                match t.config.codec {
                    Codec::H264 | Codec::H265 => {
                        fig.video = t.samples.len();
                        fig.video_sync = t.samples.iter().filter(|s| s.sync).count();
                        // Output parses as length-prefixed NAL units, sample by sample.
                        let mut p = 0;
                        for s in &t.samples {
                            let end = p + s.len_bytes as usize;
                            while p < end {
                                let n = u32::from_be_bytes(out[p..p + 4].try_into().unwrap()) as usize;
                                assert!(n > 0 && p + 4 + n <= end && out[p + 4] & 0x80 == 0);
                                p += 4 + n;
                            }
                            assert_eq!(p, end);
                        }
                        assert_eq!(t.samples.last().unwrap().dur, 0);
                        assert!(
                            t.samples[0].sync || name.contains("gopro"),
                            "{}: first sample not sync",
                            path.display()
                        );
                    }
                    Codec::Aac | Codec::Ac3 => {
                        fig.audio = t.samples.len();
                        let rate = t.config.timescale as i64;
                        if let Some(es) = ffmpeg_stream_bytes(&path, "0:a:0") {
                            // ffmpeg's packets are whole ADTS frames / syncframes.
                            let mut raw = Vec::new();
                            let mut p = 0;
                            while p + 7 <= es.len() {
                                if t.config.codec == Codec::Aac {
                                    let h = audio::parse_adts_header(&es[p..], p as u64).unwrap();
                                    raw.extend_from_slice(&es[p + h.header_len..p + h.frame_length]);
                                    p += h.frame_length;
                                } else {
                                    let h = audio::parse_ac3_header(&es[p..], p as u64).unwrap();
                                    raw.extend_from_slice(&es[p..p + h.frame_size]);
                                    p += h.frame_size;
                                }
                            }
                            assert_eq!(raw, out, "{}: audio payload differs from ffmpeg", path.display());
                        }
                        if let Some(pk) = ffprobe(&path) {
                            let pk: Vec<_> = pk.iter().filter(|p| p.pid == t.config.source_id).collect();
                            assert_eq!(pk.len(), t.samples.len(), "{}: audio frame count", path.display());
                            for (s, p) in t.samples.iter().zip(&pk) {
                                let ours = abs_90k(origin, (s.dts * 90000 + rate / 2).div_euclid(rate));
                                let theirs = p.pts.unwrap();
                                let diff = (ours as i64 - theirs as i64).abs();
                                assert!(
                                    diff <= 90000 / rate + 1 || diff == 0,
                                    "{}: audio pts {ours} vs {theirs}",
                                    path.display()
                                );
                            }
                        }
                    }
                }
            }
            if let (Some(t), Some(pk)) = (idx.track(crate::index::TrackKind::Video), ffprobe(&path)) {
                let pk: Vec<_> = pk.iter().filter(|p| p.pid == t.config.source_id).collect();
                assert_eq!(pk.len(), t.samples.len(), "{}: video sample count", path.display());
                for (s, p) in t.samples.iter().zip(&pk) {
                    // GoPro PES carry only PTS; ffmpeg invents a reordering delay for its DTS.
                    if let Some(dts) = p.dts.filter(|_| !name.contains("gopro")) {
                        assert_eq!(abs_90k(origin, s.dts), dts, "{}: dts", path.display());
                    }
                    assert_eq!(abs_90k(origin, s.dts + s.cts_offset as i64), p.pts.unwrap(), "{}: pts", path.display());
                    assert_eq!(s.sync, p.key, "{}: sync flag at dts {}", path.display(), s.dts);
                }
            }
            figs.push(fig);
        }
        eprintln!("{name}: {} segments, first {:?}, last {:?}", figs.len(), figs.first(), figs.last());
        figs
    }

    #[test]
    fn s01_h264_aac() {
        let f = check_set("s01_h264_aac_ts_2s", 4);
        assert_eq!(f[0], Figures { video: 60, video_sync: 1, audio: 92 });
    }

    #[test]
    fn other_sets() {
        for name in [
            "r01_gopro_karma_ts",
            "r03_intel_person_noaudio_ts",
            "r05_hevc_hdr10_hev1_ts",
            "r08_flir_vfr_ts",
            "s03_h265_aac_ts_1s",
            "s09_h264_aac_ts_ptswrap",
            "s11_aac_only_ts_2s",
            "s13_h264_only_ts_2s",
            "r04_iphone12_hevc_dv84_rot_ts",
            "r07_h264_high_bframes_vfr_ts",
            "r09_sony_avchd_ac3_ts",
            "r02_intel_car_ts",
            "r06_iphone6_rot_vfr_ts",
            "s05_h264_aac_ts_discontinuity",
            "s07_h264_aac_ts_gap",
        ] {
            let f = check_set(name, 100);
            assert!(!f.is_empty());
        }
    }

    fn read(set: &str, seg: &str) -> Vec<u8> {
        std::fs::read(set_dir(set).join(seg)).unwrap()
    }

    /// A packet carrying one PSI section (pointer_field 0), CRC not computed (not checked).
    fn psi_packet(pid: u16, section: &[u8]) -> Vec<u8> {
        let mut p = vec![0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0];
        p.extend_from_slice(section);
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.resize(PKT, 0xff);
        p
    }

    fn pat_pmt(stream_type: u8, descriptors: &[u8]) -> Vec<u8> {
        let pat = [0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00];
        let mut pmt = vec![0x02, 0xb0, 0, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00];
        pmt.extend_from_slice(&[stream_type, 0xe1, 0x01, 0xf0, descriptors.len() as u8]);
        pmt.extend_from_slice(descriptors);
        pmt[2] = (pmt.len() + 4 - 3) as u8;
        let mut ts = psi_packet(0, &pat);
        ts.extend(psi_packet(0x1000, &pmt));
        ts
    }

    #[test]
    fn unsupported_and_ignored_streams() {
        let err = index_segment(&pat_pmt(0x03, &[])).unwrap_err();
        assert_eq!(err.what, "unsupported codec: PID 0x0101 stream_type 0x03 (MPEG-1/2 audio)");
        assert_eq!(err.offset, 188);
        let err = index_segment(&pat_pmt(0x06, &[0x7a, 1, 0])).unwrap_err();
        assert!(err.what.contains("E-AC-3"), "{err}");
        let err = index_segment(&pat_pmt(0x02, &[])).unwrap_err();
        assert!(err.what.contains("MPEG-2 video"), "{err}");
        // Data-only programs and AC-3 by registration descriptor are recognised.
        assert_eq!(index_segment(&pat_pmt(0x15, &[])).unwrap_err().what, "no audio or video stream in PMT");
        assert_eq!(index_segment(&pat_pmt(0x06, &[])).unwrap_err().what, "no audio or video stream in PMT");
        let err = index_segment(&pat_pmt(0x06, &[0x05, 4, b'A', b'C', b'-', b'3'])).unwrap_err();
        assert_eq!(err.what, "no PES with a timestamp in segment");
        assert_eq!(index_segment(&psi_packet(0x20, &[0])).unwrap_err().what, "no PAT in segment");
    }

    #[test]
    fn bad_packet_structure() {
        assert_eq!(index_segment(&[]).unwrap_err().what, "empty segment");
        let data = read("s01_h264_aac_ts_2s", "seg_00001.ts");
        let mut long = data.clone();
        long.extend_from_slice(&[0x47, 0, 0, 0, 0]);
        let err = index_segment(&long).unwrap_err();
        assert_eq!(err.what, format!("truncated segment: 5 trailing bytes at offset {}", data.len()));
        let mut bad = data.clone();
        bad[188 * 7] = 0x48;
        let err = index_segment(&bad).unwrap_err();
        assert_eq!((err.offset, err.what.as_str()), (1316, "lost sync at offset 1316"));
        assert!(index_segment(&data[..100]).is_err());
    }

    #[test]
    fn corrupt_input_never_panics() {
        let data = read("s01_h264_aac_ts_2s", "seg_00002.ts");
        let good = index_segment(&data).unwrap();
        // Packet-aligned prefixes index to consistent (or failing) indexes.
        for n in (0..data.len()).step_by(PKT * 7).chain([1, 187, 189, data.len() - 1]) {
            if let Ok(idx) = index_segment(&data[..n]) {
                for t in &idx.tracks {
                    let c = &t.chunks[0];
                    let mut out = Vec::new();
                    transmux_chunk(t, c, &data[c.src_start as usize..c.src_end as usize], &mut out).unwrap();
                    assert_eq!(out.len() as u64, c.len_bytes);
                }
            }
        }
        // Random byte flips (keeping sync bytes or not): errors or indexes, never panics.
        let mut x = 0x9e37_79b9u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for round in 0..300 {
            let mut d = data.clone();
            for _ in 0..1 + round % 40 {
                let i = rnd() as usize % d.len();
                d[i] = rnd() as u8;
            }
            if let Ok(idx) = index_segment(&d) {
                for t in &idx.tracks {
                    let c = &t.chunks[0];
                    let _ = transmux_chunk(t, c, &d[c.src_start as usize..c.src_end as usize], &mut Vec::new());
                    // The original bytes against the corrupted index: equal or an error.
                    let _ = transmux_chunk(t, c, &data[c.src_start as usize..c.src_end as usize], &mut Vec::new());
                }
            }
        }
        let garbage: Vec<u8> = (0..188 * 50).map(|_| rnd() as u8).collect();
        assert!(index_segment(&garbage).is_err());
        let mut synced = garbage.clone();
        for p in synced.chunks_mut(PKT) {
            p[0] = 0x47;
        }
        let _ = index_segment(&synced);
        // Transmux detects a mismatching index and leaves `out` untouched.
        for t in &good.tracks {
            let mut t = t.clone();
            let c = t.chunks[0];
            let src = &data[c.src_start as usize..c.src_end as usize];
            t.samples[3].len_bytes += 1;
            let mut out = vec![1, 2, 3];
            assert!(transmux_chunk(&t, &c, src, &mut out).is_err());
            assert_eq!(out, [1, 2, 3]);
            let mut fewer = c;
            fewer.samples -= 1;
            assert!(transmux_chunk(&t, &fewer, src, &mut out).is_err());
            assert!(transmux_chunk(&t, &c, &src[..src.len() - PKT], &mut out).is_err());
        }
    }

    #[test]
    fn video_sizes_and_sps() {
        for (set, codec, w, h) in [
            ("s01_h264_aac_ts_2s", Codec::H264, 480, 270),
            ("s03_h265_aac_ts_1s", Codec::H265, 480, 270),
            ("r04_iphone12_hevc_dv84_rot_ts", Codec::H265, 1920, 1080),
            ("r07_h264_high_bframes_vfr_ts", Codec::H264, 1280, 720),
            ("r09_sony_avchd_ac3_ts", Codec::H264, 1920, 1080),
        ] {
            let idx = index_segment(&read(set, "seg_00000.ts")).unwrap();
            let t = &idx.tracks[0];
            assert_eq!((t.config.codec, t.config.width, t.config.height), (codec, w, h), "{set}");
            let e = &t.config.sample_entry;
            assert_eq!(u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize, e.len());
            assert_eq!((u16::from_be_bytes([e[32], e[33]]), u16::from_be_bytes([e[34], e[35]])), (w as u16, h as u16));
            // Parse the SPS stored in avcC / hvcC directly.
            let c = &e[86 + 8..];
            let sps = if codec == Codec::H264 {
                assert_eq!(&e[90..94], b"avcC");
                assert_eq!(c[4], 0xff);
                let n = u16::from_be_bytes([c[6], c[7]]) as usize;
                let s = h26x::parse_h264_sps(&c[8..8 + n]).unwrap();
                (s.width, s.height, s.sar)
            } else {
                assert_eq!(&e[90..94], b"hvcC");
                let mut p = 23;
                let mut found = None;
                for _ in 0..c[22] {
                    let ty = c[p] & 0x3f;
                    let cnt = u16::from_be_bytes([c[p + 1], c[p + 2]]);
                    p += 3;
                    for _ in 0..cnt {
                        let n = u16::from_be_bytes([c[p], c[p + 1]]) as usize;
                        if ty == 33 && found.is_none() {
                            found = Some(h26x::parse_h265_sps(&c[p + 2..p + 2 + n]).unwrap());
                        }
                        p += 2 + n;
                    }
                }
                assert_eq!(p, c.len());
                let s = found.unwrap();
                (s.width, s.height, s.sar)
            };
            assert_eq!((sps.0, sps.1), (w, h), "{set}");
        }
    }

    #[test]
    fn ptswrap_segment_is_monotonic() {
        let data = read("s09_h264_aac_ts_ptswrap", "seg_00009.ts");
        let idx = index_segment(&data).unwrap();
        let origin = idx.ts_origin_90k.unwrap();
        for t in &idx.tracks {
            assert!(t.samples.windows(2).all(|w| w[1].dts > w[0].dts));
            let last = t.samples.last().unwrap();
            let end_90k = (last.dts + last.dur as i64) * 90000 / t.config.timescale as i64;
            // The segment straddles the wrap: its times pass 2^33 on the raw clock.
            assert!(origin as i64 + end_90k > TS_WRAP as i64 || (origin as i64) < 90000 * 4, "{origin}");
        }
        eprintln!(
            "ptswrap origin {origin}, tracks {:?}",
            idx.tracks.iter().map(|t| t.samples.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_audio_track_with_its_language_and_what_is_skipped() {
        let data = read("c01_h264_2aac_lang_ts", "seg_00000.ts");
        let seg = index_segment_with(&data, &mut ParamCarry::default()).unwrap();
        let got: Vec<_> =
            seg.index.tracks.iter().map(|t| (t.config.codec, t.config.language, t.config.source_id)).collect();
        assert_eq!(got, [(Codec::H264, *b"und", 0x100), (Codec::Aac, *b"eng", 0x101), (Codec::Aac, *b"deu", 0x102)]);
        assert_eq!(seg.skipped, ["PID 0x0103: private data (stream_type 0x06)"]);
        // The two audio tracks are different streams (a stereo and a mono microphone).
        assert_ne!(seg.index.tracks[1].config.sample_entry, seg.index.tracks[2].config.sample_entry);
        for t in &seg.index.tracks {
            let c = &t.chunks[0];
            let mut out = Vec::new();
            transmux_chunk(t, c, &data[c.src_start as usize..c.src_end as usize], &mut out).unwrap();
            assert_eq!(out.len() as u64, c.len_bytes);
        }
        assert_eq!(SegmentIndex::decode(&seg.index.encode()).unwrap(), seg.index);
    }

    #[test]
    fn parameter_sets_sent_once_are_carried() {
        for (set, codec, what) in [
            ("c03_h264_params_once_ts", Codec::H264, "SPS/PPS"),
            ("c04_h265_params_once_ts", Codec::H265, "VPS/SPS/PPS"),
        ] {
            let first = index_segment(&read(set, "seg_00000.ts")).unwrap();
            let later = read(set, "seg_00003.ts");
            // Alone, a later segment cannot be described: it has no parameter sets.
            let err = index_segment(&later).unwrap_err();
            assert!(err.what.contains(what) && err.what.contains("earlier segment"), "{set}: {err}");
            // With the stream's earlier segments, it gets their sample entry, byte for byte.
            let mut carry = ParamCarry::default();
            for n in 0..3 {
                index_segment_with(&read(set, &format!("seg_0000{n}.ts")), &mut carry).unwrap();
            }
            let seg = index_segment_with(&later, &mut carry).unwrap().index;
            let (v, v0) = (&seg.tracks[0], &first.tracks[0]);
            assert_eq!((v.config.codec, &v.config.sample_entry), (codec, &v0.config.sample_entry), "{set}");
            assert_eq!((v.config.width, v.config.height), (480, 270));
            assert!(v.samples[0].sync, "{set}: the segment starts with an IDR");
            // Another codec in the carry does not stand in.
            let mut other = ParamCarry::default();
            let h = if codec == Codec::H264 { "c04_h265_params_once_ts" } else { "c03_h264_params_once_ts" };
            other.remember(&index_segment(&read(h, "seg_00000.ts")).unwrap());
            assert!(index_segment_with(&later, &mut other).is_err());
        }
    }

    /// Fuzzing found (ts_segment, strict mode): after garbage on an audio PID, import took the
    /// frames a resync found while a transmux from the chunk's first packet took a bogus ADTS
    /// header at the start of that packet's PES; both now check the first frame alike.
    #[test]
    fn fuzz_audio_resync_agrees_with_transmux() {
        let data = include_bytes!("../testdata/fuzz_ts_audio_resync.ts");
        let idx = index_segment(data).unwrap();
        for t in &idx.tracks {
            for c in &t.chunks {
                let mut out = Vec::new();
                transmux_chunk(t, c, &data[c.src_start as usize..c.src_end as usize], &mut out)
                    .unwrap_or_else(|e| panic!("{:?} PID {:#x}: {e}", t.config.codec, t.config.source_id));
                assert_eq!(out.len() as u64, c.len_bytes);
            }
        }
    }
}
