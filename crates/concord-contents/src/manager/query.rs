//! What a GET asks for: `type`, `format`, `content` and `hash`.

use crate::error::{ContentsError, Result};
use crate::model::ContentType;
use crate::pyfmt::repr_str;

/// What a GET asks for (`type`, `format`, `content`, `hash` query parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// Include the content (`content=1`, the default).
    pub content: bool,
    /// Requested type; `None` decides from the path.
    pub kind: Option<ContentType>,
    /// Requested file format: `text` or `base64`; `None` tries text then base64.
    pub format: Option<FileFormat>,
    /// Include `hash` and `hash_algorithm` (`hash=1`).
    pub hash: bool,
}

impl GetOptions {
    /// Parse the raw query parameters as jupyter_server's handler does.
    pub fn from_query(
        kind: Option<&str>,
        format: Option<&str>,
        content: Option<&str>,
        hash: Option<&str>,
    ) -> Result<GetOptions> {
        let format = match format {
            None => None,
            Some("text") => Some(FileFormat::Text),
            Some("base64") => Some(FileFormat::Base64),
            Some(other) => {
                return Err(ContentsError::bad_request(format!(
                    "Format {} is invalid",
                    repr_str(other)
                )))
            }
        };
        let content = match content.unwrap_or("1") {
            "1" => true,
            "0" => false,
            other => {
                return Err(ContentsError::bad_request(format!(
                    "Content {} is invalid",
                    repr_str(other)
                )))
            }
        };
        let hash = match hash.unwrap_or("0") {
            "1" => true,
            "0" => false,
            other => {
                return Err(ContentsError::bad_request(format!(
                    "Hash argument {} is invalid. It must be '0' or '1'.",
                    repr_str(other)
                )))
            }
        };
        Ok(GetOptions {
            content,
            kind: ContentType::from_param(kind),
            format,
            hash,
        })
    }

    /// A model without content (what listings and saves return).
    pub fn metadata_only() -> GetOptions {
        GetOptions {
            content: false,
            ..GetOptions::default()
        }
    }
}

/// The encoding of file content in a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// UTF-8 text.
    Text,
    /// Base64 (with Python's `encodebytes` line breaks).
    Base64,
}
