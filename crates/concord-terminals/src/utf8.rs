//! Incremental UTF-8 decoding: a PTY read can end in the middle of a multi-byte character,
//! so the incomplete tail is kept for the next read instead of being replaced.

/// Decodes a byte stream chunk by chunk; invalid bytes become U+FFFD (as terminado's
/// `errors="replace"` decoder does).
#[derive(Default)]
pub(crate) struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decode `input` after whatever was left over from the previous call.
    pub(crate) fn decode(&mut self, input: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(input);
        let mut out = String::with_capacity(bytes.len());
        let mut rest: &[u8] = &bytes;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    if let Ok(text) = std::str::from_utf8(valid) {
                        out.push_str(text);
                    }
                    match error.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        None => {
                            // An incomplete character at the end: wait for the next read.
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// End of stream: an incomplete character left over becomes U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Decoder;

    #[test]
    fn split_character_is_joined_across_reads() {
        let bytes = "é€😀".as_bytes();
        for split in 0..=bytes.len() {
            let mut decoder = Utf8Decoder::default();
            let mut text = decoder.decode(&bytes[..split]);
            text.push_str(&decoder.decode(&bytes[split..]));
            text.push_str(&decoder.finish());
            assert_eq!(text, "é€😀", "split at {split}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let bytes = "aé€😀z".as_bytes();
        let mut decoder = Utf8Decoder::default();
        let text: String = bytes.iter().map(|b| decoder.decode(&[*b])).collect();
        assert_eq!(text, "aé€😀z");
    }

    #[test]
    fn invalid_bytes_are_replaced() {
        let mut decoder = Utf8Decoder::default();
        assert_eq!(decoder.decode(b"a\xffb\xc3"), "a\u{fffd}b");
        assert_eq!(decoder.decode(b"("), "\u{fffd}(");
        assert_eq!(decoder.decode(b"\xe2\x82"), "");
        assert_eq!(decoder.finish(), "\u{fffd}");
        assert_eq!(decoder.finish(), "");
    }
}
