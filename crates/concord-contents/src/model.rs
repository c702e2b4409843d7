//! The contents model, serialized exactly as jupyter_server serializes its dicts.

use serde::Serialize;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

/// `type` of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A Jupyter notebook.
    Notebook,
}

impl ContentType {
    /// Parse the `type` query parameter / body field; unknown values are `File`, as in
    /// jupyter_server's handlers; `None` or `""` means "decide from the path".
    pub fn from_param(raw: Option<&str>) -> Option<ContentType> {
        match raw {
            None | Some("") => None,
            Some("directory") => Some(ContentType::Directory),
            Some("notebook") => Some(ContentType::Notebook),
            Some(_) => Some(ContentType::File),
        }
    }
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Directory => "directory",
            ContentType::File => "file",
            ContentType::Notebook => "notebook",
        }
    }
}

/// `content` of a model.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// A directory listing (entries without content).
    Directory(Vec<Model>),
    /// File content: UTF-8 text or base64.
    Text(String),
    /// A notebook as JSON.
    Notebook(Value),
}

/// A contents model: the fields jupyter_server returns, with the same `null`s.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Model {
    /// Last path segment.
    pub name: String,
    /// API path (no leading slash), as requested.
    pub path: String,
    /// `directory`, `file` or `notebook`.
    #[serde(rename = "type")]
    pub kind: ContentType,
    /// `json`, `text`, `base64`, or null without content.
    pub format: Option<&'static str>,
    /// The mimetype (files only); always one of the mimetype table's names.
    pub mimetype: Option<&'static str>,
    /// The content, or null.
    pub content: Option<Content>,
    /// Creation (inode change) time, ISO 8601 as jupyter_server writes it.
    pub created: String,
    /// Modification time, ISO 8601 as jupyter_server writes it.
    pub last_modified: String,
    /// Size in bytes (null for directories).
    pub size: Option<u64>,
    /// Whether *this caller* may change the entry (file mode and policy).
    pub writable: bool,
    /// Content hash when asked for (`hash=1`).
    pub hash: Option<String>,
    /// The hash's algorithm (`sha256`) when a hash is given.
    pub hash_algorithm: Option<&'static str>,
    /// The notebook validation message, when a notebook is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The modification time, for the `Last-Modified` header.
    #[serde(skip)]
    pub modified_time: SystemTime,
}

/// A checkpoint: `{"id": ..., "last_modified": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// Always `checkpoint` (one checkpoint per file, as jupyter_server's file checkpoints).
    pub id: String,
    /// The checkpoint's modification time (the file's at the time it was taken).
    pub last_modified: String,
}

/// Format a time as jupyter_server does: `datetime.isoformat()` in UTC with `+00:00`
/// replaced by `Z`, microseconds only when non-zero.
pub fn format_time(t: SystemTime) -> String {
    let secs_f = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    format_timestamp(secs_f)
}

/// Format POSIX seconds (a float, like Python's `st_mtime`) as jupyter_server does.
pub fn format_timestamp(secs_f: f64) -> String {
    // Python's utcfromtimestamp: whole seconds plus the fraction rounded half-even to µs.
    let mut whole = secs_f.floor();
    let mut micros = ((secs_f - whole) * 1e6).round_ties_even();
    if micros >= 1e6 {
        whole += 1.0;
        micros -= 1e6;
    }
    let ((y, m, d), secs_of_day) = civil_from_unix(whole as i64);
    let (hh, mm, ss) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    if !(0..=9999).contains(&y) {
        return if micros == 0.0 {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        } else {
            format!(
                "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:06}Z",
                micros as u32
            )
        };
    }
    // Listings format two timestamps per entry: digits by hand, not through `format!`.
    let mut out = [0u8; 27];
    let mut put = |at: usize, width: usize, mut value: u64| {
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(d));
    put(11, 2, hh as u64);
    put(14, 2, mm as u64);
    put(17, 2, ss as u64);
    let len = if micros == 0.0 {
        20
    } else {
        put(20, 6, micros as u64);
        27
    };
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    if len == 27 {
        out[19] = b'.';
    }
    out[len - 1] = b'Z';
    String::from_utf8_lossy(&out[..len]).into_owned()
}

/// Calendar date and seconds of the day of POSIX seconds (Howard Hinnant's algorithm;
/// formatting by hand is several times faster than a strftime pattern, and listings format
/// two timestamps per entry).
fn civil_from_unix(secs: i64) -> ((i64, u32, u32), i64) {
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    ((y, m, d), secs_of_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_like_python_isoformat() {
        assert_eq!(format_timestamp(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_timestamp(1_700_000_000.5),
            "2023-11-14T22:13:20.500000Z"
        );
        assert_eq!(
            format_timestamp(1_700_000_000.000_001),
            "2023-11-14T22:13:20.000001Z"
        );
        assert_eq!(format_timestamp(951_782_400.0), "2000-02-29T00:00:00Z");
        assert_eq!(format_timestamp(4_102_444_799.0), "2099-12-31T23:59:59Z");
        assert_eq!(format_timestamp(-1.0), "1969-12-31T23:59:59Z");
        assert_eq!(format_timestamp(-0.25), "1969-12-31T23:59:59.750000Z");
        assert_eq!(
            format_timestamp(253_402_300_799.5),
            "9999-12-31T23:59:59.500000Z"
        );
        assert_eq!(format_timestamp(253_402_300_800.0), "10000-01-01T00:00:00Z");
        assert_eq!(format_timestamp(-62_135_596_800.0), "0001-01-01T00:00:00Z");
        // The same as chrono for a spread of times.
        for t in (0..200).map(|i| i as i64 * 15_778_463 - 1_000_000_000) {
            let want = chrono::DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(format_timestamp(t as f64), want);
            let micros = (t.rem_euclid(999_999) + 1) as u32;
            let want = chrono::DateTime::from_timestamp(t, micros * 1000)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(format_timestamp(t as f64 + f64::from(micros) * 1e-6), want);
        }
    }
}
