//! `[lab]`: the options of the JupyterLab front end and their merge into its [`LabConfig`].

use concord_contents::ContentsConfig;
use concord_lab::{LabConfig, PageSettings};
use std::path::{Path, PathBuf};

/// Settings of the JupyterLab front end (`[lab]` in the config file).
#[derive(clap::Args, Clone, Debug, Default, serde::Deserialize)]
pub struct LabOptions {
    /// JupyterLab's application directory (`<prefix>/share/jupyter/lab`, holding `static/`,
    /// `schemas/`, `themes/`); default: found with the `python3` on PATH, as jupyterlab_server.
    #[arg(long, env = "CONCORD_LAB_APP_DIR")]
    pub lab_app_dir: Option<PathBuf>,
    /// Directories of federated JupyterLab extensions (`share/jupyter/labextensions`), first
    /// wins; default: Jupyter's data path as the `python3` on PATH reports it.
    #[arg(long, env = "CONCORD_LABEXTENSIONS_DIR", value_delimiter = ',')]
    pub labextensions_dir: Option<Vec<PathBuf>>,
}

super::layered!(LabOptions {
    lab_app_dir,
    labextensions_dir,
});

impl LabOptions {
    /// The front end's configuration: the page config repeats the token (token mode only)
    /// and two settings of the files service.
    pub fn resolve(
        self,
        state_dir: &Path,
        base_url: &str,
        token: Option<String>,
        contents: &ContentsConfig,
    ) -> LabConfig {
        LabConfig {
            app_dir: self.lab_app_dir,
            labextensions_dirs: self.labextensions_dir,
            state_dir: state_dir.to_path_buf(),
            base_url: base_url.to_string(),
            page: PageSettings {
                token,
                allow_hidden_files: contents.allow_hidden,
                delete_to_trash: contents.delete_to_trash,
                disabled_extensions: Vec::new(),
            },
        }
    }
}
