//! How a file is served, and the set of those ways a signed URL allows.

/// One way to serve a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The full MP4, with exact length and ranges (`mode=file`, the default).
    File,
    /// The quasi-stream: a fragmented MP4 sent as it is made (`mode=stream`).
    Stream,
}

impl Mode {
    /// The word used in URLs: `file` or `stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::File => "file",
            Mode::Stream => "stream",
        }
    }

    /// Parses `file` or `stream`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "file" => Some(Mode::File),
            "stream" => Some(Mode::Stream),
            _ => None,
        }
    }
}

/// A non-empty set of [`Mode`]s, written canonically as `file`, `stream` or `file,stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShareModes {
    file: bool,
    stream: bool,
}

impl ShareModes {
    /// Both modes.
    pub const ALL: ShareModes = ShareModes { file: true, stream: true };

    /// Parses a comma-separated list of modes in any order (spaces allowed); `None` if it is
    /// empty or names anything else.
    pub fn parse(list: &str) -> Option<ShareModes> {
        let mut m = ShareModes { file: false, stream: false };
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match Mode::parse(word)? {
                Mode::File => m.file = true,
                Mode::Stream => m.stream = true,
            }
        }
        (m.file || m.stream).then_some(m)
    }

    /// Whether `mode` is in the set.
    pub fn allows(self, mode: Mode) -> bool {
        match mode {
            Mode::File => self.file,
            Mode::Stream => self.stream,
        }
    }
}

impl std::fmt::Display for ShareModes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.file, self.stream) {
            (true, true) => "file,stream",
            (true, false) => "file",
            _ => "stream",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(ShareModes::parse("stream, file").unwrap().to_string(), "file,stream");
        assert_eq!(ShareModes::parse("stream").unwrap().to_string(), "stream");
        assert!(ShareModes::parse("file").unwrap().allows(Mode::File));
        assert!(!ShareModes::parse("file").unwrap().allows(Mode::Stream));
        for bad in ["", ",", "files", "file,zip"] {
            assert_eq!(ShareModes::parse(bad), None, "{bad}");
        }
    }
}
