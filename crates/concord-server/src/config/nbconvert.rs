//! `[nbconvert]`: the options of exports (`/api/nbconvert`, `/nbconvert/…`) and their merge
//! into the service's [`NbconvertConfig`].

use concord_nbconvert::NbconvertConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of exports (`[nbconvert]` in the config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NbconvertOptions {
    /// Offer exports (File → Save and Export Notebook As) with the installed nbconvert
    /// (default true); off, `/api/nbconvert` lists no format.
    #[arg(
        id = "nbconvert_enabled",
        long = "nbconvert",
        env = "CONCORD_NBCONVERT"
    )]
    pub enabled: Option<bool>,
    /// The Python whose nbconvert converts (default: the `python3` on PATH, as for kernels).
    #[arg(
        id = "nbconvert_python",
        long = "nbconvert-python",
        env = "CONCORD_NBCONVERT_PYTHON"
    )]
    pub python: Option<PathBuf>,
    /// Seconds a conversion may take before it is stopped (default 60).
    #[arg(
        id = "nbconvert_time_limit",
        long = "nbconvert-time-limit",
        env = "CONCORD_NBCONVERT_TIME_LIMIT"
    )]
    pub time_limit: Option<u64>,
    /// Address space of a conversion's process, in bytes (default 2 GiB; 0: not limited).
    #[arg(
        id = "nbconvert_memory_limit",
        long = "nbconvert-memory-limit",
        env = "CONCORD_NBCONVERT_MEMORY_LIMIT"
    )]
    pub memory_limit: Option<u64>,
    /// The largest export (output and its resource files), in bytes (default 100 MiB).
    #[arg(
        id = "nbconvert_output_limit",
        long = "nbconvert-output-limit",
        env = "CONCORD_NBCONVERT_OUTPUT_LIMIT"
    )]
    pub output_limit: Option<usize>,
    /// How many conversions may run at once; more wait their turn (default 2).
    #[arg(
        id = "nbconvert_concurrency",
        long = "nbconvert-concurrency",
        env = "CONCORD_NBCONVERT_CONCURRENCY"
    )]
    pub concurrency: Option<usize>,
}

super::layered!(NbconvertOptions {
    enabled,
    python,
    time_limit,
    memory_limit,
    output_limit,
    concurrency,
});

impl NbconvertOptions {
    /// The service's configuration (defaults applied, values checked), or `None` when
    /// exports are switched off. Its listing sandbox is set when the service starts, from
    /// the confinement.
    pub fn resolve(self) -> anyhow::Result<Option<NbconvertConfig>> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let python = match self.python {
            Some(python) => python,
            None => concord_kernels::python_prefix_on_path()
                .map(|prefix| prefix.join("bin").join("python3"))
                .unwrap_or_else(|| PathBuf::from("python3")),
        };
        let mut config = NbconvertConfig::new(python);
        if let Some(secs) = self.time_limit {
            config.time_limit =
                super::at_least_a_second("nbconvert-time-limit", Some(secs), Duration::ZERO)?;
        }
        match self.memory_limit {
            Some(0) => config.memory_limit = None,
            Some(bytes) => config.memory_limit = Some(bytes),
            None => {}
        }
        config.output_limit = super::at_least_1024(
            "nbconvert-output-limit",
            self.output_limit,
            config.output_limit,
        )?;
        match self.concurrency {
            Some(0) => anyhow::bail!("--nbconvert-concurrency must be at least 1"),
            Some(n) => config.concurrency = n,
            None => {}
        }
        Ok(Some(config))
    }
}
