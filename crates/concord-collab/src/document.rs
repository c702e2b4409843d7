//! Shared documents with the Y structure of jupyter_ydoc 4, and their conversion from and
//! to what the contents service reads and writes.
//!
//! Every document has a root map `state` (`dirty`, `path`, `hash`, `document_id`). Then:
//! - notebook (`YNotebook`, version 2.0.0): root map `meta` (`nbformat`, `nbformat_minor`
//!   numbers, `metadata` a map of plain values) and root array `cells` of maps: `id`,
//!   `cell_type`, `source` (a text), `metadata` (a map of plain values), for code cells
//!   `execution_count`, `outputs` (an array of maps; a stream output's `text` is a text) and
//!   `execution_state` (`"idle"`), and any other key of the cell (e.g. `attachments`) as a
//!   plain value;
//! - text file (`YUnicode`, 1.0.0): root text `source`;
//! - binary file (`YBlob`, 2.0.0): root map `source` with the bytes under `bytes`.
//!
//! Numbers are Yjs numbers (floats): on the way out, integral values become integers again,
//! as jupyter_ydoc does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map as JsonMap, Value};
use yrs::types::text::TextPrelim;
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, Doc, GetString, Map, MapPrelim, MapRef, Options, Out,
    ReadTxn, Text, TextRef, Transact, TransactionMut, WriteTxn,
};

use crate::error::CollabError;

/// The kinds of shared document (jupyter_ydoc's `notebook`, `file`/`unicode`, `blob`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// A notebook (`json:notebook`).
    Notebook,
    /// A text file (`text:file`).
    Text,
    /// A binary file (`base64:file` or `base64:blob`).
    Blob,
}

impl DocKind {
    /// The kind for a room's `format` and `type` (`json:notebook`, `text:file`,
    /// `base64:file`); `None` for a pair jupyter-server-ydoc would not open.
    pub fn from_format_and_type(format: &str, content_type: &str) -> Option<DocKind> {
        match (format, content_type) {
            ("json", "notebook") => Some(DocKind::Notebook),
            ("text", "file") | ("text", "unicode") => Some(DocKind::Text),
            ("base64", "file") | ("base64", "blob") => Some(DocKind::Blob),
            _ => None,
        }
    }

    /// jupyter_ydoc's document version (what its session store records).
    pub fn version(self) -> &'static str {
        match self {
            DocKind::Notebook => "2.0.0",
            DocKind::Text => "1.0.0",
            DocKind::Blob => "2.0.0",
        }
    }

    /// The contents API `type` used to load and save this kind.
    pub fn contents_type(self) -> &'static str {
        match self {
            DocKind::Notebook => "notebook",
            DocKind::Text | DocKind::Blob => "file",
        }
    }

    /// The contents API `format` used to load and save this kind.
    pub fn contents_format(self) -> &'static str {
        match self {
            DocKind::Notebook => "json",
            DocKind::Text => "text",
            DocKind::Blob => "base64",
        }
    }
}

/// A file's content as the contents service reads and writes it.
#[derive(Clone, Debug, PartialEq)]
pub enum FileContent {
    /// A notebook (nbformat JSON).
    Notebook(Value),
    /// A text file (line endings already `\n`).
    Text(String),
    /// A binary file.
    Binary(Vec<u8>),
}

impl FileContent {
    /// The document kind that holds this content.
    pub fn kind(&self) -> DocKind {
        match self {
            FileContent::Notebook(_) => DocKind::Notebook,
            FileContent::Text(_) => DocKind::Text,
            FileContent::Binary(_) => DocKind::Blob,
        }
    }

    /// A stable digest (for the deterministic loader client id).
    fn digest(&self) -> [u8; 20] {
        use sha1::Digest as _;
        let mut hasher = sha1::Sha1::new();
        match self {
            FileContent::Notebook(value) => {
                hasher.update(b"notebook\0");
                hasher.update(value.to_string().as_bytes());
            }
            FileContent::Text(text) => {
                hasher.update(b"text\0");
                hasher.update(text.as_bytes());
            }
            FileContent::Binary(bytes) => {
                hasher.update(b"blob\0");
                hasher.update(bytes);
            }
        }
        hasher.finalize().into()
    }
}

/// Root names.
pub(crate) const STATE: &str = "state";
const META: &str = "meta";
const CELLS: &str = "cells";
const SOURCE: &str = "source";

/// A new empty document whose root types have their jupyter_ydoc types (a root's type is
/// fixed by the first `get_or_insert`, so do it before anything from a client arrives).
pub fn new_doc(kind: DocKind, client_id: u64) -> Doc {
    let doc = Doc::with_options(Options::with_client_id(yrs::block::ClientID::new(
        client_id & crate::codec::MAX_SAFE_INTEGER,
    )));
    {
        let mut txn = doc.transact_mut();
        txn.get_or_insert_map(STATE);
        match kind {
            DocKind::Notebook => {
                txn.get_or_insert_map(META);
                txn.get_or_insert_array(CELLS);
            }
            DocKind::Text => {
                txn.get_or_insert_text(SOURCE);
            }
            DocKind::Blob => {
                txn.get_or_insert_map(SOURCE);
            }
        }
    }
    doc
}

/// The client id the server writes the content of a freshly loaded file with: derived from
/// the content, so the same file loads to the same Yjs history (a client that reconnects
/// after its room was rebuilt from an unchanged file merges without duplicates), and a
/// different content never reuses the ids of an earlier load.
pub fn loader_client_id(content: &FileContent) -> u64 {
    let digest = content.digest();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    // Never 0 (jupyter-server-ydoc's own loader id) and within 53 bits.
    (u64::from_le_bytes(id) & crate::codec::MAX_SAFE_INTEGER).max(1)
}

/// The update that loads `content` into an empty document of its kind, written by
/// [`loader_client_id`] exactly as jupyter_ydoc's `set` on an empty document.
pub fn initial_update(content: &FileContent) -> Result<(Vec<u8>, u64), CollabError> {
    let loader = loader_client_id(content);
    let doc = new_doc(content.kind(), loader);
    {
        let mut txn = doc.transact_mut();
        write_content(&mut txn, content)?;
    }
    let update = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    Ok((update, loader))
}

fn write_content(txn: &mut TransactionMut, content: &FileContent) -> Result<(), CollabError> {
    match content {
        FileContent::Notebook(nb) => write_notebook(txn, nb),
        FileContent::Text(text) => {
            let source = txn.get_or_insert_text(SOURCE);
            if !text.is_empty() {
                source.push(txn, text);
            }
            Ok(())
        }
        FileContent::Binary(bytes) => {
            // As jupyter_ydoc: setting the empty value on an empty blob writes nothing.
            if !bytes.is_empty() {
                let source = txn.get_or_insert_map(SOURCE);
                source.insert(txn, "bytes", Any::Buffer(Arc::from(bytes.as_slice())));
            }
            Ok(())
        }
    }
}

/// JSON to a Yjs plain value; numbers become floats as pycrdt makes them.
pub(crate) fn json_to_any(value: &Value) -> Any {
    match value {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Number(n) => Any::Number(yrs::any::Number::Float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => Any::String(Arc::from(s.as_str())),
        Value::Array(items) => Any::Array(items.iter().map(json_to_any).collect()),
        Value::Object(map) => Any::Map(Arc::new(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_any(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// A Yjs plain value to JSON, with jupyter_ydoc's `cast_all(float → int)` for integral
/// numbers. Binary data has no JSON form in a notebook: it becomes `null`.
pub(crate) fn any_to_json(any: &Any) -> Value {
    match any {
        Any::Null | Any::Undefined | Any::Buffer(_) => Value::Null,
        Any::Bool(b) => Value::Bool(*b),
        Any::Number(n) => number_to_json(*n),
        Any::String(s) => Value::String(s.to_string()),
        Any::Array(items) => Value::Array(items.iter().map(any_to_json).collect()),
        Any::Map(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), any_to_json(v)))
                .collect(),
        ),
    }
}

fn number_to_json(n: yrs::any::Number) -> Value {
    match n {
        yrs::any::Number::Int(i) => Value::from(i),
        yrs::any::Number::Float(f) => {
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 {
                Value::from(f as i64)
            } else {
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
    }
}

fn out_to_json<T: ReadTxn>(txn: &T, out: &Out) -> Value {
    match out {
        Out::Any(any) => any_to_json(any),
        Out::YText(text) => Value::String(text.get_string(txn)),
        Out::YArray(array) => Value::Array(array.iter(txn).map(|v| out_to_json(txn, &v)).collect()),
        Out::YMap(map) => Value::Object(
            map.iter(txn)
                .map(|(k, v)| (k.to_string(), out_to_json(txn, &v)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// A missing cell id, made from the cell's position and content so a reload of the same
/// file gives the same id.
fn derived_cell_id(index: usize, cell: &Value) -> String {
    let name = format!("{index}:{cell}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

fn default_cell() -> Value {
    serde_json::json!({
        "cell_type": "code",
        "execution_count": null,
        "metadata": {"trusted": true},
        "outputs": [],
        "source": "",
    })
}

fn write_notebook(txn: &mut TransactionMut, nb: &Value) -> Result<(), CollabError> {
    let nb = nb
        .as_object()
        .ok_or_else(|| CollabError::invalid("the notebook is not a JSON object"))?;
    let meta = txn.get_or_insert_map(META);
    let number = |key: &str, default: f64| {
        nb.get(key)
            .map(json_to_any)
            .unwrap_or(Any::Number(yrs::any::Number::Float(default)))
    };
    meta.insert(txn, "nbformat", number("nbformat", 4.0));
    meta.insert(txn, "nbformat_minor", number("nbformat_minor", 5.0));
    let mut metadata = match nb.get("metadata") {
        Some(Value::Object(map)) => map.clone(),
        Some(Value::Null) | None => JsonMap::new(),
        Some(_) => {
            return Err(CollabError::invalid(
                "the notebook's metadata is not an object",
            ))
        }
    };
    metadata
        .entry("language_info")
        .or_insert_with(|| serde_json::json!({"name": ""}));
    metadata
        .entry("kernelspec")
        .or_insert_with(|| serde_json::json!({"name": "", "display_name": ""}));
    let ymetadata = meta.insert(txn, "metadata", MapPrelim::default());
    for (key, value) in &metadata {
        ymetadata.insert(txn, key.as_str(), json_to_any(value));
    }

    let cells = match nb.get("cells") {
        Some(Value::Array(cells)) if !cells.is_empty() => cells.clone(),
        Some(Value::Array(_)) | Some(Value::Null) | None => vec![default_cell()],
        Some(_) => return Err(CollabError::invalid("the notebook's cells are not a list")),
    };
    let ycells = txn.get_or_insert_array(CELLS);
    for (index, cell) in cells.iter().enumerate() {
        let ycell = ycells.insert(txn, index as u32, MapPrelim::default());
        write_cell(txn, &ycell, index, cell)?;
    }
    Ok(())
}

fn source_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// Fill an empty cell map as jupyter_ydoc's `create_ycell`.
fn write_cell(
    txn: &mut TransactionMut,
    ycell: &MapRef,
    index: usize,
    cell: &Value,
) -> Result<(), CollabError> {
    let cell = cell
        .as_object()
        .ok_or_else(|| CollabError::invalid("a notebook cell is not a JSON object"))?;
    let cell_type = cell.get("cell_type").and_then(Value::as_str).unwrap_or("");
    for (key, value) in cell {
        match key.as_str() {
            "source" => {
                ycell.insert(txn, "source", TextPrelim::new(source_text(Some(value))));
            }
            "metadata" => {
                let ymeta = ycell.insert(txn, "metadata", MapPrelim::default());
                if let Value::Object(map) = value {
                    for (k, v) in map {
                        ymeta.insert(txn, k.as_str(), json_to_any(v));
                    }
                }
            }
            "outputs" if cell_type == "code" => {
                let youtputs = ycell.insert(txn, "outputs", ArrayPrelim::default());
                if let Value::Array(outputs) = value {
                    write_outputs(txn, &youtputs, outputs);
                }
            }
            "attachments" if matches!(cell_type, "raw" | "markdown") && is_falsy(value) => {}
            "execution_state" => {}
            _ => {
                ycell.insert(txn, key.as_str(), json_to_any(value));
            }
        }
    }
    if !cell.contains_key("id") {
        ycell.insert(
            txn,
            "id",
            Any::String(Arc::from(derived_cell_id(
                index,
                &Value::Object(cell.clone()),
            ))),
        );
    }
    if !cell.contains_key("source") {
        ycell.insert(txn, "source", TextPrelim::new(String::new()));
    }
    if !cell.contains_key("metadata") {
        ycell.insert(txn, "metadata", MapPrelim::default());
    }
    if cell_type == "code" {
        if !cell.contains_key("outputs") {
            ycell.insert(txn, "outputs", ArrayPrelim::default());
        }
        ycell.insert(txn, "execution_state", "idle");
    }
    Ok(())
}

fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
    }
}

fn write_outputs(txn: &mut TransactionMut, youtputs: &ArrayRef, outputs: &[Value]) {
    for output in outputs {
        let len = youtputs.len(txn);
        let youtput = youtputs.insert(txn, len, MapPrelim::default());
        let Value::Object(map) = output else {
            continue;
        };
        let is_stream = map.get("output_type").and_then(Value::as_str) == Some("stream");
        for (key, value) in map {
            if is_stream && key == "text" {
                youtput.insert(txn, "text", TextPrelim::new(source_text(Some(value))));
            } else {
                youtput.insert(txn, key.as_str(), json_to_any(value));
            }
        }
        if is_stream && !map.contains_key("text") {
            youtput.insert(txn, "text", TextPrelim::new(String::new()));
        }
    }
}

/// The content of a document, as jupyter_ydoc's `get` makes it (notebook: cell ids kept
/// from nbformat 4.5 on, `execution_state` dropped, empty attachments of markdown and raw
/// cells dropped, exact duplicates of a cell id dropped and a differing duplicate renamed;
/// text: the text; binary: the bytes).
pub fn read_content(doc: &Doc, kind: DocKind) -> FileContent {
    match kind {
        DocKind::Notebook => FileContent::Notebook(read_notebook(doc)),
        DocKind::Text => {
            let txn = doc.transact();
            FileContent::Text(
                txn.get_text(SOURCE)
                    .map(|t| t.get_string(&txn))
                    .unwrap_or_default(),
            )
        }
        DocKind::Blob => {
            let txn = doc.transact();
            let bytes = txn
                .get_map(SOURCE)
                .and_then(|m| m.get(&txn, "bytes"))
                .and_then(|out| match out {
                    Out::Any(Any::Buffer(b)) => Some(b.to_vec()),
                    _ => None,
                })
                .unwrap_or_default();
            FileContent::Binary(bytes)
        }
    }
}

fn read_notebook(doc: &Doc) -> Value {
    let (value, renames) = {
        let txn = doc.transact();
        read_notebook_in(&txn)
    };
    if renames.is_empty() {
        return value;
    }
    // A cell id used by two differing cells is renamed in the document too, so every
    // participant and the next save agree (jupyter_ydoc does the same).
    {
        let mut txn = doc.transact_mut();
        if let Some(cells) = txn.get_array(CELLS) {
            for (index, id) in &renames {
                if let Some(Out::YMap(cell)) = cells.get(&txn, *index) {
                    cell.insert(&mut txn, "id", id.as_str());
                }
            }
        }
    }
    let txn = doc.transact();
    read_notebook_in(&txn).0
}

fn read_notebook_in<T: ReadTxn>(txn: &T) -> (Value, Vec<(u32, String)>) {
    let meta = txn
        .get_map(META)
        .map(|m| out_to_json(txn, &Out::YMap(m)))
        .unwrap_or(Value::Object(JsonMap::new()));
    let int_of = |key: &str| meta.get(key).and_then(Value::as_f64).unwrap_or(0.0) as i64;
    let nbformat = int_of("nbformat");
    let nbformat_minor = int_of("nbformat_minor");
    let strip_ids = nbformat == 4 && nbformat_minor <= 4;

    let mut cells = Vec::new();
    let mut seen: HashMap<String, Value> = HashMap::new();
    let mut renames = Vec::new();
    if let Some(ycells) = txn.get_array(CELLS) {
        for (index, ycell) in ycells.iter(txn).enumerate() {
            let Value::Object(mut cell) = out_to_json(txn, &ycell) else {
                continue;
            };
            cell.remove("execution_state");
            if strip_ids {
                cell.remove("id");
            }
            let cell_type = cell.get("cell_type").and_then(Value::as_str).unwrap_or("");
            if matches!(cell_type, "raw" | "markdown")
                && cell.get("attachments").is_some_and(is_falsy)
            {
                cell.remove("attachments");
            }
            let id = cell.get("id").and_then(Value::as_str).map(str::to_string);
            let mut cell = Value::Object(cell);
            if let Some(id) = id {
                if let Some(previous) = seen.get(&id) {
                    if *previous == cell {
                        continue;
                    }
                    let new_id = uuid::Uuid::new_v4().to_string();
                    cell["id"] = Value::String(new_id.clone());
                    renames.push((index as u32, new_id.clone()));
                    seen.insert(new_id, cell.clone());
                } else {
                    seen.insert(id, cell.clone());
                }
            }
            cells.push(cell);
        }
    }
    let metadata = meta
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Object(JsonMap::new()));
    (
        serde_json::json!({
            "cells": cells,
            "metadata": metadata,
            "nbformat": nbformat,
            "nbformat_minor": nbformat_minor,
        }),
        renames,
    )
}

/// Make the document's content equal `content` with the smallest changes that keep its
/// structure (jupyter_ydoc's `set` on a loaded document): cells kept by id, their texts and
/// metadata changed in place, a text file changed by a character diff. Run on a copy of the
/// document as it was when the file was last read or written, the resulting update is the
/// change made on disk since, which merges with the room's own edits.
pub fn set_content(txn: &mut TransactionMut, content: &FileContent) -> Result<(), CollabError> {
    match content {
        FileContent::Notebook(nb) => set_notebook(txn, nb),
        FileContent::Text(text) => {
            let source = txn.get_or_insert_text(SOURCE);
            set_text(txn, &source, text);
            Ok(())
        }
        FileContent::Binary(bytes) => {
            let source = txn.get_or_insert_map(SOURCE);
            let same =
                matches!(source.get(txn, "bytes"), Some(Out::Any(Any::Buffer(b))) if *b == **bytes);
            if !same {
                source.insert(txn, "bytes", Any::Buffer(Arc::from(bytes.as_slice())));
            }
            Ok(())
        }
    }
}

/// Change a text to `new` by a character diff (byte offsets at character boundaries).
pub(crate) fn set_text(txn: &mut TransactionMut, text: &TextRef, new: &str) {
    let old = text.get_string(txn);
    if old == new {
        return;
    }
    let diff = similar::TextDiff::configure()
        .algorithm(similar::Algorithm::Myers)
        .timeout(std::time::Duration::from_millis(500))
        .diff_chars(old.as_str(), new);
    // Offsets into the text as it is being changed.
    let mut position: u32 = 0;
    for change in diff.iter_all_changes() {
        let value = change.value();
        let len = value.len() as u32;
        match change.tag() {
            similar::ChangeTag::Equal => position += len,
            similar::ChangeTag::Delete => text.remove_range(txn, position, len),
            similar::ChangeTag::Insert => {
                text.insert(txn, position, value);
                position += len;
            }
        }
    }
}

fn set_notebook(txn: &mut TransactionMut, nb: &Value) -> Result<(), CollabError> {
    let nb = nb
        .as_object()
        .ok_or_else(|| CollabError::invalid("the notebook is not a JSON object"))?;
    let meta = txn.get_or_insert_map(META);
    for key in ["nbformat", "nbformat_minor"] {
        let new = nb.get(key).map(json_to_any).unwrap_or(Any::Null);
        let old = meta.get(txn, key).map(|o| out_to_json(txn, &o));
        if old.as_ref() != Some(&any_to_json(&new)) {
            meta.insert(txn, key, new);
        }
    }
    let metadata = nb
        .get("metadata")
        .cloned()
        .unwrap_or(Value::Object(JsonMap::new()));
    let ymetadata = match meta.get(txn, "metadata") {
        Some(Out::YMap(m)) => m,
        _ => meta.insert(txn, "metadata", MapPrelim::default()),
    };
    set_plain_map(txn, &ymetadata, metadata.as_object());

    let cells = match nb.get("cells") {
        Some(Value::Array(cells)) => cells.clone(),
        _ => Vec::new(),
    };
    let ycells = txn.get_or_insert_array(CELLS);
    // The cells as they are now, by id (first occurrence).
    let mut old_by_id: HashMap<String, (MapRef, Value)> = HashMap::new();
    for ycell in ycells.iter(txn) {
        if let Out::YMap(map) = &ycell {
            if let Some(Out::Any(Any::String(id))) = map.get(txn, "id") {
                let value = out_to_json(txn, &ycell);
                old_by_id
                    .entry(id.to_string())
                    .or_insert((map.clone(), value));
            }
        }
    }
    // Cells of the new content kept in place (same id), changed in place where possible.
    let mut retained: BTreeSet<String> = BTreeSet::new();
    for cell in &cells {
        let Some(id) = cell.get("id").and_then(Value::as_str) else {
            continue;
        };
        if let Some((ymap, old)) = old_by_id.get(id) {
            if update_cell(txn, ymap, old, cell) {
                retained.insert(id.to_string());
            }
        }
    }
    // Drop every cell that is not retained (and duplicates of retained ones).
    let mut index = 0;
    let mut seen = BTreeSet::new();
    while index < ycells.len(txn) {
        let id = match ycells.get(txn, index) {
            Some(Out::YMap(map)) => match map.get(txn, "id") {
                Some(Out::Any(Any::String(id))) => Some(id.to_string()),
                _ => None,
            },
            _ => None,
        };
        match id {
            Some(id) if retained.contains(&id) && seen.insert(id.clone()) => index += 1,
            _ => ycells.remove(txn, index),
        }
    }
    // Put cells in the new order, creating the new ones.
    for (index, cell) in cells.iter().enumerate() {
        let index = index as u32;
        let id = cell.get("id").and_then(Value::as_str);
        let current = match ycells.get(txn, index) {
            Some(Out::YMap(map)) => match map.get(txn, "id") {
                Some(Out::Any(Any::String(id))) => Some(id.to_string()),
                _ => None,
            },
            _ => None,
        };
        if id.is_some() && current.as_deref() == id {
            continue;
        }
        if let Some(id) = id.filter(|id| retained.contains(*id)) {
            // A retained cell further down: moved (delete and recreate, as jupyter_ydoc).
            let len = ycells.len(txn);
            for position in index + 1..len {
                let here = match ycells.get(txn, position) {
                    Some(Out::YMap(map)) => {
                        matches!(map.get(txn, "id"), Some(Out::Any(Any::String(s))) if &*s == id)
                    }
                    _ => false,
                };
                if here {
                    ycells.remove(txn, position);
                    break;
                }
            }
        }
        let ycell = ycells.insert(txn, index, MapPrelim::default());
        write_cell(txn, &ycell, index as usize, cell)?;
    }
    let len = ycells.len(txn);
    if len > cells.len() as u32 {
        ycells.remove_range(txn, cells.len() as u32, len - cells.len() as u32);
    }
    Ok(())
}

/// Make a map of plain values equal `new`, key by key.
fn set_plain_map(txn: &mut TransactionMut, map: &MapRef, new: Option<&JsonMap<String, Value>>) {
    let empty = JsonMap::new();
    let new = new.unwrap_or(&empty);
    let old_keys: Vec<String> = map.keys(txn).map(str::to_string).collect();
    for key in old_keys {
        if !new.contains_key(&key) {
            map.remove(txn, &key);
        }
    }
    for (key, value) in new {
        let old = map.get(txn, key).map(|o| out_to_json(txn, &o));
        if old.as_ref() != Some(value) {
            map.insert(txn, key.as_str(), json_to_any(value));
        }
    }
}

/// Change a cell in place to `new`; false when its structure does not allow it (the cell
/// is then recreated).
fn update_cell(txn: &mut TransactionMut, ycell: &MapRef, old: &Value, new: &Value) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return false;
    };
    let cell_type = new.get("cell_type").and_then(Value::as_str).unwrap_or("");
    if old.get("cell_type").and_then(Value::as_str) != Some(cell_type) {
        return false;
    }
    for key in ["source", "metadata", "outputs"] {
        let expected_ok = match (key, ycell.get(txn, key)) {
            (_, None) => !new.contains_key(key) || key == "outputs" && cell_type != "code",
            ("source", Some(Out::YText(_))) => true,
            ("metadata", Some(Out::YMap(_))) => true,
            ("outputs", Some(Out::YArray(_))) => true,
            _ => false,
        };
        if !expected_ok {
            return false;
        }
    }
    for (key, value) in new {
        if old.get(key) == Some(value) && key != "source" {
            continue;
        }
        match (key.as_str(), ycell.get(txn, key)) {
            ("source", Some(Out::YText(text))) => set_text(txn, &text, &source_text(Some(value))),
            ("metadata", Some(Out::YMap(map))) => set_plain_map(txn, &map, value.as_object()),
            ("outputs", Some(Out::YArray(array))) => {
                let len = array.len(txn);
                array.remove_range(txn, 0, len);
                if let Value::Array(outputs) = value {
                    write_outputs(txn, &array, outputs);
                }
            }
            ("execution_state", _) => {}
            _ => {
                ycell.insert(txn, key.as_str(), json_to_any(value));
            }
        }
    }
    for key in old.keys() {
        if !new.contains_key(key) && !matches!(key.as_str(), "execution_state" | "source") {
            ycell.remove(txn, key);
        }
    }
    true
}

/// Set a key of the `state` map (written by the server: `path`, `dirty`, `hash`).
pub fn set_state(txn: &mut TransactionMut, key: &str, value: Any) {
    let state = txn.get_or_insert_map(STATE);
    let same = matches!(state.get(txn, key), Some(Out::Any(ref old)) if *old == value);
    if !same {
        state.insert(txn, key, value);
    }
}
