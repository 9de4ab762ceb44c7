//! Writes the seed corpora of the fuzz targets from the real segment sets in `fixtures/sets/`.
//! Not a fuzz target: `fuzz/seed.sh` runs it as `make_seeds <fixtures/sets> <fuzz/corpus>`.
//!
//! Seeds are kept few and small (libFuzzer mutates faster on short inputs):
//! - `ts_segment/`: the shortest packet-aligned prefix of one or two segments of each MPEG-TS set
//!   that still indexes with all its tracks (or with the fewest bytes that index at all);
//! - `fmp4_init/`: every distinct init segment;
//! - `fmp4_segment/`: `[u16 BE init length][init][media segment]` for the smallest segment of each
//!   fMP4 set that is small enough, plus tiny pairs written by `frag` (init + one fragment of the
//!   first few samples, payloads cut short) from every set, so the large real-world sets are
//!   represented too;
//! - `m3u8/`: every distinct playlist;
//! - `sample_index/`: `SegmentIndex::encode` of the indexes of the seeds above;
//! - `sps/`: `[0]` + H.264 SPS or `[1]` + H.265 SPS NAL units from the `avcC`/`hvcC` of every
//!   sample entry seen.
//!
//! `make_seeds --print-entries <fixtures/sets>` prints the H.264/H.265 sample entries of the
//! `*_params_once_ts` sets (the parameter carry of the `ts_segment` target).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jitmux_format::index::{Codec, ParamCarry, SegmentIndex, contiguous_chunks};
use jitmux_format::mp4::{Layout, SegmentInput};
use jitmux_format::{codecs, fmp4, frag, ts};

/// Largest seed written, bytes.
const MAX_SEED: usize = 40 * 1024;
/// Samples per track kept in the `frag`-written fMP4 pairs.
const FRAG_SAMPLES: usize = 6;
/// Bytes of each sample payload kept in the `frag`-written fMP4 pairs (the fMP4 parser never
/// looks inside payloads: only their sizes and positions matter).
const FRAG_PAYLOAD: u32 = 48;

/// Whether a set's segments are copies of another set's with a different playlist (only its
/// playlist is used).
fn playlist_only(set: &str) -> bool {
    set.contains("discontinuity") || set.ends_with("_gap")
}

struct Out {
    root: PathBuf,
    written: BTreeSet<(String, Vec<u8>)>,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        if data.is_empty() || !self.written.insert((target.to_string(), data.to_vec())) {
            return;
        }
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        fs::write(dir.join(name), data).expect("write seed");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, sets] if flag == "--print-entries" => print_entries(Path::new(sets)),
        [sets, corpus] => make(Path::new(sets), Path::new(corpus)),
        _ => {
            eprintln!("usage: make_seeds <fixtures/sets> <corpus dir> | make_seeds --print-entries <fixtures/sets>");
            std::process::exit(2);
        }
    }
}

fn sorted_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(suffix)));
    v.sort();
    v
}

fn set_dirs(sets: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(sets)
        .unwrap_or_else(|e| panic!("{}: {e}", sets.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn make(sets: &Path, corpus: &Path) {
    let mut out = Out { root: corpus.to_path_buf(), written: BTreeSet::new() };
    let mut entries: Vec<(Codec, Vec<u8>)> = Vec::new();
    for dir in set_dirs(sets) {
        let set = name_of(&dir);
        for pl in sorted_files(&dir, ".m3u8") {
            out.put("m3u8", &format!("{set}_{}", name_of(&pl)), &fs::read(&pl).unwrap());
        }
        if playlist_only(&set) {
            continue;
        }
        let segs_ts = sorted_files(&dir, ".ts");
        if !segs_ts.is_empty() {
            ts_seeds(&mut out, &set, &segs_ts, &mut entries);
        }
        let inits = sorted_files(&dir, "init.mp4");
        for init_path in &inits {
            let prefix = name_of(init_path).trim_end_matches("init.mp4").to_string();
            let init_bytes = fs::read(init_path).unwrap();
            out.put("fmp4_init", &format!("{set}_{prefix}init"), &init_bytes);
            let segs: Vec<PathBuf> = sorted_files(&dir, ".m4s")
                .into_iter()
                .filter(|p| name_of(p).starts_with(&format!("{prefix}seg_")))
                .collect();
            fmp4_seeds(&mut out, &set, &init_bytes, &segs, &mut entries);
        }
    }
    for (i, (codec, entry)) in entries.iter().enumerate() {
        for sps in sps_of(*codec, entry) {
            let sel = if *codec == Codec::H265 { 1u8 } else { 0u8 };
            let mut seed = vec![sel];
            seed.extend_from_slice(&sps);
            out.put("sps", &format!("{:?}_{i}", codec).to_lowercase(), &seed);
        }
    }
    let mut counts = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for (t, d) in &out.written {
        let c = counts.entry(t.as_str()).or_default();
        c.0 += 1;
        c.1 += d.len();
    }
    for (t, (n, bytes)) in counts {
        println!("seeds {t}: {n} files, {bytes} bytes");
    }
}

/// Whether `idx` has the same tracks (kind and codec, in order) as `full`.
fn same_tracks(idx: &SegmentIndex, full: &SegmentIndex) -> bool {
    idx.tracks.len() == full.tracks.len()
        && idx.tracks.iter().zip(&full.tracks).all(|(a, b)| a.config.codec == b.config.codec)
}

fn ts_seeds(out: &mut Out, set: &str, segs: &[PathBuf], entries: &mut Vec<(Codec, Vec<u8>)>) {
    // Segment 0 and, for a set whose parameter sets come once, segment 1 (none of its own: the
    // target retries such segments with a parameter carry), each indexed with the carry of the
    // segments before it.
    let mut carry = ParamCarry::default();
    for (n, path) in segs.iter().take(2).enumerate() {
        let data = fs::read(path).unwrap();
        let mut after = carry.clone();
        let Ok(full) = ts::index_segment_with(&data, &mut after) else { continue };
        let own_params = ts::index_segment(&data).is_ok();
        if n == 1 && own_params {
            break; // segment 1 adds nothing new
        }
        for t in &full.index.tracks {
            if matches!(t.config.codec, Codec::H264 | Codec::H265) {
                entries.push((t.config.codec, t.config.sample_entry.clone()));
            }
        }
        // Shortest prefix (grown by half each step) that keeps every track; else the shortest
        // that indexes at all.
        let packets = data.len() / 188;
        let mut k = 8usize;
        let mut fallback: Option<(usize, SegmentIndex)> = None;
        let mut best: Option<(usize, SegmentIndex)> = None;
        while k * 188 <= MAX_SEED {
            let k_now = k.min(packets);
            let mut c = carry.clone();
            if let Ok(s) = ts::index_segment_with(&data[..k_now * 188], &mut c) {
                if same_tracks(&s.index, &full.index) {
                    best = Some((k_now, s.index));
                    break;
                }
                if fallback.is_none() {
                    fallback = Some((k_now, s.index));
                }
            }
            if k_now == packets {
                break;
            }
            k += k / 2;
        }
        if let Some((k, idx)) = best.or(fallback) {
            let tag = if own_params { "" } else { "_noparams" };
            out.put("ts_segment", &format!("{set}_seg{n}{tag}"), &data[..k * 188]);
            out.put("sample_index", &format!("{set}_ts{n}"), &idx.encode());
        }
        if n == 0 {
            // A small fMP4 pair written by `frag` from the transmuxed first samples.
            let mut payloads = Vec::new();
            for t in &full.index.tracks {
                let mut es = Vec::new();
                for c in &t.chunks {
                    let src = &data[c.src_start as usize..c.src_end as usize];
                    if ts::transmux_chunk(t, c, src, &mut es).is_err() {
                        eprintln!("{set}: transmux of its own chunk failed");
                        return;
                    }
                }
                let mut at = 0usize;
                let mut v = Vec::new();
                for s in t.samples.iter().take(FRAG_SAMPLES) {
                    v.push(es[at..at + s.len_bytes as usize].to_vec());
                    at += s.len_bytes as usize;
                }
                payloads.push(v);
            }
            frag_pair(out, &format!("{set}_frag"), full.index.clone(), payloads);
        }
        carry = after;
    }
}

fn frame(init: &[u8], seg: &[u8]) -> Option<Vec<u8>> {
    let n = u16::try_from(init.len()).ok()?;
    let mut v = n.to_be_bytes().to_vec();
    v.extend_from_slice(init);
    v.extend_from_slice(seg);
    Some(v)
}

fn fmp4_seeds(out: &mut Out, set: &str, init_bytes: &[u8], segs: &[PathBuf], entries: &mut Vec<(Codec, Vec<u8>)>) {
    let Ok(init) = fmp4::parse_init(init_bytes) else {
        eprintln!("{set}: init does not parse");
        return;
    };
    for t in &init.tracks {
        if matches!(t.config.codec, Codec::H264 | Codec::H265) {
            entries.push((t.config.codec, t.config.sample_entry.clone()));
        }
    }
    // The real pair with the smallest segment, if small enough.
    let mut by_size: Vec<(u64, &PathBuf)> =
        segs.iter().map(|p| (fs::metadata(p).map(|m| m.len()).unwrap_or(u64::MAX), p)).collect();
    by_size.sort();
    if let Some((_, p)) = by_size.first() {
        let seg = fs::read(p).unwrap();
        if let (Ok(idx), Some(framed)) = (fmp4::index_segment(&init, &seg), frame(init_bytes, &seg)) {
            if framed.len() <= MAX_SEED {
                out.put("fmp4_segment", &format!("{set}_{}", name_of(p)), &framed);
                out.put("sample_index", &format!("{set}_{}", name_of(p)), &idx.encode());
            }
        }
    }
    // A small pair written by `frag` from the first samples of the first segment.
    if let Some(p) = segs.first() {
        let seg = fs::read(p).unwrap();
        if let Ok(idx) = fmp4::index_segment(&init, &seg) {
            let payloads = idx
                .tracks
                .iter()
                .map(|t| {
                    t.samples
                        .iter()
                        .take(FRAG_SAMPLES)
                        .map(|s| seg[s.src_offset as usize..(s.src_offset + s.len_bytes as u64) as usize].to_vec())
                        .collect()
                })
                .collect();
            frag_pair(out, &format!("{set}_frag"), idx, payloads);
        }
    }
}

/// Truncates every track of `idx` to its first [`FRAG_SAMPLES`] samples, lays it out and writes
/// `frag`'s init segment and the one fragment (sample payloads: `payloads[track][sample]`, as
/// they are in MP4) as an `fmp4_segment` seed, if the crate's own fMP4 parser reads it back.
fn frag_pair(out: &mut Out, name: &str, mut idx: SegmentIndex, payloads: Vec<Vec<Vec<u8>>>) {
    for t in &mut idx.tracks {
        t.samples.truncate(FRAG_SAMPLES);
        for s in &mut t.samples {
            s.len_bytes = s.len_bytes.min(FRAG_PAYLOAD);
        }
        // Only the chunk sizes matter to the layout.
        t.chunks = contiguous_chunks(&t.samples);
    }
    if idx.validate().is_err() {
        return;
    }
    let keys: Vec<_> = idx.keyed_tracks().map(|(k, _)| k).collect();
    let Ok(layout) = Layout::build(&[SegmentInput { index: Arc::new(idx), join_before: false }]) else { return };
    let init = frag::init_segment(&layout, Some(layout.movie_dur));
    let whole = vec![None; layout.tracks.len()];
    let Some(plan) = frag::plan_fragment(&layout, 0, &whole) else { return };
    let Ok(mut seg) = frag::fragment_header(&layout, &plan) else { return };
    for tp in &plan.trafs {
        let Some(ti) = keys.iter().position(|&k| k == layout.tracks[tp.track].key) else { return };
        for p in &payloads[ti] {
            seg.extend_from_slice(&p[..p.len().min(FRAG_PAYLOAD as usize)]);
        }
    }
    let Some(framed) = frame(&init, &seg) else { return };
    if framed.len() > MAX_SEED {
        return;
    }
    match fmp4::parse_init(&init).and_then(|i| fmp4::index_segment(&i, &seg)) {
        Ok(back) => {
            out.put("fmp4_segment", name, &framed);
            out.put("fmp4_init", name, &init);
            out.put("sample_index", name, &back.encode());
        }
        Err(e) => eprintln!("{name}: frag-written pair does not parse back: {e}"),
    }
}

/// SPS NAL units of an `avc1`/`avc3` (`avcC`) or `hev1`/`hvc1` (`hvcC`) sample entry.
fn sps_of(codec: Codec, entry: &[u8]) -> Vec<Vec<u8>> {
    match codec {
        Codec::H264 => {
            codecs::avcc_parameter_sets(entry).map(|ps| ps.sps.iter().map(|s| s.to_vec()).collect()).unwrap_or_default()
        }
        Codec::H265 => hvcc_nal_units(entry, 33),
        _ => Vec::new(),
    }
}

/// NAL units of type `ty` in the `hvcC` (ISO/IEC 14496-15 §8.3.3.1) of a sample entry.
fn hvcc_nal_units(entry: &[u8], ty: u8) -> Vec<Vec<u8>> {
    let Some(p) = entry.windows(4).position(|w| w == b"hvcC").filter(|&p| p >= 4) else { return Vec::new() };
    let size = u32::from_be_bytes(entry[p - 4..p].try_into().unwrap()) as usize;
    let Some(body) = entry.get(p + 4..p - 4 + size) else { return Vec::new() };
    let mut v = Vec::new();
    let Some(&n_arrays) = body.get(22) else { return v };
    let mut i = 23;
    for _ in 0..n_arrays {
        let Some(h) = body.get(i..i + 3) else { break };
        let (t, n) = (h[0] & 0x3f, u16::from_be_bytes([h[1], h[2]]));
        i += 3;
        for _ in 0..n {
            let Some(l) = body.get(i..i + 2) else { return v };
            let len = u16::from_be_bytes([l[0], l[1]]) as usize;
            let Some(nal) = body.get(i + 2..i + 2 + len) else { return v };
            if t == ty {
                v.push(nal.to_vec());
            }
            i += 2 + len;
        }
    }
    v
}

fn print_entries(sets: &Path) {
    for (set, want) in [("c03_h264_params_once_ts", "H264"), ("c04_h265_params_once_ts", "H265")] {
        let seg = fs::read(sets.join(set).join("seg_00000.ts")).unwrap();
        let idx = ts::index_segment(&seg).unwrap();
        let t = idx.tracks.iter().find(|t| format!("{:?}", t.config.codec) == want).unwrap();
        let hex: String = t.config.sample_entry.iter().map(|b| format!("{b:02x}")).collect();
        println!("/// `{set}` segment 0, {}x{}.", t.config.width, t.config.height);
        println!("const {want}_ENTRY: &str = \"{hex}\";");
    }
}
