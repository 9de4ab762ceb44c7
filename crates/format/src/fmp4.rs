//! Fragmented MP4 / CMAF parser (ISO/IEC 14496-12 §8.8): the init segment (`moov` with `mvex`)
//! and media segments (`moof` + `mdat`) into a [`SegmentIndex`].
//!
//! fMP4 payloads are already in MP4 form (length-prefixed NAL units, raw AAC / AC-3 frames), so
//! the index only records where each sample lies in the stored segment; serving copies the bytes.
//! Every offset in a [`FormatError`] is a byte offset into the buffer being parsed.

use super::FormatError;
use super::boxes::{BoxRef, Boxes, child, need};
use super::index::{
    Codec, Container, Sample, SegmentIndex, TrackConfig, TrackIndex, TrackKind, UNDETERMINED, contiguous_chunks,
};
use crate::bail_at;

/// A parsed init segment: the `vide` and `soun` tracks of its `moov`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSegment {
    /// Video tracks first, then audio tracks, each kind in `trak` order.
    pub tracks: Vec<InitTrack>,
    /// Tracks not carried (other handlers: subtitles, timed metadata, hints), one line each:
    /// `track 3: handler 'meta' (timed metadata)`.
    pub skipped: Vec<String>,
    /// `mvhd` timescale (ticks per second), the unit of edit list segment durations (§8.2.2).
    pub movie_timescale: u32,
}

/// One track of an [`InitSegment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitTrack {
    /// Codec configuration; `sample_entry` is the first `stsd` entry copied verbatim,
    /// `source_id` the `track_ID`, `timescale` the `mdhd` timescale.
    pub config: TrackConfig,
    /// Fragment defaults from this track's `mvex/trex` (§8.8.3).
    pub trex: Trex,
    /// Shift added to every decode time so that `dts + cts_offset` is the presentation time after
    /// the init's edit list (§8.6.6), in media timescale ticks: `round(E · media_ts / movie_ts) − M`
    /// for leading empty edits of total duration `E` (movie timescale) followed by a media edit
    /// starting at media time `M`; `−M` for a lone media edit; 0 without `elst`.
    pub edit_shift: i64,
}

/// Track extends defaults, `TrackExtendsBox` (ISO/IEC 14496-12 §8.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trex {
    /// The `track_ID` these defaults apply to.
    pub track_id: u32,
    /// 1-based index into `stsd`.
    pub default_sample_description_index: u32,
    /// Default sample duration in media timescale ticks.
    pub default_sample_duration: u32,
    /// Default sample size in bytes.
    pub default_sample_size: u32,
    /// Default sample flags (§8.8.3.1 layout; bit 0x10000 = `sample_is_non_sync_sample`).
    pub default_sample_flags: u32,
}

/// `sample_is_non_sync_sample` in the sample flags word (§8.8.3.1).
const NON_SYNC: u32 = 0x0001_0000;

/// Parses an fMP4 init segment (ISO/IEC 14496-12 §8.8.1: `ftyp` + `moov` with `mvex`).
///
/// Reads `mvhd` (movie timescale), and per `trak` with a `vide` or `soun` handler: `tkhd`
/// (`track_ID`, matrix, width/height), `edts/elst`, `mdhd` (timescale) and the first `stsd`
/// entry (further entries are ignored), plus the track's `mvex/trex`. Errors on a missing
/// `moov`/`mvhd`/`trex`, zero timescales, encrypted (`encv`/`enca`) or unsupported sample
/// entries, and malformed boxes.
pub fn parse_init(data: &[u8]) -> Result<InitSegment, FormatError> {
    let mut moov = None;
    for b in Boxes::new(data, 0, data.len()) {
        let b = b?;
        if &b.fourcc == b"moov" && moov.is_none() {
            moov = Some(b);
        }
    }
    let Some(moov) = moov else { bail_at!(0, "no moov box") };

    let mut movie_timescale = None;
    let mut traks = Vec::new();
    let mut trexes = Vec::new();
    for b in Boxes::children(data, &moov) {
        let b = b?;
        match &b.fourcc {
            b"mvhd" => {
                let (mut r, version, _) = b.full(data)?;
                r.skip(if version == 1 { 16 } else { 8 }, "mvhd times")?;
                let ts = r.u32("mvhd timescale")?;
                if ts == 0 {
                    bail_at!(b.start, "mvhd timescale is 0");
                }
                movie_timescale = Some(ts);
            }
            b"trak" => traks.push(b),
            b"mvex" => {
                for t in Boxes::children(data, &b) {
                    let t = t?;
                    if &t.fourcc == b"trex" {
                        let (mut r, _, _) = t.full(data)?;
                        trexes.push(Trex {
                            track_id: r.u32("trex")?,
                            default_sample_description_index: r.u32("trex")?,
                            default_sample_duration: r.u32("trex")?,
                            default_sample_size: r.u32("trex")?,
                            default_sample_flags: r.u32("trex")?,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    let Some(movie_timescale) = movie_timescale else { bail_at!(moov.start, "moov has no mvhd") };

    let mut tracks: Vec<InitTrack> = Vec::new();
    let mut skipped = Vec::new();
    for trak in traks {
        let mut t = match parse_trak(data, &trak, movie_timescale)? {
            Ok(t) => t,
            Err(what) => {
                skipped.push(what);
                continue;
            }
        };
        let Some(trex) = trexes.iter().find(|x| x.track_id == t.config.source_id) else {
            bail_at!(trak.start, "track {} has no mvex/trex: not a fragmented MP4 init segment", t.config.source_id);
        };
        t.trex = *trex;
        if tracks.len() >= super::index::MAX_TRACKS || tracks.iter().any(|o| o.config.source_id == t.config.source_id) {
            skipped.push(format!("track {}: one track too many", t.config.source_id));
            continue;
        }
        tracks.push(t);
    }
    // Video first, each kind in trak order.
    tracks.sort_by_key(|t| t.config.codec.kind());
    Ok(InitSegment { tracks, skipped, movie_timescale })
}

/// Parses one `trak`; `Ok(Err(description))` for handlers other than `vide` and `soun` (the
/// track is not carried). `trex` is left default.
fn parse_trak(data: &[u8], trak: &BoxRef, movie_timescale: u32) -> Result<Result<InitTrack, String>, FormatError> {
    let mdia = need(data, trak, b"mdia")?;
    let hdlr = need(data, &mdia, b"hdlr")?;
    let (mut r, _, _) = hdlr.full(data)?;
    r.skip(4, "hdlr pre_defined")?;
    let handler = r.take(4, "hdlr handler_type")?;
    let kind = match handler {
        b"vide" => TrackKind::Video,
        b"soun" => TrackKind::Audio,
        other => {
            let what = match other {
                b"sbtl" | b"subt" | b"text" | b"clcp" => " (subtitles)",
                b"meta" => " (timed metadata)",
                b"hint" => " (hint track)",
                _ => "",
            };
            let id = child(data, trak, b"tkhd")?
                .and_then(|b| {
                    let (mut r, v, _) = b.full(data).ok()?;
                    r.skip(if v == 1 { 16 } else { 8 }, "tkhd times").ok()?;
                    r.u32("tkhd track_ID").ok()
                })
                .map_or("?".to_string(), |id| id.to_string());
            let name: String = other.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect();
            return Ok(Err(format!("track {id}: handler '{name}'{what}")));
        }
    };

    // tkhd, §8.3.2.
    let tkhd = need(data, trak, b"tkhd")?;
    let (mut r, version, _) = tkhd.full(data)?;
    r.skip(if version == 1 { 16 } else { 8 }, "tkhd times")?;
    let track_id = r.u32("tkhd track_ID")?;
    r.skip(4, "tkhd reserved")?;
    r.skip(if version == 1 { 8 } else { 4 }, "tkhd duration")?;
    r.skip(8 + 2 + 2 + 2 + 2, "tkhd reserved/layer/alternate_group/volume")?;
    let mut matrix = [0i32; 9];
    for m in &mut matrix {
        *m = r.i32("tkhd matrix")?;
    }
    let width = r.u32("tkhd width")? >> 16;
    let height = r.u32("tkhd height")? >> 16;

    // mdhd, §8.4.2.
    let mdhd = need(data, &mdia, b"mdhd")?;
    let (mut r, version, _) = mdhd.full(data)?;
    r.skip(if version == 1 { 16 } else { 8 }, "mdhd times")?;
    let timescale = r.u32("mdhd timescale")?;
    if timescale == 0 {
        bail_at!(mdhd.start, "mdhd timescale of track {track_id} is 0");
    }
    r.skip(if version == 1 { 8 } else { 4 }, "mdhd duration")?;
    // Three 5-bit letters, each c − 0x60 (§8.4.2.3); anything else is "und".
    let packed = r.u16("mdhd language")?;
    let language = [(packed >> 10) & 31, (packed >> 5) & 31, packed & 31].map(|c| c as u8 + 0x60);
    let language = if language.iter().all(u8::is_ascii_lowercase) { language } else { UNDETERMINED };

    // stsd, §8.5.2: the first sample entry, verbatim.
    let minf = need(data, &mdia, b"minf")?;
    let stbl = need(data, &minf, b"stbl")?;
    let stsd = need(data, &stbl, b"stsd")?;
    let (mut r, _, _) = stsd.full(data)?;
    let count = r.u32("stsd entry_count")?;
    let first = r.offset() as usize;
    let entry = match Boxes::new(data, first, stsd.end).next() {
        Some(e) if count > 0 => e?,
        _ => bail_at!(stsd.start, "stsd of track {track_id} has no sample entry"),
    };
    let codec = match (&entry.fourcc, kind) {
        (b"avc1" | b"avc3", TrackKind::Video) => Codec::H264,
        (b"hvc1" | b"hev1", TrackKind::Video) => Codec::H265,
        (b"mp4a", TrackKind::Audio) => Codec::Aac,
        (b"ac-3", TrackKind::Audio) => Codec::Ac3,
        (b"encv" | b"enca", _) => {
            bail_at!(entry.start, "encrypted track {track_id} (sample entry '{}') is not supported", entry.name())
        }
        _ => bail_at!(entry.start, "unsupported codec: track {track_id} sample entry '{}'", entry.name()),
    };

    let edit_shift = match child(data, trak, b"edts")? {
        Some(edts) => match child(data, &edts, b"elst")? {
            Some(elst) => elst_shift(data, &elst, movie_timescale, timescale)?,
            None => 0,
        },
        None => 0,
    };

    Ok(Ok(InitTrack {
        config: TrackConfig {
            codec,
            timescale,
            sample_entry: data[entry.start..entry.end].to_vec(),
            width: if kind == TrackKind::Video { width } else { 0 },
            height: if kind == TrackKind::Video { height } else { 0 },
            matrix,
            source_id: track_id,
            language,
        },
        trex: Trex::default(),
        edit_shift,
    }))
}

/// Computes [`InitTrack::edit_shift`] from an `elst` (§8.6.6): the leading empty edits
/// (`media_time` −1) add their duration converted from movie to media timescale (rounded half
/// up), the first media edit subtracts its `media_time`. Later entries are ignored.
fn elst_shift(data: &[u8], elst: &BoxRef, movie_ts: u32, media_ts: u32) -> Result<i64, FormatError> {
    let (mut r, version, _) = elst.full(data)?;
    let count = r.u32("elst entry_count")?;
    let mut empty: u128 = 0;
    let mut media_time: i64 = 0;
    for _ in 0..count {
        let (dur, mt) = if version == 1 {
            (r.u64("elst entry")?, r.u64("elst entry")? as i64)
        } else {
            (r.u32("elst entry")? as u64, r.i32("elst entry")? as i64)
        };
        r.skip(4, "elst media_rate")?;
        if mt == -1 {
            empty += dur as u128;
        } else {
            media_time = mt;
            break;
        }
    }
    let (num, den) = (empty * media_ts as u128, movie_ts as u128);
    let empty_media = (2 * num + den) / (2 * den);
    match i64::try_from(empty_media).ok().and_then(|e| e.checked_sub(media_time)) {
        Some(s) => Ok(s),
        None => bail_at!(elst.start, "edit list shift out of range"),
    }
}

/// Per-track state while indexing a segment.
struct TrackState {
    samples: Vec<Sample>,
}

/// Indexes one fMP4 media segment (§8.8.4 `moof` + `mdat`) against its init segment.
///
/// Top-level `styp`, `sidx`, `prft`, `emsg`, `free`, `skip` and other non-`moof` boxes are
/// skipped. Each `traf` of a track known to `init` contributes its `trun` samples with
/// `dts = tfdt + Σ previous durations + edit_shift` (media timescale ticks), the `trun`
/// composition offset, `sync` from `sample_is_non_sync_sample` (always true for audio), and
/// `src_offset`/`len_bytes` = the payload's byte range in `data`, which must lie inside an
/// `mdat`. Tracks with no samples in the segment are left out; chunks come from
/// [`contiguous_chunks`]. Errors on no `moof`, a `traf` without `tfhd`/`tfdt`, a sample outside
/// the segment, an `stsd` index other than 1, and malformed boxes. Never panics.
pub fn index_segment(init: &InitSegment, data: &[u8]) -> Result<SegmentIndex, FormatError> {
    let mut moofs = Vec::new();
    let mut mdats = Vec::new();
    for b in Boxes::new(data, 0, data.len()) {
        let b = b?;
        match &b.fourcc {
            b"moof" => moofs.push(b),
            b"mdat" => mdats.push((b.body, b.end)),
            _ => {}
        }
    }
    if moofs.is_empty() {
        bail_at!(0, "no moof box");
    }
    let mut state: Vec<TrackState> = init.tracks.iter().map(|_| TrackState { samples: Vec::new() }).collect();
    for moof in &moofs {
        index_moof(init, data, moof, &mdats, &mut state)?;
    }
    let tracks = init
        .tracks
        .iter()
        .zip(state)
        .filter(|(_, s)| !s.samples.is_empty())
        .map(|(t, s)| TrackIndex {
            config: t.config.clone(),
            chunks: contiguous_chunks(&s.samples),
            samples: s.samples,
        })
        .collect();
    let idx = SegmentIndex { container: Container::Fmp4, ts_origin_90k: None, tracks };
    idx.validate()?;
    Ok(idx)
}

/// `tfhd` fields (§8.8.7).
struct Tfhd {
    flags: u32,
    track_id: u32,
    base_data_offset: u64,
    sample_description_index: Option<u32>,
    default_duration: Option<u32>,
    default_size: Option<u32>,
    default_flags: Option<u32>,
}

fn parse_tfhd(data: &[u8], b: &BoxRef) -> Result<Tfhd, FormatError> {
    let (mut r, _, flags) = b.full(data)?;
    let track_id = r.u32("tfhd track_ID")?;
    let base_data_offset = if flags & 0x01 != 0 { r.u64("tfhd base_data_offset")? } else { 0 };
    let sample_description_index = if flags & 0x02 != 0 { Some(r.u32("tfhd sample_description_index")?) } else { None };
    let default_duration = if flags & 0x08 != 0 { Some(r.u32("tfhd default_sample_duration")?) } else { None };
    let default_size = if flags & 0x10 != 0 { Some(r.u32("tfhd default_sample_size")?) } else { None };
    let default_flags = if flags & 0x20 != 0 { Some(r.u32("tfhd default_sample_flags")?) } else { None };
    Ok(Tfhd {
        flags,
        track_id,
        base_data_offset,
        sample_description_index,
        default_duration,
        default_size,
        default_flags,
    })
}

fn index_moof(
    init: &InitSegment,
    data: &[u8],
    moof: &BoxRef,
    mdats: &[(usize, usize)],
    state: &mut [TrackState],
) -> Result<(), FormatError> {
    // End of the previous traf's data, for a traf with neither base-data-offset nor
    // default-base-is-moof that is not the first in the moof (§8.8.7.1). `None` when unknown.
    let mut prev_traf_end: Option<u64> = Some(moof.start as u64);
    let mut first_traf = true;
    for traf in Boxes::children(data, moof) {
        let traf = traf?;
        if &traf.fourcc != b"traf" {
            continue; // mfhd and anything else
        }
        let tfhd = parse_tfhd(data, &need(data, &traf, b"tfhd")?)?;
        let base = if tfhd.flags & 0x01 != 0 {
            tfhd.base_data_offset
        } else if tfhd.flags & 0x02_0000 != 0 || first_traf {
            moof.start as u64
        } else {
            match prev_traf_end {
                Some(e) => e,
                None => bail_at!(
                    traf.start,
                    "cannot locate the data of this traf: no base offset and the previous traf was skipped"
                ),
            }
        };
        first_traf = false;
        let Some(ti) = init.tracks.iter().position(|t| t.config.source_id == tfhd.track_id) else {
            prev_traf_end = None;
            continue;
        };
        let track = &init.tracks[ti];
        let sdi = tfhd.sample_description_index.unwrap_or(track.trex.default_sample_description_index);
        if sdi > 1 {
            bail_at!(
                traf.start,
                "track {} uses sample description {sdi}; only the first stsd entry is supported",
                tfhd.track_id
            );
        }
        let Some(tfdt) = child(data, &traf, b"tfdt")? else {
            bail_at!(traf.start, "traf of track {} has no tfdt", tfhd.track_id);
        };
        let (mut r, version, _) = tfdt.full(data)?;
        let bmdt = if version == 1 { r.u64("tfdt")? } else { r.u32("tfdt")? as u64 };
        let Some(mut dts) = i64::try_from(bmdt).ok().and_then(|t| t.checked_add(track.edit_shift)) else {
            bail_at!(tfdt.start, "tfdt {bmdt} out of range");
        };
        let defaults = (
            tfhd.default_duration.unwrap_or(track.trex.default_sample_duration),
            tfhd.default_size.unwrap_or(track.trex.default_sample_size),
            tfhd.default_flags.unwrap_or(track.trex.default_sample_flags),
        );
        let mut pos = base;
        let mut first_trun = true;
        for trun in Boxes::children(data, &traf) {
            let trun = trun?;
            if &trun.fourcc != b"trun" {
                continue;
            }
            pos = index_trun(data, &trun, track, defaults, base, pos, first_trun, &mut dts, mdats, &mut state[ti])?;
            first_trun = false;
        }
        prev_traf_end = Some(pos);
    }
    Ok(())
}

/// Reads one `trun` (§8.8.8), appending its samples; returns the offset just past its data.
#[allow(clippy::too_many_arguments)]
fn index_trun(
    data: &[u8],
    trun: &BoxRef,
    track: &InitTrack,
    (def_dur, def_size, def_flags): (u32, u32, u32),
    base: u64,
    prev_end: u64,
    first_trun: bool,
    dts: &mut i64,
    mdats: &[(usize, usize)],
    st: &mut TrackState,
) -> Result<u64, FormatError> {
    // `mdats`: (body start, end) of every top-level `mdat`, in file order.
    let track_id = track.config.source_id;
    let (mut r, _version, flags) = trun.full(data)?;
    let count = r.u32("trun sample_count")?;
    let mut pos = if flags & 0x01 != 0 {
        let off = r.i32("trun data_offset")? as i64;
        match (base as i128 + off as i128).try_into() {
            Ok(p) => p,
            Err(_) => bail_at!(trun.start, "trun data_offset {off} points before the segment"),
        }
    } else if first_trun {
        base
    } else {
        prev_end
    };
    let first_flags = if flags & 0x04 != 0 { Some(r.u32("trun first_sample_flags")?) } else { None };
    let per_sample = 4 * [0x100, 0x200, 0x400, 0x800].iter().filter(|&&f| flags & f != 0).count();
    if (count as u64) * (per_sample as u64) > r.remaining() as u64 {
        bail_at!(trun.start, "trun of track {track_id} declares {count} samples but is too short for them");
    }
    // Bounds memory on hostile input: no more samples per track than bytes in the segment.
    if st.samples.len() as u64 + count as u64 > data.len() as u64 {
        bail_at!(trun.start, "trun of track {track_id} declares an implausible {count} samples");
    }
    st.samples.reserve(count as usize);
    for i in 0..count {
        let dur = if flags & 0x100 != 0 { r.u32("trun sample_duration")? } else { def_dur };
        let size = if flags & 0x200 != 0 { r.u32("trun sample_size")? } else { def_size };
        let sflags = if flags & 0x400 != 0 { r.u32("trun sample_flags")? } else { def_flags };
        let sflags = match first_flags {
            Some(f) if i == 0 => f,
            _ => sflags,
        };
        // Version 1 offsets are signed. Version 0 offsets are unsigned, but some writers store
        // negative values there; like common demuxers (FFmpeg), the 32 bits are read as two's
        // complement in both versions.
        let cts_offset = if flags & 0x800 != 0 { r.u32("trun sample_composition_time_offset")? as i32 } else { 0 };
        let n = st.samples.len();
        let end = match pos.checked_add(size as u64) {
            Some(e) if e <= data.len() as u64 => e,
            _ => bail_at!(trun.start, "sample {n} of track {track_id} outside the segment at offset {pos}"),
        };
        // `mdats` are in file order and do not overlap: the candidate is the last one starting
        // at or before `pos`.
        let i = mdats.partition_point(|&(s, _)| s as u64 <= pos);
        if i == 0 || end > mdats[i - 1].1 as u64 {
            bail_at!(trun.start, "sample {n} of track {track_id} at offset {pos} is not inside an mdat");
        }
        st.samples.push(Sample {
            dts: *dts,
            dur,
            cts_offset,
            len_bytes: size,
            sync: track.config.codec.kind() == TrackKind::Audio || sflags & NON_SYNC == 0,
            src_offset: pos,
        });
        let Some(next) = dts.checked_add(dur as i64) else {
            bail_at!(trun.start, "decode time overflow in track {track_id}");
        };
        *dts = next;
        pos = end;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-track totals over a whole set, as `ffprobe -show_packets` reports them for the
    /// concatenation init + segments (FFmpeg applies the same edit list shift to fragments).
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Expect {
        n: u64,
        sync: u64,
        size: u64,
        sum_dts: i64,
        sum_pts: i64,
        first_dts: i64,
        first_pts: i64,
    }

    type Row = (&'static str, &'static str, usize, Option<Expect>, Option<Expect>);

    /// Expected values computed once with `ffprobe -show_packets` (FFmpeg 5.1.9) on each set's init +
    /// segments concatenated: (directory, file prefix, segments, video, audio).
    fn expected() -> Vec<Row> {
        vec![
            (
                "../../fixtures/sets/r04_iphone12_hevc_dv84_rot_fmp4",
                "",
                2,
                Some(Expect {
                    n: 86,
                    sync: 3,
                    size: 3226787,
                    sum_dts: 2650780,
                    sum_pts: 2768092,
                    first_dts: -6,
                    first_pts: 1306,
                }),
                Some(Expect {
                    n: 112,
                    sync: 112,
                    size: 45765,
                    sum_dts: 8815072,
                    sum_pts: 8815072,
                    first_dts: 21874,
                    first_pts: 21874,
                }),
            ),
            (
                "../../fixtures/sets/r06_iphone6_rot_vfr_fmp4",
                "",
                2,
                Some(Expect {
                    n: 120,
                    sync: 4,
                    size: 375061,
                    sum_dts: 4572000,
                    sum_pts: 4572000,
                    first_dts: 0,
                    first_pts: 0,
                }),
                Some(Expect {
                    n: 173,
                    sync: 173,
                    size: 48400,
                    sum_dts: 15235072,
                    sum_pts: 15235072,
                    first_dts: 0,
                    first_pts: 0,
                }),
            ),
            (
                "../../fixtures/sets/r09_sony_avchd_ac3_fmp4",
                "",
                1,
                Some(Expect {
                    n: 26,
                    sync: 1,
                    size: 810094,
                    sum_dts: 83200,
                    sum_pts: 96512,
                    first_dts: 0,
                    first_pts: 1536,
                }),
                Some(Expect {
                    n: 17,
                    sync: 17,
                    size: 17408,
                    sum_dts: 241536,
                    sum_pts: 241536,
                    first_dts: 1920,
                    first_pts: 1920,
                }),
            ),
            (
                "../../fixtures/sets/s02_h264_aac_fmp4_2s",
                "",
                30,
                Some(Expect {
                    n: 1800,
                    sync: 30,
                    size: 1640764,
                    sum_dts: 828961200,
                    sum_pts: 830804400,
                    first_dts: -10,
                    first_pts: 1014,
                }),
                Some(Expect {
                    n: 2814,
                    sync: 2814,
                    size: 367215,
                    sum_dts: 4058958624,
                    sum_pts: 4058958624,
                    first_dts: 2160,
                    first_pts: 2160,
                }),
            ),
            (
                "../../fixtures/sets/s04_h265_aac_fmp4_1s",
                "",
                60,
                Some(Expect {
                    n: 1800,
                    sync: 60,
                    size: 1167746,
                    sum_dts: 828961200,
                    sum_pts: 830804400,
                    first_dts: -10,
                    first_pts: 1014,
                }),
                Some(Expect {
                    n: 2814,
                    sync: 2814,
                    size: 367215,
                    sum_dts: 4058958624,
                    sum_pts: 4058958624,
                    first_dts: 2160,
                    first_pts: 2160,
                }),
            ),
            (
                "../../fixtures/sets/s06_h264_aac_fmp4_discontinuity",
                "a_",
                15,
                Some(Expect {
                    n: 900,
                    sync: 15,
                    size: 822333,
                    sum_dts: 207120600,
                    sum_pts: 208042200,
                    first_dts: -10,
                    first_pts: 1014,
                }),
                Some(Expect {
                    n: 1408,
                    sync: 1408,
                    size: 182403,
                    sum_dts: 1017341952,
                    sum_pts: 1017341952,
                    first_dts: 2160,
                    first_pts: 2160,
                }),
            ),
            (
                "../../fixtures/sets/s06_h264_aac_fmp4_discontinuity",
                "b_",
                15,
                Some(Expect {
                    n: 900,
                    sync: 15,
                    size: 818956,
                    sum_dts: 207120600,
                    sum_pts: 208042200,
                    first_dts: -10,
                    first_pts: 1014,
                }),
                Some(Expect {
                    n: 1408,
                    sync: 1408,
                    size: 174032,
                    sum_dts: 1017341952,
                    sum_pts: 1017341952,
                    first_dts: 2160,
                    first_pts: 2160,
                }),
            ),
            (
                "../../fixtures/sets/s08_h264_aac_fmp4_gap",
                "",
                29,
                Some(Expect {
                    n: 1740,
                    sync: 29,
                    size: 1587877,
                    sum_dts: 809623560,
                    sum_pts: 811405320,
                    first_dts: -10,
                    first_pts: 1014,
                }),
                Some(Expect {
                    n: 2720,
                    sync: 2720,
                    size: 354833,
                    sum_dts: 3964184064,
                    sum_pts: 3964184064,
                    first_dts: 2160,
                    first_pts: 2160,
                }),
            ),
            (
                "../../fixtures/sets/s10_h264_aac_fmp4_bigtfdt",
                "",
                30,
                Some(Expect {
                    n: 1800,
                    sync: 30,
                    size: 1640764,
                    sum_dts: 2639102671800,
                    sum_pts: 2639104515000,
                    first_dts: 1465707607,
                    first_pts: 1465708631,
                }),
                Some(Expect {
                    n: 2814,
                    sync: 2814,
                    size: 367215,
                    sum_dts: 12893125183008,
                    sum_pts: 12893125183008,
                    first_dts: 4580338416,
                    first_pts: 4580338416,
                }),
            ),
            (
                "../../fixtures/sets/s12_aac_only_fmp4_2s",
                "",
                31,
                None,
                Some(Expect {
                    n: 2814,
                    sync: 2814,
                    size: 367215,
                    sum_dts: 4052880384,
                    sum_pts: 4052880384,
                    first_dts: 0,
                    first_pts: 0,
                }),
            ),
            (
                "../../fixtures/sets/s14_h264_only_fmp4_2s",
                "",
                30,
                Some(Expect {
                    n: 1800,
                    sync: 30,
                    size: 1640764,
                    sum_dts: 828961200,
                    sum_pts: 830804400,
                    first_dts: -10,
                    first_pts: 1014,
                }),
                None,
            ),
            (
                "/work/shared/fixtures/sets/real/r01_gopro_karma_fmp4",
                "",
                7,
                Some(Expect {
                    n: 362,
                    sync: 46,
                    size: 3811015,
                    sum_dts: 65406341,
                    sum_pts: 65406341,
                    first_dts: 0,
                    first_pts: 0,
                }),
                Some(Expect {
                    n: 566,
                    sync: 566,
                    size: 192989,
                    sum_dts: 163732480,
                    sum_pts: 163732480,
                    first_dts: 0,
                    first_pts: 0,
                }),
            ),
            (
                "/work/shared/fixtures/sets/real/r02_intel_car_fmp4",
                "",
                7,
                Some(Expect {
                    n: 377,
                    sync: 7,
                    size: 2318299,
                    sum_dts: 72577024,
                    sum_pts: 72577024,
                    first_dts: 0,
                    first_pts: 0,
                }),
                Some(Expect {
                    n: 1414,
                    sync: 1414,
                    size: 472748,
                    sum_dts: 1022966784,
                    sum_pts: 1022966784,
                    first_dts: 0,
                    first_pts: 0,
                }),
            ),
            (
                "/work/shared/fixtures/sets/real/r03_intel_person_noaudio_fmp4",
                "",
                70,
                Some(Expect {
                    n: 1394,
                    sync: 140,
                    size: 3267238,
                    sum_dts: 994223104,
                    sum_pts: 995650560,
                    first_dts: 0,
                    first_pts: 1024,
                }),
                None,
            ),
            (
                "/work/shared/fixtures/sets/real/r05_hevc_hdr10_hev1_fmp4",
                "",
                1,
                Some(Expect {
                    n: 28,
                    sync: 1,
                    size: 2654459,
                    sum_dts: 1249455,
                    sum_pts: 1249455,
                    first_dts: 0,
                    first_pts: 0,
                }),
                Some(Expect {
                    n: 47,
                    sync: 47,
                    size: 32300,
                    sum_dts: 1106944,
                    sum_pts: 1106944,
                    first_dts: 0,
                    first_pts: 0,
                }),
            ),
            (
                "/work/shared/fixtures/sets/real/r07_h264_high_bframes_vfr_fmp4",
                "",
                2,
                Some(Expect {
                    n: 109,
                    sync: 2,
                    size: 1516453,
                    sum_dts: 3769714,
                    sum_pts: 3839474,
                    first_dts: -6,
                    first_pts: 634,
                }),
                Some(Expect {
                    n: 156,
                    sync: 156,
                    size: 78293,
                    sum_dts: 12428364,
                    sum_pts: 12428364,
                    first_dts: 309,
                    first_pts: 309,
                }),
            ),
            (
                "/work/shared/fixtures/sets/real/r08_flir_vfr_fmp4",
                "",
                3,
                Some(Expect {
                    n: 84,
                    sync: 3,
                    size: 1326814,
                    sum_dts: 10423548,
                    sum_pts: 10635900,
                    first_dts: -13,
                    first_pts: 2515,
                }),
                Some(Expect {
                    n: 479,
                    sync: 479,
                    size: 88547,
                    sum_dts: 122953073,
                    sum_pts: 122953073,
                    first_dts: 11951,
                    first_pts: 11951,
                }),
            ),
        ]
    }

    fn segments(dir: &str, prefix: &str) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&format!("{prefix}seg_")) && n.ends_with(".m4s")
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn fixture_sets_match_ffprobe() {
        for (dir, prefix, nseg, video, audio) in expected() {
            if !std::path::Path::new(dir).exists() {
                eprintln!("skipping missing {dir}");
                continue;
            }
            let init_bytes = std::fs::read(format!("{dir}/{prefix}init.mp4")).unwrap();
            let init = parse_init(&init_bytes).unwrap_or_else(|e| panic!("{dir}: {e}"));
            let segs = segments(dir, prefix);
            assert_eq!(segs.len(), nseg, "{dir}");
            let mut got = [Expect::default(), Expect::default()];
            let mut first = [true, true];
            for p in &segs {
                let data = std::fs::read(p).unwrap();
                let idx = index_segment(&init, &data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                idx.validate().unwrap();
                assert_eq!(idx.container, Container::Fmp4);
                assert_eq!(idx.ts_origin_90k, None);
                for t in &idx.tracks {
                    let k = t.kind() as usize;
                    let g = &mut got[k];
                    for s in &t.samples {
                        let end = (s.src_offset + s.len_bytes as u64) as usize;
                        assert!(end <= data.len());
                        if first[k] {
                            first[k] = false;
                            g.first_dts = s.dts;
                            g.first_pts = s.dts + s.cts_offset as i64;
                        }
                        g.n += 1;
                        g.sync += s.sync as u64;
                        g.size += s.len_bytes as u64;
                        g.sum_dts += s.dts;
                        g.sum_pts += s.dts + s.cts_offset as i64;
                    }
                    for w in t.samples.windows(2) {
                        assert_eq!(w[0].dts + w[0].dur as i64, w[1].dts, "{}", p.display());
                    }
                    let src: u64 = t.chunks.iter().map(|c| c.src_end - c.src_start).sum();
                    assert_eq!(src, t.chunks.iter().map(|c| c.len_bytes).sum::<u64>());
                }
            }
            let want = [video, audio].map(|e| e.unwrap_or_default());
            assert_eq!(got, want, "{dir} {prefix}");
            let shifts: Vec<_> =
                init.tracks.iter().map(|t| (t.config.codec, t.config.timescale, t.edit_shift)).collect();
            eprintln!("{dir} {prefix}: {shifts:?}");
        }
    }

    const S02: &str = "../../fixtures/sets/s02_h264_aac_fmp4_2s";
    /// r04 `tkhd`: 90° clockwise display rotation (ffprobe: rotation −90), tx = 1080 in 16.16.
    const ROT_MATRIX_R04: [i32; 9] = [0, 0x1_0000, 0, -0x1_0000, 0, 0, 1080 << 16, 0, 0x4000_0000];
    const R04_SIZE: (u32, u32) = (1920, 1080);

    fn read(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn init_fields() {
        let data = read(&format!("{S02}/init.mp4"));
        let init = parse_init(&data).unwrap();
        assert_eq!(init.movie_timescale, 1000);
        assert_eq!(init.tracks.len(), 2);
        let (v, a) = (&init.tracks[0], &init.tracks[1]);
        assert_eq!((v.config.codec, v.config.timescale, v.config.source_id), (Codec::H264, 15360, 1));
        assert_eq!((v.config.width, v.config.height), (480, 270));
        assert_eq!(v.config.matrix, crate::boxes::UNITY_MATRIX);
        // stsd at 449: 16 bytes of header + entry_count, then the 156-byte avc1 entry.
        assert_eq!(v.config.sample_entry, &data[465..621]);
        assert_eq!(&v.config.sample_entry[4..8], b"avc1");
        assert_eq!(v.edit_shift, -10); // round(66 ms · 15.36) − 1024
        assert_eq!((v.trex.track_id, v.trex.default_sample_description_index), (1, 1));
        assert_eq!((a.config.codec, a.config.timescale, a.config.source_id), (Codec::Aac, 48000, 2));
        assert_eq!((a.config.width, a.config.height), (0, 0));
        assert_eq!(&a.config.sample_entry[4..8], b"mp4a");
        assert_eq!(a.edit_shift, 2160); // 45 ms · 48 − 0

        let r04 = parse_init(&read("../../fixtures/sets/r04_iphone12_hevc_dv84_rot_fmp4/init.mp4")).unwrap();
        let v = &r04.tracks[0].config;
        assert_eq!(v.codec, Codec::H265);
        assert_eq!(&v.sample_entry[4..8], b"hvc1");
        assert_eq!(v.matrix, ROT_MATRIX_R04);
        assert_eq!((v.width, v.height), R04_SIZE);

        let r09 = parse_init(&read("../../fixtures/sets/r09_sony_avchd_ac3_fmp4/init.mp4")).unwrap();
        assert_eq!(r09.tracks[1].config.codec, Codec::Ac3);
        assert_eq!(&r09.tracks[1].config.sample_entry[4..8], b"ac-3");

        let aac = parse_init(&read("../../fixtures/sets/s12_aac_only_fmp4_2s/init.mp4")).unwrap();
        assert_eq!(aac.tracks.len(), 1);
        assert_eq!((aac.tracks[0].config.codec, aac.tracks[0].edit_shift), (Codec::Aac, 0));
    }

    #[test]
    fn init_errors() {
        let data = read(&format!("{S02}/init.mp4"));
        let mut enc = data.clone();
        enc[469..473].copy_from_slice(b"encv");
        let e = parse_init(&enc).unwrap_err();
        assert!(e.what.contains("encrypted"), "{e}");
        assert_eq!(e.offset, 465);
        let mut vp9 = data.clone();
        vp9[469..473].copy_from_slice(b"vp09");
        let e = parse_init(&vp9).unwrap_err();
        assert_eq!(e.what, "unsupported codec: track 1 sample entry 'vp09'");
        let e = parse_init(&data[..1000]).unwrap_err();
        assert!(e.what.contains("overruns its parent") && e.what.contains("'moov'"), "{e}");
        let e = parse_init(&data[..28]).unwrap_err(); // ftyp only
        assert_eq!(e.what, "no moov box");
        let mut no_trex = data.clone();
        no_trex[1176..1180].copy_from_slice(b"free"); // video trex
        let e = parse_init(&no_trex).unwrap_err();
        assert!(e.what.contains("track 1 has no mvex/trex"), "{e}");
    }

    fn tfhd(w: &mut BoxWriter, flags: u32, track: u32, base: u64, dur: u32, sflags: u32) {
        w.start_full(b"tfhd", 0, flags);
        w.u32(track);
        if flags & 1 != 0 {
            w.u64(base);
        }
        if flags & 8 != 0 {
            w.u32(dur);
        }
        if flags & 0x20 != 0 {
            w.u32(sflags);
        }
        w.end();
    }

    fn tfdt(w: &mut BoxWriter, version: u8, t: u64) {
        w.start_full(b"tfdt", version, 0);
        if version == 1 {
            w.u64(t)
        } else {
            w.u32(t as u32)
        }
        w.end();
    }

    use crate::boxes::BoxWriter;

    /// A segment with: styp; moof with a video traf using an explicit base-data-offset, a
    /// version 1 trun with negative composition offsets and first-sample-flags, then a trun
    /// without data-offset; a traf of an unknown track; an mdat with a 64-bit largesize.
    fn synthetic(base: u64) -> Vec<u8> {
        let mut w = BoxWriter::new();
        w.start(b"styp");
        w.bytes(b"msdh\0\0\0\0msdh");
        w.end();
        w.start(b"moof");
        w.start_full(b"mfhd", 0, 0);
        w.u32(1);
        w.end();
        w.start(b"traf");
        tfhd(&mut w, 0x01 | 0x08 | 0x20, 1, base, 512, NON_SYNC);
        tfdt(&mut w, 0, 1000);
        w.start_full(b"trun", 1, 0x01 | 0x04 | 0x200 | 0x800);
        w.u32(2);
        w.i32(0);
        w.u32(0); // first sample: sync
        w.u32(10);
        w.i32(-512);
        w.u32(20);
        w.i32(1024);
        w.end();
        w.start_full(b"trun", 0, 0x200);
        w.u32(1);
        w.u32(5);
        w.end();
        w.end();
        w.start(b"traf");
        tfhd(&mut w, 0x2_0000, 99, 0, 0, 0);
        tfdt(&mut w, 0, 0);
        w.end();
        w.end();
        let mut b = w.finish();
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(b"mdat");
        b.extend_from_slice(&(16u64 + 35).to_be_bytes());
        b.extend((0..35).map(|i| i as u8));
        b
    }

    #[test]
    fn synthetic_segment() {
        let init = parse_init(&read(&format!("{S02}/init.mp4"))).unwrap();
        let probe = synthetic(0);
        let base = probe.len() as u64 - 35;
        let data = synthetic(base);
        let idx = index_segment(&init, &data).unwrap();
        assert_eq!(idx.tracks.len(), 1);
        let t = &idx.tracks[0];
        let s = |dts, cts_offset, len_bytes, sync, off: u64| Sample {
            dts,
            dur: 512,
            cts_offset,
            len_bytes,
            sync,
            src_offset: base + off,
        };
        assert_eq!(t.samples, [s(990, -512, 10, true, 0), s(1502, 1024, 20, false, 10), s(2014, 0, 5, false, 30)]);
        assert_eq!(t.chunks.len(), 1);
        assert_eq!((t.chunks[0].src_start, t.chunks[0].src_end, t.chunks[0].len_bytes), (base, base + 35, 35));

        // Base one byte further: the last sample ends past the segment.
        let e = index_segment(&init, &synthetic(base + 1)).unwrap_err();
        assert!(e.what.contains("sample 2 of track 1 outside the segment at offset"), "{e}");
        // Base inside the moof: not inside an mdat.
        let e = index_segment(&init, &synthetic(8)).unwrap_err();
        assert!(e.what.contains("not inside an mdat"), "{e}");
    }

    #[test]
    fn implicit_bases_and_large_tfdt() {
        // Two trafs with neither base flag: the first starts at the moof, the second right after
        // the first traf's data (§8.8.7.1).
        let init = parse_init(&read(&format!("{S02}/init.mp4"))).unwrap();
        let build = |data_offset: i32| {
            let mut w = BoxWriter::new();
            w.start(b"moof");
            w.start(b"traf");
            tfhd(&mut w, 0x08, 2, 0, 1024, 0);
            tfdt(&mut w, 1, 1 << 40);
            w.start_full(b"trun", 0, 0x01 | 0x200);
            w.u32(2);
            w.i32(data_offset);
            w.u32(3);
            w.u32(4);
            w.end();
            w.end();
            w.start(b"traf");
            tfhd(&mut w, 0x08 | 0x20, 1, 0, 512, 0);
            tfdt(&mut w, 0, 0);
            w.start_full(b"trun", 0, 0x200);
            w.u32(1);
            w.u32(6);
            w.end();
            w.end();
            w.end();
            w.start(b"mdat");
            w.zeros(13);
            w.end();
            w.finish()
        };
        let moof_len = build(0).len() as i32 - 21;
        let data = build(moof_len + 8);
        let idx = index_segment(&init, &data).unwrap();
        let (v, a) = (&idx.tracks[0], &idx.tracks[1]);
        let m = moof_len as u64 + 8;
        assert_eq!(
            a.samples.iter().map(|s| (s.dts, s.src_offset)).collect::<Vec<_>>(),
            [((1 << 40) + 2160, m), ((1 << 40) + 2160 + 1024, m + 3)]
        );
        assert_eq!((v.samples[0].dts, v.samples[0].src_offset, v.samples[0].len_bytes), (-10, m + 7, 6));
        assert!(a.samples.iter().all(|s| s.sync));
    }

    #[test]
    fn segment_errors() {
        let init = parse_init(&read(&format!("{S02}/init.mp4"))).unwrap();
        let seg = read(&format!("{S02}/seg_00000.m4s"));
        let e = index_segment(&init, &seg[..24]).unwrap_err(); // styp only
        assert_eq!((e.offset, e.what.as_str()), (0, "no moof box"));
        let e = index_segment(&init, &seg[..seg.len() - 1]).unwrap_err();
        assert!(e.what.contains("box 'mdat'") && e.what.contains("overruns"), "{e}");
        let mut no_tfdt = seg.clone();
        let at = seg.windows(4).position(|w| w == b"tfdt").unwrap();
        no_tfdt[at..at + 4].copy_from_slice(b"free");
        let e = index_segment(&init, &no_tfdt).unwrap_err();
        assert!(e.what.contains("has no tfdt"), "{e}");
        // mdat with size 0 (to the end of the file) is fine.
        let mut zero = seg.clone();
        let at = seg.windows(4).position(|w| w == b"mdat").unwrap() - 4;
        zero[at..at + 4].copy_from_slice(&[0; 4]);
        assert_eq!(index_segment(&init, &zero).unwrap(), index_segment(&init, &seg).unwrap());
    }

    /// Truncations and byte flips of real init and media segments must give `Ok` or `Err`,
    /// never a panic.
    #[test]
    fn no_panics_on_damaged_input() {
        for dir in
            [S02, "../../fixtures/sets/r09_sony_avchd_ac3_fmp4", "../../fixtures/sets/r04_iphone12_hevc_dv84_rot_fmp4"]
        {
            let init_bytes = read(&format!("{dir}/init.mp4"));
            let seg = read(&format!("{dir}/seg_00000.m4s"));
            let init = parse_init(&init_bytes).unwrap();
            for n in 0..init_bytes.len() {
                let _ = parse_init(&init_bytes[..n]);
            }
            for i in 0..init_bytes.len() {
                for x in [0xff, 0x80, 0x01, 0x7f] {
                    let mut b = init_bytes.clone();
                    b[i] ^= x;
                    if let Ok(init) = parse_init(&b) {
                        let _ = index_segment(&init, &seg[..seg.len().min(20_000)]);
                    }
                }
            }
            let step = (seg.len() / 20_000).max(1);
            for n in (0..seg.len()).step_by(step) {
                assert!(index_segment(&init, &seg[..n]).is_err() || n == seg.len());
            }
            // Every byte of the headers before the mdat payload, then pseudo-random positions.
            let mdat = seg.windows(4).position(|w| w == b"mdat").unwrap() + 4;
            let mut b = seg.clone();
            for i in 0..mdat {
                for x in [0xff, 0x80, 0x01, 0x7f] {
                    b[i] ^= x;
                    let _ = index_segment(&init, &b);
                    b[i] ^= x;
                }
            }
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..2000 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let i = (rng % mdat as u64) as usize;
                let j = ((rng >> 32) % mdat as u64) as usize;
                b[i] = rng as u8;
                b[j] = (rng >> 8) as u8;
                let _ = index_segment(&init, &b);
            }
        }
    }

    #[test]
    fn every_audio_track_with_its_language() {
        let dir = "../../fixtures/sets/c02_h264_2aac_lang_fmp4";
        let init = parse_init(&read(&format!("{dir}/init.mp4"))).unwrap();
        let got: Vec<_> = init.tracks.iter().map(|t| (t.config.codec, t.config.language, t.config.source_id)).collect();
        assert_eq!(got, [(Codec::H264, *b"und", 1), (Codec::Aac, *b"eng", 2), (Codec::Aac, *b"deu", 3)]);
        assert!(init.skipped.is_empty());
        let idx = index_segment(&init, &read(&format!("{dir}/seg_00001.m4s"))).unwrap();
        let keys: Vec<_> = idx.keyed_tracks().map(|(k, t)| (k, t.samples.len())).collect();
        assert_eq!(keys, [((TrackKind::Video, 0), 60), ((TrackKind::Audio, 0), 94), ((TrackKind::Audio, 1), 94)]);
        assert_eq!(SegmentIndex::decode(&idx.encode()).unwrap(), idx);
    }

    /// Fuzzing found (fmp4_segment): a `tfdt` near 2^63 gave an index whose decode times the
    /// stored-index decoder refuses; the indexer refuses the segment itself now, so what import
    /// stores always decodes.
    #[test]
    fn fuzz_huge_tfdt_is_refused_at_index_time() {
        let data = include_bytes!("../testdata/fuzz_fmp4_segment-huge-tfdt");
        let n = u16::from_be_bytes([data[0], data[1]]) as usize;
        let (init, seg) = data[2..].split_at(n.min(data.len() - 2));
        let init = parse_init(init).expect("the crash input's init parses");
        if let Ok(idx) = index_segment(&init, seg) {
            SegmentIndex::decode(&idx.encode()).expect("an index the indexer returns decodes");
        }
    }
}
