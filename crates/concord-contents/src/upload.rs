//! A PUT body read as it arrives: the model's `content` string is written to a spool file as
//! it is read (decoded already when the model named its format first, as JupyterLab's
//! bodies do), so a file upload costs the same memory whatever its size; the rest of the
//! model (and a notebook's content) is parsed in memory, with serde_json as any other body.

use serde_json::{Map, Value};
use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use struson::reader::{JsonReader, JsonStreamReader, ValueType};
use struson::writer::{JsonStreamWriter, JsonWriter};

use crate::error::{ContentsError, Result};
use crate::fsio::{Producer, TempFile};

/// A request body the service reads from.
pub trait RequestBody: Read {
    /// Told, before each part the service reads, whether it keeps that part in memory until
    /// the operation ends (`true`: the model, a notebook) or writes it out as it reads it
    /// (`false`: a file's content), so that the caller can count what is held.
    fn holding(&mut self, _held: bool) {}
}

impl RequestBody for &[u8] {}

/// A file's content format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Base64,
}

impl Format {
    pub(crate) fn of(model: &Map<String, Value>) -> Option<Format> {
        match model.get("format").and_then(Value::as_str) {
            Some("text") => Some(Format::Text),
            Some("base64") => Some(Format::Base64),
            _ => None,
        }
    }
}

/// Where a spooled content is written.
pub(crate) enum SpoolFile<'j> {
    /// A temp file beside the target, which can be renamed over it.
    Beside(TempFile<'j>),
    /// An unnamed file elsewhere (nothing is left of it after a crash).
    Detached(File),
}

impl SpoolFile<'_> {
    fn file(&mut self) -> &mut File {
        match self {
            SpoolFile::Beside(t) => t.file(),
            SpoolFile::Detached(f) => f,
        }
    }
}

/// The `content` string of a body, on disk.
pub(crate) struct Spool<'j> {
    pub(crate) file: SpoolFile<'j>,
    /// `Some(format)`: the file's bytes, decoded from `format`; `None`: the string itself.
    pub(crate) decoded: Option<Format>,
    /// How many bytes were written.
    pub(crate) len: u64,
}

impl<'j> Spool<'j> {
    /// The spooled bytes from their start.
    pub(crate) fn reader(&mut self) -> io::Result<&mut File> {
        let file = self.file.file();
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// The string, read back into memory (for a `content` that turns out not to be a
    /// file's: a notebook given as a string is refused with the usual message).
    pub(crate) fn into_string(mut self) -> io::Result<String> {
        let mut text = String::new();
        self.reader()?.read_to_string(&mut text)?;
        Ok(text)
    }
}

/// What a PUT body held.
pub(crate) enum PutBody<'j> {
    /// Nothing at all.
    Empty,
    /// Any JSON value other than an object with a spooled `content` string.
    Value(Value),
    /// An object whose `content` string is in `content` (the model holds `null` there).
    Model {
        model: Map<String, Value>,
        content: Spool<'j>,
    },
}

/// A request body with a one-byte look-ahead (to tell an empty body), that passes on to
/// the body whether what is read now is held.
struct Source<'b> {
    body: &'b mut dyn RequestBody,
    first: Option<u8>,
    holding: &'b Cell<bool>,
    told: Option<bool>,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let holding = self.holding.get();
        if self.told != Some(holding) {
            self.body.holding(holding);
            self.told = Some(holding);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.first.take() {
            buf[0] = b;
            return Ok(1);
        }
        self.body.read(buf)
    }
}

/// Why reading a body failed.
pub(crate) enum ReadError {
    /// Not JSON (or the body could not be read): jupyter_server's 400.
    Invalid,
    /// The content does not fit `max_save_bytes`.
    TooLarge,
    /// Writing the spool failed.
    Spool(io::Error),
    /// A refusal decided while reading (by `open_spool`).
    Refused(ContentsError),
}

impl ReadError {
    fn from_reader(_: impl std::fmt::Debug) -> Self {
        ReadError::Invalid
    }
}

/// Read a PUT body: `open_spool(model so far)` gives the file a `content` string is
/// written to (decoded on the way when the model so far names the format of a file's
/// content); `limit` bounds what is written.
pub(crate) fn read_put_body<'j>(
    body: &mut dyn RequestBody,
    limit: Option<u64>,
    open_spool: &mut dyn FnMut(&Map<String, Value>) -> Result<SpoolFile<'j>>,
) -> std::result::Result<PutBody<'j>, ReadError> {
    let holding = Cell::new(true);
    let mut first = [0u8; 1];
    let first = loop {
        body.holding(true);
        match body.read(&mut first) {
            Ok(0) => return Ok(PutBody::Empty),
            Ok(_) => break first[0],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Invalid),
        }
    };
    let source = Source {
        body,
        first: Some(first),
        holding: &holding,
        told: Some(true),
    };
    let mut json = JsonStreamReader::new(source);
    if json.peek().map_err(ReadError::from_reader)? != ValueType::Object {
        let value = transfer_value(&mut json)?;
        json.consume_trailing_whitespace()
            .map_err(ReadError::from_reader)?;
        return Ok(PutBody::Value(value));
    }
    json.begin_object().map_err(ReadError::from_reader)?;
    let mut model = Map::new();
    let mut content = None;
    while json.has_next().map_err(ReadError::from_reader)? {
        let name = json.next_name_owned().map_err(ReadError::from_reader)?;
        let is_string = json.peek().map_err(ReadError::from_reader)? == ValueType::String;
        if name == "content" && is_string {
            // A file's format is only known when it came first; and a notebook's content
            // must stay a string for its refusal.
            let is_file = model.get("type").and_then(Value::as_str) == Some("file");
            let decode = Format::of(&model).filter(|_| is_file);
            let mut file = open_spool(&model).map_err(ReadError::Refused)?;
            holding.set(false);
            let len = {
                let mut string = json.next_string_reader().map_err(ReadError::from_reader)?;
                spool_string(&mut string, file.file(), decode, limit)?
            };
            holding.set(true);
            model.insert(name, Value::Null);
            content = Some(Spool {
                file,
                decoded: decode,
                len,
            });
        } else {
            let value = transfer_value(&mut json)?;
            if name == "content" {
                content = None;
            }
            model.insert(name, value);
        }
    }
    json.end_object().map_err(ReadError::from_reader)?;
    json.consume_trailing_whitespace()
        .map_err(ReadError::from_reader)?;
    Ok(match content {
        Some(content) => PutBody::Model { model, content },
        None => PutBody::Value(Value::Object(model)),
    })
}

/// The next JSON value, parsed by serde_json from its text (copied as read: numbers keep
/// their digits).
fn transfer_value<R: Read>(
    json: &mut JsonStreamReader<R>,
) -> std::result::Result<Value, ReadError> {
    let mut text = Vec::new();
    let mut writer = JsonStreamWriter::new(&mut text);
    json.transfer_to(&mut writer)
        .map_err(ReadError::from_reader)?;
    writer.finish_document().map_err(ReadError::from_reader)?;
    serde_json::from_slice(&text).map_err(ReadError::from_reader)
}

/// Copy a string's bytes into `out` (decoded from base64 when asked), refusing more than
/// `limit` bytes of content. Returns how many bytes were written.
fn spool_string(
    string: &mut dyn Read,
    out: &mut File,
    decode: Option<Format>,
    limit: Option<u64>,
) -> std::result::Result<u64, ReadError> {
    // Undecoded, the string may be base64: up to 4/3 the size, plus line breaks.
    let limit = match decode {
        Some(_) => limit,
        None => limit.map(|l| l.saturating_mul(3) / 2 + 1024),
    };
    let mut written = Limited {
        out: io::BufWriter::with_capacity(64 * 1024, out),
        len: 0,
        limit,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut decoder = Base64Decoder::default();
    loop {
        let n = match string.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(ReadError::Invalid),
        };
        match decode {
            Some(Format::Base64) => decoder.feed(&buf[..n], &mut written),
            _ => written.write_all(&buf[..n]),
        }
        .map_err(Limited::<File>::error)?;
    }
    if decode == Some(Format::Base64) {
        decoder
            .finish(&mut written)
            .map_err(Limited::<File>::error)?;
    }
    written.out.flush().map_err(ReadError::Spool)?;
    Ok(written.len)
}

/// A writer that refuses to go past `limit` bytes.
struct Limited<W: Write> {
    out: io::BufWriter<W>,
    len: u64,
    limit: Option<u64>,
}

/// The error a [`Limited`] writer gives past its limit.
const PAST_LIMIT: &str = "past the size limit";

/// The error a base64 decoder gives for a length no padding could complete.
const BAD_PADDING: &str = "Incorrect padding";

impl<W: Write> Limited<W> {
    fn error(e: io::Error) -> ReadError {
        match e.get_ref().map(|inner| inner.to_string()) {
            Some(m) if m == PAST_LIMIT => ReadError::TooLarge,
            Some(m) if m == BAD_PADDING => ReadError::Invalid,
            _ => ReadError::Spool(e),
        }
    }
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = self.len.saturating_add(buf.len() as u64);
        if self.limit.is_some_and(|l| len > l) {
            return Err(io::Error::other(PAST_LIMIT));
        }
        let n = self.out.write(buf)?;
        self.len = self.len.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Python's `base64.decodebytes` as a stream, with `decodebytes`'s answers: characters
/// outside the alphabet are skipped, everything from the first `=` is ignored, a final
/// group of 2 or 3 characters is decoded without padding, one of 1 is an error.
#[derive(Default)]
pub(crate) struct Base64Decoder {
    pending: Vec<u8>,
    ended: bool,
}

impl Base64Decoder {
    const BLOCK: usize = 64 * 1024;

    fn engine() -> base64::engine::GeneralPurpose {
        base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        )
    }

    /// Take in more text; whole groups of four are decoded into `out`.
    pub(crate) fn feed(&mut self, text: &[u8], out: &mut dyn Write) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        for &c in text {
            if c == b'=' {
                self.ended = true;
                break;
            }
            if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' {
                self.pending.push(c);
            }
        }
        if self.pending.len() >= Self::BLOCK {
            let whole = self.pending.len() / 4 * 4;
            self.decode(whole, out)?;
        }
        Ok(())
    }

    fn decode(&mut self, len: usize, out: &mut dyn Write) -> io::Result<()> {
        use base64::Engine;
        let bytes = Self::engine()
            .decode(&self.pending[..len])
            .map_err(|_| io::Error::other(BAD_PADDING))?;
        out.write_all(&bytes)?;
        self.pending.drain(..len);
        Ok(())
    }

    /// Decode what is left.
    pub(crate) fn finish(mut self, out: &mut dyn Write) -> io::Result<()> {
        let len = self.pending.len();
        self.decode(len, out)
    }
}

/// The bytes of a spool decoded from base64, as a save's content.
pub(crate) struct DecodeFrom<'a>(pub(crate) &'a mut File);

impl Producer for DecodeFrom<'_> {
    fn produce(&mut self, out: &mut dyn Write) -> io::Result<()> {
        let mut decoder = Base64Decoder::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            decoder.feed(&buf[..n], out)?;
        }
        decoder.finish(out)
    }
}

/// Whether an I/O error is a base64 decoder's refusal of the text.
pub(crate) fn is_bad_padding(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.to_string() == BAD_PADDING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(text: &str, piece: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut decoder = Base64Decoder::default();
        for chunk in text.as_bytes().chunks(piece.max(1)) {
            decoder.feed(chunk, &mut out)?;
        }
        decoder.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn streamed_base64_decodes_as_decodebytes() {
        use base64::Engine;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let with_lines: String = encoded
            .as_bytes()
            .chunks(76)
            .map(|l| format!("{}\n", std::str::from_utf8(l).unwrap()))
            .collect();
        for piece in [1, 3, 76, 1000, 65_536, 1 << 20] {
            assert_eq!(
                decode_in_pieces(&with_lines, piece).unwrap(),
                data,
                "{piece}"
            );
        }
        assert_eq!(decode_in_pieces("aGk=", 1).unwrap(), b"hi");
        assert_eq!(decode_in_pieces("aGk", 2).unwrap(), b"hi");
        assert_eq!(decode_in_pieces("aGk=garbage", 2).unwrap(), b"hi");
        assert_eq!(decode_in_pieces("a G!k", 2).unwrap(), b"hi");
        assert_eq!(decode_in_pieces("", 2).unwrap(), b"");
        assert!(is_bad_padding(&decode_in_pieces("aGkaB", 2).unwrap_err()));
    }
}
