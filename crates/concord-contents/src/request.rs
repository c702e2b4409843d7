//! The bodies of the requests that change contents, typed: a model to save (PUT), a new
//! entry or a copy (POST), a rename (PATCH).
//!
//! jupyter_server reads these JSON models loosely: a field may be missing, `null`, or of
//! another type than expected, and each case has its own answer (a missing `type` is
//! guessed from the name, a `null` one is not; a `chunk` that is not an integer is refused;
//! a `type` that is not a string saves a file). Each field is therefore a [`Field`], which
//! keeps which of these it was; reading one never fails, so every refusal is the service's,
//! in jupyter_server's words.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::{ContentsError, Result};

/// A field of a request body as jupyter_server reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Field<T> {
    /// Not in the body.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A value of the expected type.
    Given(T),
    /// A value of another type, as it was.
    Other(Value),
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Field::Null);
        }
        Ok(match T::deserialize(&value) {
            Ok(given) => Field::Given(given),
            Err(_) => Field::Other(value),
        })
    }
}

impl<T> Field<T> {
    /// The value, when it has the expected type.
    pub fn given(&self) -> Option<&T> {
        match self {
            Field::Given(value) => Some(value),
            _ => None,
        }
    }

    /// Whether the body names the field at all (`null` included).
    pub fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }
}

impl Field<String> {
    /// The string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        self.given().map(String::as_str)
    }

    /// Python's truth of the value (`if model.get("copy_from"):`).
    pub fn is_truthy(&self) -> bool {
        match self {
            Field::Absent | Field::Null => false,
            Field::Given(s) => !s.is_empty(),
            Field::Other(value) => truthy(value),
        }
    }
}

/// A model to save (the body of a PUT): a file, a notebook or a directory, whole or as one
/// chunk of an upload. Other fields of the model are ignored.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SaveModel {
    /// `type`: `file`, `notebook` or `directory`.
    #[serde(rename = "type", default)]
    pub kind: Field<String>,
    /// `format` of a file's content: `text` or `base64`.
    #[serde(default)]
    pub format: Field<String>,
    /// `content`: a file's text, a notebook.
    #[serde(default)]
    pub content: Field<Value>,
    /// `chunk` of an upload: 1 for the first, -1 for the last.
    #[serde(default)]
    pub chunk: Field<i64>,
    /// `path`: only looked at to refuse a hidden one.
    #[serde(default)]
    pub path: Field<String>,
    /// `copy_from`: refused (copies are POSTed).
    #[serde(default)]
    pub copy_from: Field<String>,
}

impl SaveModel {
    /// A model of `kind` with `content`.
    pub fn new(kind: &str, content: Option<Value>) -> SaveModel {
        SaveModel {
            kind: Field::Given(kind.to_string()),
            content: content.map_or(Field::Absent, Field::Given),
            ..SaveModel::default()
        }
    }

    /// Read from a JSON object's fields.
    pub(crate) fn from_map(map: Map<String, Value>) -> SaveModel {
        // Every field reads any JSON value: this cannot fail.
        serde_json::from_value(Value::Object(map)).unwrap_or_default()
    }
}

/// A new entry in a directory, or a copy into it (the body of a POST).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct CreateRequest {
    /// `copy_from`: the path of a file or directory to copy.
    #[serde(default)]
    pub copy_from: Field<String>,
    /// `type` of a new entry: `file`, `notebook` or `directory`.
    #[serde(rename = "type", default)]
    pub kind: Field<String>,
    /// `ext` of a new file (`.txt`).
    #[serde(default)]
    pub ext: Field<String>,
}

/// A rename or move (the body of a PATCH).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct RenameRequest {
    /// `path`: where the entry goes; absent or `null` leaves it where it is.
    #[serde(default)]
    pub path: Field<String>,
}

impl RenameRequest {
    /// jupyter_server's reading of a PATCH body: none is "JSON body missing"; anything but
    /// an object is refused.
    pub fn from_body(body: Option<Value>) -> Result<RenameRequest> {
        match body {
            None => Err(ContentsError::bad_request("JSON body missing")),
            Some(Value::Object(map)) => Ok(read_map(map)),
            Some(_) => Err(ContentsError::bad_request("JSON body must be an object")),
        }
    }
}

/// A request body as jupyter_server's `if model:` sees it (PUT and POST).
#[derive(Clone, Debug, PartialEq)]
pub enum Body<T> {
    /// No model: no body, or one Python reads as false (`null`, `{}`, `[]`, `0`, `""`).
    Empty,
    /// An object, read as `T`.
    Model(T),
    /// Something else Python reads as true: refused when the service reads the model.
    NotAnObject,
}

impl<T: serde::de::DeserializeOwned + Default> Body<T> {
    /// The body `body` (parsed JSON; `None` when there were no bytes).
    pub fn from_value(body: Option<Value>) -> Body<T> {
        match body {
            None => Body::Empty,
            Some(value) if !truthy(&value) => Body::Empty,
            Some(Value::Object(map)) => Body::Model(read_map(map)),
            Some(_) => Body::NotAnObject,
        }
    }

    /// Parse `bytes` as jupyter_server's `get_json_body` does: nothing is no body, anything
    /// that is not JSON is refused (the `Content-Type` is not looked at).
    pub fn from_json(bytes: &[u8]) -> Result<Body<T>> {
        parse_json_body(bytes).map(Body::from_value)
    }

    /// The model, if there is one; a body that is not an object is refused here.
    pub fn into_model(self) -> Result<Option<T>> {
        match self {
            Body::Empty => Ok(None),
            Body::Model(model) => Ok(Some(model)),
            Body::NotAnObject => Err(ContentsError::bad_request("JSON body must be an object")),
        }
    }
}

fn read_map<T: serde::de::DeserializeOwned + Default>(map: Map<String, Value>) -> T {
    // Every field of the request types reads any JSON value: this cannot fail.
    serde_json::from_value(Value::Object(map)).unwrap_or_default()
}

/// Parse a request body as jupyter_server's `get_json_body`: empty → `None`; anything that
/// is not JSON → 400 "Invalid JSON in body of request". The `Content-Type` is ignored.
pub fn parse_json_body(body: &[u8]) -> Result<Option<Value>> {
    if body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|_| ContentsError::bad_request("Invalid JSON in body of request"))
}

/// Python's truth of a JSON value.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_keep_absent_null_and_other_types_apart() {
        let model: SaveModel = read_map(
            json!({"type": 5, "format": null, "chunk": 1.5, "content": null, "path": "a"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        assert_eq!(model.kind, Field::Other(json!(5)));
        assert_eq!(model.format, Field::Null);
        assert_eq!(model.chunk, Field::Other(json!(1.5)));
        assert!(model.content.is_present());
        assert_eq!(model.path.as_str(), Some("a"));
        assert_eq!(model.copy_from, Field::Absent);
        assert!(!model.copy_from.is_present());
    }

    #[test]
    fn bodies_read_as_python_truth_sees_them() {
        for empty in [
            json!(null),
            json!({}),
            json!([]),
            json!(0),
            json!(""),
            json!(false),
        ] {
            assert_eq!(
                Body::<CreateRequest>::from_value(Some(empty.clone())),
                Body::Empty,
                "{empty}"
            );
        }
        assert_eq!(Body::<CreateRequest>::from_value(None), Body::Empty);
        assert!(Body::<CreateRequest>::from_value(Some(json!([1])))
            .into_model()
            .is_err());
        assert_eq!(
            RenameRequest::from_body(None).map_err(|e| e.message),
            Err("JSON body missing".to_string())
        );
        assert!(RenameRequest::from_body(Some(json!(null))).is_err());
        assert_eq!(
            RenameRequest::from_body(Some(json!({}))).map(|r| r.path),
            Ok(Field::Absent)
        );
        let copy = Field::<String>::Other(json!(0));
        assert!(!copy.is_truthy());
        assert!(Field::<String>::Other(json!([0])).is_truthy());
    }
}
