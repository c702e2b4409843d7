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
    pub created: Timestamp,
    /// Modification time, ISO 8601 as jupyter_server writes it.
    pub last_modified: Timestamp,
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

impl Model {
    /// Append the model's JSON to `out`: the bytes `serde_json::to_writer` writes, by hand
    /// for the fields a listing repeats for every entry (timestamps and names mostly need
    /// no escaping, which serde_json would look for character by character).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"name\":");
        write_json_str(out, &self.name)?;
        out.extend_from_slice(b",\"path\":");
        write_json_str(out, &self.path)?;
        out.extend_from_slice(b",\"type\":");
        write_json_str(out, self.kind.as_str())?;
        out.extend_from_slice(b",\"format\":");
        write_json_opt_str(out, self.format)?;
        out.extend_from_slice(b",\"mimetype\":");
        write_json_opt_str(out, self.mimetype)?;
        out.extend_from_slice(b",\"content\":");
        match &self.content {
            None => out.extend_from_slice(b"null"),
            Some(Content::Directory(entries)) => {
                out.push(b'[');
                for (i, entry) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    entry.write_json(out)?;
                }
                out.push(b']');
            }
            Some(Content::Text(text)) => write_json_str(out, text)?,
            Some(Content::Notebook(nb)) => serde_json::to_writer(&mut *out, nb)?,
        }
        // Timestamps are digits and punctuation: nothing to escape.
        out.extend_from_slice(b",\"created\":\"");
        out.extend_from_slice(self.created.as_bytes());
        out.extend_from_slice(b"\",\"last_modified\":\"");
        out.extend_from_slice(self.last_modified.as_bytes());
        out.push(b'"');
        out.extend_from_slice(b",\"size\":");
        match self.size {
            None => out.extend_from_slice(b"null"),
            Some(n) => serde_json::to_writer(&mut *out, &n)?,
        }
        out.extend_from_slice(if self.writable {
            b",\"writable\":true"
        } else {
            b",\"writable\":false"
        });
        out.extend_from_slice(b",\"hash\":");
        write_json_opt_str(out, self.hash.as_deref())?;
        out.extend_from_slice(b",\"hash_algorithm\":");
        write_json_opt_str(out, self.hash_algorithm)?;
        if let Some(message) = &self.message {
            out.extend_from_slice(b",\"message\":");
            write_json_str(out, message)?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// A JSON string as serde_json writes it; copied as is when nothing in it needs escaping.
fn write_json_str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

fn write_json_opt_str(out: &mut Vec<u8>, s: Option<&str>) -> serde_json::Result<()> {
    match s {
        Some(s) => write_json_str(out, s),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
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
    Timestamp::from_secs(secs_f).as_str().to_string()
}

/// A time as jupyter_server writes it (`datetime.isoformat()` in UTC, `Z` for `+00:00`),
/// kept inline: a listing holds two per entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    bytes: [u8; 40],
    len: u8,
}

impl Timestamp {
    /// POSIX seconds (a float, like Python's `st_mtime`) formatted.
    pub fn from_secs(secs_f: f64) -> Timestamp {
        // Python's utcfromtimestamp: whole seconds plus the fraction rounded half-even to µs.
        let mut whole = secs_f.floor();
        let mut micros = ((secs_f - whole) * 1e6).round_ties_even();
        if micros >= 1e6 {
            whole += 1.0;
            micros -= 1e6;
        }
        let ((y, m, d), secs_of_day) = civil_from_unix(whole as i64);
        let (hh, mm, ss) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
        let mut out = Timestamp {
            bytes: [0; 40],
            len: 0,
        };
        if !(0..=9999).contains(&y) {
            let text = if micros == 0.0 {
                format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
            } else {
                format!(
                    "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:06}Z",
                    micros as u32
                )
            };
            // At most 13 characters of year (i64 seconds) and 23 more: always fits.
            let len = text.len().min(out.bytes.len());
            out.bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
            out.len = len as u8;
            return out;
        }
        // Digits by hand, not through `format!`: this runs twice per listed entry.
        let bytes = &mut out.bytes;
        let mut put = |at: usize, width: usize, mut value: u64| {
            for slot in bytes[at..at + width].iter_mut().rev() {
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
            bytes[19] = b'.';
            27
        };
        bytes[4] = b'-';
        bytes[7] = b'-';
        bytes[10] = b'T';
        bytes[13] = b':';
        bytes[16] = b':';
        bytes[len - 1] = b'Z';
        out.len = len as u8;
        out
    }

    /// The formatted time, as bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The formatted time.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation or a `format!` result's whole bytes are stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
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

    fn model(name: &str, content: Option<Content>) -> Model {
        Model {
            name: name.to_string(),
            path: format!("dir/{name}"),
            kind: ContentType::File,
            format: None,
            mimetype: Some("text/plain"),
            content,
            created: Timestamp::from_secs(1_700_000_000.25),
            last_modified: Timestamp::from_secs(1_700_000_000.0),
            size: Some(12_345),
            writable: true,
            hash: None,
            hash_algorithm: None,
            message: None,
            modified_time: UNIX_EPOCH,
        }
    }

    #[test]
    fn written_json_is_serde_jsons() {
        let odd_names = [
            "plain.txt",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "nl\n",
            "\u{1}ctl\u{1f}",
            "del\u{7f}",
            "ünïcødé ✓",
            "",
        ];
        let mut entries: Vec<Model> = odd_names.iter().map(|n| model(n, None)).collect();
        entries[1].kind = ContentType::Directory;
        entries[1].size = None;
        entries[1].mimetype = None;
        entries[2].writable = false;
        entries[3].hash = Some("ab\"cd".to_string());
        entries[3].hash_algorithm = Some("sha256");
        entries[4].message = Some("bad \"notebook\"\n".to_string());
        entries[5].format = Some("json");
        entries[6].size = Some(u64::MAX);
        let mut dir = model("d", Some(Content::Directory(entries.clone())));
        dir.kind = ContentType::Directory;
        let mut empty = model("e", Some(Content::Directory(Vec::new())));
        empty.kind = ContentType::Directory;
        let mut nb = model(
            "n.ipynb",
            Some(Content::Notebook(serde_json::json!({
                "cells": [{"source": "x = \"1\"\n", "metadata": {"k": [1, 2.5, null]}}],
                "nbformat": 4
            }))),
        );
        nb.kind = ContentType::Notebook;
        nb.message = Some("invalid".to_string());
        let text = model(
            "t",
            Some(Content::Text("line\nquote\" ✓ \u{0}".to_string())),
        );
        let mut all = entries;
        all.extend([dir, empty, nb, text]);
        for m in &all {
            let mut ours = Vec::new();
            m.write_json(&mut ours).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(m).unwrap(),
                "{}",
                m.name
            );
        }
    }

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
