//! Paths of a user's virtual file tree and the names in them.
//!
//! ```text
//! /                          the user's cameras
//! /CAMERA/                   its days (YYYY-MM-DD, UTC)
//! /CAMERA/DAY/               its recordings
//! /CAMERA/DAY/NAME.mp4       one recording as a file
//! /CAMERA/live.mp4           the camera's broadcast in progress
//! ```

/// A parsed path of the tree (segments already percent-decoded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TreePath {
    Root,
    Camera {
        camera: String,
    },
    Day {
        camera: String,
        day: String,
    },
    /// A recording; `name` without `.mp4`.
    File {
        camera: String,
        day: String,
        name: String,
    },
    /// The camera's live broadcast.
    Live {
        camera: String,
    },
}

/// The file name of a camera's live broadcast.
pub const LIVE_FILE: &str = "live.mp4";

impl TreePath {
    /// The path named by decoded segments; `None` when no entry of the tree can have it (too
    /// deep, or a file not ending in `.mp4`).
    pub fn from_segments(segs: &[String]) -> Option<TreePath> {
        Some(match segs {
            [] => TreePath::Root,
            [camera] => TreePath::Camera { camera: camera.clone() },
            [camera, live] if live == LIVE_FILE => TreePath::Live { camera: camera.clone() },
            [camera, day] => TreePath::Day { camera: camera.clone(), day: day.clone() },
            [camera, day, file] => TreePath::File {
                camera: camera.clone(),
                day: day.clone(),
                name: file.strip_suffix(".mp4")?.to_string(),
            },
            _ => return None,
        })
    }

    /// Whether it names a directory (listed) rather than a file (served).
    pub fn is_dir(&self) -> bool {
        matches!(self, TreePath::Root | TreePath::Camera { .. } | TreePath::Day { .. })
    }

    /// The file's name as a downloader keeps it (`NAME.mp4`, `live.mp4`); `None` for directories.
    pub fn file_name(&self) -> Option<String> {
        match self {
            TreePath::File { name, .. } => Some(format!("{name}.mp4")),
            TreePath::Live { .. } => Some(LIVE_FILE.to_string()),
            _ => None,
        }
    }

    /// The decoded segments, as [`TreePath::from_segments`] takes them.
    pub fn segments(&self) -> Vec<String> {
        match self {
            TreePath::Root => vec![],
            TreePath::Camera { camera } => vec![camera.clone()],
            TreePath::Day { camera, day } => vec![camera.clone(), day.clone()],
            TreePath::File { camera, day, name } => vec![camera.clone(), day.clone(), format!("{name}.mp4")],
            TreePath::Live { camera } => vec![camera.clone(), LIVE_FILE.to_string()],
        }
    }
}

/// `/CAM/DAY/NAME.mp4`, `/CAM/live.mp4`; directories end in `/`. Not percent-encoded: the form
/// signed URLs bind.
impl std::fmt::Display for TreePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let segs = self.segments();
        write!(f, "/{}", segs.join("/"))?;
        if self.is_dir() && !segs.is_empty() {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// Why a name cannot be a camera, user or recording name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must be 1 to 64 characters")]
    Length,
    #[error("must not start with a dot")]
    Dot,
    #[error("may contain only letters, digits, '.', '_' and '-'")]
    Characters,
}

/// Checks a name used as one path segment of the tree (camera, user, recording) or of an ingest
/// upload: 1–64 bytes of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 64 {
        return Err(NameError::Length);
    }
    if name.starts_with('.') {
        return Err(NameError::Dot);
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(NameError::Characters);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_round_trip() {
        for (v, shown) in [
            (vec![], "/"),
            (vec!["cam"], "/cam/"),
            (vec!["cam", "2026-03-01"], "/cam/2026-03-01/"),
            (vec!["cam", "2026-03-01", "10-00-00.mp4"], "/cam/2026-03-01/10-00-00.mp4"),
            (vec!["cam", "live.mp4"], "/cam/live.mp4"),
        ] {
            let p = TreePath::from_segments(&segs(&v)).unwrap();
            assert_eq!(p.to_string(), shown);
            assert_eq!(p.segments(), segs(&v));
        }
        assert_eq!(TreePath::from_segments(&segs(&["a", "b", "c.jpg"])), None);
        assert_eq!(TreePath::from_segments(&segs(&["a", "b", "c.mp4", "d"])), None);
        assert_eq!(TreePath::from_segments(&segs(&["a", "live.mp4"])).unwrap().file_name().unwrap(), "live.mp4");
    }

    #[test]
    fn names() {
        assert!(check_name("front-door_1.cam").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "..", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
