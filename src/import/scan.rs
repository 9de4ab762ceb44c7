//! Scan a bucket prefix: every media playlist under it indexed in place ([`super::archive`]),
//! several at a time. Idempotent (a playlist whose ETag is unchanged is skipped) and resumable
//! (each recording appears in one transaction, so a scan killed halfway leaves whole recordings
//! only, and the next run does the rest).

use std::sync::Arc;

use futures::StreamExt;

use super::ImportError;
use super::archive::{ArchiveOptions, Outcome, check_granted, import_archive};
use crate::catalog::{Catalog, User};
use crate::store::{ArchiveUrl, ObjectStore, S3};

/// How to scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Playlists indexed at once.
    pub jobs: usize,
    /// Camera of every recording; default: the first path component under the prefix.
    pub camera: Option<String>,
    /// Follow growing playlists as live recordings (`--watch`).
    pub follow_live: bool,
}

/// What happened to one playlist.
#[derive(Debug)]
pub enum Event {
    /// The listing is done: this many playlists will follow.
    Listed {
        playlists: usize,
    },
    Done {
        url: ArchiveUrl,
        camera: String,
        outcome: Outcome,
    },
    /// A master playlist (variants): not a recording.
    Master {
        url: ArchiveUrl,
    },
    Failed {
        url: ArchiveUrl,
        error: ImportError,
    },
}

/// Counts of one scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    pub playlists: usize,
    pub imported: usize,
    pub replaced: usize,
    pub unchanged: usize,
    /// Live recordings started, grown or ended.
    pub live: usize,
    pub masters: usize,
    pub failed: usize,
    /// Failures that were bad input (as opposed to an unavailable store or catalog).
    pub failed_input: usize,
}

/// The camera of the playlist at `key` under `prefix`: `camera` if given, else the first path
/// component below the prefix.
fn camera_of(prefix: &ArchiveUrl, key: &str, camera: Option<&str>) -> Result<String, ImportError> {
    if let Some(c) = camera {
        return Ok(c.to_string());
    }
    let rest = key.strip_prefix(&prefix.key).unwrap_or(key);
    match rest.split_once('/') {
        Some((first, _)) if !first.is_empty() => Ok(first.to_string()),
        _ => Err(super::input(format!(
            "s3://{}/{key}: lies directly under the prefix, so its camera is unknown (give --camera)",
            prefix.bucket
        ))),
    }
}

/// Indexes every media playlist (`*.m3u8`) under `prefix` for `user`, `opts.jobs` at a time,
/// calling `on_event` as each finishes, and returns the counts. Errors (before any playlist):
/// the prefix not granted, listing failed.
pub async fn scan(
    catalog: &Catalog,
    store: &dyn ObjectStore,
    s3: &Arc<S3>,
    user: &User,
    prefix: &ArchiveUrl,
    opts: &ScanOptions,
    mut on_event: impl FnMut(&Event),
) -> Result<ScanReport, ImportError> {
    check_granted(catalog, user, prefix).await?;
    let keys: Vec<String> =
        s3.list(&prefix.bucket, &prefix.key).await?.into_iter().filter(|k| k.ends_with(".m3u8")).collect();
    let mut report = ScanReport { playlists: keys.len(), ..ScanReport::default() };
    on_event(&Event::Listed { playlists: keys.len() });
    let aopts = ArchiveOptions { follow_live: opts.follow_live, ..ArchiveOptions::default() };
    let mut results = futures::stream::iter(keys)
        .map(|key| {
            let aopts = &aopts;
            async move {
                let url = ArchiveUrl { bucket: prefix.bucket.clone(), key };
                let r = match ArchiveUrl::parse(&url.to_string()) {
                    Err(e) => Err(super::input(e)),
                    Ok(_) => match camera_of(prefix, &url.key, opts.camera.as_deref()) {
                        Ok(camera) => {
                            import_archive(catalog, store, s3, user, &camera, &url, aopts).await.map(|o| (camera, o))
                        }
                        Err(e) => Err(e),
                    },
                };
                match r {
                    Ok((camera, outcome)) => Event::Done { url, camera, outcome },
                    Err(ImportError::Input(m)) if m.contains("master playlist") => Event::Master { url },
                    Err(error) => Event::Failed { url, error },
                }
            }
        })
        .buffer_unordered(opts.jobs.max(1));
    while let Some(ev) = results.next().await {
        match &ev {
            Event::Done { outcome: Outcome::Imported(_), .. } => report.imported += 1,
            Event::Done { outcome: Outcome::Replaced(_), .. } => report.replaced += 1,
            Event::Done { outcome: Outcome::Unchanged(_), .. } => report.unchanged += 1,
            Event::Done { outcome: Outcome::Live { .. }, .. } => report.live += 1,
            Event::Listed { .. } => {}
            Event::Master { .. } => report.masters += 1,
            Event::Failed { error, .. } => {
                report.failed += 1;
                if matches!(error, ImportError::Input(_)) {
                    report.failed_input += 1;
                }
            }
        }
        on_event(&ev);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_from_the_first_component() {
        let p = ArchiveUrl::parse("s3://cams/site-a/").unwrap();
        assert_eq!(camera_of(&p, "site-a/front/2026/index.m3u8", None).unwrap(), "front");
        assert_eq!(camera_of(&p, "site-a/front/2026/index.m3u8", Some("gate")).unwrap(), "gate");
        assert!(camera_of(&p, "site-a/index.m3u8", None).is_err());
        let root = ArchiveUrl::parse("s3://cams").unwrap();
        assert_eq!(camera_of(&root, "back/index.m3u8", None).unwrap(), "back");
    }
}
