//! The `jitmux` command line (clap): one function per subcommand, wiring the layers together.
//! Exit codes: 0 success, 1 failure of the environment (catalog, store), 2 bad arguments, 65
//! bad input data (sysexits.h `EX_DATAERR`: a malformed playlist or segment, an unknown user, an
//! archive not granted), 69 an object store that refuses for good (`EX_UNAVAILABLE`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::catalog::{Catalog, CatalogError};
use crate::http::instance::Limits;
use crate::http::{AppState, app};
use crate::import::archive::{ArchiveOptions, Outcome, import_archive};
use crate::import::{ImportError, import_playlist};
use crate::jobs::export::Runner;
use crate::model::{ShareModes, check_name, day_and_name, parse_rfc3339_ms};
use crate::store::{ArchiveUrl, LocalDirStore, ObjectStore, S3, S3Store};

/// Exit code for bad input data (sysexits.h EX_DATAERR).
const EXIT_DATAERR: u8 = 65;
/// Exit code for bad arguments.
const EXIT_USAGE: u8 = 2;
/// Exit code for a service that cannot be used (sysexits.h EX_UNAVAILABLE): the object store
/// refuses for good (no such bucket, bad credentials).
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Parser)]
#[command(name = "jitmux", version, about = "Just-in-time archive transmux: HLS segments served as MP4 files")]
struct Cli {
    /// Data directory of the embedded defaults: catalog.db and objects/.
    #[arg(long, env = "JITMUX_DATA_DIR", default_value = "./jitmux-data", global = true)]
    data_dir: PathBuf,
    /// Catalog URL (sqlite:PATH or postgres://…); default sqlite:<data-dir>/catalog.db.
    #[arg(long, env = "JITMUX_CATALOG_URL", global = true)]
    catalog_url: Option<String>,
    /// Where jitmux writes its objects (ingested segments, heads, thumbnails): s3://BUCKET[/PREFIX]
    /// (credentials, region and AWS_ENDPOINT_URL from the AWS SDK's standard configuration);
    /// default the local directory <data-dir>/objects.
    #[arg(long, env = "JITMUX_STORE", global = true)]
    store: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// How a node presents itself and leaves (see `http::drain`).
#[derive(clap::Args, Clone)]
struct NodeArgs {
    /// This node's name, sent back as the `X-Jitmux-Node` response header (which node served).
    #[arg(long, env = "JITMUX_NODE_NAME")]
    node_name: Option<String>,
    /// After SIGTERM/SIGINT: seconds the node reports unready on /readyz while still accepting
    /// (for the load balancer to notice), before it closes its listener.
    #[arg(long, env = "JITMUX_DRAIN_GRACE", default_value_t = 2.0)]
    drain_grace: f64,
    /// After the listener closed: seconds full-file downloads and ingest uploads in flight may
    /// take to finish (quasi-streams end at their next fragment); then the node exits.
    #[arg(long, env = "JITMUX_DRAIN_TIMEOUT", default_value_t = 30.0)]
    drain_timeout: f64,
}

/// How a node runs export jobs (see `jobs::export`).
#[derive(clap::Args, Clone)]
struct ExportArgs {
    /// Export jobs this node runs at once (0: none here; other nodes run them).
    #[arg(long, env = "JITMUX_EXPORT_JOBS", default_value_t = 1)]
    export_jobs: usize,
    /// Seconds a node's claim on an export job lasts without renewal: how long a job waits
    /// after its node died before another resumes it.
    #[arg(long, env = "JITMUX_EXPORT_LEASE", default_value_t = 15.0)]
    export_lease: f64,
    /// Most bytes per second each export job writes (0: no limit), to spare the store and the
    /// node for viewers.
    #[arg(long, env = "JITMUX_EXPORT_MAX_RATE", default_value_t = 0)]
    export_max_rate: u64,
}

impl Default for ExportArgs {
    fn default() -> Self {
        ExportArgs { export_jobs: 1, export_lease: 15.0, export_max_rate: 0 }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API.
    Serve {
        #[arg(long, env = "JITMUX_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A live broadcast with no upload for this many seconds ends.
        #[arg(long, env = "JITMUX_INGEST_IDLE_TIMEOUT", default_value_t = 30.0)]
        ingest_idle_timeout: f64,
        /// Largest accepted ingest upload (one segment, init or playlist), bytes.
        #[arg(long, env = "JITMUX_INGEST_MAX_UPLOAD", default_value_t = 256 << 20)]
        ingest_max_upload: usize,
        /// Concurrent quasi-streams and live tails per user (more get 429).
        #[arg(long, env = "JITMUX_USER_MAX_STREAMS", default_value_t = 16)]
        user_max_streams: usize,
        /// Concurrent full-file downloads per user (more get 429).
        #[arg(long, env = "JITMUX_USER_MAX_DOWNLOADS", default_value_t = 16)]
        user_max_downloads: usize,
        /// Pieces made at once for all of a user's bodies together (fair share between users).
        #[arg(long, env = "JITMUX_USER_MAX_WORKERS", default_value_t = 2)]
        user_max_workers: usize,
        /// A user's program instance unused this many seconds is evicted.
        #[arg(long, env = "JITMUX_USER_IDLE_EVICT", default_value_t = 300.0)]
        user_idle_evict: f64,
        /// Bound of the node's cache of made bytes (transmuxed segments, heads), bytes.
        #[arg(long, env = "JITMUX_CACHE_BYTES", default_value_t = crate::media::chunks::DEFAULT_CACHE_BYTES)]
        cache_bytes: u64,
        /// Longest clip served (`/v1/clips/…`), hours; longer ranges get 400.
        #[arg(long, env = "JITMUX_CLIP_MAX_HOURS", default_value_t = 24.0)]
        clip_max_hours: f64,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        exports: ExportArgs,
    },
    /// Import an HLS media playlist (VOD or EVENT) as a recording; prints its path in the tree.
    ///
    /// A local playlist's segments are copied into the store; s3://BUCKET/KEY.m3u8 is indexed in
    /// place (nothing copied; the user needs a grant covering it, see `user grant`), and
    /// importing it again replaces the recording only if the playlist changed.
    ///
    /// The recording is /CAMERA/DAY/NAME.mp4: DAY and NAME (HH-MM-SS) come from its wall-clock
    /// start in UTC, which is --start, else the playlist's first #EXT-X-PROGRAM-DATE-TIME, else
    /// the time of the import. A name already taken that day gets -2, -3, … appended.
    Import {
        #[arg(long)]
        user: String,
        #[arg(long)]
        camera: String,
        /// Wall-clock start (RFC 3339); default: #EXT-X-PROGRAM-DATE-TIME, else now.
        #[arg(long)]
        start: Option<String>,
        /// File name in the day's folder, without .mp4 (default: the start time, HH-MM-SS).
        #[arg(long)]
        name: Option<String>,
        /// A playlist file, or s3://BUCKET/KEY.m3u8.
        playlist: String,
    },
    /// Index every media playlist under s3://BUCKET/PREFIX/ in place (new or changed ones).
    ///
    /// Cameras are the first path component under the prefix unless --camera is given. Prints
    /// one line per recording imported, replaced or live, failures on stderr, then a summary.
    /// Exit code 65 when a playlist failed on its data, 1 on a store or catalog failure.
    Scan {
        #[arg(long)]
        user: String,
        /// Camera of every recording found (default: the first path component).
        #[arg(long)]
        camera: Option<String>,
        /// Playlists indexed at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
        /// Keep scanning every this many seconds; growing playlists (no #EXT-X-ENDLIST) become
        /// live recordings whose live tail follows them.
        #[arg(long)]
        watch: Option<f64>,
        /// s3://BUCKET/PREFIX/
        prefix: String,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Manage cameras.
    Camera {
        #[command(subcommand)]
        cmd: CameraCmd,
    },
    /// Print a signed URL for a file of a user's tree (works without a token until it expires).
    Share {
        #[arg(long)]
        user: String,
        /// Tree path: /CAMERA/DAY/NAME.mp4 or /CAMERA/live.mp4.
        path: String,
        /// Lifetime: 90, 90s, 15m, 1h, 7d (at most 30 days).
        #[arg(long, default_value = "1h")]
        expires: String,
        /// Allowed modes: file, stream or file,stream.
        #[arg(long, default_value = "file,stream")]
        modes: String,
        /// Where clients reach the server: the printed URL starts with it ("" prints the path
        /// and query alone).
        #[arg(long, env = "JITMUX_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        base: String,
    },
    /// Manage signed-URL keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Export files of a user's tree into a local directory or an S3 prefix, with a progress bar:
    /// what an export job does, run here. Items already there with the right length are kept
    /// (so an interrupted export resumes). Exit code 65 when an item failed.
    Export {
        #[arg(long)]
        user: String,
        /// A directory (made if needed), or s3://BUCKET/PREFIX/.
        #[arg(long)]
        to: String,
        /// A JSON file of items as `POST /v1/exports` takes them (`-`: standard input).
        #[arg(long)]
        items: Option<PathBuf>,
        /// Accuracy of the clips named on the command line: frame or keyframe.
        #[arg(long, default_value = "frame")]
        accuracy: String,
        /// Gaps in the clips named on the command line: keep, collapse or refuse.
        #[arg(long, default_value = "keep")]
        gaps: String,
        /// Items written at once (each item is one read-transmux-write stream; two keep two
        /// cores busy).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallel: u16,
        /// Into a directory: leave each file to the page cache and the kernel's writeback, as cp
        /// and ffmpeg do, instead of making it durable (direct writes, fdatasync) before naming
        /// it. Faster where the disk is the bound; after a power loss a file may be named but
        /// incomplete, and a resumed export would keep it.
        #[arg(long)]
        no_sync: bool,
        /// Items: CAMERA/DAY/NAME.mp4 (a recording) or CAMERA/START_END.mp4 (a clip, RFC 3339
        /// times, as /v1/clips names it).
        paths: Vec<String>,
    },
    /// Import a bundled real camera clip for user `demo` and serve it.
    Demo {
        #[arg(long, env = "JITMUX_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

#[derive(Subcommand)]
enum CameraCmd {
    /// Create a camera (or take an existing one) and print a new ingest key as the last line:
    /// it can only upload to this camera's live ingest (`PUT /v1/ingest/CAMERA/...`), never read.
    Add {
        #[arg(long)]
        user: String,
        camera: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user; prints an API token (named "default") as the last line.
    Add { name: String },
    /// Let the user read and index archives under s3://BUCKET/PREFIX/ (in place) and export
    /// into it (`POST /v1/exports` to S3); prints the user's grants.
    Grant {
        name: String,
        /// s3://BUCKET/PREFIX/ (ending in /), or s3://BUCKET for the whole bucket.
        url: String,
        /// Withdraw the grant instead: the user's recordings there stop being readable.
        #[arg(long)]
        revoke: bool,
    },
    /// Manage a user's API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Add an API token; prints it as the last line (only its hash is kept).
    Add {
        user: String,
        /// The token's name.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List the user's tokens (name, created, revoked).
    List { user: String },
    /// Revoke the user's tokens with this name.
    Revoke { user: String, name: String },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Add a new signed-URL key; it signs from now on, older keys still verify.
    Rotate,
    /// Retire a signed-URL key: links signed with it stop working.
    Retire { kid: String },
}

/// A failure with its exit code.
struct Failure(u8, String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(1, e.to_string())
    }
}

fn data_error(msg: impl Into<String>) -> Failure {
    Failure(EXIT_DATAERR, msg.into())
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(
        // PostgreSQL's notices ("relation _sqlx_migrations already exists") are not news.
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,sqlx::postgres::notice=warn".into()),
    );
    tracing_subscriber::registry().with(log).with(crate::catalog::StatementCounter::layer()).init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// The catalog and store of the embedded defaults (or `--catalog-url`).
async fn open(cli: &Cli) -> Result<(Catalog, Arc<dyn ObjectStore>), Failure> {
    std::fs::create_dir_all(&cli.data_dir).map_err(|e| format!("data dir {}: {e}", cli.data_dir.display()))?;
    let url = match &cli.catalog_url {
        Some(u) => u.clone(),
        None => format!("sqlite:{}", cli.data_dir.join("catalog.db").display()),
    };
    let catalog = Catalog::connect(&url).await?;
    let store: Arc<dyn ObjectStore> = match &cli.store {
        Some(s) if s.starts_with("s3://") => {
            let url = ArchiveUrl::parse(s).map_err(|e| Failure(EXIT_USAGE, format!("--store: {e}")))?;
            Arc::new(S3Store::new(S3::shared().await, &url))
        }
        Some(dir) => Arc::new(LocalDirStore::new(dir)?),
        None => Arc::new(LocalDirStore::new(cli.data_dir.join("objects"))?),
    };
    Ok((catalog, store))
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let (catalog, store) = open(&cli).await?;
    match cli.cmd {
        Cmd::Serve {
            listen,
            ingest_idle_timeout,
            ingest_max_upload,
            user_max_streams,
            user_max_downloads,
            user_max_workers,
            user_idle_evict,
            cache_bytes,
            clip_max_hours,
            node,
            exports,
        } => {
            crate::media::chunks::node_cache().set_max_bytes(cache_bytes);
            let limits = Limits {
                max_streams: user_max_streams,
                max_downloads: user_max_downloads,
                max_workers: user_max_workers,
            };
            let idle = secs(ingest_idle_timeout, "--ingest-idle-timeout")?;
            let evict = secs(user_idle_evict, "--user-idle-evict")?;
            let mut state = AppState::new(catalog, store, idle, limits, evict);
            state.clip_max_ms = (secs(clip_max_hours * 3600.0, "--clip-max-hours")?.as_millis() as i64).max(1);
            if let Some(ingest) = Arc::get_mut(&mut state.ingest) {
                ingest.max_upload_bytes = ingest_max_upload;
            }
            serve(state, listen, node, exports).await
        }
        Cmd::Import { user, camera, start, name, playlist } => {
            import(&catalog, store, &user, &camera, start, name, playlist).await
        }
        Cmd::Scan { user, camera, jobs, watch, prefix } => {
            let watch = watch.map(|w| secs(w, "--watch")).transpose()?;
            scan(&catalog, store, &user, camera, jobs, watch, &prefix).await
        }
        Cmd::User { cmd: UserCmd::Add { name } } => user_add(&catalog, &name).await,
        Cmd::User { cmd: UserCmd::Grant { name, url, revoke } } => user_grant(&catalog, &name, &url, revoke).await,
        Cmd::User { cmd: UserCmd::Token { cmd } } => user_token(&catalog, cmd).await,
        Cmd::Camera { cmd: CameraCmd::Add { user, camera } } => camera_add(&catalog, &user, &camera).await,
        Cmd::Share { user, path, expires, modes, base } => share(&catalog, &user, &path, &expires, &modes, &base).await,
        Cmd::Keys { cmd } => keys(&catalog, cmd).await,
        Cmd::Export { user, to, items, accuracy, gaps, parallel, no_sync, paths } => {
            export(catalog, store, &user, &to, items, &accuracy, &gaps, parallel.into(), !no_sync, paths).await
        }
        Cmd::Demo { listen } => demo(catalog, store, listen).await,
    }
}

fn secs(v: f64, flag: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| Failure(EXIT_USAGE, format!("{flag} must be a positive number of seconds")))
}

async fn user_of(catalog: &Catalog, name: &str) -> Result<crate::catalog::User, Failure> {
    catalog.user_by_name(name).await?.ok_or_else(|| data_error(format!("unknown user {name:?}")))
}

/// `jitmux serve`.
async fn serve(mut state: AppState, listen: SocketAddr, node: NodeArgs, exports: ExportArgs) -> Result<(), Failure> {
    // A store that cannot be reached for good (no such bucket, refused credentials) is a
    // configuration error; one that is only unavailable now may come back.
    match state.store.check().await {
        Ok(()) => {}
        Err(e) if e.is_transient() => tracing::warn!("object store not reachable yet: {e}"),
        Err(e) => return Err(Failure(EXIT_UNAVAILABLE, format!("object store: {e}"))),
    }
    state.drain = crate::http::drain::Drain::new(node.node_name.as_deref());
    let grace = secs(node.drain_grace, "--drain-grace")?;
    let timeout = secs(node.drain_timeout, "--drain-timeout")?;
    let runners = Runners {
        jobs: exports.export_jobs,
        lease: secs(exports.export_lease, "--export-lease")?,
        rate: (exports.export_max_rate > 0).then_some(exports.export_max_rate),
        node: node.node_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(host_name),
    };
    run_server(state, listen, grace, timeout, runners).await
}

/// `jitmux import`.
async fn import(
    catalog: &Catalog,
    store: Arc<dyn ObjectStore>,
    user: &str,
    camera: &str,
    start: Option<String>,
    name: Option<String>,
    playlist: String,
) -> Result<(), Failure> {
    let start_ms = match start {
        Some(s) => {
            Some(parse_rfc3339_ms(&s).ok_or_else(|| Failure(EXIT_USAGE, format!("--start {s:?} is not RFC 3339")))?)
        }
        None => None,
    };
    let rec = if playlist.starts_with("s3://") {
        let url = ArchiveUrl::parse(&playlist).map_err(data_error)?;
        let user = user_of(catalog, user).await?;
        let opts = ArchiveOptions { start_ms, name, follow_live: false };
        let outcome = import_archive(catalog, store.as_ref(), &S3::shared().await, &user, camera, &url, &opts)
            .await
            .map_err(import_failure)?;
        if let Outcome::Unchanged(r) = &outcome {
            eprintln!("{url} is unchanged since it was indexed");
            r.clone()
        } else {
            outcome.recording().clone()
        }
    } else {
        import_playlist(
            catalog,
            store.as_ref(),
            user,
            camera,
            std::path::Path::new(&playlist),
            start_ms,
            name.as_deref(),
        )
        .await
        .map_err(import_failure)?
    };
    let cam = catalog.camera_by_id(rec.camera_id).await?.map_or_else(|| camera.to_string(), |c| c.name);
    println!("/{cam}/{}/{}.mp4", rec.day, rec.name);
    Ok(())
}

fn import_failure(e: ImportError) -> Failure {
    match e {
        ImportError::Input(m) => data_error(m),
        e => Failure(1, e.to_string()),
    }
}

/// `jitmux scan`.
async fn scan(
    catalog: &Catalog,
    store: Arc<dyn ObjectStore>,
    user: &str,
    camera: Option<String>,
    jobs: usize,
    watch: Option<Duration>,
    prefix: &str,
) -> Result<(), Failure> {
    use crate::import::scan::{Event, ScanOptions, scan};
    let url = ArchiveUrl::parse(prefix).map_err(data_error)?;
    if !(url.key.is_empty() || url.key.ends_with('/')) {
        return Err(Failure(EXIT_USAGE, format!("{prefix}: a prefix ends in / (s3://BUCKET/PREFIX/)")));
    }
    if let Some(c) = &camera {
        check_name(c).map_err(|e| data_error(format!("camera name {c:?}: {e}")))?;
    }
    let user = user_of(catalog, user).await?;
    let s3 = S3::shared().await;
    let opts = ScanOptions { jobs, camera, follow_live: watch.is_some() };
    loop {
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} playlists [{elapsed}, {eta} left]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let report = scan(catalog, store.as_ref(), &s3, &user, &url, &opts, |ev| {
            match ev {
                Event::Listed { playlists } => bar.set_length(*playlists as u64),
                _ => bar.inc(1),
            }
            bar.suspend(|| match ev {
                Event::Done { url, camera, outcome } => {
                    let r = outcome.recording();
                    let verb = match outcome {
                        Outcome::Imported(_) => "imported",
                        Outcome::Replaced(_) => "replaced",
                        Outcome::Unchanged(_) => return,
                        Outcome::Live { ended: true, .. } => "ended",
                        Outcome::Live { .. } => "live",
                    };
                    println!("{verb} {url} as /{camera}/{}/{}.mp4", r.day, r.name);
                }
                Event::Listed { .. } | Event::Master { .. } => {}
                Event::Failed { url, error } => eprintln!("failed {url}: {error}"),
            });
        })
        .await
        .map_err(import_failure)?;
        bar.finish_and_clear();
        println!(
            "scanned {url}: {} playlists, {} imported, {} replaced, {} unchanged, {} live, {} failed, {} master playlists skipped",
            report.playlists,
            report.imported,
            report.replaced,
            report.unchanged,
            report.live,
            report.failed,
            report.masters
        );
        match watch {
            Some(every) => tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            },
            None if report.failed > report.failed_input => {
                return Err(Failure(1, format!("{} playlists failed", report.failed)));
            }
            None if report.failed > 0 => return Err(data_error(format!("{} playlists failed", report.failed))),
            None => return Ok(()),
        }
    }
}

/// `jitmux user grant`.
async fn user_grant(catalog: &Catalog, name: &str, url: &str, revoke: bool) -> Result<(), Failure> {
    let user = user_of(catalog, name).await?;
    let parsed = ArchiveUrl::parse(url).map_err(data_error)?;
    if !(parsed.key.is_empty() || parsed.key.ends_with('/')) {
        return Err(data_error(format!("{url}: a grant is a prefix ending in / (s3://BUCKET/PREFIX/)")));
    }
    let url = parsed.to_string();
    if revoke {
        if !catalog.revoke_grant(user.id, &url).await? {
            return Err(data_error(format!("{} has no grant {url}", user.name)));
        }
    } else {
        catalog.grant(user.id, &url).await?;
    }
    for g in catalog.grants(user.id).await? {
        println!("{g}");
    }
    Ok(())
}

/// `jitmux user add`.
async fn user_add(catalog: &Catalog, name: &str) -> Result<(), Failure> {
    check_name(name).map_err(|e| data_error(format!("user name {name:?}: {e}")))?;
    let (user, token) = catalog.add_user(name).await.map_err(|e| match e {
        CatalogError::Conflict(m) => data_error(m),
        e => Failure(1, e.to_string()),
    })?;
    println!("created user {} (id {})", user.name, user.id);
    println!("{token}");
    Ok(())
}

/// `jitmux user token add|list|revoke`.
async fn user_token(catalog: &Catalog, cmd: TokenCmd) -> Result<(), Failure> {
    match cmd {
        TokenCmd::Add { user, name } => {
            println!("{}", catalog.add_token(user_of(catalog, &user).await?.id, &name).await?)
        }
        TokenCmd::List { user } => {
            for t in catalog.list_tokens(user_of(catalog, &user).await?.id).await? {
                let state = t.revoked_ms.map_or("active".into(), |r| format!("revoked {r}"));
                println!("{}\tcreated {}\t{state}", t.name, t.created_ms);
            }
        }
        TokenCmd::Revoke { user, name } => {
            let n = catalog.revoke_tokens(user_of(catalog, &user).await?.id, &name).await?;
            if n == 0 {
                return Err(data_error(format!("no active token named {name:?}")));
            }
            println!("revoked {n} token(s)");
        }
    }
    Ok(())
}

/// `jitmux camera add`.
async fn camera_add(catalog: &Catalog, user: &str, camera: &str) -> Result<(), Failure> {
    check_name(camera).map_err(|e| data_error(format!("camera name {camera:?}: {e}")))?;
    let user = user_of(catalog, user).await?;
    let cam = catalog.camera_get_or_create(user.id, camera).await?;
    println!("camera {camera} of {}: ingest at /v1/ingest/{camera}/index.m3u8", user.name);
    println!("{}", catalog.new_ingest_key(cam.id).await?);
    Ok(())
}

/// `jitmux share`.
async fn share(
    catalog: &Catalog,
    user: &str,
    path: &str,
    expires: &str,
    modes: &str,
    base: &str,
) -> Result<(), Failure> {
    let user = user_of(catalog, user).await?;
    let secs = crate::share::parse_duration_s(expires)
        .ok_or_else(|| Failure(EXIT_USAGE, format!("--expires {expires:?}: use 90, 90s, 15m, 1h or 7d")))?;
    let modes = ShareModes::parse(modes)
        .ok_or_else(|| Failure(EXIT_USAGE, format!("--modes {modes:?}: use file, stream or file,stream")))?;
    let (link, _) = crate::http::share::signed_link(catalog, &user, path, secs, modes)
        .await
        .map_err(|e| data_error(format!("{path}: {e}")))?;
    println!("{}{link}", base.trim_end_matches('/'));
    Ok(())
}

/// `jitmux keys rotate|retire`.
async fn keys(catalog: &Catalog, cmd: KeysCmd) -> Result<(), Failure> {
    match cmd {
        KeysCmd::Rotate => println!("{}", catalog.rotate_signing_key().await?.0),
        KeysCmd::Retire { kid } => {
            if !catalog.retire_signing_key(&kid).await? {
                return Err(data_error(format!("no active key {kid:?}")));
            }
            println!("retired {kid}");
        }
    }
    Ok(())
}

/// Recording start of the bundled demo clip, so its path is stable.
const DEMO_START: &str = "2026-01-15T08:30:00Z";

/// `jitmux demo`: a bundled real camera clip for user `demo`, then serve.
async fn demo(catalog: Catalog, store: Arc<dyn ObjectStore>, listen: SocketAddr) -> Result<(), Failure> {
    let user = match catalog.user_by_name("demo").await? {
        Some(u) => u,
        None => catalog.add_user("demo").await?.0,
    };
    let token = catalog.add_token(user.id, "demo").await?;
    let cam = catalog.camera_get_or_create(user.id, "driveway").await?;
    let start_ms = parse_rfc3339_ms(DEMO_START).ok_or_else(|| Failure(1, "demo start time".into()))?;
    let (day, name) = day_and_name(start_ms);
    if catalog.recording(cam.id, &day, &name).await?.is_none() {
        let playlist = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sets/r02_intel_car_ts/index.m3u8"));
        import_playlist(&catalog, store.as_ref(), "demo", "driveway", &playlist, Some(start_ms), None)
            .await
            .map_err(|e| Failure(1, format!("demo import: {e}")))?;
    }
    let url = format!("http://{listen}/v1/files/driveway/{day}/{name}.mp4");
    println!("demo user token: {token}");
    println!("web page: http://{listen}/ (sign in with the token)");
    println!(
        "tree:     curl -H 'Authorization: Bearer {token}' -H 'Accept: application/json' http://{listen}/v1/files/driveway/{day}/"
    );
    println!("download: curl -H 'Authorization: Bearer {token}' -o demo.mp4 {url}");
    println!("play:     ffplay -headers $'Authorization: Bearer {token}\\r\\n' {url}");
    let state = AppState::new(catalog, store, Duration::from_secs(30), Limits::default(), Duration::from_secs(300));
    let d = ExportArgs::default();
    let runners = Runners { jobs: d.export_jobs, lease: secs(d.export_lease, "")?, rate: None, node: host_name() };
    run_server(state, listen, Duration::ZERO, Duration::from_secs(5), runners).await
}

/// Serves until SIGTERM or SIGINT, then drains (`http::drain`): unready for `grace`, listener
/// closed, downloads and uploads in flight given up to `timeout`. A second signal exits at once.
async fn run_server(
    state: AppState,
    listen: SocketAddr,
    grace: Duration,
    timeout: Duration,
    runners: Runners,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("listen on {listen}: {e}"))?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("listening on http://{}", listener.local_addr()?);
    tokio::spawn(state.ingest.clone().sweep_idle());
    tokio::spawn(state.instances.clone().sweep());
    tokio::spawn(state.catalog.clone().follow_notifications());
    let mut jobs = tokio::task::JoinSet::new();
    let items: Arc<dyn crate::jobs::export::Items> = Arc::new(crate::http::exports::TreeItems { state: state.clone() });
    for _ in 0..runners.jobs {
        let mut r = Runner::new(state.catalog.clone(), items.clone(), &runners.node);
        r.lease = runners.lease;
        r.rate = runners.rate;
        jobs.spawn(Arc::new(r).run(state.drain.closing()));
    }
    let (drain, ingest) = (state.drain.clone(), state.ingest.clone());
    let mut server = tokio::spawn(crate::http::serve_on(listener, app(state), drain.closing()));
    let mut signals = Signals::new()?;
    tokio::select! {
        r = &mut server => return r.map_err(|e| Failure(1, e.to_string()))?.map_err(Failure::from),
        s = signals.next() => tracing::info!("{s}: draining (unready for {grace:?})"),
    }
    drain.begin();
    tokio::select! {
        _ = tokio::time::sleep(grace) => {}
        s = signals.next() => {
            tracing::warn!("{s} again: exiting now");
            return Ok(());
        }
    }
    drain.close();
    let t0 = std::time::Instant::now();
    tokio::select! {
        _ = async {
            let _ = server.await;
            ingest.wait_idle().await;
            // Export jobs in progress were given up for another node to resume.
            while jobs.join_next().await.is_some() {}
        } => tracing::info!("drained in {:.1} s", t0.elapsed().as_secs_f64()),
        _ = tokio::time::sleep(timeout) => tracing::warn!("drain timeout ({timeout:?}): closing what is left"),
        s = signals.next() => tracing::warn!("{s} again: exiting now"),
    }
    Ok(())
}

/// The export job runners of a node.
struct Runners {
    jobs: usize,
    lease: Duration,
    rate: Option<u64>,
    /// Node name in the jobs' rows (`--node-name`, else the host name).
    node: String,
}

/// The machine's host name (`jitmux` if it has none).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "jitmux".into())
}

/// `jitmux export`: the items into `to`, `parallel` at a time, with a progress bar of bytes.
#[allow(clippy::too_many_arguments)]
async fn export(
    catalog: Catalog,
    store: Arc<dyn ObjectStore>,
    user: &str,
    to: &str,
    items_file: Option<PathBuf>,
    accuracy: &str,
    gaps: &str,
    parallel: usize,
    sync: bool,
    paths: Vec<String>,
) -> Result<(), Failure> {
    use crate::jobs::export::{ClipItem, CopyError, ExportItem, Items, Progress, Target, Writer, copy};
    use futures::{StreamExt as _, TryStreamExt as _};
    let user = user_of(&catalog, user).await?;
    let mut items: Vec<ExportItem> = match &items_file {
        Some(f) => {
            let text = if f.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(f).map_err(|e| Failure(EXIT_USAGE, format!("{}: {e}", f.display())))?
            };
            serde_json::from_str(&text).map_err(|e| {
                Failure(EXIT_USAGE, format!("--items: a JSON list of items as POST /v1/exports takes: {e}"))
            })?
        }
        None => Vec::new(),
    };
    for p in &paths {
        let p = p.trim_start_matches('/');
        let clip = p.rsplit_once('/').and_then(|(camera, file)| {
            let (a, b) = file.strip_suffix(".mp4")?.split_once('_')?;
            (!camera.contains('/') && parse_rfc3339_ms(a).is_some() && parse_rfc3339_ms(b).is_some()).then(|| {
                ClipItem {
                    camera: camera.to_string(),
                    start: a.to_string(),
                    end: b.to_string(),
                    accuracy: Some(accuracy.to_string()),
                    gaps: Some(gaps.to_string()),
                }
            })
        });
        items.push(match clip {
            Some(c) => ExportItem { clip: Some(c), path: None, name: None },
            None => ExportItem { clip: None, path: Some(p.to_string()), name: None },
        });
    }
    if items.is_empty() {
        return Err(Failure(EXIT_USAGE, "nothing to export: name items, or --items FILE".into()));
    }
    let mut names = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        names.push(item.check().map_err(|e| Failure(EXIT_USAGE, format!("item {n}: {e}")))?);
    }
    let target = if to.starts_with("s3://") {
        if !sync {
            return Err(Failure(EXIT_USAGE, "--no-sync: for a directory (S3 objects are stored once whole)".into()));
        }
        let dest = crate::jobs::export::Destination::S3(to.to_string());
        Target::of(&dest).await.map_err(|e| Failure(EXIT_USAGE, format!("--to: {e}")))?
    } else {
        Target::Dir { dir: PathBuf::from(to), sync }
    };
    let state = AppState::new(catalog, store, Duration::from_secs(30), Limits::default(), Duration::from_secs(300));
    let source = crate::http::exports::TreeItems { state };
    // Every item resolved first: the bar's length is the export's.
    let mut resolved = Vec::with_capacity(items.len());
    let mut failed = 0usize;
    for (item, name) in items.iter().zip(&names) {
        match source.resolve(user.id, item).await {
            Ok(r) => resolved.push((name.clone(), r)),
            Err(e) => {
                eprintln!("failed {name}: {e}");
                failed += 1;
            }
        }
    }
    let total: u64 = resolved.iter().map(|r| r.1.len_bytes).sum();
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {msg} [{elapsed}, {bytes_per_sec}, {eta} left]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    /// How one item ended.
    enum Outcome {
        Kept,
        Wrote,
        Failed,
    }
    // Each item is looked for at the target and, unless kept, prepared (its layout built) in a
    // task of its own, one item ahead of those being written.
    let prepared = futures::stream::iter(resolved)
        .map(|(name, mut r)| {
            let target = target.clone();
            tokio::spawn(async move {
                let existing = target.existing_len(&name).await;
                let ready = match existing {
                    Ok(Some(len)) if len == r.len_bytes => Ok(()),
                    _ => r.source.prepare().await,
                };
                (name, r, existing, ready)
            })
        })
        .buffered(parallel.max(1) + 1);
    let (written, kept, failed_now) = prepared
        .map(|joined| {
            let (bar, target) = (&bar, &target);
            async move {
                let (name, r, existing, ready) = joined.map_err(|e| Failure(1, format!("export task: {e}")))?;
                let len = r.len_bytes;
                bar.set_message(name.clone());
                let existing = existing.map_err(|e| Failure(1, e))?;
                if existing == Some(len) {
                    bar.suspend(|| println!("kept {} ({len} bytes, already there)", target.location(&name)));
                    bar.inc(len);
                    return Ok::<_, Failure>(Outcome::Kept);
                }
                // This item's share of the bar: what `copy` reports, added as it grows.
                let shown = std::sync::atomic::AtomicU64::new(0);
                let show =
                    |now: u64| bar.inc(now.saturating_sub(shown.swap(now, std::sync::atomic::Ordering::Relaxed)));
                let outcome = async {
                    ready.map_err(CopyError::Failed)?;
                    let w = Writer::open(target, &name, len).await.map_err(CopyError::Failed)?;
                    let progress = Progress::new();
                    let tick = async {
                        loop {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            show(progress.bytes.load(std::sync::atomic::Ordering::Relaxed));
                        }
                    };
                    tokio::select! {
                        r = copy(r, w, &progress, None, false) => r,
                        _ = tick => unreachable!("the ticker never ends"),
                    }
                }
                .await;
                show(len);
                Ok(match outcome {
                    Ok(_crc) => {
                        bar.suspend(|| println!("wrote {} ({len} bytes)", target.location(&name)));
                        Outcome::Wrote
                    }
                    Err(e) => {
                        let why = match e {
                            CopyError::Failed(e) => e,
                            CopyError::Stopped(s) => format!("{s:?}"),
                        };
                        bar.suspend(|| eprintln!("failed {}: {why}", target.location(&name)));
                        Outcome::Failed
                    }
                })
            }
        })
        .buffer_unordered(parallel.max(1))
        // The first error that is not an item's own (the target unreadable) stops the export.
        .try_fold((0usize, 0usize, 0usize), |(w, k, f), o| async move {
            Ok(match o {
                Outcome::Kept => (w, k + 1, f),
                Outcome::Wrote => (w + 1, k, f),
                Outcome::Failed => (w, k, f + 1),
            })
        })
        .await?;
    failed += failed_now;
    bar.finish_and_clear();
    println!("exported {} items to {to}: {written} written, {kept} kept, {failed} failed", items.len());
    if failed > 0 {
        return Err(data_error(format!("{failed} items failed")));
    }
    Ok(())
}

/// SIGTERM and SIGINT as one stream of names.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
