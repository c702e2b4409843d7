//! Notebooks as nbformat handles them: reading (rejoin lines, strip transient fields, fill and
//! de-duplicate 4.5 cell ids), schema validation against the nbformat v4.0–v4.5 JSON schemas,
//! trust signatures, and the on-disk layout (split lines, sorted keys, one-space indent).

/// Python's `json.dumps` as nbformat writes notebooks (lives with the other Python rules).
pub use crate::pyfmt::dumps_python;
use crate::pyfmt::{
    newline_indent, number_text, repr_str, splitlines_keepends, truthy, write_string, write_value,
};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

const SCHEMAS: [&str; 6] = [
    include_str!("../schemas/nbformat.v4.0.schema.json"),
    include_str!("../schemas/nbformat.v4.1.schema.json"),
    include_str!("../schemas/nbformat.v4.2.schema.json"),
    include_str!("../schemas/nbformat.v4.3.schema.json"),
    include_str!("../schemas/nbformat.v4.4.schema.json"),
    include_str!("../schemas/nbformat.v4.5.schema.json"),
];
/// The newest minor version whose schema we ship.
const CURRENT_MINOR: i64 = 5;

/// Why a notebook file could not be read at all (jupyter_server: 400 "Unreadable Notebook").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub String);

/// A notebook's content with `message` set when it fails validation.
#[derive(Debug, Clone)]
pub struct CheckedNotebook {
    /// The notebook (lines rejoined, transient fields stripped, cell ids repaired).
    pub nb: Value,
    /// `Notebook validation failed: ...` when the notebook does not match its schema.
    pub validation_message: Option<String>,
}

/// Parse notebook file text as `nbformat.reads(text, as_version=4)` does.
pub fn read_notebook(text: &str) -> Result<CheckedNotebook, Unreadable> {
    let mut nb: Value = serde_json::from_str(text).map_err(|_| {
        let mut message = format!("Notebook does not appear to be JSON: {}", repr_str(text));
        if message.chars().count() > 80 {
            message = message.chars().take(77).collect::<String>() + "...";
        }
        Unreadable(format!("NotJSONError({})", repr_str(&message)))
    })?;
    let major = nb.get("nbformat").cloned().unwrap_or(Value::from(1));
    match major.as_i64() {
        Some(4) => {}
        Some(1..=3) => {
            return Err(Unreadable(format!(
                "NBFormatError('Converting nbformat v{major} notebooks to v4 is not supported')"
            )))
        }
        _ => {
            return Err(Unreadable(format!(
                "NBFormatError('Unsupported nbformat version {}')",
                python_str(&major)
            )))
        }
    }
    rejoin_lines(&mut nb).map_err(|key| {
        Unreadable(format!(
            "ValidationError('The notebook is invalid and is missing an expected key: {key}')"
        ))
    })?;
    strip_transient(&mut nb);
    let validation_message = validate(&mut nb);
    Ok(CheckedNotebook {
        nb,
        validation_message,
    })
}

/// Structural problems that make a notebook model impossible to process (not merely invalid).
pub fn check_structure(nb: &Value) -> Result<(), String> {
    let obj = nb
        .as_object()
        .ok_or("notebook content must be a JSON object")?;
    if !obj.get("metadata").is_some_and(Value::is_object) {
        return Err("notebook has no 'metadata' object".into());
    }
    let cells = obj
        .get("cells")
        .and_then(Value::as_array)
        .ok_or("notebook has no 'cells' list")?;
    for (i, cell) in cells.iter().enumerate() {
        if !cell.get("metadata").is_some_and(Value::is_object) {
            return Err(format!("cell {i} has no 'metadata' object"));
        }
    }
    Ok(())
}

fn join_strings(list: &[Value]) -> Option<String> {
    let mut out = String::new();
    for item in list {
        out.push_str(item.as_str()?);
    }
    Some(out)
}

fn is_json_mime(mime: &str) -> bool {
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn rejoin_mimebundle(data: &mut Value) {
    if let Some(map) = data.as_object_mut() {
        for (key, value) in map.iter_mut() {
            if is_json_mime(key) {
                continue;
            }
            if let Some(joined) = value.as_array().and_then(|l| join_strings(l)) {
                *value = Value::String(joined);
            }
        }
    }
}

/// nbformat's `rejoin_lines`; `Err(key)` names a missing key as Python's AttributeError would.
fn rejoin_lines(nb: &mut Value) -> Result<(), String> {
    let obj = nb.as_object_mut().ok_or("'cells'")?;
    if !obj.get("metadata").is_some_and(Value::is_object) {
        return Err("'metadata'".into());
    }
    let cells = obj
        .get_mut("cells")
        .and_then(Value::as_array_mut)
        .ok_or("'cells'")?;
    for cell in cells {
        let cell = cell.as_object_mut().ok_or("'metadata'")?;
        if !cell.get("metadata").is_some_and(Value::is_object) {
            return Err("'metadata'".into());
        }
        if let Some(Value::Array(lines)) = cell.get("source") {
            let joined = join_strings(lines).ok_or("'source'")?;
            cell.insert("source".into(), Value::String(joined));
        }
        if let Some(Value::Object(attachments)) = cell.get_mut("attachments") {
            for bundle in attachments.values_mut() {
                rejoin_mimebundle(bundle);
            }
        }
        if cell.get("cell_type").and_then(Value::as_str) == Some("code") {
            if let Some(Value::Array(outputs)) = cell.get_mut("outputs") {
                for output in outputs.iter_mut().filter_map(Value::as_object_mut) {
                    let kind = output
                        .get("output_type")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if kind == "execute_result" || kind == "display_data" {
                        if let Some(data) = output.get_mut("data") {
                            rejoin_mimebundle(data);
                        }
                    } else if !kind.is_empty() {
                        if let Some(Value::Array(lines)) = output.get("text") {
                            let joined = join_strings(lines).ok_or("'text'")?;
                            output.insert("text".into(), Value::String(joined));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// nbformat's `strip_transient`: fields never stored in files.
pub fn strip_transient(nb: &mut Value) {
    if let Some(meta) = nb.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("orig_nbformat");
        meta.shift_remove("orig_nbformat_minor");
        meta.shift_remove("signature");
    }
    for cell in cells_mut(nb) {
        if let Some(meta) = cell.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("trusted");
        }
    }
}

fn cells_mut(nb: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    nb.get_mut("cells")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn minor_version(nb: &Value) -> Option<i64> {
    match nb.get("nbformat_minor") {
        None => Some(0),
        Some(v) => v.as_i64(),
    }
}

/// A fresh cell id as nbformat makes them (`uuid4().hex[:8]`).
fn new_cell_id() -> String {
    let bytes: [u8; 4] = rand::random();
    hex::encode(bytes)
}

/// nbformat's normalisation for 4.5+: give every cell an id and replace duplicate ids.
pub fn normalize_cell_ids(nb: &mut Value) {
    if minor_version(nb).is_none_or(|m| m < 5) {
        return;
    }
    let mut seen = HashSet::new();
    for cell in cells_mut(nb) {
        let id = match cell.get("id") {
            None => {
                let id = new_cell_id();
                cell.insert("id".into(), Value::String(id.clone()));
                Value::String(id)
            }
            Some(v) => v.clone(),
        };
        let key = id.to_string();
        if seen.contains(&key) {
            let fresh = new_cell_id();
            cell.insert("id".into(), Value::String(fresh.clone()));
            seen.insert(Value::String(fresh).to_string());
        } else {
            seen.insert(key);
        }
    }
}

/// Normalise cell ids, then validate; returns jupyter_server's `message` when invalid.
pub fn validate(nb: &mut Value) -> Option<String> {
    normalize_cell_ids(nb);
    schema_error(nb).map(|e| format!("Notebook validation failed: {e}"))
}

type CompiledKey = (i64, Option<String>);
fn validators() -> &'static Mutex<HashMap<CompiledKey, Option<Arc<jsonschema::Validator>>>> {
    static CACHE: OnceLock<Mutex<HashMap<CompiledKey, Option<Arc<jsonschema::Validator>>>>> =
        OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn relax_additional_properties(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if key == "additionalProperties" {
                    *value = Value::Bool(true);
                } else {
                    relax_additional_properties(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(relax_additional_properties),
        _ => {}
    }
}

/// The schema for a minor version (future minors: the newest schema, relaxed as nbformat
/// does), optionally narrowed to one definition (`code_cell`, `stream`, ...).
fn validator_for(minor: i64, definition: Option<&str>) -> Option<Arc<jsonschema::Validator>> {
    let key = (minor.min(CURRENT_MINOR + 1), definition.map(str::to_string));
    let mut cache = validators().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = cache.get(&key) {
        return v.clone();
    }
    let compiled = (|| {
        let index = usize::try_from(minor.min(CURRENT_MINOR)).ok()?;
        let mut schema: Value = serde_json::from_str(SCHEMAS[index]).ok()?;
        if minor > CURRENT_MINOR {
            relax_additional_properties(&mut schema);
            let defs = schema.get_mut("definitions")?;
            for (def, extra) in [
                ("cell", "unrecognized_cell"),
                ("output", "unrecognized_output"),
            ] {
                if let Some(Value::Array(one_of)) =
                    defs.get_mut(def).and_then(|d| d.get_mut("oneOf"))
                {
                    one_of.push(serde_json::json!({ "$ref": format!("#/definitions/{extra}") }));
                }
            }
        }
        if let Some(name) = definition {
            let defs = schema.get("definitions")?;
            defs.get(name)?;
            schema = serde_json::json!({
                "$schema": "http://json-schema.org/draft-04/schema#",
                "definitions": defs.clone(),
                "allOf": [{ "$ref": format!("#/definitions/{name}") }],
            });
        }
        jsonschema::draft4::new(&schema).ok().map(Arc::new)
    })();
    cache.insert(key, compiled.clone());
    compiled
}

struct SchemaFailure {
    message: String,
    keyword: String,
    schema_path: Vec<String>,
    instance_path: Vec<String>,
    instance: Value,
    definition: Option<String>,
}

fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn first_failure(validator: &jsonschema::Validator, instance: &Value) -> Option<SchemaFailure> {
    let error = validator.iter_errors(instance).next()?;
    Some(SchemaFailure {
        message: error.to_string(),
        keyword: error.kind().keyword().to_string(),
        schema_path: pointer_segments(error.schema_path().as_str()),
        instance_path: pointer_segments(error.instance_path().as_str()),
        instance: error.instance().clone().into_owned(),
        definition: None,
    })
}

/// nbformat's `better_validation_error`: a failed `oneOf` over cells or outputs is replaced
/// by the error from validating the item against its own type's definition.
fn better(mut failure: SchemaFailure, minor: i64) -> SchemaFailure {
    let last = failure.schema_path.last().map(String::as_str).unwrap_or("");
    if !last.ends_with("Of") {
        return failure;
    }
    let definition = if let Some(t) = failure.instance.get("cell_type").and_then(Value::as_str) {
        format!("{t}_cell")
    } else if let Some(t) = failure.instance.get("output_type").and_then(Value::as_str) {
        t.to_string()
    } else {
        return failure;
    };
    let Some(validator) = validator_for(minor, Some(&definition)) else {
        return failure;
    };
    let Some(mut sub) = first_failure(&validator, &failure.instance) else {
        return failure;
    };
    let mut path = std::mem::take(&mut failure.instance_path);
    path.append(&mut sub.instance_path);
    sub.instance_path = path;
    sub.definition = Some(definition);
    let mut best = better(sub, minor);
    if best.definition.is_none() {
        best.definition = failure.definition.take();
    }
    best
}

fn python_index(segments: &[String]) -> String {
    segments
        .iter()
        .map(|s| match s.parse::<u64>() {
            Ok(_) => format!("[{s}]"),
            Err(_) => format!("[{}]", repr_str(s)),
        })
        .collect()
}

/// The first schema violation, worded like nbformat's `NotebookValidationError`.
fn schema_error(nb: &Value) -> Option<String> {
    let Some(minor) = minor_version(nb).filter(|m| *m >= 0) else {
        return Some(format!(
            "No schema for validating v4.{} notebooks",
            nb.get("nbformat_minor").map(python_str).unwrap_or_default()
        ));
    };
    let validator = validator_for(minor, None)?;
    // Checking is much cheaper than collecting errors; most notebooks are valid.
    if validator.is_valid(nb) {
        return None;
    }
    let failure = better(first_failure(&validator, nb)?, minor);
    let schema_path: Vec<String> = failure
        .schema_path
        .iter()
        .filter(|s| *s != "$ref")
        .cloned()
        .collect();
    let shown_schema_path = &schema_path[..schema_path.len().saturating_sub(1)];
    let shown_schema_path: Vec<String> = if failure.definition.is_some() {
        shown_schema_path.iter().skip(2).cloned().collect()
    } else {
        shown_schema_path.to_vec()
    };
    let truncated = truncate(&failure.instance);
    Some(format!(
        "{}\n\nFailed validating {} in {}{}:\n\nOn instance{}:\n{}:\n{}",
        failure.message,
        repr_str(&failure.keyword),
        failure.definition.as_deref().unwrap_or("notebook"),
        python_index(&shown_schema_path),
        python_index(&failure.instance_path),
        python_repr(&truncated),
        dumps_python(&failure.instance, false, true),
    ))
}

/// nbformat's `_truncate_obj` for validation messages.
fn truncate(v: &Value) -> Value {
    const ITEMS: usize = 16;
    const CHARS: usize = 64;
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, item) in map.iter().take(ITEMS) {
                out.insert(k.clone(), truncate(item));
            }
            for key in ["cells", "outputs"] {
                if let Some(Value::Array(items)) = map.get(key) {
                    if out.contains_key(key) {
                        out.insert(
                            key.into(),
                            Value::from(vec![format!("...{} {key}...", items.len())]),
                        );
                    }
                }
            }
            if map.len() > ITEMS {
                out.insert(
                    "...".into(),
                    Value::from(format!("{} keys truncated", map.len() - ITEMS)),
                );
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out: Vec<Value> = items.iter().take(ITEMS).map(truncate).collect();
            if items.len() > ITEMS {
                out.push(Value::from(format!(
                    "...{} items truncated...",
                    items.len() - ITEMS
                )));
            }
            Value::Array(out)
        }
        Value::String(s) if s.chars().count() > CHARS => {
            Value::String(s.chars().take(CHARS).collect::<String>() + "...")
        }
        other => other.clone(),
    }
}

/// Python's `str()` of a JSON scalar (as in `yield_everything` and messages).
fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => number_text(n),
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// Python's `repr()` of a JSON value (dict keys sorted, as `pprint` does).
fn python_repr(v: &Value) -> String {
    match v {
        Value::String(s) => repr_str(s),
        Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
            )
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}: {}", repr_str(k), python_repr(&map[k.as_str()])))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        scalar => python_str(scalar),
    }
}

/// nbformat's `split_lines`: multi-line text stored as lists of lines.
pub fn split_lines(nb: &mut Value) {
    fn split(value: &mut Value) {
        if let Value::String(s) = value {
            let lines = splitlines_keepends(s)
                .into_iter()
                .map(Value::from)
                .collect();
            *value = Value::Array(lines);
        }
    }
    fn split_mimebundle(data: &mut Value) {
        if let Some(map) = data.as_object_mut() {
            for (key, value) in map.iter_mut() {
                if key.starts_with("text/")
                    || key == "application/javascript"
                    || key == "image/svg+xml"
                {
                    split(value);
                }
            }
        }
    }
    for cell in cells_mut(nb) {
        if let Some(source) = cell.get_mut("source") {
            split(source);
        }
        if let Some(Value::Object(attachments)) = cell.get_mut("attachments") {
            attachments.values_mut().for_each(split_mimebundle);
        }
        if cell.get("cell_type").and_then(Value::as_str) == Some("code") {
            if let Some(Value::Array(outputs)) = cell.get_mut("outputs") {
                for output in outputs.iter_mut().filter_map(Value::as_object_mut) {
                    match output.get("output_type").and_then(Value::as_str) {
                        Some("execute_result") | Some("display_data") => {
                            if let Some(data) = output.get_mut("data") {
                                split_mimebundle(data);
                            }
                        }
                        Some("stream") => {
                            if let Some(text) = output.get_mut("text") {
                                split(text);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// The file bytes nbformat writes for `nb`: split lines, transient fields stripped, keys
/// sorted, one-space indent, non-ASCII kept, trailing newline.
pub fn notebook_file_text(nb: &Value) -> String {
    notebook_into_file_text(nb.clone())
}

/// [`notebook_file_text`] for a notebook the caller no longer needs (no copy is made).
pub fn notebook_into_file_text(mut nb: Value) -> String {
    strip_transient(&mut nb);
    // The indented text is about 1.2x the content's size: reserve once.
    let mut text = String::with_capacity(approximate_text_len(&nb) + 1);
    // Lines are split while writing (as `split_lines` would), without building them first.
    write_layout(&mut text, &nb, 0, Layout::Notebook);
    text.push('\n');
    text
}

/// Where a value sits in a notebook, for the strings [`split_lines`] stores as lists.
#[derive(Clone, Copy)]
enum Layout {
    Plain,
    Notebook,
    Cells,
    Cell,
    Attachments,
    MimeBundle,
    Outputs,
    Output,
    Lines,
}

/// `write_value` with sorted keys and non-ASCII kept, writing each string that
/// [`split_lines`] would split as its list of lines.
fn write_layout(out: &mut String, v: &Value, level: usize, layout: Layout) {
    match (layout, v) {
        (Layout::Plain, _) => write_value(out, v, level, true, false),
        (Layout::Lines, Value::String(s)) => {
            let lines = splitlines_keepends(s);
            if lines.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, line) in lines.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_string(out, line, false);
            }
            newline_indent(out, level);
            out.push(']');
        }
        (Layout::Cells | Layout::Outputs, Value::Array(items)) if !items.is_empty() => {
            let item_layout = match layout {
                Layout::Cells => Layout::Cell,
                _ => Layout::Output,
            };
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_layout(out, item, level + 1, item_layout);
            }
            newline_indent(out, level);
            out.push(']');
        }
        (_, Value::Object(map)) if !map.is_empty() => {
            let code_cell = map.get("cell_type").and_then(Value::as_str) == Some("code");
            let output_type = map.get("output_type").and_then(Value::as_str);
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(out, level + 1);
                write_string(out, key, false);
                out.push_str(": ");
                let child = match (layout, key.as_str()) {
                    (Layout::Notebook, "cells") => Layout::Cells,
                    (Layout::Cell, "source") => Layout::Lines,
                    (Layout::Cell, "attachments") => Layout::Attachments,
                    (Layout::Cell, "outputs") if code_cell => Layout::Outputs,
                    (Layout::Attachments, _) => Layout::MimeBundle,
                    (Layout::MimeBundle, mime)
                        if mime.starts_with("text/")
                            || mime == "application/javascript"
                            || mime == "image/svg+xml" =>
                    {
                        Layout::Lines
                    }
                    (Layout::Output, "data")
                        if matches!(output_type, Some("execute_result" | "display_data")) =>
                    {
                        Layout::MimeBundle
                    }
                    (Layout::Output, "text") if output_type == Some("stream") => Layout::Lines,
                    _ => Layout::Plain,
                };
                write_layout(out, value, level + 1, child);
            }
            newline_indent(out, level);
            out.push('}');
        }
        _ => write_value(out, v, level, true, false),
    }
}

fn approximate_text_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 8,
        Value::Array(items) => items.iter().map(approximate_text_len).sum::<usize>() + 8,
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() + 8 + approximate_text_len(v))
            .sum::<usize>()
            .saturating_add(8),
        _ => 16,
    }
}

/// Whether reading back the file written for `nb` (an object with object `metadata`, a
/// `cells` list of objects with object `metadata`, as [`check_structure`] ensures) gives
/// a notebook whose trust signature is that of `nb` itself once [`strip_transient`] ran.
/// Splitting and rejoining lines only moves string boundaries, which the signature's byte
/// stream does not see; the read fails (so nothing should be signed) for a major version
/// other than 4 or a line list holding a non-string. Floats are excluded: a float parsed
/// back from its shortest representation is not guaranteed to be bit-identical.
pub fn signs_as_written(nb: &Value) -> bool {
    fn strings_only(v: Option<&Value>) -> bool {
        match v {
            Some(Value::Array(items)) => items.iter().all(Value::is_string),
            _ => true,
        }
    }
    fn has_float(v: &Value) -> bool {
        match v {
            Value::Number(n) => n.is_f64(),
            Value::Array(items) => items.iter().any(has_float),
            Value::Object(map) => map.values().any(has_float),
            _ => false,
        }
    }
    if nb.get("nbformat").and_then(Value::as_i64) != Some(4) || has_float(nb) {
        return false;
    }
    let cells = nb.get("cells").and_then(Value::as_array);
    cells.into_iter().flatten().all(|cell| {
        if !strings_only(cell.get("source")) {
            return false;
        }
        if cell.get("cell_type").and_then(Value::as_str) != Some("code") {
            return true;
        }
        let outputs = cell.get("outputs").and_then(Value::as_array);
        outputs.into_iter().flatten().all(|output| {
            let kind = output
                .get("output_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            kind.is_empty()
                || kind == "execute_result"
                || kind == "display_data"
                || !output.is_object()
                || strings_only(output.get("text"))
        })
    })
}

/// The byte stream nbformat's `yield_everything` feeds into the signature HMAC.
pub fn signature_stream(v: &Value, feed: &mut dyn FnMut(&[u8])) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                feed(key.as_bytes());
                signature_stream(&map[key.as_str()], feed);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| signature_stream(item, feed)),
        Value::String(s) => feed(s.as_bytes()),
        scalar => feed(python_str(scalar).as_bytes()),
    }
}

/// nbformat's `check_cells`: pop each code cell's `trusted` flag; the notebook is trusted
/// when every code cell is explicitly trusted or has no rich output.
pub fn check_cells(nb: &mut Value) -> bool {
    let mut trusted = true;
    for cell in cells_mut(nb) {
        if cell.get("cell_type").and_then(Value::as_str) != Some("code") {
            continue;
        }
        let explicit = cell
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.shift_remove("trusted"))
            .is_some_and(|v| truthy(&v));
        if explicit {
            continue;
        }
        let safe_keys = ["output_type", "execution_count", "metadata"];
        let outputs = cell.get("outputs").and_then(Value::as_array);
        for output in outputs.into_iter().flatten() {
            let kind = output
                .get("output_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            if kind == "execute_result" || kind == "display_data" {
                let unsafe_keys = output
                    .as_object()
                    .is_some_and(|o| o.keys().any(|k| !safe_keys.contains(&k.as_str())));
                if unsafe_keys {
                    trusted = false;
                }
            }
        }
    }
    trusted
}

/// nbformat's `mark_cells`: set `metadata.trusted` on every code cell.
pub fn mark_cells(nb: &mut Value, trusted: bool) {
    for cell in cells_mut(nb) {
        if cell.get("cell_type").and_then(Value::as_str) == Some("code") {
            if let Some(meta) = cell.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("trusted".into(), Value::Bool(trusted));
            }
        }
    }
}

/// `nbformat.v4.new_notebook()`: what a new untitled notebook contains.
pub fn new_notebook() -> Value {
    serde_json::json!({
        "cells": [],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    })
}
