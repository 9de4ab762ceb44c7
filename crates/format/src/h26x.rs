//! H.264 / H.265 bitstream helpers: Annex B NAL unit splitting and conversion to the
//! length-prefixed form of ISO/IEC 14496-15, SPS parsing (ITU-T H.264 §7.3.2.1.1, H.265 §7.3.2.2)
//! and the `avc1`+`avcC` / `hev1`+`hvcC` sample entries (ISO/IEC 14496-15 §5.3.3.1, §8.3.3.1).

use super::FormatError;
use super::boxes::BoxWriter;
use super::bytes::{BitReader, nal_to_rbsp};

/// Iterator over the NAL units of an Annex B byte stream (ITU-T H.264 Annex B / H.265 Annex B).
///
/// Splits on the start code `00 00 01` (a 4-byte `00 00 00 01` start code leaves a zero byte at
/// the end of the previous unit, which is stripped), strips trailing zero bytes of each unit
/// (`trailing_zero_8bits`) and skips empty units. Bytes before the first start code are ignored.
/// Each item is a NAL unit including its header, without start code.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    es: &'a [u8],
    pos: usize,
}

/// Returns the NAL units of the Annex B buffer `es`, see [`NalUnits`].
pub fn nal_units(es: &[u8]) -> NalUnits<'_> {
    let pos = match find_start_code(es, 0) {
        Some(sc) => sc + 3,
        None => es.len(),
    };
    NalUnits { es, pos }
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        while self.pos < self.es.len() {
            let start = self.pos;
            let end = match find_start_code(self.es, start) {
                Some(sc) => {
                    self.pos = sc + 3;
                    sc
                }
                None => {
                    self.pos = self.es.len();
                    self.es.len()
                }
            };
            let mut nal = &self.es[start..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
        None
    }
}

/// Position of the first byte of the next `00 00 01` at or after `from`. A substring search
/// (`memchr::memmem`, SIMD) that tests the first and last needle bytes together: in coded video
/// a `01` byte is common, a `00` two bytes before it rare (emulation prevention).
fn find_start_code(b: &[u8], from: usize) -> Option<usize> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> = std::sync::OnceLock::new();
    let finder = FINDER.get_or_init(|| memchr::memmem::Finder::new(b"\0\0\x01"));
    b.get(from..).and_then(|rest| finder.find(rest)).map(|i| from + i)
}

/// Size in bytes of [`annexb_to_length_prefixed`]'s output for `es`: 4 + size of each NAL unit.
pub fn length_prefixed_len(es: &[u8]) -> usize {
    nal_units(es).map(|n| 4 + n.len()).sum()
}

/// Converts an Annex B access unit to NAL units each prefixed by its 32-bit big-endian size
/// (ISO/IEC 14496-15 §5.3.2, `lengthSizeMinusOne` = 3), appending to `out`. Every NAL unit is
/// kept (AUD, SEI, in-band parameter sets). Returns the number of bytes appended, always equal to
/// [`length_prefixed_len`]`(es)`.
pub fn annexb_to_length_prefixed(es: &[u8], out: &mut Vec<u8>) -> usize {
    let before = out.len();
    for nal in nal_units(es) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out.len() - before
}

/// H.264 `nal_unit_type` (ITU-T H.264 §7.4.1, Table 7-1).
pub fn h264_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// H.265 `nal_unit_type` (ITU-T H.265 §7.4.2.2, Table 7-1).
pub fn h265_nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
}

/// Whether an H.264 Annex B access unit is a sync sample: it holds an IDR slice (nal_unit_type
/// 5), or its first slice is an I slice and it carries a recovery point SEI (payloadType 6,
/// ITU-T H.264 §D.1.8).
pub fn h264_is_sync(au: &[u8]) -> bool {
    let mut recovery = false;
    let mut first_slice_intra = None;
    for nal in nal_units(au) {
        match h264_nal_type(nal) {
            5 => return true,
            6 => recovery |= sei_has_recovery_point(nal),
            1 if first_slice_intra.is_none() => {
                let head = nal_to_rbsp(&nal[1..nal.len().min(32)]);
                let mut r = BitReader::new(&head);
                let intra = r.ue("slice header").is_ok()
                    && r.ue("slice header").map(|t| t % 5 == 2 || t % 5 == 4).unwrap_or(false);
                first_slice_intra = Some(intra);
            }
            _ => {}
        }
    }
    recovery && first_slice_intra == Some(true)
}

/// Whether an H.264 SEI NAL unit holds a recovery point SEI message (ITU-T H.264 §7.3.2.3.1).
fn sei_has_recovery_point(nal: &[u8]) -> bool {
    let rbsp = nal_to_rbsp(&nal[1..]);
    let mut p = 0;
    // Each sei_message: payloadType and payloadSize as runs of 0xFF plus a last byte.
    while p < rbsp.len() && rbsp[p] != 0x80 {
        let mut read = || {
            let mut v = 0usize;
            while let Some(&b) = rbsp.get(p) {
                p += 1;
                v += b as usize;
                if b != 0xff {
                    return Some(v);
                }
            }
            None
        };
        let (Some(ty), Some(size)) = (read(), read()) else { return false };
        if ty == 6 {
            return true;
        }
        p += size;
    }
    false
}

/// Whether an H.265 Annex B access unit holds an IRAP picture (nal_unit_type 16..=23,
/// ITU-T H.265 §7.4.2.2).
pub fn h265_is_sync(au: &[u8]) -> bool {
    nal_units(au).any(|n| (16..=23).contains(&h265_nal_type(n)))
}

/// Sample aspect ratio from `aspect_ratio_idc` (ITU-T H.264 Table E-1, identical in H.265
/// Table E-1); `(0, 0)` when unspecified or reserved.
fn sar_from_idc(idc: u32) -> (u32, u32) {
    const SAR: [(u32, u32); 17] = [
        (0, 0),
        (1, 1),
        (12, 11),
        (10, 11),
        (16, 11),
        (40, 33),
        (24, 11),
        (20, 11),
        (32, 11),
        (80, 33),
        (18, 11),
        (15, 11),
        (64, 33),
        (160, 99),
        (4, 3),
        (3, 2),
        (2, 1),
    ];
    SAR.get(idc as usize).copied().unwrap_or((0, 0))
}

/// Reads `aspect_ratio_info` of the VUI (ITU-T H.264 §E.1.1 / H.265 §E.2.1) after
/// `vui_parameters_present_flag` = 1.
fn read_vui_sar(r: &mut BitReader) -> Result<(u32, u32), FormatError> {
    if !r.bit("VUI aspect_ratio_info_present_flag")? {
        return Ok((1, 1));
    }
    let idc = r.bits(8, "VUI aspect_ratio_idc")?;
    if idc == 255 {
        let w = r.bits(16, "VUI sar_width")?;
        let h = r.bits(16, "VUI sar_height")?;
        return Ok((w, h));
    }
    Ok(sar_from_idc(idc))
}

/// Applies a sample aspect ratio to a width (pixels), rounding to nearest; unchanged for 1:1 or an
/// unspecified ratio.
fn display_width(width: u32, sar: (u32, u32)) -> u32 {
    let (n, d) = sar;
    if n == 0 || d == 0 || n == d {
        return width;
    }
    ((width as u64 * n as u64 * 2 + d as u64) / (2 * d as u64)) as u32
}

/// Fields of an H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H264Sps {
    pub profile_idc: u8,
    /// `constraint_set0..5_flag` and reserved bits, the byte after `profile_idc`.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u32,
    pub bit_depth_luma_minus8: u32,
    pub bit_depth_chroma_minus8: u32,
    /// Cropped frame size in luma samples (pixels).
    pub width: u32,
    pub height: u32,
    /// VUI sample aspect ratio (`sar_width`, `sar_height`); (1, 1) when absent, (0, 0) unspecified.
    pub sar: (u32, u32),
    /// `frame_mbs_only_flag`: false for interlaced coding (field pictures or MBAFF).
    pub frame_mbs_only: bool,
}

impl H264Sps {
    /// Display width in pixels: `width` scaled by the sample aspect ratio, rounded.
    pub fn display_width(&self) -> u32 {
        display_width(self.width, self.sar)
    }
}

/// Skips a `scaling_list()` of `size` coefficients (ITU-T H.264 §7.3.2.1.1.1).
fn skip_h264_scaling_list(r: &mut BitReader, size: usize) -> Result<(), FormatError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            // delta_scale is in −128..=127 (§7.4.2.1.1.1); wider values are read, not trusted.
            let delta = r.se("SPS delta_scale")?;
            next = (last as i64 + delta as i64).rem_euclid(256) as i32;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Parses an H.264 SPS NAL unit (with its 1-byte NAL header, emulation prevention bytes
/// included), ITU-T H.264 §7.3.2.1.1 and §E.1.1 for the sample aspect ratio.
pub fn parse_h264_sps(nal: &[u8]) -> Result<H264Sps, FormatError> {
    if nal.len() < 4 || h264_nal_type(nal) != 7 {
        return Err(FormatError::new(0, "not an H.264 SPS NAL unit"));
    }
    let rbsp = nal_to_rbsp(&nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8, "SPS profile_idc")? as u8;
    let constraint_flags = r.bits(8, "SPS constraint flags")? as u8;
    let level_idc = r.bits(8, "SPS level_idc")? as u8;
    r.ue("SPS seq_parameter_set_id")?;
    let (mut chroma_format_idc, mut separate_colour_plane) = (1, false);
    let (mut bit_depth_luma_minus8, mut bit_depth_chroma_minus8) = (0, 0);
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue("SPS chroma_format_idc")?;
        if chroma_format_idc > 3 {
            return Err(FormatError::new(0, format!("bad SPS chroma_format_idc {chroma_format_idc}")));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit("SPS separate_colour_plane_flag")?;
        }
        bit_depth_luma_minus8 = r.ue("SPS bit_depth_luma_minus8")?;
        bit_depth_chroma_minus8 = r.ue("SPS bit_depth_chroma_minus8")?;
        r.bit("SPS qpprime_y_zero_transform_bypass_flag")?;
        if r.bit("SPS seq_scaling_matrix_present_flag")? {
            let n = if chroma_format_idc != 3 { 8 } else { 12 };
            for i in 0..n {
                if r.bit("SPS seq_scaling_list_present_flag")? {
                    skip_h264_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue("SPS log2_max_frame_num_minus4")?;
    match r.ue("SPS pic_order_cnt_type")? {
        0 => {
            r.ue("SPS log2_max_pic_order_cnt_lsb_minus4")?;
        }
        1 => {
            r.bit("SPS delta_pic_order_always_zero_flag")?;
            r.se("SPS offset_for_non_ref_pic")?;
            r.se("SPS offset_for_top_to_bottom_field")?;
            let n = r.ue("SPS num_ref_frames_in_pic_order_cnt_cycle")?;
            if n > 255 {
                return Err(FormatError::new(0, "bad SPS num_ref_frames_in_pic_order_cnt_cycle"));
            }
            for _ in 0..n {
                r.se("SPS offset_for_ref_frame")?;
            }
        }
        2 => {}
        t => return Err(FormatError::new(0, format!("bad SPS pic_order_cnt_type {t}"))),
    }
    r.ue("SPS max_num_ref_frames")?;
    r.bit("SPS gaps_in_frame_num_value_allowed_flag")?;
    let width_mbs = r.ue("SPS pic_width_in_mbs_minus1")? as u64 + 1;
    let height_map_units = r.ue("SPS pic_height_in_map_units_minus1")? as u64 + 1;
    let frame_mbs_only = r.bit("SPS frame_mbs_only_flag")?;
    if !frame_mbs_only {
        r.bit("SPS mb_adaptive_frame_field_flag")?;
    }
    r.bit("SPS direct_8x8_inference_flag")?;
    let mut crop = [0u64; 4];
    if r.bit("SPS frame_cropping_flag")? {
        for c in &mut crop {
            *c = r.ue("SPS frame_crop_offset")? as u64;
        }
    }
    let sar = if r.bit("SPS vui_parameters_present_flag")? { read_vui_sar(&mut r)? } else { (1, 1) };
    // §7.4.2.1.1: CropUnitX/CropUnitY from ChromaArrayType (Table 6-1 SubWidthC/SubHeightC).
    let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let w = (width_mbs * 16).checked_sub(crop_x * (crop[0] + crop[1]));
    let h = (field_factor * height_map_units * 16).checked_sub(crop_y * (crop[2] + crop[3]));
    let (Some(width), Some(height)) = (w, h) else {
        return Err(FormatError::new(0, "SPS cropping larger than the frame"));
    };
    if width == 0 || height == 0 || width > u16::MAX as u64 || height > u16::MAX as u64 {
        return Err(FormatError::new(0, format!("bad SPS frame size {width}x{height}")));
    }
    Ok(H264Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        chroma_format_idc,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
        width: width as u32,
        height: height as u32,
        sar,
        frame_mbs_only,
    })
}

/// Fields of an H.265 sequence parameter set (ITU-T H.265 §7.3.2.2) that `hvcC` and `tkhd` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H265Sps {
    pub max_sub_layers_minus1: u8,
    pub temporal_id_nesting: bool,
    pub general_profile_space: u8,
    pub general_tier_flag: bool,
    pub general_profile_idc: u8,
    pub general_profile_compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` to `general_inbld_flag`/reserved bit.
    pub general_constraint_indicator_flags: u64,
    pub general_level_idc: u8,
    pub chroma_format_idc: u32,
    pub bit_depth_luma_minus8: u32,
    pub bit_depth_chroma_minus8: u32,
    /// Size after the conformance window, in luma samples (pixels).
    pub width: u32,
    pub height: u32,
    /// VUI sample aspect ratio; (1, 1) when absent, (0, 0) unspecified.
    pub sar: (u32, u32),
}

impl H265Sps {
    /// Display width in pixels: `width` scaled by the sample aspect ratio, rounded.
    pub fn display_width(&self) -> u32 {
        display_width(self.width, self.sar)
    }
}

/// Skips an `st_ref_pic_set(idx)` (ITU-T H.265 §7.3.7) inside an SPS, tracking NumDeltaPocs
/// (§7.4.8) of the sets read so far in `num_delta_pocs`.
fn skip_st_ref_pic_set(r: &mut BitReader, idx: usize, num_delta_pocs: &mut Vec<u32>) -> Result<(), FormatError> {
    let inter = idx != 0 && r.bit("SPS inter_ref_pic_set_prediction_flag")?;
    if inter {
        r.bit("SPS delta_rps_sign")?;
        r.ue("SPS abs_delta_rps_minus1")?;
        let ref_n = num_delta_pocs[idx - 1];
        let mut n = 0;
        for _ in 0..=ref_n {
            let used = r.bit("SPS used_by_curr_pic_flag")?;
            let use_delta = used || r.bit("SPS use_delta_flag")?;
            n += use_delta as u32;
        }
        num_delta_pocs.push(n);
    } else {
        let neg = r.ue("SPS num_negative_pics")?;
        let pos = r.ue("SPS num_positive_pics")?;
        if neg > 16 || pos > 16 {
            return Err(FormatError::new(0, "bad SPS st_ref_pic_set"));
        }
        for _ in 0..neg + pos {
            r.ue("SPS delta_poc_minus1")?;
            r.bit("SPS used_by_curr_pic_flag")?;
        }
        num_delta_pocs.push(neg + pos);
    }
    Ok(())
}

/// Parses an H.265 SPS NAL unit (with its 2-byte NAL header, emulation prevention bytes
/// included): ITU-T H.265 §7.3.2.2, `profile_tier_level` §7.3.3, VUI SAR §E.2.1.
pub fn parse_h265_sps(nal: &[u8]) -> Result<H265Sps, FormatError> {
    if nal.len() < 4 || h265_nal_type(nal) != 33 {
        return Err(FormatError::new(0, "not an H.265 SPS NAL unit"));
    }
    let rbsp = nal_to_rbsp(&nal[2..]);
    let mut r = BitReader::new(&rbsp);
    r.bits(4, "SPS sps_video_parameter_set_id")?;
    let max_sub_layers_minus1 = r.bits(3, "SPS sps_max_sub_layers_minus1")? as u8;
    let temporal_id_nesting = r.bit("SPS sps_temporal_id_nesting_flag")?;
    // profile_tier_level(1, sps_max_sub_layers_minus1)
    let general_profile_space = r.bits(2, "SPS general_profile_space")? as u8;
    let general_tier_flag = r.bit("SPS general_tier_flag")?;
    let general_profile_idc = r.bits(5, "SPS general_profile_idc")? as u8;
    let general_profile_compatibility_flags = r.bits(32, "SPS general_profile_compatibility_flags")?;
    let hi = r.bits(16, "SPS general constraint flags")? as u64;
    let lo = r.bits(32, "SPS general constraint flags")? as u64;
    let general_constraint_indicator_flags = (hi << 32) | lo;
    let general_level_idc = r.bits(8, "SPS general_level_idc")? as u8;
    let n = max_sub_layers_minus1 as usize;
    let mut sub = [(false, false); 8];
    for s in sub.iter_mut().take(n) {
        *s = (r.bit("SPS sub_layer_profile_present_flag")?, r.bit("SPS sub_layer_level_present_flag")?);
    }
    if n > 0 {
        r.skip(2 * (8 - n), "SPS reserved_zero_2bits")?;
    }
    for &(profile, level) in sub.iter().take(n) {
        if profile {
            r.skip(88, "SPS sub_layer profile")?;
        }
        if level {
            r.skip(8, "SPS sub_layer_level_idc")?;
        }
    }
    r.ue("SPS sps_seq_parameter_set_id")?;
    let chroma_format_idc = r.ue("SPS chroma_format_idc")?;
    if chroma_format_idc > 3 {
        return Err(FormatError::new(0, format!("bad SPS chroma_format_idc {chroma_format_idc}")));
    }
    let separate_colour_plane = chroma_format_idc == 3 && r.bit("SPS separate_colour_plane_flag")?;
    let pic_w = r.ue("SPS pic_width_in_luma_samples")? as u64;
    let pic_h = r.ue("SPS pic_height_in_luma_samples")? as u64;
    let mut win = [0u64; 4];
    if r.bit("SPS conformance_window_flag")? {
        for c in &mut win {
            *c = r.ue("SPS conf_win_offset")? as u64;
        }
    }
    let bit_depth_luma_minus8 = r.ue("SPS bit_depth_luma_minus8")?;
    let bit_depth_chroma_minus8 = r.ue("SPS bit_depth_chroma_minus8")?;
    // H.265 §7.4.3.2.1: log2_max_pic_order_cnt_lsb_minus4 is 0..=12 (checked before adding:
    // a garbage exp-Golomb value can be u32::MAX).
    let log2_max_poc_lsb = r.ue("SPS log2_max_pic_order_cnt_lsb_minus4")?.saturating_add(4);
    if log2_max_poc_lsb > 16 {
        return Err(FormatError::new(0, "bad SPS log2_max_pic_order_cnt_lsb_minus4"));
    }
    let ordering_all = r.bit("SPS sps_sub_layer_ordering_info_present_flag")?;
    for _ in (if ordering_all { 0 } else { n })..=n {
        r.ue("SPS sps_max_dec_pic_buffering_minus1")?;
        r.ue("SPS sps_max_num_reorder_pics")?;
        r.ue("SPS sps_max_latency_increase_plus1")?;
    }
    r.ue("SPS log2_min_luma_coding_block_size_minus3")?;
    r.ue("SPS log2_diff_max_min_luma_coding_block_size")?;
    r.ue("SPS log2_min_luma_transform_block_size_minus2")?;
    r.ue("SPS log2_diff_max_min_luma_transform_block_size")?;
    r.ue("SPS max_transform_hierarchy_depth_inter")?;
    r.ue("SPS max_transform_hierarchy_depth_intra")?;
    if r.bit("SPS scaling_list_enabled_flag")? && r.bit("SPS sps_scaling_list_data_present_flag")? {
        // scaling_list_data(), §7.3.4
        for size_id in 0..4 {
            let step = if size_id == 3 { 3 } else { 1 };
            for _ in (0..6).step_by(step) {
                if !r.bit("SPS scaling_list_pred_mode_flag")? {
                    r.ue("SPS scaling_list_pred_matrix_id_delta")?;
                } else {
                    let coefs = 64.min(1 << (4 + (size_id << 1)));
                    if size_id > 1 {
                        r.se("SPS scaling_list_dc_coef_minus8")?;
                    }
                    for _ in 0..coefs {
                        r.se("SPS scaling_list_delta_coef")?;
                    }
                }
            }
        }
    }
    r.bit("SPS amp_enabled_flag")?;
    r.bit("SPS sample_adaptive_offset_enabled_flag")?;
    if r.bit("SPS pcm_enabled_flag")? {
        r.bits(8, "SPS pcm_sample_bit_depth")?;
        r.ue("SPS log2_min_pcm_luma_coding_block_size_minus3")?;
        r.ue("SPS log2_diff_max_min_pcm_luma_coding_block_size")?;
        r.bit("SPS pcm_loop_filter_disabled_flag")?;
    }
    let num_st = r.ue("SPS num_short_term_ref_pic_sets")?;
    if num_st > 64 {
        return Err(FormatError::new(0, "bad SPS num_short_term_ref_pic_sets"));
    }
    let mut num_delta_pocs = Vec::with_capacity(num_st as usize);
    for i in 0..num_st as usize {
        skip_st_ref_pic_set(&mut r, i, &mut num_delta_pocs)?;
    }
    if r.bit("SPS long_term_ref_pics_present_flag")? {
        let n = r.ue("SPS num_long_term_ref_pics_sps")?;
        if n > 32 {
            return Err(FormatError::new(0, "bad SPS num_long_term_ref_pics_sps"));
        }
        for _ in 0..n {
            r.bits(log2_max_poc_lsb, "SPS lt_ref_pic_poc_lsb_sps")?;
            r.bit("SPS used_by_curr_pic_lt_sps_flag")?;
        }
    }
    r.bit("SPS sps_temporal_mvp_enabled_flag")?;
    r.bit("SPS strong_intra_smoothing_enabled_flag")?;
    let sar = if r.bit("SPS vui_parameters_present_flag")? { read_vui_sar(&mut r)? } else { (1, 1) };
    // §7.4.3.2.1: conformance window offsets are in chroma sample units (SubWidthC/SubHeightC).
    let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
    let (sub_w, sub_h) = match chroma_array_type {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let w = pic_w.checked_sub(sub_w * (win[0] + win[1]));
    let h = pic_h.checked_sub(sub_h * (win[2] + win[3]));
    let (Some(width), Some(height)) = (w, h) else {
        return Err(FormatError::new(0, "SPS conformance window larger than the picture"));
    };
    if width == 0 || height == 0 || width > u16::MAX as u64 || height > u16::MAX as u64 {
        return Err(FormatError::new(0, format!("bad SPS picture size {width}x{height}")));
    }
    Ok(H265Sps {
        max_sub_layers_minus1,
        temporal_id_nesting,
        general_profile_space,
        general_tier_flag,
        general_profile_idc,
        general_profile_compatibility_flags,
        general_constraint_indicator_flags,
        general_level_idc,
        chroma_format_idc,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
        width: width as u32,
        height: height as u32,
        sar,
    })
}

/// A finished video sample entry and the `tkhd` display size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// The `avc1` / `hev1` box bytes.
    pub sample_entry: Vec<u8>,
    /// Display size in pixels (cropped, width scaled by the sample aspect ratio).
    pub width: u32,
    pub height: u32,
}

/// Writes the VisualSampleEntry fields (ISO/IEC 14496-12 §8.5.2 / §12.1.3) after the box header;
/// `width`/`height` are the cropped frame size in pixels.
fn visual_sample_entry_fields(w: &mut BoxWriter, width: u32, height: u32) {
    w.zeros(6); // reserved
    w.u16(1); // data_reference_index
    w.u16(0); // pre_defined
    w.u16(0); // reserved
    w.zeros(12); // pre_defined[3]
    w.u16(width as u16);
    w.u16(height as u16);
    w.u32(0x0048_0000); // horizresolution 72 dpi
    w.u32(0x0048_0000); // vertresolution
    w.u32(0); // reserved
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xffff); // pre_defined = -1
}

/// Builds an `avc1` sample entry with `avcC` (ISO/IEC 14496-15 §5.3.3.1 / §5.4.2) from SPS and
/// PPS NAL units (headers included, emulation prevention kept). The first SPS gives the profile,
/// level and frame size.
pub fn avc_config(sps: &[&[u8]], pps: &[&[u8]]) -> Result<VideoConfig, FormatError> {
    let (Some(first), false) = (sps.first(), pps.is_empty()) else {
        return Err(FormatError::new(0, "H.264 stream without SPS/PPS"));
    };
    if sps.len() > 31 || pps.len() > 255 || sps.iter().chain(pps).any(|n| n.len() > u16::MAX as usize) {
        return Err(FormatError::new(0, "too many or too large H.264 parameter sets"));
    }
    let s = parse_h264_sps(first)?;
    let mut w = BoxWriter::with_capacity(256);
    w.start(b"avc1");
    visual_sample_entry_fields(&mut w, s.width, s.height);
    w.start(b"avcC");
    w.u8(1); // configurationVersion
    w.u8(first[1]); // AVCProfileIndication
    w.u8(first[2]); // profile_compatibility
    w.u8(first[3]); // AVCLevelIndication
    w.u8(0xfc | 3); // lengthSizeMinusOne = 3
    w.u8(0xe0 | sps.len() as u8);
    for n in sps {
        w.u16(n.len() as u16);
        w.bytes(n);
    }
    w.u8(pps.len() as u8);
    for n in pps {
        w.u16(n.len() as u16);
        w.bytes(n);
    }
    if matches!(s.profile_idc, 100 | 110 | 122 | 244) {
        w.u8(0xfc | s.chroma_format_idc as u8);
        w.u8(0xf8 | (s.bit_depth_luma_minus8 as u8 & 7));
        w.u8(0xf8 | (s.bit_depth_chroma_minus8 as u8 & 7));
        w.u8(0); // numOfSequenceParameterSetExt
    }
    w.end();
    w.end();
    Ok(VideoConfig { sample_entry: w.finish(), width: s.display_width(), height: s.height })
}

/// Builds an `hev1` sample entry with `hvcC` (ISO/IEC 14496-15 §8.3.3.1 / §8.4.1) from VPS, SPS
/// and PPS NAL units (headers included). `hev1` because parameter sets also stay in-band;
/// `array_completeness` is 0. The first SPS gives the profile, level and picture size.
pub fn hevc_config(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> Result<VideoConfig, FormatError> {
    let Some(first) = sps.first() else {
        return Err(FormatError::new(0, "H.265 stream without SPS"));
    };
    if vps.is_empty() || pps.is_empty() {
        return Err(FormatError::new(0, "H.265 stream without VPS/PPS"));
    }
    let all = || vps.iter().chain(sps).chain(pps);
    if vps.len().max(sps.len()).max(pps.len()) > u16::MAX as usize || all().any(|n| n.len() > u16::MAX as usize) {
        return Err(FormatError::new(0, "too many or too large H.265 parameter sets"));
    }
    let s = parse_h265_sps(first)?;
    let mut w = BoxWriter::with_capacity(256);
    w.start(b"hev1");
    visual_sample_entry_fields(&mut w, s.width, s.height);
    w.start(b"hvcC");
    w.u8(1); // configurationVersion
    w.u8((s.general_profile_space << 6) | ((s.general_tier_flag as u8) << 5) | s.general_profile_idc);
    w.u32(s.general_profile_compatibility_flags);
    w.u16((s.general_constraint_indicator_flags >> 32) as u16);
    w.u32(s.general_constraint_indicator_flags as u32);
    w.u8(s.general_level_idc);
    w.u16(0xf000); // reserved + min_spatial_segmentation_idc 0
    w.u8(0xfc); // reserved + parallelismType 0
    w.u8(0xfc | s.chroma_format_idc as u8);
    w.u8(0xf8 | (s.bit_depth_luma_minus8 as u8 & 7));
    w.u8(0xf8 | (s.bit_depth_chroma_minus8 as u8 & 7));
    w.u16(0); // avgFrameRate
    // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3
    w.u8(((s.max_sub_layers_minus1 + 1) << 3) | ((s.temporal_id_nesting as u8) << 2) | 3);
    w.u8(3); // numOfArrays
    for (ty, list) in [(32u8, vps), (33, sps), (34, pps)] {
        w.u8(ty); // array_completeness 0, reserved 0, NAL_unit_type
        w.u16(list.len() as u16);
        for n in list {
            w.u16(n.len() as u16);
            w.bytes(n);
        }
    }
    w.end();
    w.end();
    Ok(VideoConfig { sample_entry: w.finish(), width: s.display_width(), height: s.height })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_splitting() {
        let es = [0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0, 0, 1, 0x65, 0, 0, 3, 1];
        let nals: Vec<&[u8]> = nal_units(&es).collect();
        assert_eq!(nals, vec![&[9, 0xf0][..], &[0x67, 1, 2], &[0x68, 3], &[0x65, 0, 0, 3, 1]]);
        let mut out = Vec::new();
        let n = annexb_to_length_prefixed(&es, &mut out);
        assert_eq!(n, length_prefixed_len(&es));
        assert_eq!(n, 4 * 4 + 2 + 3 + 2 + 5);
        assert_eq!(&out[..6], &[0, 0, 0, 2, 9, 0xf0]);
        assert_eq!(length_prefixed_len(&[]), 0);
        assert_eq!(length_prefixed_len(&[0, 0, 1]), 0);
        assert_eq!(length_prefixed_len(&[5, 6, 7]), 0);
        assert_eq!(nal_units(&[1, 0, 0, 1, 7, 0, 0]).collect::<Vec<_>>(), vec![&[7][..]]);
    }

    #[test]
    fn sar_rounding() {
        assert_eq!(display_width(1440, (4, 3)), 1920);
        assert_eq!(display_width(720, (10, 11)), 655);
        assert_eq!(display_width(720, (1, 1)), 720);
        assert_eq!(display_width(720, (0, 0)), 720);
    }

    #[test]
    fn garbage_sps_does_not_panic() {
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let mut nal = vec![0x67];
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                nal.push(x as u8);
            }
            let _ = parse_h264_sps(&nal);
            nal[0] = 0x42;
            nal.insert(1, 1);
            let _ = parse_h265_sps(&nal);
        }
    }

    /// Fuzzing found (sps): a `delta_scale` near ±2^31 overflowed in the scaling list.
    #[test]
    fn fuzz_huge_delta_scale_does_not_overflow() {
        let _ = parse_h264_sps(include_bytes!("../testdata/fuzz_h264_sps_scaling_overflow.bin"));
    }

    /// Fuzzing found (sps): `log2_max_pic_order_cnt_lsb_minus4` of u32::MAX overflowed when 4
    /// was added; it is a bad SPS now.
    #[test]
    fn fuzz_huge_poc_lsb_is_an_error() {
        let data = include_bytes!("../testdata/fuzz_h265_sps_poc_lsb_overflow.bin");
        for start in 0..data.len() {
            let _ = parse_h265_sps(&data[start..]);
        }
    }
}
