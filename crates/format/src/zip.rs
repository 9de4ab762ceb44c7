//! Stored (uncompressed) ZIP archives described from their members' names, lengths and CRCs
//! alone, so that a directory of files can be served as one `.zip` with an exact length and any
//! byte range without building it.
//!
//! [`ZipLayout::new`] places the members; [`ZipLayout::parts`] says, for any byte range of the
//! archive, which bytes are generated here (headers, central directory, end records) and which
//! are a range of some member's data, which the caller streams from wherever the member lives.
//! Clause numbers below are those of PKWARE's APPNOTE.TXT 6.3.x.
//!
//! ```text
//! for each member, in the given order:
//!   local file header                  4.3.7   version needed 20 (45 when the member needs
//!                                              ZIP64), flags bit 11 (UTF-8 name, 4.4.4),
//!                                              method 0 (stored), DOS time in UTC, CRC-32, sizes
//!     ZIP64 extended information        4.5.3   only when the member's length ≥ 0xFFFFFFFF:
//!                                              both sizes (and 0xFFFFFFFF in the header fields)
//!     extended timestamp (0x5455)               Info-ZIP "UT", mtime only, when it fits 0..2^31
//!   member data                        4.3.8   the member's bytes, no data descriptor
//! central directory: one header a member 4.3.12  when the member's length or local header
//!                                              offset is ≥ 0xFFFFFFFF, all three fields are
//!                                              0xFFFFFFFF and the ZIP64 extra holds them, in
//!                                              order: uncompressed and compressed size, offset
//! ZIP64 end of central directory record 4.3.14  only when needed: ≥ 0xFFFF entries, or the
//! ZIP64 end of central directory locator 4.3.15  central directory's size or offset ≥ 0xFFFFFFFF
//! end of central directory record      4.3.16  fields that overflow are 0xFFFF / 0xFFFFFFFF;
//!                                              empty comment
//! ```
//!
//! The bytes depend on nothing but the members ([`ZIP_LAYOUT_VERSION`] says which version of
//! this module wrote them): the same members give the same archive, on every node, every time.
//!
//! Cost: [`ZipLayout::new`] is O(members) time and keeps two offsets a member; [`ZipLayout::parts`]
//! is a binary search over those offsets plus the bytes it returns: it writes only the headers
//! that overlap the range, one at a time.
//!
//! ```
//! use jitmux_format::zip::{ZipLayout, ZipMember, ZipPart};
//!
//! let data = b"hello";
//! let layout = ZipLayout::new(vec![ZipMember {
//!     name: "cam/2024-05-01/a.txt".into(),
//!     len_bytes: data.len() as u64,
//!     crc32: 0x3610_a686,
//!     modified_unix_s: 1_714_521_600,
//! }])
//! .unwrap();
//! let mut zip = Vec::new();
//! for part in layout.parts(0..layout.len_bytes()) {
//!     match part {
//!         ZipPart::Bytes(b) => zip.extend_from_slice(&b),
//!         ZipPart::Member { index: _, range } => {
//!             zip.extend_from_slice(&data[range.start as usize..range.end as usize])
//!         }
//!     }
//! }
//! assert_eq!(zip.len() as u64, layout.len_bytes());
//! assert_eq!(&zip[layout.member_data_range(0).start as usize..][..5], b"hello");
//! ```

use std::collections::HashMap;
use std::ops::Range;

/// Version of the bytes this module writes. Bump it whenever a change alters the archive for the
/// same members, and hash it into any ETag of an archive, so that caches and resumed downloads
/// never mix two layouts.
pub const ZIP_LAYOUT_VERSION: u32 = 1;

/// One file of the archive, as the layout needs it: its bytes are the caller's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZipMember {
    /// Path inside the archive, `/`-separated, stored as UTF-8 (general purpose bit 11,
    /// APPNOTE 4.4.4). At most 65535 bytes; see [`ZipLayout::new`] for what is refused.
    pub name: String,
    /// Length of the member's data, bytes. Stored uncompressed, so this is both the compressed
    /// and the uncompressed size; lengths ≥ 0xFFFFFFFF are written as ZIP64 (APPNOTE 4.5.3).
    pub len_bytes: u64,
    /// CRC-32 (ISO-HDLC, as zlib's `crc32`) of the member's data. Not checked here: a wrong value
    /// makes an archive that unzips with a CRC error.
    pub crc32: u32,
    /// Modification time, seconds since the Unix epoch. Written as an MS-DOS date and time in
    /// UTC, clamped to 1980-01-01 00:00:00 ..= 2107-12-31 23:59:58 (two-second resolution), and,
    /// when it lies in 0 ..= 2^31 - 1, also as the Info-ZIP extended timestamp (extra field
    /// 0x5455) that `unzip` and most tools prefer, being UTC.
    pub modified_unix_s: i64,
}

/// Why a list of members cannot make an archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    /// Member `index` has a name that is empty, longer than 65535 bytes, contains NUL or `\`,
    /// starts or ends with `/`, or has an empty, `.` or `..` path component.
    #[error("ZIP member {index} ({name:?}): invalid name: {why}")]
    InvalidName {
        /// Position of the member in the list given to [`ZipLayout::new`].
        index: usize,
        /// The refused name.
        name: String,
        /// What is wrong with it, in a few words.
        why: &'static str,
    },
    /// Member `index` has the same name as member `first`.
    #[error("ZIP member {index} ({name:?}): same name as member {first}")]
    DuplicateName {
        /// Position of the second member with that name.
        index: usize,
        /// Position of the first member with that name.
        first: usize,
        /// The name.
        name: String,
    },
    /// The archive would be longer than 2^64 - 1 bytes.
    #[error("ZIP archive longer than 2^64 - 1 bytes")]
    TooLarge,
}

/// A piece of a byte range of the archive, as returned by [`ZipLayout::parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipPart {
    /// Bytes written by the layout (headers, central directory, end records); never empty.
    Bytes(Vec<u8>),
    /// Bytes `range` (offsets within the member's data, never empty) of member `index`.
    Member {
        /// Index into [`ZipLayout::members`].
        index: usize,
        /// Byte range within the member's data.
        range: Range<u64>,
    },
}

impl ZipPart {
    /// Length of this part, bytes.
    pub fn len_bytes(&self) -> u64 {
        match self {
            ZipPart::Bytes(b) => b.len() as u64,
            ZipPart::Member { range, .. } => range.end - range.start,
        }
    }
}

/// A stored ZIP archive of members whose bytes live elsewhere: its length and, for any range,
/// its generated bytes and where member data goes. See the module documentation for the layout.
#[derive(Debug, Clone)]
pub struct ZipLayout {
    members: Vec<ZipMember>,
    /// Archive offset of member i's local file header; strictly ascending, the first is 0.
    local_offsets: Vec<u64>,
    /// Archive offset of member i's central directory header; strictly ascending.
    central_offsets: Vec<u64>,
    /// Archive offset of the central directory (= end of the last member's data).
    cd_offset: u64,
    /// Archive offset just past the central directory, where the end records begin.
    cd_end: u64,
    /// Whether the ZIP64 end of central directory record and locator are written.
    zip64_end: bool,
    len: u64,
}

const SIG_LOCAL: u32 = 0x0403_4b50;
const SIG_CENTRAL: u32 = 0x0201_4b50;
const SIG_ZIP64_END: u32 = 0x0606_4b50;
const SIG_ZIP64_LOCATOR: u32 = 0x0706_4b50;
const SIG_END: u32 = 0x0605_4b50;

const LOCAL_FIXED_LEN: u64 = 30;
const CENTRAL_FIXED_LEN: u64 = 46;
const ZIP64_END_LEN: u64 = 56;
const ZIP64_LOCATOR_LEN: u64 = 20;
const END_LEN: u64 = 22;
/// Local ZIP64 extra: tag, size, uncompressed and compressed sizes.
const LOCAL_ZIP64_EXTRA_LEN: u64 = 4 + 16;
/// Extended timestamp extra: tag, size, flags, mtime.
const UT_EXTRA_LEN: u64 = 4 + 5;

const EXTRA_ZIP64: u16 = 0x0001;
const EXTRA_UT: u16 = 0x5455;

/// Version needed to extract (APPNOTE 4.4.3): 2.0 for stored files, 4.5 with ZIP64.
const VERSION_NEEDED: u16 = 20;
const VERSION_NEEDED_ZIP64: u16 = 45;
/// Version made by (4.4.2): Unix (3) in the upper byte, so that `external attributes` are a
/// Unix mode; APPNOTE 4.5 in the lower.
const VERSION_MADE_BY: u16 = (3 << 8) | 45;
/// General purpose bit 11: name is UTF-8 (4.4.4).
const FLAGS_UTF8: u16 = 1 << 11;
/// External attributes (4.4.15): a regular file, mode 0644, in the upper 16 bits.
const EXTERNAL_ATTRS: u32 = 0o100644 << 16;

/// A 32-bit field at this value (or beyond) is written as 0xFFFFFFFF plus a ZIP64 field.
const MAX32: u64 = 0xFFFF_FFFF;
/// An entry count at this value (or beyond) is written as 0xFFFF plus the ZIP64 end record.
const MAX16: u64 = 0xFFFF;

impl ZipLayout {
    /// Places `members`, in this order, into a stored ZIP archive.
    ///
    /// Errors: [`ZipError::InvalidName`] for a name that is empty, longer than 65535 bytes,
    /// contains NUL or `\`, starts or ends with `/`, or has an empty, `.` or `..` component
    /// (so that extracting cannot escape the target directory or make a directory entry);
    /// [`ZipError::DuplicateName`]; [`ZipError::TooLarge`] when the archive would pass 2^64 - 1
    /// bytes. O(members) time.
    pub fn new(members: Vec<ZipMember>) -> Result<ZipLayout, ZipError> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(members.len());
        for (index, m) in members.iter().enumerate() {
            if let Some(why) = name_problem(&m.name) {
                return Err(ZipError::InvalidName { index, name: m.name.clone(), why });
            }
            if let Some(&first) = seen.get(m.name.as_str()) {
                return Err(ZipError::DuplicateName { index, first, name: m.name.clone() });
            }
            seen.insert(&m.name, index);
        }
        drop(seen);

        let mut pos = 0u64;
        let mut local_offsets = Vec::with_capacity(members.len());
        for m in &members {
            local_offsets.push(pos);
            pos = pos
                .checked_add(local_header_len(m))
                .and_then(|p| p.checked_add(m.len_bytes))
                .ok_or(ZipError::TooLarge)?;
        }
        let cd_offset = pos;
        let mut central_offsets = Vec::with_capacity(members.len());
        for (m, &local) in members.iter().zip(&local_offsets) {
            central_offsets.push(pos);
            pos = pos.checked_add(central_header_len(m, local)).ok_or(ZipError::TooLarge)?;
        }
        let cd_end = pos;
        let zip64_end = members.len() as u64 >= MAX16 || cd_end - cd_offset >= MAX32 || cd_offset >= MAX32;
        let tail = if zip64_end { ZIP64_END_LEN + ZIP64_LOCATOR_LEN + END_LEN } else { END_LEN };
        let len = cd_end.checked_add(tail).ok_or(ZipError::TooLarge)?;
        Ok(ZipLayout { members, local_offsets, central_offsets, cd_offset, cd_end, zip64_end, len })
    }

    /// Length of the whole archive, bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// The members, in archive order (the order given to [`ZipLayout::new`]).
    pub fn members(&self) -> &[ZipMember] {
        &self.members
    }

    /// Where member `i`'s data lies in the archive: a byte range of length `len_bytes`.
    /// Panics if `i` is not a member index.
    pub fn member_data_range(&self, i: usize) -> Range<u64> {
        let start = self.local_offsets[i] + local_header_len(&self.members[i]);
        start..start + self.members[i].len_bytes
    }

    /// The parts that make up archive bytes `range`, in order: generated bytes, or a range of a
    /// member's data. Concatenated, they are exactly the archive's bytes `range` (clamped to the
    /// archive's length; an empty or out-of-bounds range gives no parts). Parts are never empty
    /// and two `Bytes` parts are never adjacent.
    ///
    /// Cost: O(log members) to find the start, then O(1) per part plus the generated bytes.
    pub fn parts(&self, range: Range<u64>) -> Vec<ZipPart> {
        let end = range.end.min(self.len);
        let mut pos = range.start;
        let mut out = Vec::new();
        if pos >= end {
            return out;
        }
        if pos < self.cd_offset {
            let mut i = self.local_offsets.partition_point(|&o| o <= pos) - 1;
            while pos < end && i < self.members.len() {
                let header = self.local_offsets[i];
                let data = self.member_data_range(i);
                if pos < data.start {
                    let stop = end.min(data.start);
                    let bytes = self.local_header(i);
                    push_bytes(&mut out, &bytes[(pos - header) as usize..(stop - header) as usize]);
                    pos = stop;
                }
                if pos < end && pos < data.end {
                    let stop = end.min(data.end);
                    out.push(ZipPart::Member { index: i, range: pos - data.start..stop - data.start });
                    pos = stop;
                }
                i += 1;
            }
        }
        if pos < end && pos < self.cd_end {
            let mut i = self.central_offsets.partition_point(|&o| o <= pos) - 1;
            while pos < end && pos < self.cd_end {
                let start = self.central_offsets[i];
                let bytes = self.central_header(i);
                let stop = end.min(start + bytes.len() as u64);
                push_bytes(&mut out, &bytes[(pos - start) as usize..(stop - start) as usize]);
                pos = stop;
                i += 1;
            }
        }
        if pos < end {
            let bytes = self.end_records();
            push_bytes(&mut out, &bytes[(pos - self.cd_end) as usize..(end - self.cd_end) as usize]);
        }
        out
    }

    /// Version needed to extract member `i` (APPNOTE 4.4.3).
    fn version_needed(&self, i: usize) -> u16 {
        if self.members[i].len_bytes >= MAX32 || self.local_offsets[i] >= MAX32 {
            VERSION_NEEDED_ZIP64
        } else {
            VERSION_NEEDED
        }
    }

    /// Member `i`'s local file header (APPNOTE 4.3.7), extra fields included.
    fn local_header(&self, i: usize) -> Vec<u8> {
        let m = &self.members[i];
        let (time, date) = dos_time_date(m.modified_unix_s);
        let big = m.len_bytes >= MAX32;
        let mut b = Vec::with_capacity(local_header_len(m) as usize);
        put32(&mut b, SIG_LOCAL);
        put16(&mut b, self.version_needed(i));
        put16(&mut b, FLAGS_UTF8);
        put16(&mut b, 0); // method: stored
        put16(&mut b, time);
        put16(&mut b, date);
        put32(&mut b, m.crc32);
        let size32 = if big { MAX32 } else { m.len_bytes } as u32;
        put32(&mut b, size32); // compressed
        put32(&mut b, size32); // uncompressed
        put16(&mut b, m.name.len() as u16);
        put16(&mut b, (local_header_len(m) - LOCAL_FIXED_LEN - m.name.len() as u64) as u16);
        b.extend_from_slice(m.name.as_bytes());
        if big {
            // APPNOTE 4.5.3: in the local header, both sizes, uncompressed first.
            put16(&mut b, EXTRA_ZIP64);
            put16(&mut b, 16);
            put64(&mut b, m.len_bytes);
            put64(&mut b, m.len_bytes);
        }
        put_ut(&mut b, m);
        debug_assert_eq!(b.len() as u64, local_header_len(m));
        b
    }

    /// Member `i`'s central directory header (APPNOTE 4.3.12), extra fields included.
    fn central_header(&self, i: usize) -> Vec<u8> {
        let m = &self.members[i];
        let offset = self.local_offsets[i];
        let (time, date) = dos_time_date(m.modified_unix_s);
        let zip64 = central_zip64(m, offset);
        let len = central_header_len(m, offset);
        let mut b = Vec::with_capacity(len as usize);
        put32(&mut b, SIG_CENTRAL);
        put16(&mut b, VERSION_MADE_BY);
        put16(&mut b, self.version_needed(i));
        put16(&mut b, FLAGS_UTF8);
        put16(&mut b, 0); // method: stored
        put16(&mut b, time);
        put16(&mut b, date);
        put32(&mut b, m.crc32);
        let size32 = if zip64 { MAX32 } else { m.len_bytes } as u32;
        put32(&mut b, size32); // compressed
        put32(&mut b, size32); // uncompressed
        put16(&mut b, m.name.len() as u16);
        put16(&mut b, (len - CENTRAL_FIXED_LEN - m.name.len() as u64) as u16);
        put16(&mut b, 0); // comment length
        put16(&mut b, 0); // disk number start
        put16(&mut b, 0); // internal attributes
        put32(&mut b, EXTERNAL_ATTRS);
        put32(&mut b, if zip64 { MAX32 } else { offset } as u32);
        b.extend_from_slice(m.name.as_bytes());
        if zip64 {
            // APPNOTE 4.5.3: the fields that are 0xFFFFFFFF above, in this order.
            put16(&mut b, EXTRA_ZIP64);
            put16(&mut b, 24);
            put64(&mut b, m.len_bytes); // uncompressed
            put64(&mut b, m.len_bytes); // compressed
            put64(&mut b, offset);
        }
        put_ut(&mut b, m);
        debug_assert_eq!(b.len() as u64, len);
        b
    }

    /// The ZIP64 end of central directory record and locator when needed (APPNOTE 4.3.14,
    /// 4.3.15), then the end of central directory record (4.3.16).
    fn end_records(&self) -> Vec<u8> {
        let entries = self.members.len() as u64;
        let cd_size = self.cd_end - self.cd_offset;
        let mut b = Vec::with_capacity((self.len - self.cd_end) as usize);
        if self.zip64_end {
            put32(&mut b, SIG_ZIP64_END);
            put64(&mut b, ZIP64_END_LEN - 12); // size of the rest of the record
            put16(&mut b, VERSION_MADE_BY);
            put16(&mut b, VERSION_NEEDED_ZIP64);
            put32(&mut b, 0); // this disk
            put32(&mut b, 0); // disk where the central directory starts
            put64(&mut b, entries); // on this disk
            put64(&mut b, entries); // in total
            put64(&mut b, cd_size);
            put64(&mut b, self.cd_offset);
            put32(&mut b, SIG_ZIP64_LOCATOR);
            put32(&mut b, 0); // disk with the ZIP64 end record
            put64(&mut b, self.cd_end); // offset of the ZIP64 end record
            put32(&mut b, 1); // total disks
        }
        put32(&mut b, SIG_END);
        put16(&mut b, 0); // this disk
        put16(&mut b, 0); // disk where the central directory starts
        let entries16 = entries.min(MAX16) as u16;
        put16(&mut b, entries16); // on this disk
        put16(&mut b, entries16); // in total
        put32(&mut b, cd_size.min(MAX32) as u32);
        put32(&mut b, self.cd_offset.min(MAX32) as u32);
        put16(&mut b, 0); // comment length
        debug_assert_eq!(b.len() as u64, self.len - self.cd_end);
        b
    }
}

/// Why `name` cannot be a member name, if it cannot.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > 0xFFFF {
        Some("longer than 65535 bytes")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else if name.contains('\\') {
        Some("contains a backslash")
    } else if name.starts_with('/') {
        Some("starts with '/'")
    } else if name.ends_with('/') {
        Some("ends with '/'")
    } else if name.split('/').any(|c| c.is_empty()) {
        Some("has an empty path component")
    } else if name.split('/').any(|c| c == "." || c == "..") {
        Some("has a '.' or '..' path component")
    } else {
        None
    }
}

/// The extended timestamp's mtime, when it fits the field (signed 32-bit seconds, ≥ 0).
fn ut_mtime(m: &ZipMember) -> Option<u32> {
    u32::try_from(m.modified_unix_s).ok().filter(|&t| t <= i32::MAX as u32)
}

fn local_header_len(m: &ZipMember) -> u64 {
    LOCAL_FIXED_LEN
        + m.name.len() as u64
        + if m.len_bytes >= MAX32 { LOCAL_ZIP64_EXTRA_LEN } else { 0 }
        + if ut_mtime(m).is_some() { UT_EXTRA_LEN } else { 0 }
}

/// Whether the central directory header of `m`, whose local header is at `local_offset`, has a
/// ZIP64 extra. When it has one, it holds both sizes and the offset even if only one of them
/// needs it (as Go's `archive/zip` writes): Info-ZIP `unzip` 6.0 decides which fields to read
/// from stale local header values too (`getZip64Data` tests `lrec.ucsize == 0xffffffff`, left
/// over from the previous member, e.g. one of exactly 0xFFFFFFFF bytes) and would misread an
/// extra that holds the offset alone.
fn central_zip64(m: &ZipMember, local_offset: u64) -> bool {
    m.len_bytes >= MAX32 || local_offset >= MAX32
}

/// Length of the central directory header of `m`, whose local header is at `local_offset`.
fn central_header_len(m: &ZipMember, local_offset: u64) -> u64 {
    CENTRAL_FIXED_LEN
        + m.name.len() as u64
        + if central_zip64(m, local_offset) { 4 + 24 } else { 0 }
        + if ut_mtime(m).is_some() { UT_EXTRA_LEN } else { 0 }
}

/// The extended timestamp extra field (0x5455), mtime only; the same in local and central
/// headers (flags bit 0: mtime present).
fn put_ut(b: &mut Vec<u8>, m: &ZipMember) {
    if let Some(t) = ut_mtime(m) {
        put16(b, EXTRA_UT);
        put16(b, 5);
        b.push(1);
        put32(b, t);
    }
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// Appends generated bytes, merging with a preceding `Bytes` part.
fn push_bytes(out: &mut Vec<ZipPart>, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    if let Some(ZipPart::Bytes(last)) = out.last_mut() {
        last.extend_from_slice(bytes);
    } else {
        out.push(ZipPart::Bytes(bytes.to_vec()));
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
const fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day 1..=31) of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// Earliest MS-DOS time: 1980-01-01 00:00:00 UTC, Unix seconds.
const DOS_MIN_UNIX_S: i64 = days_from_civil(1980, 1, 1) * 86_400;
/// Latest MS-DOS time: 2107-12-31 23:59:58 UTC, Unix seconds.
const DOS_MAX_UNIX_S: i64 = days_from_civil(2107, 12, 31) * 86_400 + 86_398;

/// MS-DOS (time, date) fields (APPNOTE 4.4.6) of a Unix time taken as UTC, clamped to the
/// representable range; seconds are rounded down to even.
fn dos_time_date(unix_s: i64) -> (u16, u16) {
    let t = unix_s.clamp(DOS_MIN_UNIX_S, DOS_MAX_UNIX_S);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let time = ((secs / 3600) << 11) | ((secs / 60 % 60) << 5) | ((secs % 60) / 2);
    let date = ((y - 1980) << 9) | (m << 5) | d;
    (time as u16, date as u16)
}

/// CRC-32 polynomial, reflected.
const CRC32_POLY: u32 = 0xedb8_8320;

/// a(x) * b(x) modulo the CRC-32 polynomial, in the reflected bit order of CRC values.
const fn mult_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ CRC32_POLY } else { b >> 1 };
    }
    p
}

/// `X2N[k]` = x^(2^k) modulo the CRC-32 polynomial.
const X2N: [u32; 32] = {
    let mut t = [0u32; 32];
    let mut p = 1u32 << 30; // x^1
    let mut k = 0;
    while k < 32 {
        t[k] = p;
        p = mult_mod_p(p, p);
        k += 1;
    }
    t
};

/// The CRC-32 of the concatenation A‖B, from `crc1` = CRC-32 of A, `crc2` = CRC-32 of B and
/// `len2` = length of B in bytes (when 0, `crc2` is 0, the CRC of nothing, and the result is
/// `crc1`); the length of A is not needed. zlib's `crc32_combine`
/// (its x^(8·len2) mod p method): O(log len2), no table but 32 words.
pub fn crc32_combine(crc1: u32, crc2: u32, len2: u64) -> u32 {
    // Multiply crc1 by x^(8·len2): len2 in bits is len2·2^3, so start at X2N[3].
    let mut n = len2;
    let mut k = 3;
    let mut x = 1u32 << 31; // x^0
    while n != 0 {
        if n & 1 != 0 {
            x = mult_mod_p(X2N[k & 31], x);
        }
        n >>= 1;
        k += 1;
    }
    mult_mod_p(x, crc1) ^ crc2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// xorshift64*: deterministic test data without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn member(name: &str, data: &[u8], t: i64) -> ZipMember {
        ZipMember { name: name.into(), len_bytes: data.len() as u64, crc32: crc32fast::hash(data), modified_unix_s: t }
    }

    /// Archive bytes `range` from `parts`, checking the parts' invariants on the way.
    fn assemble(layout: &ZipLayout, data: &[Vec<u8>], range: Range<u64>) -> Vec<u8> {
        let parts = layout.parts(range.clone());
        let mut out = Vec::new();
        let mut last_bytes = false;
        for part in &parts {
            assert!(part.len_bytes() > 0, "empty part in {range:?}");
            match part {
                ZipPart::Bytes(b) => {
                    assert!(!last_bytes, "adjacent Bytes parts in {range:?}");
                    out.extend_from_slice(b);
                }
                ZipPart::Member { index, range: r } => {
                    assert!(r.end <= layout.members()[*index].len_bytes);
                    out.extend_from_slice(&data[*index][r.start as usize..r.end as usize]);
                }
            }
            last_bytes = matches!(part, ZipPart::Bytes(_));
        }
        let want = range.end.min(layout.len_bytes()).saturating_sub(range.start);
        assert_eq!(out.len() as u64, want, "length of {range:?}");
        out
    }

    fn whole(layout: &ZipLayout, data: &[Vec<u8>]) -> Vec<u8> {
        assemble(layout, data, 0..layout.len_bytes())
    }

    fn temp_path(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("jitmux-zip-test-{}-{tag}.zip", std::process::id()))
    }

    fn write_temp(tag: &str, bytes: &[u8]) -> PathBuf {
        let path = temp_path(tag);
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        path
    }

    /// One line a member as Python's `zipfile` reads the central directory:
    /// (name, file_size, compress_size, CRC, header_offset, compress_type, flag_bits, date_time).
    type PyInfo = (String, u64, u64, u32, u64, u32, u32, Vec<u32>);

    /// Runs Python's `zipfile` on `path`: `testzip()` when `test_all`, then `extra_check`
    /// (Python statements with `z` the open archive), then lists the members.
    fn python_infos(path: &Path, test_all: bool, extra_check: &str) -> Vec<PyInfo> {
        let script = format!(
            "import zipfile, sys\n\
             z = zipfile.ZipFile(sys.argv[1])\n\
             assert z.comment == b''\n\
             if {test_all}: assert z.testzip() is None\n\
             {extra_check}\n\
             for i in z.infolist():\n    \
                 print(i.filename, i.file_size, i.compress_size, i.CRC, i.header_offset, i.compress_type,\n          \
                       i.flag_bits, ' '.join(map(str, i.date_time)), sep='\\t')\n",
            test_all = if test_all { "True" } else { "False" },
        );
        let out = Command::new("python3").arg("-c").arg(&script).arg(path).output().expect("python3 runs");
        assert!(out.status.success(), "python zipfile failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (
                    f[0].to_string(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                    f[5].parse().unwrap(),
                    f[6].parse().unwrap(),
                    f[7].split(' ').map(|x| x.parse().unwrap()).collect(),
                )
            })
            .collect()
    }

    /// Python's view of every member matches the layout.
    fn check_python_infos(layout: &ZipLayout, infos: &[PyInfo]) {
        assert_eq!(infos.len(), layout.members().len());
        for (i, (info, m)) in infos.iter().zip(layout.members()).enumerate() {
            assert_eq!(info.0, m.name);
            assert_eq!((info.1, info.2, info.3), (m.len_bytes, m.len_bytes, m.crc32), "{}", m.name);
            assert_eq!(info.4, layout.local_offsets[i], "{}", m.name);
            assert_eq!((info.5, info.6), (0, 1 << 11), "{}", m.name);
            let (time, date) = dos_time_date(m.modified_unix_s);
            let want = vec![
                (date >> 9) as u32 + 1980,
                (date >> 5 & 15) as u32,
                (date & 31) as u32,
                (time >> 11) as u32,
                (time >> 5 & 63) as u32,
                (time & 31) as u32 * 2,
            ];
            assert_eq!(info.7, want, "{}", m.name);
        }
    }

    /// `unzip -t` (Info-ZIP) on `path`, limited to `names` when not empty; skipped when the
    /// binary is missing (the project's test script installs it).
    fn unzip_test(path: &Path, names: &[&str]) {
        if Command::new("unzip").arg("-v").output().is_err() {
            eprintln!("unzip not found: skipping the Info-ZIP check");
            return;
        }
        let out = Command::new("unzip").arg("-tq").arg(path).args(names).output().unwrap();
        assert!(
            out.status.success(),
            "unzip -t failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn crc32_combine_matches_crc32fast() {
        let mut rng = Rng(7);
        let buf = rng.bytes(4096);
        for split in [0, 1, 2, 3, 7, 8, 100, 1000, 2048, 4095, 4096] {
            let (a, b) = buf.split_at(split);
            let got = crc32_combine(crc32fast::hash(a), crc32fast::hash(b), b.len() as u64);
            assert_eq!(got, crc32fast::hash(&buf), "split at {split}");
        }
        for _ in 0..200 {
            let len = rng.next() >> rng.below(64);
            // The CRC of nothing is 0 (zlib's old and new crc32_combine differ on other crc2).
            let (x, y) = (rng.next() as u32, if len == 0 { 0 } else { rng.next() as u32 });
            let mut h = crc32fast::Hasher::new_with_initial_len(x, 0);
            h.combine(&crc32fast::Hasher::new_with_initial_len(y, len));
            assert_eq!(crc32_combine(x, y, len), h.finalize(), "len {len}");
        }
        let zeros = vec![0u8; 1 << 20];
        assert_eq!(crc32_of_zeros(1 << 20), crc32fast::hash(&zeros));
        assert_eq!(crc32_of_zeros(12345), crc32fast::hash(&zeros[..12345]));
    }

    /// CRC-32 of `n` zero bytes, without them.
    fn crc32_of_zeros(n: u64) -> u32 {
        let (mut crc, mut block_crc, mut block, mut n) = (0u32, crc32fast::hash(&[0]), 1u64, n);
        while n != 0 {
            if n & 1 != 0 {
                crc = crc32_combine(crc, block_crc, block);
            }
            block_crc = crc32_combine(block_crc, block_crc, block);
            block *= 2;
            n >>= 1;
        }
        crc
    }

    #[test]
    fn dos_times() {
        assert_eq!(DOS_MIN_UNIX_S, 315_532_800);
        assert_eq!(dos_time_date(315_532_800), (0, 1 << 5 | 1));
        assert_eq!(dos_time_date(0), (0, 1 << 5 | 1), "clamped up to 1980");
        assert_eq!(dos_time_date(i64::MIN), (0, 1 << 5 | 1));
        // 2024-02-29 13:45:31 UTC: odd seconds round down.
        assert_eq!(dos_time_date(1_709_214_331), (13 << 11 | 45 << 5 | 15, 44 << 9 | 2 << 5 | 29));
        let max = (23 << 11 | 59 << 5 | 29, 127 << 9 | 12 << 5 | 31);
        assert_eq!(dos_time_date(DOS_MAX_UNIX_S), max);
        assert_eq!(dos_time_date(i64::MAX), max, "clamped down to 2107");
        assert_eq!(dos_time_date(DOS_MAX_UNIX_S + 1), max);
    }

    #[test]
    fn rejects_bad_names() {
        let bad = |name: &str| {
            let err = ZipLayout::new(vec![member("ok.mp4", b"", 0), member(name, b"x", 0)]).unwrap_err();
            assert!(matches!(err, ZipError::InvalidName { index: 1, .. }), "{name:?}: {err}");
        };
        for name in ["", "a\0b", "a\\b", "/abs", "dir/", "a//b", "./a", "a/../b", ".."] {
            bad(name);
        }
        bad(&"x".repeat(65536));
        assert!(ZipLayout::new(vec![member(&"x".repeat(65535), b"", 0)]).is_ok());
        assert!(ZipLayout::new(vec![member("a/.b/..c", b"", 0)]).is_ok());
        let err = ZipLayout::new(vec![member("a", b"", 0), member("b", b"", 0), member("a", b"1", 0)]).unwrap_err();
        assert_eq!(err, ZipError::DuplicateName { index: 2, first: 0, name: "a".into() });
    }

    #[test]
    fn empty_archive() {
        let layout = ZipLayout::new(vec![]).unwrap();
        assert_eq!(layout.len_bytes(), 22);
        let bytes = whole(&layout, &[]);
        assert_eq!(&bytes[..4], b"PK\x05\x06");
        let path = write_temp("empty", &bytes);
        assert!(python_infos(&path, true, "").is_empty());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn small_archive_reads_back() {
        let mut rng = Rng(1);
        let data = vec![rng.bytes(1000), vec![], rng.bytes(3000), b"caf\xc3\xa9".to_vec(), rng.bytes(1)];
        let names = ["a.mp4", "empty.mp4", "cam1/2024-05-01/b.mp4", "café/été.mp4", "old.txt"];
        let times = [1_714_521_600, 1_714_521_601, 1_714_525_199, 4_000_000_000, 100];
        let members: Vec<_> = (0..5).map(|i| member(names[i], &data[i], times[i])).collect();
        let layout = ZipLayout::new(members.clone()).unwrap();
        let bytes = whole(&layout, &data);
        assert_eq!(bytes.len() as u64, layout.len_bytes());
        for (i, d) in data.iter().enumerate() {
            let r = layout.member_data_range(i);
            assert_eq!(&bytes[r.start as usize..r.end as usize], &d[..]);
        }
        // Deterministic: the same members give the same bytes.
        assert_eq!(whole(&ZipLayout::new(members).unwrap(), &data), bytes);
        // Pinned: if this changes, the archive bytes changed: bump ZIP_LAYOUT_VERSION (and this).
        assert_eq!((ZIP_LAYOUT_VERSION, bytes.len(), crc32fast::hash(&bytes)), (1, 4594, 447336547));
        assert_eq!(&bytes[bytes.len() - 22..bytes.len() - 18], b"PK\x05\x06", "no ZIP64 end record");

        let path = write_temp("small", &bytes);
        let check = "assert z.read('café/été.mp4') == 'café'.encode()";
        check_python_infos(&layout, &python_infos(&path, true, check));
        unzip_test(&path, &[]);
        if Command::new("unzip").arg("-v").output().is_ok() {
            // unzip shows the extended timestamp (UTC) as local time: ask for UTC.
            let out = Command::new("unzip").env("TZ", "UTC").arg("-Z").arg("-T").arg(&path).output().unwrap();
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(listing.contains("20240501.000000 a.mp4"), "{listing}");
            assert!(listing.contains("20240501.005959 cam1/2024-05-01/b.mp4"), "{listing}");
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn parts_of_every_range_match_whole() {
        let mut rng = Rng(2);
        let data: Vec<Vec<u8>> = (0..300)
            .map(|_| {
                let len = rng.below(3) * rng.below(120);
                rng.bytes(len as usize)
            })
            .collect();
        let members: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(i, d)| member(&format!("cam{}/day{}/{i:03}.mp4", i % 3, i % 7), d, 1_700_000_000 + i as i64 * 3))
            .collect();
        let layout = ZipLayout::new(members).unwrap();
        let bytes = whole(&layout, &data);
        let len = layout.len_bytes();

        let path = write_temp("ranges", &bytes);
        check_python_infos(&layout, &python_infos(&path, true, ""));
        unzip_test(&path, &[]);
        std::fs::remove_file(path).unwrap();

        let mut bounds = vec![0, layout.cd_offset, layout.cd_end, len];
        for i in 0..data.len() {
            let r = layout.member_data_range(i);
            bounds.extend([layout.local_offsets[i], r.start, r.end, layout.central_offsets[i]]);
        }
        for &b in &bounds {
            for r in [
                b.saturating_sub(1)..b + 1,
                b..b + 1,
                b.saturating_sub(1)..b,
                0..b,
                b..len,
                b.saturating_sub(40)..b + 40,
            ] {
                let (s, e) = (r.start.min(len) as usize, r.end.min(len) as usize);
                assert_eq!(assemble(&layout, &data, r.clone()), &bytes[s..e], "{r:?}");
            }
        }
        for _ in 0..2000 {
            let (a, b) = (rng.below(len + 1), rng.below(len + 1));
            let r = a.min(b)..a.max(b);
            assert_eq!(assemble(&layout, &data, r.clone()), &bytes[r.start as usize..r.end as usize], "{r:?}");
        }
        assert!(layout.parts(5..5).is_empty());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 9..3;
        assert!(layout.parts(reversed).is_empty());
        assert!(layout.parts(len..len + 10).is_empty());
        assert_eq!(assemble(&layout, &data, len - 3..u64::MAX), &bytes[len as usize - 3..]);
    }

    /// Writes the archive as a sparse file: generated bytes and the members in `data` (by index);
    /// other members stay holes (zeros).
    fn write_sparse(tag: &str, layout: &ZipLayout, data: &HashMap<usize, Vec<u8>>) -> PathBuf {
        let path = temp_path(tag);
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(layout.len_bytes()).unwrap();
        let mut pos = 0;
        for part in layout.parts(0..layout.len_bytes()) {
            match &part {
                ZipPart::Bytes(b) => file.write_all_at(b, pos).unwrap(),
                ZipPart::Member { index, range } => {
                    if let Some(d) = data.get(index) {
                        file.write_all_at(&d[range.start as usize..range.end as usize], pos).unwrap();
                    }
                }
            }
            pos += part.len_bytes();
        }
        assert_eq!(pos, layout.len_bytes());
        path
    }

    #[test]
    fn zip64_large_members() {
        const GIB: u64 = 1 << 30;
        let mut rng = Rng(3);
        let (a, c) = (rng.bytes(100), rng.bytes(5000));
        let zeros = |name: &str, len: u64| ZipMember {
            name: name.into(),
            len_bytes: len,
            crc32: crc32_of_zeros(len),
            modified_unix_s: 1_714_521_600,
        };
        let members = vec![
            member("a.mp4", &a, 1_714_521_600),
            zeros("limit.mp4", MAX32),          // first size with ZIP64 (offset fits)
            zeros("under.mp4", MAX32 - 1),      // last size without ZIP64 (offset does not fit)
            zeros("big.mp4", 5 * GIB),          // both
            member("c.mp4", &c, 1_714_521_600), // offset only
        ];
        let layout = ZipLayout::new(members).unwrap();
        // 5 entries and a small central directory, but it starts past 4 GiB: ZIP64 end records.
        assert!(layout.zip64_end && layout.cd_offset >= MAX32);
        assert!(layout.local_offsets[1] < MAX32 && layout.local_offsets[2] >= MAX32);

        // Headers, as written.
        let local = |i| layout.local_header(i);
        assert_eq!(local(2).len() as u64, LOCAL_FIXED_LEN + 9 + UT_EXTRA_LEN, "no ZIP64 extra under the limit");
        assert_eq!(&local(2)[18..26], &[0xfe, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(&local(1)[18..26], &[0xff; 8]);
        assert_eq!(&local(1)[30 + 9..30 + 9 + 4], &[1, 0, 16, 0]);
        let big = local(3);
        assert_eq!(&big[4..6], &45u16.to_le_bytes(), "version needed 4.5");
        assert_eq!(&big[18..26], &[0xff; 8], "sizes in the ZIP64 extra");
        let extra = &big[30 + 7..];
        assert_eq!(&extra[..4], &[1, 0, 16, 0]);
        assert_eq!(&extra[4..12], &(5 * GIB).to_le_bytes());
        assert_eq!(&extra[12..20], &(5 * GIB).to_le_bytes());
        let central_a = layout.central_header(0);
        assert_eq!(central_a.len() as u64, CENTRAL_FIXED_LEN + 5 + UT_EXTRA_LEN, "no ZIP64 extra");
        assert_eq!(&central_a[4..8], &[45, 3, 20, 0], "made by Unix 4.5, needs 2.0");
        assert_eq!(&central_a[20..28], &[100, 0, 0, 0, 100, 0, 0, 0]);
        for i in 1..5 {
            // Whichever field needs it, all three are in the ZIP64 extra.
            let m = &layout.members()[i];
            let central = layout.central_header(i);
            assert_eq!(&central[4..8], &[45, 3, 45, 0], "{}: made by Unix 4.5, needs 4.5", m.name);
            assert_eq!(&central[20..28], &[0xff; 8]);
            assert_eq!(&central[42..46], &[0xff; 4]);
            let extra = &central[46 + m.name.len()..];
            assert_eq!(&extra[..4], &[1, 0, 24, 0]);
            assert_eq!(&extra[4..12], &m.len_bytes.to_le_bytes());
            assert_eq!(&extra[12..20], &m.len_bytes.to_le_bytes());
            assert_eq!(&extra[20..28], &layout.local_offsets[i].to_le_bytes());
            assert_eq!(&extra[28..32], &[0x55, 0x54, 5, 0]);
        }
        let tail = layout.end_records();
        assert_eq!(&tail[..4], b"PK\x06\x06");
        assert_eq!(&tail[56..60], b"PK\x06\x07");
        assert_eq!(&tail[76..80], b"PK\x05\x06");
        assert_eq!(&tail[76 + 8..76 + 10], &5u16.to_le_bytes(), "entry count fits");
        assert_eq!(&tail[76 + 16..76 + 20], &[0xff; 4], "central directory offset does not");

        let mut data = HashMap::new();
        data.insert(0, a.clone());
        data.insert(4, c.clone());
        let path = write_sparse("zip64-large", &layout, &data);
        // Python checks the CRC of what it reads to the end: the small members (c.mp4 found
        // through the ZIP64 offset); of the large ones, their first bytes.
        let check = format!(
            "assert z.read('a.mp4') == bytes.fromhex('{}') and z.read('c.mp4') == bytes.fromhex('{}')\n\
             for n in ('under.mp4', 'limit.mp4', 'big.mp4'):\n    \
                 with z.open(n) as f: assert f.read(65536) == bytes(65536)",
            hex(&a),
            hex(&c)
        );
        check_python_infos(&layout, &python_infos(&path, false, &check));
        // All five pass too (unzip reads 13 GiB of holes then: two minutes, too slow to run always).
        unzip_test(&path, &["a.mp4", "c.mp4"]);
        if Command::new("unzip").arg("-v").output().is_ok() {
            // Info-ZIP reads every size from the central directory without a warning.
            let out = Command::new("unzip").arg("-l").arg(&path).output().unwrap();
            let (listing, errors) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && errors.is_empty(), "{listing}{errors}");
            for m in layout.members() {
                let line = listing.lines().find(|l| l.ends_with(&format!(" {}", m.name))).expect("listed");
                assert_eq!(line.split_whitespace().next(), Some(m.len_bytes.to_string().as_str()), "{listing}");
            }
        }
        std::fs::remove_file(path).unwrap();
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn zip64_many_members() {
        let n = 70_000;
        let data: Vec<Vec<u8>> =
            (0..n).map(|i: u32| if i.is_multiple_of(5) { vec![] } else { i.to_le_bytes().to_vec() }).collect();
        let members: Vec<_> = data
            .iter()
            .enumerate()
            .map(|(i, d)| member(&format!("d{}/{i:05}.mp4", i / 1000), d, 1_714_521_600))
            .collect();
        let layout = ZipLayout::new(members).unwrap();
        assert!(layout.zip64_end);
        let bytes = whole(&layout, &data);
        let tail = &bytes[layout.cd_end as usize..];
        assert_eq!(tail.len(), 56 + 20 + 22);
        assert_eq!(&tail[..4], b"PK\x06\x06");
        assert_eq!(&tail[32..40], &(n as u64).to_le_bytes());
        assert_eq!(&tail[76 + 8..76 + 12], &[0xff; 4], "entry counts are 0xFFFF");
        assert_eq!(&tail[76 + 16..76 + 20], &(layout.cd_offset as u32).to_le_bytes(), "offset fits");

        let path = write_temp("zip64-many", &bytes);
        check_python_infos(&layout, &python_infos(&path, true, "assert len(z.infolist()) == 70000"));
        unzip_test(&path, &[]);
        std::fs::remove_file(path).unwrap();

        // Ranges in the middle of the central directory.
        let mut rng = Rng(4);
        let len = layout.len_bytes();
        for _ in 0..200 {
            let a = layout.cd_offset + rng.below(len - layout.cd_offset);
            let r = a..(a + rng.below(300)).min(len);
            assert_eq!(assemble(&layout, &data, r.clone()), &bytes[r.start as usize..r.end as usize]);
        }
    }
}
