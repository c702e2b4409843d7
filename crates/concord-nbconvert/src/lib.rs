//! nbconvert as a service, without HTTP: the exporters the installed nbconvert offers
//! ([`Nbconvert::formats`]) and conversions of a notebook to one of them
//! ([`Nbconvert::convert`]), as jupyter_server's `/api/nbconvert` and `/nbconvert/…` serve
//! them.
//!
//! nbconvert is Python: every call runs the configured interpreter with a small driver
//! (`driver.py`, passed with `-c`) as a **separate process**, bounded in time (killed at the
//! limit), address space (`RLIMIT_AS`) and output size, and started through a
//! [`Sandbox`] of `concord-confine` like a kernel (Landlock, the supervisor and its
//! namespaces, as the server configures them). The notebook goes in on stdin; the answer
//! comes back on stdout as one JSON header line followed by the export's bytes.

mod error;
mod process;

pub use error::{ErrorKind, Failure, NbconvertError, NbconvertResult};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use concord_confine::Sandbox;
use tokio::sync::{OnceCell, Semaphore};

/// The limits every nbconvert process runs under, and which Python runs it.
#[derive(Clone, Debug)]
pub struct NbconvertConfig {
    /// The interpreter whose nbconvert is used (the venv's `python`).
    pub python: PathBuf,
    /// Wall-clock time a process may take before it is killed.
    pub time_limit: Duration,
    /// Address space of the process (`RLIMIT_AS`), in bytes; `None`: not limited.
    pub memory_limit: Option<u64>,
    /// Largest export (the output and its resource files, or their zip) in bytes.
    pub output_limit: usize,
    /// How many nbconvert processes may run at once; more wait their turn.
    pub concurrency: usize,
    /// The sandbox the formats are listed in (no user's files are needed for that).
    pub listing_sandbox: Sandbox,
}

impl NbconvertConfig {
    /// Defaults for `python`: 60 s, 2 GiB of address space, 100 MiB of output, two at once,
    /// the listing unconfined.
    pub fn new(python: PathBuf) -> Self {
        NbconvertConfig {
            python,
            time_limit: Duration::from_secs(60),
            memory_limit: Some(2 << 30),
            output_limit: 100 << 20,
            concurrency: 2,
            listing_sandbox: Sandbox::direct(),
        }
    }
}

/// One exporter as `GET /api/nbconvert` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Format {
    /// The MIME type of its output (`""` when the exporter does not say).
    pub output_mimetype: String,
}

/// What to convert and how, as jupyter_server builds its `resources`.
#[derive(Clone, Debug, Default)]
pub struct ConvertRequest {
    /// The exporter's name (`html`, `python`, `script`, …).
    pub format: String,
    /// The notebook file's bytes (nbformat JSON; older versions are upgraded to 4).
    pub notebook: Vec<u8>,
    /// The notebook's name without its extension (`resources.metadata.name`, also the name
    /// of the output inside a zip).
    pub name: String,
    /// The last modification as nbconvert shows it (`December 8, 2026`), if known.
    pub modified_date: Option<String>,
    /// The notebook's directory on disk (`resources.metadata.path`), if it has one.
    pub path: Option<PathBuf>,
    /// `sanitize_html` for exporters that have it (`?sanitize_html=` of the GET route).
    pub sanitize_html: Option<bool>,
}

/// A finished export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// The output, or a zip of the output and its resource files when there are any.
    pub bytes: Vec<u8>,
    /// The exporter's output MIME type after the conversion (`script` takes the notebook's
    /// language's); `None` when it does not say.
    pub mime_type: Option<String>,
    /// The output's extension with its dot (`.html`, `.py`).
    pub file_extension: String,
    /// `bytes` is a zip of the output and the resource files (images the export refers
    /// to), as jupyter_server's `respond_zip` makes it.
    pub zipped: bool,
}

impl Converted {
    /// The `Content-Type` jupyter_server sends: `application/zip` for a zip, the exporter's
    /// type with `; charset=utf-8` otherwise, `None` when the exporter has none.
    pub fn content_type(&self) -> Option<String> {
        if self.zipped {
            return Some("application/zip".into());
        }
        self.mime_type
            .as_ref()
            .map(|mime| format!("{mime}; charset=utf-8"))
    }

    /// The download's file name for the notebook file `notebook_name` (`a.ipynb` →
    /// `a.html`, or `a.zip`).
    pub fn file_name(&self, notebook_name: &str) -> String {
        let stem = match notebook_name.rfind('.') {
            Some(dot) if dot > 0 => &notebook_name[..dot],
            _ => notebook_name,
        };
        if self.zipped {
            format!("{stem}.zip")
        } else {
            format!("{stem}{}", self.file_extension)
        }
    }
}

/// The nbconvert service.
pub struct Nbconvert {
    config: NbconvertConfig,
    formats: OnceCell<Arc<BTreeMap<String, Format>>>,
    running: Semaphore,
}

impl Nbconvert {
    /// The service; nothing runs until it is asked.
    pub fn new(config: NbconvertConfig) -> Self {
        let running = Semaphore::new(config.concurrency.max(1));
        Nbconvert {
            config,
            formats: OnceCell::new(),
            running,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &NbconvertConfig {
        &self.config
    }

    /// The exporters the installed nbconvert offers and their output MIME types, by name
    /// (jupyter_server's `GET /api/nbconvert`). Asked once; a failure is not remembered.
    pub async fn formats(&self) -> NbconvertResult<Arc<BTreeMap<String, Format>>> {
        self.formats
            .get_or_try_init(|| async {
                let _turn = self.turn().await?;
                let answer =
                    process::run(&self.config, &self.config.listing_sandbox, "formats", &[])
                        .await?;
                let formats: BTreeMap<String, Format> =
                    serde_json::from_value(answer.header["formats"].clone()).map_err(|e| {
                        NbconvertError::new(
                            Failure::Unavailable,
                            format!("nbconvert listed its exporters in an unknown shape: {e}"),
                        )
                    })?;
                Ok(Arc::new(formats))
            })
            .await
            .cloned()
    }

    /// Convert a notebook in a process started through `sandbox` (the requesting user's, as
    /// for their kernels).
    pub async fn convert(
        &self,
        request: &ConvertRequest,
        sandbox: &Sandbox,
    ) -> NbconvertResult<Converted> {
        // jupyter_server's route takes `\w+`; anything else could name a module to import.
        if request.format.is_empty()
            || !request
                .format
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(NbconvertError::new(
                Failure::UnknownFormat,
                format!("No exporter for format: {}", request.format),
            ));
        }
        let header = serde_json::json!({
            "format": request.format,
            "name": request.name,
            "modified_date": request.modified_date,
            "path": request.path,
            "sanitize_html": request.sanitize_html,
            "output_limit": self.config.output_limit,
        });
        let mut input = serde_json::to_vec(&header).map_err(|e| {
            NbconvertError::new(Failure::Unavailable, format!("cannot encode: {e}"))
        })?;
        input.push(b'\n');
        input.extend_from_slice(&request.notebook);
        let _turn = self.turn().await?;
        let answer = process::run(&self.config, sandbox, "convert", &input).await?;
        let text = |key: &str| answer.header[key].as_str().map(str::to_string);
        Ok(Converted {
            mime_type: text("mimetype").filter(|m| !m.is_empty()),
            file_extension: text("output_extension").unwrap_or_default(),
            zipped: answer.header["zipped"].as_bool().unwrap_or(false),
            bytes: answer.body,
        })
    }

    async fn turn(&self) -> NbconvertResult<tokio::sync::SemaphorePermit<'_>> {
        self.running.acquire().await.map_err(|_| {
            NbconvertError::new(Failure::Unavailable, "the nbconvert service is stopping")
        })
    }
}
