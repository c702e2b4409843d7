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

use crate::atomic::{Producer, TempFile};
use crate::error::{ContentsError, Result};

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
        Format::named(model.get("format").and_then(Value::as_str))
    }

    /// The format a model's `format` names, if it names one.
    pub(crate) fn named(format: Option<&str>) -> Option<Format> {
        match format {
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
    /// Decoding from base64 found a length no padding completes ("Incorrect padding"):
    /// the save is refused when it gets to the content, as it would be refused in memory.
    pub(crate) bad_encoding: bool,
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
            let (len, bad_encoding) = {
                let mut string = json.next_string_reader().map_err(ReadError::from_reader)?;
                spool_string(&mut string, file.file(), decode, limit)?
            };
            holding.set(true);
            model.insert(name, Value::Null);
            content = Some(Spool {
                file,
                decoded: decode,
                len,
                bad_encoding,
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
/// `limit` bytes of content. Returns how many bytes were written, and whether the base64
/// had a length no padding completes.
fn spool_string(
    string: &mut dyn Read,
    out: &mut File,
    decode: Option<Format>,
    limit: Option<u64>,
) -> std::result::Result<(u64, bool), ReadError> {
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
    let mut bad_encoding = false;
    if decode == Some(Format::Base64) {
        match decoder.finish(&mut written) {
            Err(e) if is_bad_padding(&e) => bad_encoding = true,
            other => other.map_err(Limited::<File>::error)?,
        }
    }
    written.out.flush().map_err(ReadError::Spool)?;
    Ok((written.len, bad_encoding))
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
    use rand::{Rng, SeedableRng};

    /// A random JSON value of at most `depth` levels.
    fn random_value(rng: &mut rand::rngs::StdRng, depth: u32) -> Value {
        let strings = [
            "",
            "a",
            "\u{e9}\"\\/\n\t",
            "aGk=",
            "\u{1F600}",
            "text",
            "base64",
            "file",
        ];
        match rng.random_range(0..if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.random()),
            2 => match rng.random_range(0..3) {
                0 => Value::from(rng.random::<i64>()),
                1 => Value::from(rng.random::<u64>()),
                _ => serde_json::Number::from_f64(rng.random::<f64>() * 1e10)
                    .map_or(Value::Null, Value::Number),
            },
            3 | 4 => Value::from(strings[rng.random_range(0..strings.len())]),
            5 => Value::Array(
                (0..rng.random_range(0..4))
                    .map(|_| random_value(rng, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(random_model(rng, depth - 1)),
        }
    }

    fn random_model(rng: &mut rand::rngs::StdRng, depth: u32) -> Map<String, Value> {
        let names = ["type", "format", "content", "chunk", "name", "path", "x"];
        (0..rng.random_range(0..6))
            .map(|_| {
                (
                    names[rng.random_range(0..names.len())].to_string(),
                    random_value(rng, depth),
                )
            })
            .collect()
    }

    /// What `read_put_body` makes of `body`, as serde_json would see it: the value, with a
    /// spooled string read back (decoded content compared by the caller).
    fn read_as_value(body: &[u8]) -> std::result::Result<Option<Value>, ()> {
        let mut source = body;
        let mut open = |_: &Map<String, Value>| -> Result<SpoolFile<'static>> {
            Ok(SpoolFile::Detached(tempfile::tempfile().unwrap()))
        };
        match read_put_body(&mut source, None, &mut open) {
            Ok(PutBody::Empty) => Ok(None),
            Ok(PutBody::Value(v)) => Ok(Some(v)),
            Ok(PutBody::Model { mut model, content }) if content.bad_encoding => {
                model.insert("content".into(), Value::from("bad encoding"));
                Ok(Some(Value::Object(model)))
            }
            Ok(PutBody::Model { mut model, content }) => {
                let decoded = content.decoded;
                let mut bytes = Vec::new();
                let mut content = content;
                content.reader().unwrap().read_to_end(&mut bytes).unwrap();
                let text = match decoded {
                    None | Some(Format::Text) => String::from_utf8(bytes).unwrap(),
                    // Compared as the bytes' base64, which `decodebytes` of the original gives.
                    Some(Format::Base64) => format!("decoded:{}", hex::encode(bytes)),
                };
                model.insert("content".into(), Value::String(text));
                Ok(Some(Value::Object(model)))
            }
            Err(ReadError::Invalid) => Err(()),
            Err(_) => panic!("only a refusal of the JSON is expected"),
        }
    }

    /// The streaming reader agrees with serde_json (which every other body goes through) on
    /// random models, their pretty forms and random damage to them: the same value, or a
    /// refusal where serde_json refuses. A bounded property test of the parser of outside
    /// input it is.
    #[test]
    fn streamed_bodies_read_as_serde_json_reads_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let (mut spooled, mut decoded, mut refused) = (0, 0, 0);
        for case in 0..3000 {
            let model = if case % 2 == 0 {
                random_model(&mut rng, 3)
            } else {
                // As clients send them: a file's type, format and content, in any order.
                use base64::Engine;
                let data: Vec<u8> = (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect();
                let mut fields = vec![
                    ("type", Value::from("file")),
                    (
                        "format",
                        Value::from(if rng.random() { "base64" } else { "text" }),
                    ),
                    (
                        "content",
                        Value::from(base64::engine::general_purpose::STANDARD.encode(&data)),
                    ),
                    ("name", random_value(&mut rng, 1)),
                ];
                if rng.random() {
                    fields.push(("chunk", Value::from(rng.random_range(-1..4))));
                }
                if rng.random_range(0..3) > 0 {
                    fields.swap(2, 3);
                } else {
                    let i = rng.random_range(0..fields.len());
                    let j = rng.random_range(0..fields.len());
                    fields.swap(i, j);
                }
                fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            };
            let mut body = if rng.random() {
                serde_json::to_vec(&model).unwrap()
            } else {
                serde_json::to_vec_pretty(&model).unwrap()
            };
            if case % 3 == 0 && !body.is_empty() {
                // Damage: flip, drop or insert bytes.
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..body.len());
                    match rng.random_range(0..3) {
                        0 => body[i] = rng.random(),
                        1 => {
                            body.remove(i);
                        }
                        _ => {
                            let damage = b"{}[],:\"0 \\";
                            body.insert(i, damage[rng.random_range(0..damage.len())]);
                        }
                    }
                    if body.is_empty() {
                        break;
                    }
                }
            }
            let expected: std::result::Result<Option<Value>, ()> = if body.is_empty() {
                Ok(None)
            } else {
                serde_json::from_slice::<Value>(&body)
                    .map(Some)
                    .map_err(|_| ())
            };
            let expected = expected.map(|v| {
                v.map(|mut v| {
                    // A file's base64 content was decoded on the way: compare decoded bytes.
                    if let Some(m) = v.as_object_mut() {
                        let is_file = m.get("type").and_then(Value::as_str) == Some("file");
                        let base64_first =
                            m.get("format").and_then(Value::as_str) == Some("base64");
                        if let (true, true, Some(Value::String(text))) =
                            (is_file, base64_first, m.get("content"))
                        {
                            let mut out = Vec::new();
                            let mut d = Base64Decoder::default();
                            d.feed(text.as_bytes(), &mut out).unwrap();
                            let text = match d.finish(&mut out) {
                                Ok(()) => format!("decoded:{}", hex::encode(out)),
                                Err(_) => "bad encoding".to_string(),
                            };
                            m.insert("content".into(), Value::String(text));
                        }
                    }
                    v
                })
            });
            let got = read_as_value(&body);
            // Keys that come after `content` can change how it is read (its format named
            // later: kept as the string): only compare where the models agree on that.
            let text = String::from_utf8_lossy(&body);
            let order_matters = text.find("\"content\"").is_some_and(|c| {
                text.rfind("\"format\"").is_some_and(|f| f > c)
                    || text.rfind("\"type\"").is_some_and(|t| t > c)
            });
            if order_matters && got.is_ok() && expected.is_ok() {
                continue;
            }
            assert_eq!(got, expected, "case {case}: {text}");
            match &got {
                Err(()) => refused += 1,
                Ok(Some(Value::Object(m))) => match m.get("content") {
                    Some(Value::String(c)) if c.starts_with("decoded:") => decoded += 1,
                    Some(Value::String(_)) => spooled += 1,
                    _ => {}
                },
                _ => {}
            }
        }
        // The cases cover each way through the reader.
        assert!(
            spooled > 300 && decoded > 20 && refused > 300,
            "{spooled} {decoded} {refused}"
        );
    }

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
