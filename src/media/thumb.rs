//! Thumbnails for the web page: a JPEG of a recording's first video sync sample, at most
//! [`MAX_WIDTH`] pixels wide, shown the way the file displays (sample aspect ratio and `tkhd`
//! rotation applied).
//!
//! The sync sample is handed to the `openh264` decoder alone, as SPS + PPS + its slice NAL
//! units ([`crate::format::codecs::h264_sync_sample_annexb`]): the decoder needs nothing else for
//! an IDR picture, and feeding it the B-frames that follow would only cost time. The JPEG
//! (`image`) is stored once in the user's scoped store under a key derived from the hash of the
//! segment it comes from, so it is a pure function of stored bytes: the same on every node, and
//! kept across restarts and instance evictions.
//!
//! Only H.264 can be decoded; other video (H.265) and audio-only recordings have no thumbnail.

use std::sync::Arc;

use bytes::Bytes;

use super::{MediaError, UserMedia};
use crate::catalog::{Catalog, Recording};
use crate::format::index::{Codec, SegmentIndex, TrackKind};
use crate::format::{codecs, h26x};
use crate::store::ObjectStore;

/// Version of the thumbnail bytes (decoder input, scaling, JPEG settings); part of the cache key,
/// bumped whenever the bytes would change.
pub const THUMB_VERSION: u32 = 1;
/// Largest thumbnail width in pixels.
pub const MAX_WIDTH: u32 = 320;
/// JPEG quality, 1–100.
const JPEG_QUALITY: u8 = 80;
/// Segments searched for a video sync sample from the start of the recording.
const SEARCH_SEGMENTS: i64 = 4;

/// Why a recording has no thumbnail.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    /// No video track with a sync sample in its first segments.
    #[error("recording has no video key frame to show")]
    NoVideo,
    /// Video that the thumbnail decoder cannot decode: another codec, or H.264 coding tools
    /// that `openh264` lacks (interlace, 4:2:2/4:4:4 chroma, more than 8 bits).
    #[error("no thumbnail: {0}")]
    Unsupported(String),
    /// The sync sample did not decode, or the picture did not encode.
    #[error("no thumbnail: {0}")]
    Undecodable(String),
    /// Reading the catalog or the store failed (worth retrying).
    #[error(transparent)]
    Media(#[from] MediaError),
}

impl From<crate::catalog::CatalogError> for ThumbError {
    fn from(e: crate::catalog::CatalogError) -> Self {
        ThumbError::Media(e.into())
    }
}

impl From<crate::store::StoreError> for ThumbError {
    fn from(e: crate::store::StoreError) -> Self {
        ThumbError::Media(e.into())
    }
}

fn undecodable(e: impl std::fmt::Display) -> ThumbError {
    ThumbError::Undecodable(e.to_string())
}

/// The JPEG thumbnail of `rec`, from the user's store or made and stored now.
pub async fn thumbnail(catalog: &Catalog, media: &UserMedia, rec: &Recording) -> Result<Bytes, ThumbError> {
    media.refresh_grants(catalog).await?;
    let segs = catalog.first_segments(rec.id, SEARCH_SEGMENTS).await?;
    let mut found = None;
    for s in segs {
        let index = SegmentIndex::decode(&s.sample_index).map_err(|source| MediaError::Index {
            recording: rec.id,
            seq: s.seq,
            source,
        })?;
        let Some(video) = index.track(TrackKind::Video) else { continue };
        if video.config.codec != Codec::H264 {
            return Err(ThumbError::Unsupported(format!(
                "thumbnails are made from H.264 only, not {:?}",
                video.config.codec
            )));
        }
        if let Some(i) = video.samples.iter().position(|x| x.sync) {
            found = Some((s, Arc::new(index), i));
            break;
        }
    }
    let (seg, index, sample_i) = found.ok_or(ThumbError::NoVideo)?;
    let track_i = index.tracks.iter().position(|t| t.kind() == TrackKind::Video).ok_or(ThumbError::NoVideo)?;
    let track = &index.tracks[track_i];
    // An `avcC` SPS tells before any segment read whether openh264 can decode the picture.
    if let Some(sps) = codecs::avcc_parameter_sets(&track.config.sample_entry).ok().and_then(|p| p.sps.first().copied())
    {
        check_decodable(sps)?;
    }
    let key = crate::model::keys::thumbnail(media.user, &seg.sha256, THUMB_VERSION);
    if let Some(len) = media.store.head(&key).await? {
        return Ok(media.store.get_range(&key, 0..len).await?);
    }
    let chunk_i = track
        .chunks
        .iter()
        .position(|c| (c.first_sample..c.first_sample + c.samples).contains(&(sample_i as u32)))
        .ok_or_else(|| undecodable("sample index has no chunk for the sync sample"))?;
    let chunk = track.chunks[chunk_i];
    let chunk_bytes = super::cache::segment_chunk(
        media,
        &(seg.object_key.clone(), seg.object_etag.clone()),
        &index,
        track_i as u8,
        chunk_i as u32,
    )
    .await?;
    let samples = &track.samples[chunk.first_sample as usize..];
    let before: u64 = samples[..sample_i - chunk.first_sample as usize].iter().map(|s| u64::from(s.len_bytes)).sum();
    let len = u64::from(track.samples[sample_i].len_bytes);
    let sample = chunk_bytes.slice(before as usize..(before + len) as usize);
    let config = track.config.clone();
    let jpeg = {
        let _worker = media.worker().await?;
        tokio::task::spawn_blocking(move || render(&config, &sample))
            .await
            .map_err(|e| MediaError::Task(e.to_string()))??
    };
    let jpeg = Bytes::from(jpeg);
    media.store.put(&key, jpeg.clone()).await?;
    Ok(jpeg)
}

/// Decodes one H.264 sync sample (length-prefixed NAL units, as in MP4) of a track configured by
/// `config` and encodes it as a JPEG at most [`MAX_WIDTH`] wide, at the display aspect ratio and
/// rotation.
pub fn render(config: &crate::format::index::TrackConfig, sample: &[u8]) -> Result<Vec<u8>, ThumbError> {
    use openh264::formats::YUVSource;
    let annexb = codecs::h264_sync_sample_annexb(&config.sample_entry, sample).map_err(undecodable)?;
    let sps = h26x::nal_units(&annexb).find(|n| h26x::h264_nal_type(n) == 7).ok_or_else(|| undecodable("no SPS"))?;
    check_decodable(sps)?;
    let mut decoder = openh264::decoder::Decoder::new().map_err(undecodable)?;
    let yuv = decoder.decode(&annexb).map_err(undecodable)?.ok_or_else(|| undecodable("decoder gave no picture"))?;
    let (w, h) = yuv.dimensions();
    let mut rgb = vec![0u8; yuv.rgb8_len()];
    yuv.write_rgb8(&mut rgb);
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(|| undecodable("bad picture size"))?;
    // Display size before rotation: the track's (sample aspect ratio applied), else the picture's.
    let (disp_w, disp_h) =
        if config.width > 0 && config.height > 0 { (config.width, config.height) } else { (w as u32, h as u32) };
    let tw = disp_w.clamp(1, MAX_WIDTH);
    let th = ((u64::from(tw) * u64::from(disp_h) + u64::from(disp_w) / 2) / u64::from(disp_w)).max(1) as u32;
    let small = image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle);
    let shown = match rotation_deg(&config.matrix) {
        90 => image::imageops::rotate90(&small),
        180 => image::imageops::rotate180(&small),
        270 => image::imageops::rotate270(&small),
        _ => small,
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&shown)
        .map_err(undecodable)?;
    Ok(out)
}

/// openh264 decodes progressive 8-bit 4:2:0 H.264 only: says so for an SPS NAL unit that needs
/// more, rather than fail in the decoder.
fn check_decodable(sps: &[u8]) -> Result<(), ThumbError> {
    let sps = h26x::parse_h264_sps(sps).map_err(undecodable)?;
    if !sps.frame_mbs_only {
        return Err(ThumbError::Unsupported("interlaced H.264 is not decoded for thumbnails".into()));
    }
    if sps.chroma_format_idc != 1 || sps.bit_depth_luma_minus8 != 0 || sps.bit_depth_chroma_minus8 != 0 {
        return Err(ThumbError::Unsupported("only 8-bit 4:2:0 H.264 is decoded for thumbnails".into()));
    }
    Ok(())
}

/// Clockwise display rotation in degrees (0, 90, 180, 270) of a `tkhd` matrix
/// (ISO/IEC 14496-12 §6.2.2: `{a, b, u, c, d, v, x, y, w}`, 16.16 fixed point); 0 for any
/// matrix that is not a quarter turn.
pub fn rotation_deg(m: &[i32; 9]) -> u32 {
    const ONE: i32 = 0x0001_0000;
    const MINUS_ONE: i32 = -ONE;
    match (m[0], m[1], m[3], m[4]) {
        (0, ONE, MINUS_ONE, 0) => 90,
        (MINUS_ONE, 0, 0, MINUS_ONE) => 180,
        (0, MINUS_ONE, ONE, 0) => 270,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_turns() {
        let one = 0x0001_0000;
        assert_eq!(rotation_deg(&crate::format::boxes::UNITY_MATRIX), 0);
        assert_eq!(rotation_deg(&[0, one, 0, -one, 0, 0, 0, 0, 0x4000_0000]), 90);
        assert_eq!(rotation_deg(&[-one, 0, 0, 0, -one, 0, 0, 0, 0x4000_0000]), 180);
        assert_eq!(rotation_deg(&[0, -one, 0, one, 0, 0, 0, 0, 0x4000_0000]), 270);
    }

    /// A real camera segment's first IDR decodes to a picture that is not blank.
    #[test]
    fn renders_the_first_sync_sample_of_a_ts_segment() {
        use crate::format::ts;
        let data = include_bytes!("../../fixtures/sets/s01_h264_aac_ts_2s/seg_00000.ts");
        let index = ts::index_segment(data).unwrap();
        let video = index.track(TrackKind::Video).unwrap();
        let chunk = video.chunks[0];
        let mut out = Vec::new();
        ts::transmux_chunk(video, &chunk, &data[chunk.src_start as usize..chunk.src_end as usize], &mut out).unwrap();
        assert!(video.samples[0].sync);
        let jpeg = render(&video.config, &out[..video.samples[0].len_bytes as usize]).unwrap();
        let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap().to_luma8();
        assert_eq!(img.width(), MAX_WIDTH.min(video.config.width));
        assert_eq!(img.height() * video.config.width, img.width() * video.config.height);
        let (lo, hi) = img.pixels().fold((255u8, 0u8), |(lo, hi), p| (lo.min(p.0[0]), hi.max(p.0[0])));
        assert!(hi - lo > 64, "picture is flat: luma {lo}..{hi}");
    }
}
