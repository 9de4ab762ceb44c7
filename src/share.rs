//! Signed URLs: links to one file of a user's tree that work without an `Authorization` header
//! (a `<video src>`, a shared link), until they expire.
//!
//! ```text
//! /v1/files/CAM/DAY/NAME.mp4?u=USER&exp=UNIX_S&modes=file,stream&kid=KID&sig=HEX
//! sig = HMAC-SHA256(key[KID], "jitmux-share-v1\n" USER "\n" PATH "\n" EXP "\n" MODES)   (RFC 2104)
//! ```
//! `PATH` is the decoded tree path (`/CAM/DAY/NAME.mp4`). The signature binds the user, the path,
//! the expiry and the allowed modes, so changing any of them breaks it. Keys rotate: the newest
//! key signs, every unretired key verifies (see [`crate::catalog::Catalog::rotate_signing_key`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::model::{Mode, ShareModes};

/// What a signed URL grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// User name whose tree `path` is in.
    pub user: String,
    /// Decoded tree path of the file, `/CAM/DAY/NAME.mp4` or `/CAM/live.mp4`.
    pub path: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Allowed modes: `file` (full MP4, with ranges), `stream` (quasi-stream) or both; signed
    /// in their canonical form (`file,stream`).
    pub modes: ShareModes,
}

/// Why a signed URL is refused; each is answered 403 with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("signed URL is incomplete: it needs u, exp, modes, kid and sig")]
    Incomplete,
    #[error("signed URL's key is unknown or retired")]
    UnknownKey,
    #[error("signed URL's signature does not match")]
    BadSignature,
    #[error("signed URL has expired")]
    Expired,
    #[error("signed URL does not allow mode {}", .0.as_str())]
    ModeNotAllowed(Mode),
}

fn mac(secret: &[u8], g: &Grant) -> Result<Hmac<Sha256>, ShareError> {
    // HMAC takes keys of any length (RFC 2104 §2); the error cannot happen.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| ShareError::UnknownKey)?;
    m.update(format!("jitmux-share-v1\n{}\n{}\n{}\n{}", g.user, g.path, g.exp, g.modes).as_bytes());
    Ok(m)
}

/// The query string (without `?`) of a signed URL for `g`, signed with key `kid`.
pub fn sign(kid: &str, secret: &[u8], g: &Grant) -> Result<String, ShareError> {
    let sig = hex::encode(mac(secret, g)?.finalize().into_bytes());
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
    Ok(format!("u={}&exp={}&modes={}&kid={}&sig={sig}", enc(&g.user), g.exp, enc(&g.modes.to_string()), enc(kid)))
}

/// Checks `sig_hex` over `g` (constant time), then the expiry against `now_s` (unix seconds)
/// and `mode` against the grant.
pub fn verify(secret: &[u8], g: &Grant, sig_hex: &str, now_s: i64, mode: Mode) -> Result<(), ShareError> {
    let sig = hex::decode(sig_hex).map_err(|_| ShareError::BadSignature)?;
    mac(secret, g)?.verify_slice(&sig).map_err(|_| ShareError::BadSignature)?;
    if g.exp < now_s {
        return Err(ShareError::Expired);
    }
    if !g.modes.allows(mode) {
        return Err(ShareError::ModeNotAllowed(mode));
    }
    Ok(())
}

/// Parses a duration like `90`, `90s`, `15m`, `1h`, `7d` into seconds.
pub fn parse_duration_s(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            user: "alice".into(),
            path: "/front/2026-03-01/10-00-00.mp4".into(),
            exp: 2_000_000_000,
            modes: ShareModes::parse("file").unwrap(),
        }
    }

    fn sig_of(q: &str) -> String {
        q.rsplit_once("sig=").unwrap().1.to_string()
    }

    #[test]
    fn signature_binds_every_field() {
        let g = grant();
        let sig = sig_of(&sign("k1", b"secret", &g).unwrap());
        assert_eq!(verify(b"secret", &g, &sig, 1_000, Mode::File), Ok(()));
        let tampered = [
            Grant { user: "bob".into(), ..g.clone() },
            Grant { path: "/front/2026-03-01/10-00-01.mp4".into(), ..g.clone() },
            Grant { exp: g.exp + 1, ..g.clone() },
            Grant { modes: ShareModes::ALL, ..g.clone() },
        ];
        for t in tampered {
            assert_eq!(verify(b"secret", &t, &sig, 1_000, Mode::File), Err(ShareError::BadSignature), "{t:?}");
        }
        assert_eq!(verify(b"other key", &g, &sig, 1_000, Mode::File), Err(ShareError::BadSignature));
        assert_eq!(verify(b"secret", &g, "zz", 1_000, Mode::File), Err(ShareError::BadSignature));
        assert_eq!(verify(b"secret", &g, &sig, g.exp + 1, Mode::File), Err(ShareError::Expired));
        assert_eq!(verify(b"secret", &g, &sig, 1_000, Mode::Stream), Err(ShareError::ModeNotAllowed(Mode::Stream)));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_s("1h"), Some(3600));
        assert_eq!(parse_duration_s("90"), Some(90));
        assert_eq!(parse_duration_s("7d"), Some(604_800));
        assert_eq!(parse_duration_s("0"), None);
        assert_eq!(parse_duration_s("1y"), None);
    }
}
