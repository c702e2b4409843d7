//! terminado's websocket protocol: text frames holding JSON arrays whose first element
//! names the message. Client → server: `["stdin", text]`, `["set_size", rows, cols,
//! height_px, width_px]`; server → client: `["setup", {}]`, `["stdout", text]`,
//! `["disconnect", 1]`.

use serde_json::Value;

use crate::error::ProtocolError;

/// A client frame, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientMessage {
    /// Keystrokes for the shell.
    Stdin(String),
    /// The client's window size; `None` where the client sent `null`.
    SetSize {
        rows: Option<u16>,
        cols: Option<u16>,
        height_px: Option<u16>,
        width_px: Option<u16>,
    },
    /// A message type terminado does not act on either; ignored.
    Other(String),
}

const SHAPE_HINT: &str =
    r#"terminal messages are JSON arrays such as ["stdin", "ls\r"] or ["set_size", 24, 80]"#;

/// Parse one text frame.
pub(crate) fn parse_client_message(text: &str) -> Result<ClientMessage, ProtocolError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError(format!("invalid JSON ({e}); {SHAPE_HINT}")))?;
    let Value::Array(items) = value else {
        return Err(ProtocolError(format!("not a JSON array; {SHAPE_HINT}")));
    };
    let Some(Value::String(kind)) = items.first() else {
        return Err(ProtocolError(format!(
            "the first element must be the message type as a string; {SHAPE_HINT}"
        )));
    };
    match kind.as_str() {
        "stdin" => match items.get(1) {
            Some(Value::String(data)) => Ok(ClientMessage::Stdin(data.clone())),
            _ => Err(ProtocolError(
                r#"a "stdin" message needs its text as the second element: ["stdin", "ls\r"]"#
                    .to_string(),
            )),
        },
        "set_size" => Ok(ClientMessage::SetSize {
            rows: dimension(items.get(1), "rows")?,
            cols: dimension(items.get(2), "cols")?,
            height_px: dimension(items.get(3), "height")?,
            width_px: dimension(items.get(4), "width")?,
        }),
        other => Ok(ClientMessage::Other(other.to_string())),
    }
}

/// One `set_size` number: absent, `null` or 0 mean "unknown"; anything else must be a
/// whole number a terminal can have.
fn dimension(value: Option<&Value>, what: &str) -> Result<Option<u16>, ProtocolError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64().map(u16::try_from) {
            Some(Ok(0)) => Ok(None),
            Some(Ok(size)) => Ok(Some(size)),
            _ => Err(ProtocolError(format!(
                "set_size: {what} must be a whole number from 0 to 65535, not {n}"
            ))),
        },
        Some(other) => Err(ProtocolError(format!(
            "set_size: {what} must be a number, not {other}"
        ))),
    }
}

/// `["setup", {}]`, the first frame every client gets.
pub(crate) fn setup_frame() -> String {
    r#"["setup",{}]"#.to_string()
}

/// `["stdout", text]`.
pub(crate) fn stdout_frame(text: &str) -> String {
    // Serialising a (&str, &str) tuple cannot fail; fall back to an empty frame anyway
    // rather than panic.
    serde_json::to_string(&("stdout", text)).unwrap_or_else(|_| r#"["stdout",""]"#.to_string())
}

/// `["disconnect", 1]`, sent when the shell has ended.
pub(crate) fn disconnect_frame() -> String {
    r#"["disconnect",1]"#.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terminado_messages() {
        assert_eq!(
            parse_client_message(r#"["stdin", "ls\r"]"#),
            Ok(ClientMessage::Stdin("ls\r".into()))
        );
        assert_eq!(
            parse_client_message(r#"["set_size", 24, 80, 480, 640]"#),
            Ok(ClientMessage::SetSize {
                rows: Some(24),
                cols: Some(80),
                height_px: Some(480),
                width_px: Some(640)
            })
        );
        assert_eq!(
            parse_client_message(r#"["set_size", null, 80]"#),
            Ok(ClientMessage::SetSize {
                rows: None,
                cols: Some(80),
                height_px: None,
                width_px: None
            })
        );
        assert_eq!(
            parse_client_message(r#"["ping"]"#),
            Ok(ClientMessage::Other("ping".into()))
        );
    }

    #[test]
    fn refuses_malformed_frames_with_a_reason() {
        for bad in [
            "",
            "not json",
            "{}",
            "[]",
            "[1, 2]",
            r#"["stdin"]"#,
            r#"["stdin", 5]"#,
            r#"["set_size", -1, 80]"#,
            r#"["set_size", 24.5, 80]"#,
            r#"["set_size", "24", 80]"#,
            r#"["set_size", 99999999, 80]"#,
        ] {
            let error = parse_client_message(bad).unwrap_err();
            assert!(!error.0.is_empty(), "{bad}");
        }
    }

    #[test]
    fn frames_are_terminado_json() {
        assert_eq!(
            serde_json::from_str::<Value>(&stdout_frame("a\"\u{1b}[0m\n")).unwrap(),
            serde_json::json!(["stdout", "a\"\u{1b}[0m\n"])
        );
        assert_eq!(
            serde_json::from_str::<Value>(&setup_frame()).unwrap(),
            serde_json::json!(["setup", {}])
        );
        assert_eq!(
            serde_json::from_str::<Value>(&disconnect_frame()).unwrap(),
            serde_json::json!(["disconnect", 1])
        );
    }
}
