//! A file sent as jupyter_server sends `/files/` (its `AuthenticatedFileHandler`, a
//! tornado `StaticFileHandler` without ETag): streamed from the open file in chunks, never
//! read whole; one byte range (206, or 416), `If-Modified-Since` (304), `Accept-Ranges`,
//! `Cache-Control: no-cache`, or ten years for a URL with a `v` version argument.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use concord_contents::FileDownload;
use std::io::{Seek, SeekFrom};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes read from the file per chunk of the body (tornado's `CHUNK_SIZE`).
const CHUNK: usize = 64 * 1024;

/// How the handler wants the file presented.
pub struct Presentation {
    /// `Content-Type`.
    pub content_type: String,
    /// `Content-Disposition`, when the file is sent as an attachment.
    pub disposition: Option<String>,
    /// The URL had a `v` argument: the browser may keep it (for ten years, as tornado).
    pub versioned: bool,
}

/// The answer to a GET (or HEAD: the dispatcher drops the body) of `file`.
pub fn respond(file: FileDownload, request: &HeaderMap, how: Presentation) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let modified = whole_seconds(file.modified);
    if let Ok(v) = HeaderValue::from_str(&http_date(modified)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if let Some(v) = how.disposition.and_then(|d| HeaderValue::from_str(&d).ok()) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if how.versioned {
        // tornado's `CACHE_MAX_AGE` for a versioned URL: ten years.
        const TEN_YEARS: i64 = 86400 * 365 * 10;
        let now = whole_seconds(SystemTime::now());
        if let Ok(v) = HeaderValue::from_str(&http_date(now.saturating_add(TEN_YEARS))) {
            headers.insert(header::EXPIRES, v);
        }
        let max_age = format!("max-age={TEN_YEARS}");
        if let Ok(v) = HeaderValue::from_str(&max_age) {
            headers.insert(header::CACHE_CONTROL, v);
        }
    } else {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    if not_modified(request, modified) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if let Ok(v) = HeaderValue::from_str(&how.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let size = file.size;
    let range = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let (status, start, length) = match range.map(|r| r.within(size)) {
        None | Some(Within::Whole) => (StatusCode::OK, 0, size),
        Some(Within::Part { start, end }) => {
            let content_range = format!("bytes {start}-{}/{size}", end - 1);
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start)
        }
        Some(Within::Unsatisfiable) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let mut file = file.file;
    if start > 0 && file.seek(SeekFrom::Start(start)).is_err() {
        return crate::http::error::ApiError::internal("The file could not be read")
            .into_response();
    }
    let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), length);
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, CHUNK));
    (status, headers, body).into_response()
}

/// `Content-Disposition` of a download named `name`, as jupyter_server's
/// `set_attachment_header` writes it (the name quoted as Python's `urllib.parse.quote`).
pub fn attachment_disposition(name: &str) -> String {
    const QUOTE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'_')
        .remove(b'.')
        .remove(b'-')
        .remove(b'~')
        .remove(b'/');
    let quoted = percent_encoding::utf8_percent_encode(name, QUOTE);
    format!("attachment; filename*=utf-8''{quoted}")
}

/// `Last-Modified` is in whole seconds (tornado truncates `st_mtime`).
pub fn whole_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// An HTTP date (`Tue, 08 Dec 2026 02:31:00 GMT`) of `secs` since the epoch.
pub fn http_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// tornado's `should_return_304` without an ETag: an `If-None-Match` never matches (and
/// then `If-Modified-Since` is not looked at); otherwise a date at or after the
/// modification time.
fn not_modified(request: &HeaderMap, modified: i64) -> bool {
    if request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| !v.is_empty())
    {
        return false;
    }
    request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v.trim()).ok())
        .is_some_and(|since| since.timestamp() >= modified)
}

/// A `Range` header as tornado's `_parse_request_range` reads it: slice indexes, a negative
/// start counting from the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ByteRange {
    start: Option<i64>,
    end: Option<i64>,
}

/// What a range asks of a file of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Within {
    Whole,
    Part { start: u64, end: u64 },
    Unsatisfiable,
}

/// One range of `bytes`; anything else (another unit, several ranges, not numbers) is
/// `None`, and the whole file is sent, as RFC 7233 allows and tornado does.
fn parse_range(header: &str) -> Option<ByteRange> {
    let (unit, value) = header.split_once('=').unwrap_or((header, ""));
    if unit.trim() != "bytes" {
        return None;
    }
    let value = value.trim();
    let (start, end) = value.split_once('-').unwrap_or((value, ""));
    let number = |s: &str| -> Result<Option<i64>, ()> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| ())
        }
    };
    let (mut start, mut end) = (number(start).ok()?, number(end).ok()?);
    match (start, end) {
        // `-N`: the last N bytes; `-0` stays an empty suffix.
        (None, Some(n)) if n != 0 => {
            start = Some(n.checked_neg()?);
            end = None;
        }
        (Some(_), Some(last)) => end = Some(last.checked_add(1)?),
        _ => {}
    }
    Some(ByteRange { start, end })
}

impl ByteRange {
    /// tornado's reading against the file's size: a negative start is clamped to 0; a
    /// start at or past the end, past the range's end, or an empty suffix is unsatisfiable;
    /// an end past the file is the file's end; the whole file is not a part (200).
    fn within(self, size: u64) -> Within {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let start = self.start.map(|s| {
            if s < 0 {
                s.saturating_add(size).max(0)
            } else {
                s
            }
        });
        let unsatisfiable = start.is_some_and(|s| s >= size || self.end.is_some_and(|e| s >= e))
            || self.end == Some(0);
        if unsatisfiable {
            return Within::Unsatisfiable;
        }
        let end = self.end.map_or(size, |e| e.min(size));
        let start = start.unwrap_or(0);
        if end - start == size {
            return Within::Whole;
        }
        Within::Part {
            start: u64::try_from(start).unwrap_or(0),
            end: u64::try_from(end).unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(header: &str, size: u64) -> Option<Within> {
        parse_range(header).map(|r| r.within(size))
    }

    #[test]
    fn ranges_read_as_tornado_reads_them() {
        let part = |start, end| Some(Within::Part { start, end });
        assert_eq!(within("bytes=1-2", 10), part(1, 3));
        assert_eq!(within("bytes=6-", 10), part(6, 10));
        assert_eq!(within("bytes=-6", 10), part(4, 10));
        assert_eq!(within("bytes=-60", 10), Some(Within::Whole));
        assert_eq!(within("bytes=0-", 10), Some(Within::Whole));
        assert_eq!(within("bytes=0-100", 10), Some(Within::Whole));
        assert_eq!(within("bytes=", 10), Some(Within::Whole));
        assert_eq!(within("bytes=-0", 10), Some(Within::Unsatisfiable));
        assert_eq!(within("bytes=10-", 10), Some(Within::Unsatisfiable));
        assert_eq!(within("bytes=5-2", 10), Some(Within::Unsatisfiable));
        assert_eq!(within("bytes=0-", 0), Some(Within::Unsatisfiable));
        assert_eq!(within("bytes=1-2,6-10", 10), None);
        assert_eq!(within("items=1-2", 10), None);
        assert_eq!(within("bytes=a-2", 10), None);
        assert_eq!(within("bytes=0-9223372036854775807", 10), None);
        assert_eq!(within("bytes=--9223372036854775808", 10), None);
    }

    /// Any header, any size: no panic, and a part always lies inside the file and is less
    /// than the whole of it. A bounded property test of this parser of outside input.
    #[test]
    fn any_range_header_gives_a_part_inside_the_file() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pieces = [
            "bytes",
            "=",
            "-",
            ",",
            " ",
            "0",
            "1",
            "9",
            "18446744073709551615",
            "-0",
            "items",
            "9223372036854775807",
            "+",
            "x",
        ];
        for _ in 0..20_000 {
            let header: String = (0..rng.random_range(0..8))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let size = match rng.random_range(0..3) {
                0 => 0,
                1 => rng.random_range(0..20),
                _ => rng.random(),
            };
            if let Some(Within::Part { start, end }) = within(&header, size) {
                assert!(
                    start < end && end <= size && end - start < size,
                    "{header} {size}"
                );
            }
        }
    }
}
