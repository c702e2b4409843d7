//! JSON as jupyter_server's Python sees it: objects keep their keys in the order they were
//! written (a `dict`), text is written back as `json.dumps` writes it (`", "` and `": "`
//! separators, non-ASCII escaped), and values are quoted in messages as `str()`/`repr()` would.
//! Event frames and `POST /api/events` errors are visible to clients, so they follow Python.

use concord_contents::{python_float_repr, python_repr};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// A parsed JSON value that remembers the order of object keys.
#[derive(Clone, Debug, PartialEq)]
pub enum PyJson {
    /// `null` (`None`).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A number with a fraction or exponent (a Python `float`).
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<PyJson>),
    /// An object, keys in order; a repeated key keeps its first place and its last value.
    Object(Vec<(String, PyJson)>),
}

impl PyJson {
    /// Parse JSON text.
    pub fn parse(bytes: &[u8]) -> Result<PyJson, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The value of `key` when this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&PyJson> {
        match self {
            PyJson::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyJson::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Python's type name of the value (`dict`, `list`, `str`, `int`, …).
    pub fn type_name(&self) -> &'static str {
        match self {
            PyJson::Null => "NoneType",
            PyJson::Bool(_) => "bool",
            PyJson::Int(_) => "int",
            PyJson::Float(_) => "float",
            PyJson::Str(_) => "str",
            PyJson::Array(_) => "list",
            PyJson::Object(_) => "dict",
        }
    }

    /// The same value as a `serde_json::Value` (for schema validation; key order is lost).
    pub fn to_value(&self) -> Value {
        match self {
            PyJson::Null => Value::Null,
            PyJson::Bool(b) => Value::Bool(*b),
            PyJson::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::from(*i as f64)),
            PyJson::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            PyJson::Str(s) => Value::String(s.clone()),
            PyJson::Array(items) => Value::Array(items.iter().map(PyJson::to_value).collect()),
            PyJson::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// `json.dumps(value)`: Python's separators, every non-ASCII character escaped.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            PyJson::Null => out.push_str("null"),
            PyJson::Bool(true) => out.push_str("true"),
            PyJson::Bool(false) => out.push_str("false"),
            PyJson::Int(i) => out.push_str(&i.to_string()),
            PyJson::Float(f) => out.push_str(&python_float_repr(*f)),
            PyJson::Str(s) => write_json_str(s, out),
            PyJson::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            PyJson::Object(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_json_str(k, out);
                    out.push_str(": ");
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// Python's `str()` of the parsed value.
    pub fn py_str(&self) -> String {
        match self {
            PyJson::Str(s) => s.clone(),
            other => other.py_repr(),
        }
    }

    /// Python's `repr()` of the parsed value.
    pub fn py_repr(&self) -> String {
        match self {
            PyJson::Null => "None".into(),
            PyJson::Bool(true) => "True".into(),
            PyJson::Bool(false) => "False".into(),
            PyJson::Int(i) => i.to_string(),
            PyJson::Float(f) => match python_float_repr(*f).as_str() {
                "Infinity" => "inf".into(),
                "-Infinity" => "-inf".into(),
                "NaN" => "nan".into(),
                other => other.to_string(),
            },
            PyJson::Str(s) => python_repr(s),
            PyJson::Array(items) => {
                let inner: Vec<String> = items.iter().map(PyJson::py_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            PyJson::Object(entries) => {
                let inner: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", python_repr(k), v.py_repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }
}

impl From<&Value> for PyJson {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => PyJson::Null,
            Value::Bool(b) => PyJson::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => PyJson::Int(i.into()),
                (_, Some(u), _) => PyJson::Int(u.into()),
                (_, _, f) => PyJson::Float(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => PyJson::Str(s.clone()),
            Value::Array(items) => PyJson::Array(items.iter().map(PyJson::from).collect()),
            Value::Object(map) => PyJson::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), PyJson::from(v)))
                    .collect(),
            ),
        }
    }
}

/// A JSON string literal as `json.dumps` writes it (`ensure_ascii=True`).
pub fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

impl<'de> Deserialize<'de> for PyJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PyJsonVisitor)
    }
}

struct PyJsonVisitor;

impl<'de> Visitor<'de> for PyJsonVisitor {
    type Value = PyJson;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<PyJson, E> {
        Ok(PyJson::Null)
    }

    fn visit_none<E>(self) -> Result<PyJson, E> {
        Ok(PyJson::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<PyJson, E> {
        Ok(PyJson::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<PyJson, E> {
        Ok(PyJson::Int(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<PyJson, E> {
        Ok(PyJson::Int(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<PyJson, E> {
        Ok(PyJson::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<PyJson, E> {
        Ok(PyJson::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<PyJson, E> {
        Ok(PyJson::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyJson, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(PyJson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyJson, A::Error> {
        let mut entries: Vec<(String, PyJson)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, PyJson>()? {
            // As a Python dict: the first position, the last value.
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => entries.push((key, value)),
            }
        }
        Ok(PyJson::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_like_python() {
        let v = PyJson::parse(
            br#"{"path":"caf\u00e9/\ud83d\ude00.txt","action":"save","n":[1,2.0,1e20,true,null],"o":{"b":1,"a":"x\"\\\n\u007f"}}"#,
        )
        .unwrap();
        assert_eq!(
            v.dumps(),
            r#"{"path": "caf\u00e9/\ud83d\ude00.txt", "action": "save", "n": [1, 2.0, 1e+20, true, null], "o": {"b": 1, "a": "x\"\\\n\u007f"}}"#
        );
    }

    #[test]
    fn repeated_keys_keep_the_first_place_and_the_last_value() {
        let v = PyJson::parse(br#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(v.dumps(), r#"{"a": 3, "b": 2}"#);
    }

    #[test]
    fn str_and_repr_like_python() {
        let v = PyJson::parse(br#"[1, 1.0, true, null, "it's", {"k": "v"}]"#).unwrap();
        assert_eq!(v.py_str(), r#"[1, 1.0, True, None, "it's", {'k': 'v'}]"#);
        assert_eq!(PyJson::Str("2".into()).py_str(), "2");
        assert_eq!(PyJson::Str("2".into()).py_repr(), "'2'");
        assert_eq!(PyJson::Float(1.0).py_str(), "1.0");
    }
}
