//! The per-segment sample index: what import learns from a segment once, so that serving never
//! parses a segment again except to transmux the exact chunk a byte range touches.
//!
//! Shape: a [`SegmentIndex`] has any number of video and audio [`TrackIndex`]es, video first,
//! each kind in source order (PMT order for MPEG-TS, `trak` order for fMP4); each holds the
//! codec configuration ([`TrackConfig`], including the finished sample entry box), its
//! [`Sample`]s in decode order and the [`Chunk`]s that group them (a chunk is a run of samples
//! whose transmuxed payloads are contiguous in the output `mdat` and come from one contiguous
//! byte range of the stored segment).
//!
//! Times are in the track's own timescale ([`TrackConfig::timescale`], ticks per second): 90 kHz
//! for MPEG-TS video, the sample rate for audio, the `mdhd` timescale for fMP4.
//!
//! [`SegmentIndex::encode`] / [`SegmentIndex::decode`] give a compact, versioned binary form
//! (LEB128 varints, delta-coded) that the catalog stores as a BLOB; roughly 4–6 bytes per sample.

use super::FormatError;

/// Largest decode time magnitude a stored index may hold, in track timescale ticks: 2^56, about
/// 228 years at 10 MHz (the finest timescale in use; an epoch-based `tfdt` at 10 MHz is about
/// 2^54). Keeps every later sum of times, durations and offsets far from `i64` overflow.
pub const MAX_ABS_DTS: u64 = 1 << 56;

/// Container of the stored segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MPEG-TS (ISO/IEC 13818-1): payloads are PES in 188-byte packets; video is Annex B and
    /// audio ADTS/AC-3, transmuxed at serve time.
    Ts,
    /// Fragmented MP4 / CMAF (ISO/IEC 14496-12 §8.8): payloads are copied as they are.
    Fmp4,
}

/// Video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrackKind {
    Video,
    Audio,
}

/// Elementary stream codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// ITU-T H.264 / AVC; sample entry `avc1` (or `avc3` from fMP4 sources).
    H264,
    /// ITU-T H.265 / HEVC; sample entry `hvc1` or `hev1`.
    H265,
    /// AAC (ISO/IEC 14496-3); sample entry `mp4a` + `esds`.
    Aac,
    /// AC-3 (ETSI TS 102 366); sample entry `ac-3` + `dac3` (Annex F).
    Ac3,
}

impl Codec {
    pub fn kind(self) -> TrackKind {
        match self {
            Codec::H264 | Codec::H265 => TrackKind::Video,
            Codec::Aac | Codec::Ac3 => TrackKind::Audio,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            Codec::H264 => 1,
            Codec::H265 => 2,
            Codec::Aac => 3,
            Codec::Ac3 => 4,
        }
    }
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Codec::H264,
            2 => Codec::H265,
            3 => Codec::Aac,
            4 => Codec::Ac3,
            _ => return None,
        })
    }
}

/// Codec configuration of one track of one segment: everything the MP4 writer needs besides
/// the samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackConfig {
    pub codec: Codec,
    /// Ticks per second of every time in this track's [`Sample`]s.
    pub timescale: u32,
    /// The complete sample entry box as written inside `stsd` (ISO/IEC 14496-12 §8.5.2), e.g. an
    /// `avc1` box containing `avcC`; copied verbatim from fMP4 init segments, built from SPS/PPS or
    /// ADTS/AC-3 headers for MPEG-TS.
    pub sample_entry: Vec<u8>,
    /// Display width and height in pixels for `tkhd` (0 for audio).
    pub width: u32,
    pub height: u32,
    /// `tkhd` transformation matrix (ISO/IEC 14496-12 §8.3.2; rotation), unity when absent.
    pub matrix: [i32; 9],
    /// Stream identifier in the source: the PID for MPEG-TS, the `track_ID` for fMP4.
    pub source_id: u32,
    /// ISO 639-2/T language code (`mdhd`, ISO/IEC 14496-12 §8.4.2): from the PMT's
    /// ISO_639_language_descriptor (ISO/IEC 13818-1 §2.6.18) or the init segment's `mdhd`;
    /// `und` when unknown.
    pub language: [u8; 3],
}

/// The language code of a track whose language is unknown (ISO 639-2 "undetermined").
pub const UNDETERMINED: [u8; 3] = *b"und";

/// One sample (an access unit / audio frame) in decode order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Decode time (DTS) in track timescale ticks. MPEG-TS: relative to the segment's
    /// [`SegmentIndex::ts_origin_90k`] and unwrapped (33-bit wraps inside the segment removed),
    /// converted to the track timescale; fMP4: the absolute `tfdt`-based decode time.
    pub dts: i64,
    /// Duration in timescale ticks; 0 when the source does not say (the last MPEG-TS video sample
    /// of a segment: the next segment decides).
    pub dur: u32,
    /// Composition offset PTS − DTS in ticks (may be negative for fMP4 `trun` version 1).
    pub cts_offset: i32,
    /// Payload size in bytes after transmux (length-prefixed NAL units, raw AAC frame).
    pub len_bytes: u32,
    /// Sync sample (IDR / IRAP / every audio frame).
    pub sync: bool,
    /// Where the payload lies in the stored segment: fMP4, the offset of its first payload byte;
    /// MPEG-TS, the offset of the first 188-byte packet of the PES carrying it.
    pub src_offset: u64,
}

/// A run of samples that is one output chunk (`stco`/`co64` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Index of its first sample in [`TrackIndex::samples`].
    pub first_sample: u32,
    /// Number of samples.
    pub samples: u32,
    /// Byte range `[src_start, src_end)` of the stored segment that holds every payload byte of
    /// the chunk. fMP4: exactly the payloads (the output bytes are a copy). MPEG-TS: whole
    /// packets, from the first packet of the first PES to the last packet of the last PES.
    pub src_start: u64,
    pub src_end: u64,
    /// Sum of the samples' `len_bytes`: the chunk's size in the output `mdat`.
    pub len_bytes: u64,
}

/// Index of one track in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackIndex {
    pub config: TrackConfig,
    pub samples: Vec<Sample>,
    pub chunks: Vec<Chunk>,
}

impl TrackIndex {
    pub fn kind(&self) -> TrackKind {
        self.config.codec.kind()
    }
}

/// Index of one stored segment: its video tracks, then its audio tracks, each kind in source
/// order. The *n*-th track of a kind is the same output track in every segment of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub container: Container,
    /// MPEG-TS only: the raw 33-bit 90 kHz timestamp that sample times are relative to (the
    /// first PTS/DTS seen in the segment). Lets the layout compare segments modulo 2^33.
    pub ts_origin_90k: Option<u64>,
    pub tracks: Vec<TrackIndex>,
}

impl SegmentIndex {
    /// The first track of `kind`, if any.
    pub fn track(&self, kind: TrackKind) -> Option<&TrackIndex> {
        self.tracks.iter().find(|t| t.kind() == kind)
    }

    /// Each track with its key `(kind, n)`: it is the `n`-th track of its kind (from 0).
    pub fn keyed_tracks(&self) -> impl Iterator<Item = ((TrackKind, u8), &TrackIndex)> {
        let mut counts = [0u8; 2];
        self.tracks.iter().map(move |t| {
            let c = &mut counts[t.kind() as usize];
            let key = (t.kind(), *c);
            *c = c.saturating_add(1);
            (key, t)
        })
    }

    /// Checks the invariants the layout relies on: chunks cover the samples in order, chunk
    /// sizes add up, video tracks come before audio tracks, at most [`MAX_TRACKS`] tracks, no
    /// decode time past [`MAX_ABS_DTS`] (what [`Self::decode`] accepts). Demuxers call this
    /// before returning.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.tracks.len() > MAX_TRACKS {
            return Err(FormatError::new(0, format!("{} tracks, at most {MAX_TRACKS}", self.tracks.len())));
        }
        if self.tracks.windows(2).any(|w| w[0].kind() > w[1].kind()) {
            return Err(FormatError::new(0, "an audio track before a video track"));
        }
        for t in &self.tracks {
            if t.config.timescale == 0 {
                return Err(FormatError::new(0, "timescale 0"));
            }
            let mut next = 0u32;
            for c in &t.chunks {
                if c.first_sample != next || c.samples == 0 || c.src_end < c.src_start {
                    return Err(FormatError::new(c.src_start, "chunks do not cover samples in order"));
                }
                let sum: u64 = t.samples[c.first_sample as usize..(c.first_sample + c.samples) as usize]
                    .iter()
                    .map(|s| s.len_bytes as u64)
                    .sum();
                if sum != c.len_bytes {
                    return Err(FormatError::new(c.src_start, "chunk size differs from its samples"));
                }
                next += c.samples;
            }
            if next as usize != t.samples.len() {
                return Err(FormatError::new(0, "chunks do not cover all samples"));
            }
            if t.samples.iter().any(|s| s.dts.unsigned_abs() > MAX_ABS_DTS) {
                return Err(FormatError::new(0, format!("a decode time past {MAX_ABS_DTS} ticks")));
            }
        }
        Ok(())
    }

    /// Encodes to the compact binary form stored in the catalog (encoding version 2: version 1
    /// plus each track's language).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64 + self.tracks.iter().map(|t| t.samples.len() * 6).sum::<usize>());
        w.push(ENCODING_VERSION);
        w.push(match self.container {
            Container::Ts => 0,
            Container::Fmp4 => 1,
        });
        match self.ts_origin_90k {
            Some(o) => {
                w.push(1);
                put_uv(&mut w, o);
            }
            None => w.push(0),
        }
        put_uv(&mut w, self.tracks.len() as u64);
        for t in &self.tracks {
            let c = &t.config;
            w.push(c.codec.to_u8());
            put_uv(&mut w, c.timescale as u64);
            put_uv(&mut w, c.width as u64);
            put_uv(&mut w, c.height as u64);
            for m in c.matrix {
                put_sv(&mut w, m as i64);
            }
            put_uv(&mut w, c.source_id as u64);
            w.extend_from_slice(&c.language);
            put_uv(&mut w, c.sample_entry.len() as u64);
            w.extend_from_slice(&c.sample_entry);
            put_uv(&mut w, t.samples.len() as u64);
            let (mut dts, mut off) = (0i64, 0u64);
            for s in &t.samples {
                put_sv(&mut w, s.dts - dts);
                dts = s.dts;
                put_uv(&mut w, s.dur as u64);
                put_sv(&mut w, s.cts_offset as i64);
                put_uv(&mut w, ((s.len_bytes as u64) << 1) | s.sync as u64);
                put_sv(&mut w, s.src_offset as i64 - off as i64);
                off = s.src_offset;
            }
            put_uv(&mut w, t.chunks.len() as u64);
            for ch in &t.chunks {
                put_uv(&mut w, ch.samples as u64);
                put_uv(&mut w, ch.src_start);
                put_uv(&mut w, ch.src_end - ch.src_start);
            }
        }
        w
    }

    /// Decodes [`SegmentIndex::encode`] output, or that of encoding version 1 (no languages:
    /// `und`). Errors on a truncated or unknown encoding.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        let mut r = VarReader { b, pos: 0 };
        let ver = r.byte()?;
        if ver != ENCODING_VERSION && ver != 1 {
            return Err(FormatError::new(0, format!("unknown index encoding version {ver}")));
        }
        let container = match r.byte()? {
            0 => Container::Ts,
            1 => Container::Fmp4,
            v => return Err(FormatError::new(1, format!("unknown container {v}"))),
        };
        let ts_origin_90k = match r.byte()? {
            0 => None,
            _ => Some(r.uv()?),
        };
        let ntracks = r.uv()? as usize;
        let mut tracks = Vec::with_capacity(ntracks.min(4));
        for _ in 0..ntracks {
            let off = r.pos;
            let codec = Codec::from_u8(r.byte()?).ok_or_else(|| FormatError::new(off as u64, "unknown codec"))?;
            let timescale = r.uv()? as u32;
            let width = r.uv()? as u32;
            let height = r.uv()? as u32;
            let mut matrix = [0i32; 9];
            for m in &mut matrix {
                *m = r.sv()? as i32;
            }
            let source_id = r.uv()? as u32;
            let language = if ver >= 2 { r.bytes(3)?.try_into().expect("3 bytes") } else { UNDETERMINED };
            let n = r.uv()? as usize;
            let sample_entry = r.bytes(n)?.to_vec();
            let nsamples = r.uv()? as usize;
            let mut samples = Vec::with_capacity(nsamples.min(1 << 20));
            let (mut dts, mut src) = (0i64, 0i64);
            let out_of_range = |at: usize| FormatError::new(at as u64, "index value out of range");
            for _ in 0..nsamples {
                dts = dts
                    .checked_add(r.sv()?)
                    .filter(|d| d.unsigned_abs() <= MAX_ABS_DTS)
                    .ok_or_else(|| out_of_range(r.pos))?;
                let dur = r.uv()? as u32;
                let cts_offset = r.sv()? as i32;
                let ls = r.uv()?;
                src = src.checked_add(r.sv()?).filter(|s| *s >= 0).ok_or_else(|| out_of_range(r.pos))?;
                samples.push(Sample {
                    dts,
                    dur,
                    cts_offset,
                    len_bytes: (ls >> 1) as u32,
                    sync: ls & 1 == 1,
                    src_offset: src as u64,
                });
            }
            let nchunks = r.uv()? as usize;
            let mut chunks = Vec::with_capacity(nchunks.min(1 << 16));
            let mut first = 0u32;
            for _ in 0..nchunks {
                let n = r.uv()? as u32;
                let src_start = r.uv()?;
                let src_end = src_start
                    .checked_add(r.uv()?)
                    .ok_or_else(|| FormatError::new(r.pos as u64, "chunk end out of range"))?;
                let end = (first as usize).checked_add(n as usize).filter(|&e| e <= samples.len());
                let end = end.ok_or_else(|| FormatError::new(r.pos as u64, "chunk past last sample"))?;
                let len_bytes = samples[first as usize..end].iter().map(|s| s.len_bytes as u64).sum();
                chunks.push(Chunk { first_sample: first, samples: n, src_start, src_end, len_bytes });
                first += n;
            }
            tracks.push(TrackIndex {
                config: TrackConfig { codec, timescale, sample_entry, width, height, matrix, source_id, language },
                samples,
                chunks,
            });
        }
        let idx = SegmentIndex { container, ts_origin_90k, tracks };
        idx.validate()?;
        Ok(idx)
    }
}

const ENCODING_VERSION: u8 = 2;

/// The video sample entries a stream sent last, carried from one segment to the next.
///
/// Some encoders send SPS/PPS (and VPS) only with the first IDR of a stream, or every few
/// minutes, so a later MPEG-TS segment may hold none. Its video track then takes the sample
/// entry of the same track (the *n*-th video track) from the last segment that had one; a
/// segment gets a new sample entry only when the parameter sets change. Fill it with
/// [`ParamCarry::remember`] from each indexed segment, in stream order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamCarry {
    /// By video track ordinal: the last config seen.
    video: Vec<Option<TrackConfig>>,
}

impl ParamCarry {
    /// Remembers the video configs of `index` (e.g. the last segment of a recording).
    pub fn remember(&mut self, index: &SegmentIndex) {
        for ((kind, n), t) in index.keyed_tracks() {
            if kind == TrackKind::Video {
                let n = n as usize;
                if self.video.len() <= n {
                    self.video.resize(n + 1, None);
                }
                self.video[n] = Some(t.config.clone());
            }
        }
    }

    /// The last config of the `n`-th video track, if its codec is `codec`.
    pub fn video(&self, n: usize, codec: Codec) -> Option<&TrackConfig> {
        self.video.get(n).and_then(Option::as_ref).filter(|c| c.codec == codec)
    }
}

/// Most tracks a segment may have (a TS program or fMP4 init with more is refused).
pub const MAX_TRACKS: usize = 16;

fn put_uv(w: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            w.push(b);
            return;
        }
        w.push(b | 0x80);
    }
}

fn put_sv(w: &mut Vec<u8>, v: i64) {
    put_uv(w, ((v << 1) ^ (v >> 63)) as u64);
}

struct VarReader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl VarReader<'_> {
    fn err(&self) -> FormatError {
        FormatError::new(self.pos as u64, "truncated sample index")
    }
    fn byte(&mut self) -> Result<u8, FormatError> {
        let v = *self.b.get(self.pos).ok_or_else(|| self.err())?;
        self.pos += 1;
        Ok(v)
    }
    fn bytes(&mut self, n: usize) -> Result<&[u8], FormatError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| self.err())?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn uv(&mut self) -> Result<u64, FormatError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FormatError::new(self.pos as u64, "varint too long"))
    }
    fn sv(&mut self) -> Result<i64, FormatError> {
        let u = self.uv()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// Groups consecutive samples into chunks for a source whose payloads are stored contiguously
/// and copied as they are (fMP4): a new chunk starts wherever a payload does not follow its
/// predecessor in the stored segment.
pub fn contiguous_chunks(samples: &[Sample]) -> Vec<Chunk> {
    let mut chunks: Vec<Chunk> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        match chunks.last_mut() {
            Some(c) if c.src_end == s.src_offset => {
                c.samples += 1;
                c.src_end += s.len_bytes as u64;
                c.len_bytes += s.len_bytes as u64;
            }
            _ => chunks.push(Chunk {
                first_sample: i as u32,
                samples: 1,
                src_start: s.src_offset,
                src_end: s.src_offset + s.len_bytes as u64,
                len_bytes: s.len_bytes as u64,
            }),
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dts: i64, len: u32, off: u64) -> Sample {
        Sample { dts, dur: 3000, cts_offset: -3000, len_bytes: len, sync: dts == 0, src_offset: off }
    }

    #[test]
    fn encode_decode_round_trip() {
        let samples = vec![sample(0, 100, 1000), sample(3000, 50, 1100), sample(6000, 7, 5000)];
        let chunks = contiguous_chunks(&samples);
        assert_eq!(chunks.len(), 2);
        let idx = SegmentIndex {
            container: Container::Fmp4,
            ts_origin_90k: Some((1 << 33) - 5),
            tracks: vec![TrackIndex {
                config: TrackConfig {
                    codec: Codec::H264,
                    timescale: 90000,
                    sample_entry: vec![1, 2, 3],
                    width: 640,
                    height: 480,
                    matrix: crate::boxes::UNITY_MATRIX,
                    source_id: 256,
                    language: *b"deu",
                },
                samples,
                chunks,
            }],
        };
        idx.validate().unwrap();
        let enc = idx.encode();
        assert_eq!(SegmentIndex::decode(&enc).unwrap(), idx);
        for n in 0..enc.len() {
            assert!(SegmentIndex::decode(&enc[..n]).is_err(), "prefix {n} decoded");
        }
        // Encoding version 1 (stored by earlier releases) has no languages: "und".
        let mut v1 = idx.clone();
        v1.tracks[0].config.language = UNDETERMINED;
        let mut enc = v1.encode();
        let at = enc.windows(3).position(|w| w == b"und").unwrap();
        enc.drain(at..at + 3);
        enc[0] = 1;
        assert_eq!(SegmentIndex::decode(&enc).unwrap(), v1);
    }

    #[test]
    fn carry_remembers_video_configs_by_ordinal_and_codec() {
        let track = |codec, entry: u8| TrackIndex {
            config: TrackConfig {
                codec,
                timescale: 90000,
                sample_entry: vec![entry],
                width: 1,
                height: 1,
                matrix: crate::boxes::UNITY_MATRIX,
                source_id: 1,
                language: UNDETERMINED,
            },
            samples: vec![],
            chunks: vec![],
        };
        let idx = SegmentIndex {
            container: Container::Ts,
            ts_origin_90k: None,
            tracks: vec![track(Codec::H264, 1), track(Codec::H265, 2), track(Codec::Aac, 3)],
        };
        let mut c = ParamCarry::default();
        assert_eq!(c.video(0, Codec::H264), None);
        c.remember(&idx);
        assert_eq!(c.video(0, Codec::H264).map(|t| t.sample_entry[0]), Some(1));
        assert_eq!(c.video(1, Codec::H265).map(|t| t.sample_entry[0]), Some(2));
        assert_eq!(c.video(1, Codec::H264), None, "another codec does not stand in");
        assert_eq!(c.video(2, Codec::H264), None, "audio is never carried");
    }

    /// Fuzzing found (sample_index): stored indexes whose deltas overflow 64 bits decoded with
    /// an arithmetic overflow; they are refused now.
    #[test]
    fn fuzz_overflowing_deltas_are_refused() {
        for b in [
            &include_bytes!("../testdata/fuzz_index_decode-dts-overflow")[..],
            include_bytes!("../testdata/fuzz_index_decode-src-offset-overflow"),
            include_bytes!("../testdata/fuzz_index_decode-chunk-end-overflow"),
        ] {
            assert!(SegmentIndex::decode(b).is_err());
        }
    }
}
