//! Who is asking: an API token (`Authorization: Bearer`, RFC 6750), the web page's session
//! cookie (with its CSRF token on unsafe requests), or a signed URL; and the request path,
//! parsed once into a tree path with every traversal trick refused.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};

use super::{ApiError, AppState};
use crate::catalog::User;
use crate::model::{Mode, ShareModes, now_ms};
use crate::share::{Grant, ShareError, verify};

/// The token of an `Authorization: Bearer TOKEN` header (RFC 6750 §2.1); 401 when absent or
/// malformed. `what` names the credential in the reason ("token", "ingest key").
pub fn bearer<'a>(headers: &'a HeaderMap, what: &str) -> Result<&'a str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized(format!("missing Authorization: Bearer {what}")))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized(format!("Authorization must be 'Bearer {what}'")))
}

/// The caller: by `Authorization: Bearer TOKEN`, or else by the web page's session cookie
/// ([`super::ui`]). A request that changes state (`unsafe_method`, RFC 9110 §9.2.1) on a
/// session must also carry the session's CSRF token in `X-CSRF-Token`. 401 when neither is
/// valid, 403 on a missing or wrong CSRF token.
pub async fn authenticate(state: &AppState, headers: &HeaderMap, unsafe_method: bool) -> Result<User, ApiError> {
    if headers.get(header::AUTHORIZATION).is_none()
        && let Some((user, csrf)) = super::ui::session(state, headers).await?
    {
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if unsafe_method && !sent.is_some_and(|s| super::ui::same_secret(s, &csrf)) {
            return Err(ApiError::Forbidden("missing or wrong X-CSRF-Token for this session".into()));
        }
        return Ok(user);
    }
    let token = bearer(headers, "token")?;
    state.catalog.user_by_token(token).await?.ok_or_else(|| ApiError::Unauthorized("invalid token".into()))
}

/// The authenticated caller of an API request (token or session; unsafe methods need the
/// session's CSRF token).
pub struct Caller(pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        Ok(Caller(authenticate(state, &parts.headers, unsafe_method).await?))
    }
}

/// The caller of a `GET`/`HEAD` of `signed_path` (the path a signed URL names) in `mode`: the
/// signed URL's user when the query carries `sig`, else the token or session.
pub async fn reader(
    state: &AppState,
    req: &http::Request<()>,
    signed_path: &str,
    mode: Mode,
) -> Result<User, ApiError> {
    let pairs: Vec<(String, String)> = url_pairs(req.uri().query().unwrap_or("")).collect();
    if pairs.iter().any(|(k, _)| k == "sig") {
        signed_user(state, signed_path, &pairs, mode).await
    } else {
        authenticate(state, req.headers(), false).await
    }
}

/// Splits the raw (still percent-encoded) path after `prefix` into decoded segments, and says
/// whether it ends in `/`. Rejects `.`/`..` segments, encoded slashes or backslashes, NUL and
/// invalid UTF-8 (400): the tree is virtual, so these can never name a file, and refusing them
/// outright keeps traversal tricks from ever reaching a lookup.
pub fn split_path(raw: &str, prefix: &str) -> Result<(Vec<String>, bool), ApiError> {
    let rest = raw.strip_prefix(prefix).unwrap_or(raw);
    let trailing_slash = rest.ends_with('/');
    let mut out = Vec::new();
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let dec = percent_encoding::percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| ApiError::BadRequest("path is not valid UTF-8".into()))?;
        if dec == "." || dec == ".." || dec.contains(['/', '\\', '\0']) {
            return Err(ApiError::BadRequest("path segments may not be '.', '..' or contain slashes".into()));
        }
        out.push(dec.into_owned());
    }
    Ok((out, trailing_slash))
}

/// The user a signed URL for `path` (a tree path, `/CAM/DAY/NAME.mp4`, or a clip's URL path,
/// `/v1/clips/CAM/START_END.mp4`) acts for, after checking its signature, expiry and that it
/// allows `mode` ([`crate::share`]). Refusals are 403 with the reason.
pub async fn signed_user(
    state: &AppState,
    path: &str,
    query: &[(String, String)],
    mode: Mode,
) -> Result<User, ApiError> {
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.as_str());
    let (Some(user), Some(exp), Some(modes), Some(kid), Some(sig)) =
        (get("u"), get("exp"), get("modes"), get("kid"), get("sig"))
    else {
        return Err(ShareError::Incomplete.into());
    };
    let exp: i64 = exp.parse().map_err(|_| ShareError::BadSignature)?;
    let modes = ShareModes::parse(modes).ok_or(ShareError::BadSignature)?;
    let secret = state.catalog.signing_key(kid).await?.ok_or(ShareError::UnknownKey)?;
    let grant = Grant { user: user.to_string(), path: path.to_string(), exp, modes };
    verify(&secret, &grant, sig, now_ms() / 1000, mode)?;
    Ok(state.catalog.user_by_name(user).await?.ok_or(ShareError::BadSignature)?)
}

/// Decoded `key=value` pairs of a query string (`+` is a space).
pub fn url_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        let dec = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        (dec(k), dec(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_path_rejects_traversal() {
        let p = "/v1/files";
        assert_eq!(split_path("/v1/files/cam/2026-01-01/a.mp4", p).unwrap().0, vec!["cam", "2026-01-01", "a.mp4"]);
        assert_eq!(split_path("/v1/files/", p).unwrap(), (Vec::<String>::new(), true));
        assert_eq!(split_path("/v1/files", p).unwrap(), (Vec::<String>::new(), false));
        for bad in [
            "/v1/files/..",
            "/v1/files/cam/%2e%2e/x",
            "/v1/files/a%2Fb",
            "/v1/files/a%5cb",
            "/v1/files/a%00",
            "/v1/files/%ff",
        ] {
            assert!(split_path(bad, p).is_err(), "{bad}");
        }
    }
}
