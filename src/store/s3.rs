//! S3 and S3-compatible servers through the AWS SDK for Rust (`aws-sdk-s3`).
//!
//! One [`S3`] per node: one SDK client, so one connection pool that every read reuses. How the
//! SDK is configured for this workload, and why:
//! - **Credentials, region, endpoint** from the SDK's standard chain (`AWS_ACCESS_KEY_ID`,
//!   profiles, IMDS, …; `AWS_REGION`, default `us-east-1`; `AWS_ENDPOINT_URL`). Path-style
//!   addressing (`http://host/BUCKET/KEY`) when an endpoint is set or `JITMUX_S3_PATH_STYLE=1`:
//!   S3-compatible servers (SeaweedFS, MinIO, Ceph) rarely have per-bucket DNS names.
//! - **Checksums only when required** (`WhenRequired` for requests and responses): since 2025
//!   the SDK adds CRC32 trailers to every upload by default, which several S3-compatible servers
//!   reject or store wrongly; ranged GETs have no whole-object checksum to validate anyway.
//!   Integrity of what jitmux serves rests on the `If-Match` ETag check and on the sample index.
//! - **Stalled-stream protection stays on**: a read here is a bounded range (a segment, a head)
//!   collected into memory at the store's speed, never a body handed to a viewer, so a viewer
//!   who reads slowly never holds an S3 body open (aws-sdk-rust #1202 cannot bite), and a
//!   store that really stalls is detected and retried.
//! - **SDK retries off, ours on**: every call is retried here on transient failures (5xx,
//!   throttling 429/503 SlowDown, timeouts, connection resets, a body cut short) with full-jitter
//!   exponential backoff until a deadline (`JITMUX_STORE_RETRY_SECS`, default 20 s), so the
//!   deadline bounds what a viewer waits, whatever the number of attempts; permanent answers
//!   (404, 403, 412) are returned at once.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{ObjectMeta, ObjectStore, Result, StoreError, check_key};

/// An S3 location: a bucket and a key (or key prefix). Written `s3://BUCKET/KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArchiveUrl {
    pub bucket: String,
    pub key: String,
}

impl ArchiveUrl {
    /// Parses `s3://BUCKET/KEY`. The bucket follows S3's naming rules (3–63 of `a-z0-9.-`); the
    /// key is slash-separated segments, none empty, `.` or `..`, without backslashes or control
    /// characters; a trailing `/` (a prefix) and an empty key (the whole bucket) are allowed.
    /// Errors with a one-line reason.
    pub fn parse(url: &str) -> std::result::Result<ArchiveUrl, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("{url:?} is not an s3://BUCKET/KEY URL"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(format!("{url:?}: bucket name {bucket:?} is not a valid S3 bucket name"));
        }
        let body = key.strip_suffix('/').unwrap_or(key);
        let key_ok = body.is_empty()
            || body
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.chars().any(|c| c == '\\' || c.is_control()));
        if !key_ok {
            return Err(format!("{url:?}: keys must be plain paths (no empty, '.' or '..' segments)"));
        }
        Ok(ArchiveUrl { bucket: bucket.to_string(), key: key.to_string() })
    }

    /// The location of `relative` (a playlist's segment URI, already checked to be a plain
    /// relative path) next to this key.
    pub fn sibling(&self, relative: &str) -> std::result::Result<ArchiveUrl, String> {
        let dir = self.key.rfind('/').map_or("", |i| &self.key[..=i]);
        ArchiveUrl::parse(&format!("s3://{}/{dir}{relative}", self.bucket))
    }

    /// Whether this location lies under `prefix` (a location whose key is a prefix ending in
    /// `/`, or empty for the whole bucket).
    pub fn is_under(&self, prefix: &ArchiveUrl) -> bool {
        self.bucket == prefix.bucket
            && (prefix.key.is_empty() || (prefix.key.ends_with('/') && self.key.starts_with(&prefix.key)))
    }
}

impl std::fmt::Display for ArchiveUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// A node's S3 client with jitmux's retry policy (see the module docs). Cheap to share.
#[derive(Debug, Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    /// How long transient failures are retried, from the first attempt.
    retry_for: Duration,
}

/// First backoff step; doubled per attempt up to [`BACKOFF_MAX`], fully jittered.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One attempt's failure: whether another attempt may help.
enum Failure {
    Transient(String),
    Permanent(StoreError),
}

impl S3 {
    /// A client from the SDK's standard configuration (environment, profiles, instance
    /// metadata) with jitmux's settings. `JITMUX_STORE_RETRY_SECS` sets the retry deadline.
    pub async fn from_env() -> S3 {
        use aws_config::BehaviorVersion;
        use aws_config::meta::region::RegionProviderChain;
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        use aws_smithy_types::checksum_config::{RequestChecksumCalculation, ResponseChecksumValidation};

        let region = RegionProviderChain::default_provider().or_else("us-east-1");
        let conf = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(3)).build())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .load()
            .await;
        let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var("JITMUX_S3_PATH_STYLE").is_ok_and(|v| v == "1" || v == "true");
        let s3conf = aws_sdk_s3::config::Builder::from(&conf).force_path_style(path_style).build();
        let retry_secs =
            std::env::var("JITMUX_STORE_RETRY_SECS").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(20.0);
        S3 {
            client: aws_sdk_s3::Client::from_conf(s3conf),
            retry_for: Duration::from_secs_f64(retry_secs.clamp(0.0, 3600.0)),
        }
    }

    /// The process's client, made from the environment on first use ([`S3::from_env`]): the
    /// node store and archive reads share it, and its connection pool.
    pub async fn shared() -> Arc<S3> {
        static SHARED: tokio::sync::OnceCell<Arc<S3>> = tokio::sync::OnceCell::const_new();
        SHARED.get_or_init(|| async { Arc::new(S3::from_env().await) }).await.clone()
    }

    /// Runs `attempt` until it succeeds, fails permanently, or transient failures outlast the
    /// retry deadline ([`StoreError::Unavailable`]).
    async fn retry<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Failure>>,
    {
        let t0 = Instant::now();
        let mut n = 0u32;
        loop {
            n += 1;
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Failure::Permanent(e)) => return Err(e),
                Err(Failure::Transient(reason)) => {
                    let step = BACKOFF_BASE.saturating_mul(1 << n.min(8)).min(BACKOFF_MAX);
                    let wait = step.mul_f64(rand::random::<f64>());
                    if t0.elapsed() + wait >= self.retry_for {
                        tracing::warn!("object store: {what}: gave up after {n} attempts: {reason}");
                        return Err(StoreError::Unavailable { key: what.to_string(), attempts: n, reason });
                    }
                    metrics::counter!("jitmux_store_retries_total").increment(1);
                    tracing::debug!("object store: {what}: attempt {n} failed ({reason}); retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Bytes `range` of `bucket`/`key`, with `If-Match: etag` when given. A short body (the
    /// connection cut mid-read) is retried; 412 is [`StoreError::Changed`].
    pub async fn get(&self, bucket: &str, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes> {
        let what = format!("s3://{bucket}/{key}");
        if range.start >= range.end {
            if range.start > range.end {
                return Err(StoreError::BadRange { key: what, start: range.start, end: range.end, len: 0 });
            }
            return Ok(Bytes::new());
        }
        let want = range.end - range.start;
        self.retry(&what, || async {
            let mut req = self.client.get_object().bucket(bucket).key(key).range(format!(
                "bytes={}-{}",
                range.start,
                range.end - 1
            ));
            if let Some(e) = etag {
                req = req.if_match(e);
            }
            let out = req.send().await.map_err(|e| classify(e, &what, Some(&range)))?;
            let body = out.body.collect().await.map_err(|e| Failure::Transient(format!("reading body: {e}")))?;
            let bytes = body.into_bytes();
            if bytes.len() as u64 != want {
                return Err(Failure::Transient(format!("body of {} bytes, {want} asked", bytes.len())));
            }
            Ok(bytes)
        })
        .await
    }

    /// Size and ETag of `bucket`/`key`, or `None` if absent.
    pub async fn stat(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>> {
        let what = format!("s3://{bucket}/{key}");
        self.retry(&what, || async {
            let out = self.client.head_object().bucket(bucket).key(key).send().await;
            match out {
                Ok(o) => Ok(Some(ObjectMeta {
                    len_bytes: o.content_length().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().map(str::to_string),
                })),
                Err(e) => match classify(e, &what, None) {
                    Failure::Permanent(StoreError::NotFound(_)) => Ok(None),
                    f => Err(f),
                },
            }
        })
        .await
    }

    /// The whole of `bucket`/`key` with its ETag (a playlist, a segment being indexed).
    pub async fn get_all(&self, bucket: &str, key: &str) -> Result<(Bytes, Option<String>)> {
        let what = format!("s3://{bucket}/{key}");
        self.retry(&what, || async {
            let out =
                self.client.get_object().bucket(bucket).key(key).send().await.map_err(|e| classify(e, &what, None))?;
            let etag = out.e_tag().map(str::to_string);
            let want = out.content_length();
            let body = out.body.collect().await.map_err(|e| Failure::Transient(format!("reading body: {e}")))?;
            let bytes = body.into_bytes();
            if want.is_some_and(|n| n != bytes.len() as i64) {
                return Err(Failure::Transient(format!("body of {} bytes, {want:?} announced", bytes.len())));
            }
            Ok((bytes, etag))
        })
        .await
    }

    /// Writes `data` to `bucket`/`key` in one PUT (S3 PUTs are atomic).
    pub async fn put(&self, bucket: &str, key: &str, data: Bytes) -> Result<()> {
        let what = format!("s3://{bucket}/{key}");
        self.retry(&what, || async {
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(e, &what, None))
        })
        .await
    }

    /// Starts a multipart upload to `bucket`/`key` (S3 `CreateMultipartUpload`); returns its
    /// upload id. Parts are then sent with [`Self::upload_part`] and joined by
    /// [`Self::complete_multipart`]: the object appears whole or not at all.
    pub async fn create_multipart(&self, bucket: &str, key: &str) -> Result<String> {
        let what = format!("s3://{bucket}/{key}");
        self.retry(&what, || async {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| classify(e, &what, None))?;
            out.upload_id().map(str::to_string).ok_or_else(|| {
                Failure::Permanent(StoreError::Denied { key: what.clone(), reason: "no upload id".into() })
            })
        })
        .await
    }

    /// Sends part `part_number` (1-based; every part but the last at least 5 MiB) of upload
    /// `upload_id`; returns the part's ETag for [`Self::complete_multipart`].
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: i32,
        data: Bytes,
    ) -> Result<String> {
        let what = format!("s3://{bucket}/{key} part {part_number}");
        self.retry(&what, || async {
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .map_err(|e| classify(e, &what, None))?;
            Ok(out.e_tag().unwrap_or_default().to_string())
        })
        .await
    }

    /// Joins upload `upload_id`'s `parts` (number, ETag; in order) into the object
    /// `bucket`/`key` of `len_bytes`. A completion whose answer was lost and is retried finds the
    /// upload gone (404): the object standing there with the right length is success.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
        len_bytes: u64,
    ) -> Result<()> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let what = format!("s3://{bucket}/{key}");
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts.iter().map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build()).collect(),
            ))
            .build();
        let r = self
            .retry(&what, || async {
                self.client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(done.clone())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| classify(e, &what, None))
            })
            .await;
        match r {
            Err(StoreError::NotFound(k)) => match self.stat(bucket, key).await? {
                Some(m) if m.len_bytes == len_bytes => Ok(()),
                _ => Err(StoreError::NotFound(k)),
            },
            r => r,
        }
    }

    /// Abandons upload `upload_id` and its parts (an upload already gone is fine).
    pub async fn abort_multipart(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let what = format!("s3://{bucket}/{key}");
        self.retry(&what, || async {
            match self.client.abort_multipart_upload().bucket(bucket).key(key).upload_id(upload_id).send().await {
                Ok(_) => Ok(()),
                Err(e) => match classify(e, &what, None) {
                    Failure::Permanent(StoreError::NotFound(_)) => Ok(()),
                    f => Err(f),
                },
            }
        })
        .await
    }

    /// Removes `bucket`/`key` (absent is fine).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let what = format!("s3://{bucket}/{key}");
        self.retry(&what, || async {
            match self.client.delete_object().bucket(bucket).key(key).send().await {
                Ok(_) => Ok(()),
                Err(e) => match classify(e, &what, None) {
                    Failure::Permanent(StoreError::NotFound(_)) => Ok(()),
                    f => Err(f),
                },
            }
        })
        .await
    }

    /// Every key of `bucket` starting with `prefix`, sorted, following ListObjectsV2
    /// continuation tokens (1000 keys a page). Each page is retried on its own.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let what = format!("s3://{bucket}/{prefix}");
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .retry(&what, || async {
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| classify(e, &what, None))
                })
                .await?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() || page.is_truncated() != Some(true) {
                break;
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Checks that `bucket` exists and the credentials reach it (HeadBucket).
    pub async fn check_bucket(&self, bucket: &str) -> Result<()> {
        let what = format!("s3://{bucket}/");
        self.retry(&what, || async {
            self.client.head_bucket().bucket(bucket).send().await.map(|_| ()).map_err(|e| classify(e, &what, None))
        })
        .await
    }
}

/// Sorts an SDK failure into transient (worth another attempt) or permanent.
fn classify<E>(e: SdkError<E, HttpResponse>, what: &str, range: Option<&Range<u64>>) -> Failure
where
    E: std::error::Error + Send + Sync + 'static,
{
    let status = match &e {
        SdkError::ServiceError(ctx) => Some(Some(ctx.raw().status().as_u16())),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return Failure::Transient(describe(&e));
        }
        _ => None,
    };
    let key = what.to_string();
    match status.flatten() {
        Some(404) => Failure::Permanent(StoreError::NotFound(key)),
        Some(412) => {
            metrics::counter!("jitmux_store_changed_objects_total").increment(1);
            tracing::warn!("object store: {what} changed since it was indexed (412 on If-Match)");
            Failure::Permanent(StoreError::Changed(key))
        }
        Some(416) => {
            let r = range.cloned().unwrap_or(0..0);
            Failure::Permanent(StoreError::BadRange { key, start: r.start, end: r.end, len: 0 })
        }
        Some(s) if s >= 500 || s == 429 || s == 408 => Failure::Transient(format!("HTTP {s}: {}", describe(&e))),
        _ => Failure::Permanent(StoreError::Denied { key, reason: describe(&e) }),
    }
}

/// An SDK error with its sources, on one line.
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// jitmux's own objects in a bucket, under an optional prefix (`--store s3://BUCKET/PREFIX`).
pub struct S3Store {
    s3: Arc<S3>,
    bucket: String,
    /// Prepended to every key; empty or ending in `/`.
    prefix: String,
}

impl S3Store {
    /// The store at `url` (`s3://BUCKET[/PREFIX]`) through `s3`.
    pub fn new(s3: Arc<S3>, url: &ArchiveUrl) -> S3Store {
        let mut prefix = url.key.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        S3Store { s3, bucket: url.bucket.clone(), prefix }
    }

    fn full(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.s3.get(&self.bucket, &self.full(key)?, range, None).await.map_err(|e| rename(e, key))
    }
    async fn get_range_if(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<Bytes> {
        self.s3.get(&self.bucket, &self.full(key)?, range, etag).await.map_err(|e| rename(e, key))
    }
    async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.s3.put(&self.bucket, &self.full(key)?, data).await.map_err(|e| rename(e, key))
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.s3.stat(&self.bucket, &self.full(key)?).await.map_err(|e| rename(e, key))?.map(|m| m.len_bytes))
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.s3.delete(&self.bucket, &self.full(key)?).await.map_err(|e| rename(e, key))
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let keys = self.s3.list(&self.bucket, &format!("{}{prefix}", self.prefix)).await?;
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string)).collect())
    }
    async fn check(&self) -> Result<()> {
        self.s3.check_bucket(&self.bucket).await
    }
}

/// Errors name jitmux's key (`users/…`) for a NotFound, which callers match on.
fn rename(e: StoreError, key: &str) -> StoreError {
    match e {
        StoreError::NotFound(_) => StoreError::NotFound(key.to_string()),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_urls() {
        let u = ArchiveUrl::parse("s3://cams/front/2026/index.m3u8").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("cams", "front/2026/index.m3u8"));
        assert_eq!(u.sibling("seg 1.ts").unwrap().to_string(), "s3://cams/front/2026/seg 1.ts");
        assert!(u.is_under(&ArchiveUrl::parse("s3://cams/front/").unwrap()));
        assert!(u.is_under(&ArchiveUrl::parse("s3://cams").unwrap()));
        assert!(!u.is_under(&ArchiveUrl::parse("s3://cams/fr").unwrap()));
        assert!(!u.is_under(&ArchiveUrl::parse("s3://cams/back/").unwrap()));
        assert!(!u.is_under(&ArchiveUrl::parse("s3://camz/front/").unwrap()));
        for bad in [
            "s3://cams/a/../b",
            "s3://cams/a//b",
            "s3://cams/./a",
            "s3://Cams/a",
            "s3://c/a",
            "http://cams/a",
            "s3://cams/a\\b",
            "s3://cams/a\nb",
        ] {
            assert!(ArchiveUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
