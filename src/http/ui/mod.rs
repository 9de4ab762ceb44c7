//! The web page for camera owners: sign in with an API token, browse the tree, see a thumbnail
//! per recording, play a recording or a live broadcast in the page, download the full MP4, a
//! clip between in and out points, or a day or a camera as a ZIP, and follow export jobs.
//!
//! ```text
//! GET  /                 sign-in form, or a redirect to /ui/ when signed in
//! POST /signin           token=… → session cookie, 303 to /ui/
//! POST /signout          csrf=…  → session closed, cookie cleared
//! GET  /ui/{path}        the tree as HTML: cameras (with live broadcasts), days, recordings
//! GET  /static/app.js|css
//! ```
//!
//! Server-rendered HTML plus one small script. Sessions live in the catalog (only the hash of the
//! cookie value is kept) and end when their API token is revoked. The cookie is `HttpOnly`,
//! `SameSite=Strict` (and `Secure` behind HTTPS), so no other site can make a browser send it;
//! requests that change state also need the session's CSRF token (`X-CSRF-Token` from the
//! script, a form field for sign-out), and sign-in refuses cross-site posts (login CSRF). A CSP
//! allows only this origin's script, styles, images and media.
//!
//! The player asks `POST /v1/share` for a signed URL and gives it to a `<video>`, the same way a
//! shared link plays anywhere: for a finished recording the full MP4 (`modes=file`: the browser
//! knows the duration from the `moov` and seeks anywhere with Range requests), for a live
//! broadcast the quasi-stream (`modes=stream`, `&mode=stream`: the live tail). Before offering
//! it, the script asks the browser `canPlayType` with the file's RFC 6381 codecs: H.265
//! recordings on a browser without HEVC say so and offer the download instead of a black player.
//!
//! While a finished recording plays, "Set in" / "Set out" take the player's time; a point's
//! wall-clock time is the recording's start (`data-start-ms` on its card) plus that time, and
//! the clip is `GET /v1/clips/CAM/START_END.mp4?accuracy=frame|keyframe&download=1` (RFC 3339
//! UTC with milliseconds), or a one-item `POST /v1/exports` to a ZIP. Day and camera listings
//! link `GET /v1/files/CAM/DAY.zip` and `/v1/files/CAM.zip`. The Exports section lists
//! `GET /v1/exports` (polled every 2 s while a job is queued or running), cancels with `DELETE`,
//! and links a finished ZIP job's download; it stays hidden when there are none (or the server
//! has no exports). Every download is a plain link that works with the session alone.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::auth::split_path;
use super::error::ok::{self, Page};
use super::listing::esc;
use super::{ApiError, AppState};
use crate::catalog::{Recording, User};

/// Name of the session cookie.
pub const COOKIE: &str = "jitmux_session";
/// Lifetime of a web session, ms (7 days).
pub const SESSION_LIFETIME_MS: i64 = 7 * 86_400_000;

/// Characters percent-encoded in a path segment of a link: all but RFC 3986 unreserved.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The in/out points under the player (shown by the script while a finished recording plays).
const CLIP: &str = "<div id=clip class=clip hidden><button type=button id=set-in>Set in</button> \
    <button type=button id=set-out>Set out</button> <span id=clip-range class=dim>Set in and out points \
    to cut a clip.</span><div class=actions><label>Accuracy <select id=clip-accuracy><option value=frame \
    selected>frame</option><option value=keyframe>keyframe</option></select></label> <a id=clip-download \
    download>Download clip</a> <button type=button id=clip-export disabled>Export clip</button></div>\
    <p id=clip-status role=status></p></div>";

/// The user's export jobs (filled in by the script from `GET /v1/exports`).
const EXPORTS: &str = "<section id=exports hidden><h2>Exports</h2><ul id=export-list class=exports></ul></section>";

/// Routes of the page (merged into [`super::app`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/signin", post(sign_in))
        .route("/signout", post(sign_out))
        .route("/ui", get(|| async { redirect("/ui/") }))
        .route("/ui/", get(browse))
        .route("/ui/{*path}", get(browse))
        .route("/favicon.ico", get(|| async { ok::no_content() }))
        .route("/static/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/static/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
}

const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265 §5.4).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in user and the session's CSRF token, if the request carries an open session.
pub async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<(User, String)>, ApiError> {
    match cookie(headers, COOKIE) {
        Some(id) if !id.is_empty() => Ok(state.catalog.session(id).await?),
        _ => Ok(None),
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn redirect(to: &str) -> Response {
    ok::see_other(to)
}

/// An HTML page with the page's security headers.
fn html(status: Page, body: String) -> Response {
    let mut r = ok::page(status, body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

fn shell(title: &str, head_extra: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width, \
         initial-scale=1\"><title>{t} · jitmux</title><link rel=stylesheet href=/static/app.css>{head_extra}\
         <body>{body}</body></html>\n",
        t = esc(title)
    )
}

fn sign_in_page(status: Page, message: &str) -> Response {
    let msg =
        if message.is_empty() { String::new() } else { format!("<p class=error role=alert>{}</p>", esc(message)) };
    html(
        status,
        shell(
            "Sign in",
            "",
            &format!(
                "<main class=signin><h1>jitmux</h1><p>Your camera recordings, as files.</p>{msg}\
                 <form method=post action=/signin><label>API token <input name=token type=password \
                 autocomplete=current-password required autofocus></label><button type=submit>Sign in</button>\
                 </form><p class=hint>No token? <code>jitmux user token add NAME --name web</code></p></main>"
            ),
        ),
    )
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    Ok(match session(&state, &headers).await? {
        Some(_) => redirect("/ui/"),
        None => sign_in_page(Page::Ok, ""),
    })
}

/// Whether a form post comes from this site (RFC 6454 `Origin`, Fetch `Sec-Fetch-Site`):
/// refuses login CSRF, where another site signs the browser in to the attacker's account.
fn same_origin_post(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    // Browsers that send Fetch metadata say it outright; older ones send Origin on POSTs.
    if let Some(site) = get("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (get("origin"), get("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, h)| h == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn session_cookie(headers: &HeaderMap, value: &str, max_age_s: i64) -> HeaderValue {
    let https = headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };
    // The value is a token of hex digits: a valid header value; an empty cookie if it ever is not.
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static("jitmux_session=; Path=/; Max-Age=0"))
}

async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !same_origin_post(&headers) {
        return sign_in_page(Page::Forbidden, "Sign-in from another site refused.");
    }
    let Some(token) = form_field(&body, "token").filter(|t| !t.trim().is_empty()) else {
        return sign_in_page(Page::BadRequest, "Enter an API token.");
    };
    match state.catalog.open_session(token.trim(), SESSION_LIFETIME_MS).await {
        Ok(Some((user, id, _csrf))) => {
            tracing::info!(user = user.name, "web sign-in");
            let mut r = redirect("/ui/");
            r.headers_mut().insert(header::SET_COOKIE, session_cookie(&headers, &id, SESSION_LIFETIME_MS / 1000));
            r
        }
        Ok(None) => sign_in_page(Page::Unauthorized, "That token is not valid, or it was revoked."),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let id = cookie(&headers, COOKIE).unwrap_or_default().to_string();
    let sess = match session(&state, &headers).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if let Some((_, csrf)) = sess {
        let sent = form_field(&body, "csrf").unwrap_or_default();
        if !same_secret(&sent, &csrf) {
            return ApiError::Forbidden("missing or wrong CSRF token".into()).into_response();
        }
        if let Err(e) = state.catalog.close_session(&id).await {
            return ApiError::from(e).into_response();
        }
    }
    let mut r = redirect("/");
    r.headers_mut().insert(header::SET_COOKIE, session_cookie(&headers, "", 0));
    r
}

/// A link path for tree path segments under `prefix` (`/ui`, `/v1/files`, `/v1/thumbnails`).
fn href(prefix: &str, segs: &[&str]) -> String {
    let mut s = prefix.to_string();
    for seg in segs {
        s.push('/');
        s.extend(utf8_percent_encode(seg, SEGMENT));
    }
    s
}

/// `1 h 02 min`, `3 min 05 s`, `12.4 s`.
fn human_duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        3600.. => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        60.. => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// `812 kB`, `12.3 MB`, `1.20 GB` (SI units, as file managers show them).
fn human_bytes(n: i64) -> String {
    let n = n as f64;
    match n {
        x if x >= 1e9 => format!("{:.2} GB", x / 1e9),
        x if x >= 1e6 => format!("{:.1} MB", x / 1e6),
        x => format!("{:.0} kB", (x / 1e3).ceil()),
    }
}

fn is_hevc(codecs: &str) -> bool {
    codecs.starts_with("hev1") || codecs.starts_with("hvc1")
}

/// The card of `camera`'s live broadcast `rec`.
fn live_card(camera: &str, rec: &Recording) -> String {
    card(&[camera, "live.mp4"], camera, rec, &format!("{} so far", human_duration(rec.duration_ms)))
}

/// A playable item: a recording or a camera's live broadcast.
fn card(path_segs: &[&str], title: &str, rec: &Recording, meta: &str) -> String {
    let file = href("", path_segs);
    let jpg = format!("/v1/thumbnails{}.jpg", file.strip_suffix(".mp4").unwrap_or(&file));
    let thumb = if rec.codecs.is_empty() || rec.codecs.starts_with("avc") {
        format!("<img class=thumb src=\"{}\" alt=\"\" loading=lazy>", esc(&jpg))
    } else if is_hevc(&rec.codecs) {
        "<div class=\"thumb none\">H.265</div>".to_string()
    } else {
        "<div class=\"thumb none\">audio</div>".to_string()
    };
    let live = if rec.live { "<span class=live>● LIVE</span> " } else { "" };
    format!(
        "<li class=card data-path=\"{p}\" data-title=\"{t}\" data-codecs=\"{c}\" data-live=\"{l}\" \
         data-start-ms=\"{start}\">{thumb}\
         <div class=meta>{live}<b>{t}</b><br>{meta}</div><div class=actions><button type=button class=play>{verb}\
         </button> <a class=download href=\"{dl}\" download>Download MP4</a></div><p class=note hidden></p></li>",
        p = esc(&file),
        t = esc(title),
        c = esc(&rec.codecs),
        l = rec.live,
        start = rec.start_ms,
        verb = if rec.live { "Watch live" } else { "Play" },
        dl = esc(&format!("/v1/files{file}")),
    )
}

async fn browse(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let Some((user, csrf)) = session(&state, req.headers()).await? else {
        return Ok(redirect("/"));
    };
    let raw = req.uri().path().strip_prefix("/ui").unwrap_or_default();
    let (segs, _) = split_path(raw, "")?;
    let cat = &state.catalog;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let mut crumbs = format!("<a href=\"/ui/\">{}</a>", esc(&user.name));
    for i in 0..segs.len() {
        crumbs.push_str(&format!(" / <a href=\"{}/\">{}</a>", esc(&href("/ui", &segs[..=i])), esc(segs[i])));
    }
    let mut body = String::new();
    match segs.as_slice() {
        [] => {
            let cams = cat.list_cameras(user.id).await?;
            if cams.is_empty() {
                body.push_str("<p>No cameras yet. Import a playlist with <code>jitmux import</code> or point an encoder at the ingest URL.</p>");
            }
            let mut live_cards = String::new();
            body.push_str("<h2>Cameras</h2><ul class=dirs>");
            for c in &cams {
                let cam = cat.camera(user.id, &c.name).await?.ok_or(ApiError::NotFound)?;
                let live = cat.live_recording(cam.id).await?;
                if let Some(rec) = &live {
                    live_cards.push_str(&live_card(&c.name, rec));
                }
                body.push_str(&format!(
                    "<li><a href=\"{}/\">{}</a> {}<span class=dim>{} · {}</span></li>",
                    esc(&href("/ui", &[&c.name])),
                    esc(&c.name),
                    if live.is_some() { "<span class=live>● LIVE</span> " } else { "" },
                    human_duration(c.duration_ms),
                    human_bytes(c.len_bytes),
                ));
            }
            body.push_str("</ul>");
            if !live_cards.is_empty() {
                body = format!("<h2>Live now</h2><ul class=cards>{live_cards}</ul>{body}");
            }
        }
        [camera] => {
            let cam = cat.camera(user.id, camera).await?.ok_or(ApiError::NotFound)?;
            if let Some(rec) = cat.live_recording(cam.id).await? {
                body.push_str(&format!("<h2>Live now</h2><ul class=cards>{}</ul>", live_card(camera, &rec)));
            }
            body.push_str(&format!(
                "<h2>Days</h2><p class=zip><a href=\"{}.zip\" download>Download all days as ZIP</a></p><ul class=dirs>",
                esc(&href("/v1/files", &[camera]))
            ));
            for d in cat.list_days(cam.id).await? {
                body.push_str(&format!(
                    "<li><a href=\"{}/\">{}</a> <span class=dim>{} · {}</span> · <a class=zip href=\"{}.zip\" \
                     download>ZIP</a></li>",
                    esc(&href("/ui", &[camera, &d.name])),
                    esc(&d.name),
                    human_duration(d.duration_ms),
                    human_bytes(d.len_bytes),
                    esc(&href("/v1/files", &[camera, &d.name])),
                ));
            }
            body.push_str("</ul>");
        }
        [camera, day] => {
            let cam = cat.camera(user.id, camera).await?.ok_or(ApiError::NotFound)?;
            let recs = cat.list_recordings(cam.id, day).await?;
            if recs.is_empty() {
                return Err(ApiError::NotFound);
            }
            body.push_str(&format!(
                "<h2>Recordings</h2><p class=zip><a href=\"{}.zip\" download>Download day as ZIP</a></p>\
                 <ul class=cards>",
                esc(&href("/v1/files", &[camera, day]))
            ));
            for r in &recs {
                let file = format!("{}.mp4", r.name);
                let start = crate::model::rfc3339(r.start_ms);
                let time = start.get(11..19).unwrap_or_default();
                let meta = format!("{time} UTC · {} · {}", human_duration(r.duration_ms), human_bytes(r.len_bytes));
                body.push_str(&card(&[camera, day, &file], &r.name, r, &meta));
            }
            body.push_str("</ul>");
        }
        _ => return Err(ApiError::NotFound),
    }
    let page = format!(
        "<header><a class=brand href=\"/ui/\">jitmux</a><nav>{crumbs}</nav><form method=post action=/signout>\
         <input type=hidden name=csrf value=\"{csrf}\"><button type=submit>Sign out</button></form></header>\
         <main><section id=player hidden><h2 id=now></h2><video id=video controls playsinline></video>\
         <p id=player-error class=error role=alert></p>{CLIP}</section>{body}{EXPORTS}</main>",
        csrf = esc(&csrf)
    );
    let title = segs.last().copied().unwrap_or("Cameras");
    let head = format!("<meta name=csrf content=\"{}\"><script src=/static/app.js defer></script>", esc(&csrf));
    Ok(html(Page::Ok, shell(title, &head, &page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_origins() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; jitmux_session=abc"));
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
        h.insert(header::HOST, HeaderValue::from_static("cams.example:8080"));
        assert!(same_origin_post(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://cams.example:8080"));
        assert!(same_origin_post(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin_post(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin_post(&h), "Fetch metadata decides when present");
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin_post(&h));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("jm_abc", "jm_abc"));
        assert!(!same_secret("jm_abc", "jm_abd"));
        assert!(!same_secret("jm_ab", "jm_abc"));
    }

    #[test]
    fn links_and_sizes() {
        assert_eq!(href("/ui", &["front door", "2026-01-01"]), "/ui/front%20door/2026-01-01");
        assert_eq!(human_duration(65_000), "1 min 05 s");
        assert_eq!(human_duration(3_725_000), "1 h 02 min");
        assert_eq!(human_bytes(12_345_678), "12.3 MB");
    }
}
