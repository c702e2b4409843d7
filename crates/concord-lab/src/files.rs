//! JupyterLab's files: the built front end (`/static/lab/`), jupyter_server's favicons,
//! federated extensions, themes (with their CSS rebased) and the licenses report. Files are
//! found and opened here and handed over open, so whoever sends one never opens a path.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

use crate::error::{LabError, LabResult};
use crate::{decoded, Lab};

/// How long browsers may keep a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Hashed file names: cache for a year.
    Immutable,
    /// Revalidate every time (304 when unchanged).
    Revalidate,
}

/// A file to send, opened.
#[derive(Debug)]
pub struct LabFile {
    /// The open file, at its start.
    pub file: std::fs::File,
    /// Its metadata when it was opened (size and modification time).
    pub metadata: std::fs::Metadata,
    /// Its media type, guessed from its name (`application/octet-stream` when unknown;
    /// scripts are always `application/javascript`, which module scripts need).
    pub content_type: &'static str,
    /// How long browsers may keep it.
    pub caching: Caching,
}

/// A theme's file: CSS is rewritten (its relative URLs rebased), anything else is sent as it is.
#[derive(Debug)]
pub enum ThemeAsset {
    /// A stylesheet, its relative `url(…)`s pointing into the theme's directory.
    Css(String),
    /// A font, an image, …
    File(LabFile),
}

/// The media type of a script, whatever the MIME table says.
pub const JAVASCRIPT: &str = "application/javascript";

fn not_found() -> LabError {
    LabError::not_found("Not Found")
}

/// The file `rel` (percent-encoded, `/`-separated) under the first root that has it. Hidden
/// and `..` segments are refused, and the file must stay inside its root after symlinks.
fn find_file(roots: &[PathBuf], rel: &str) -> Option<PathBuf> {
    let rel = decoded(rel);
    if rel.is_empty()
        || rel
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.') || seg.contains('\\'))
    {
        return None;
    }
    for root in roots {
        let candidate = root.join(&rel);
        let (Ok(real), Ok(real_root)) = (candidate.canonicalize(), root.canonicalize()) else {
            continue;
        };
        if real.starts_with(&real_root) && real.is_file() {
            return Some(real);
        }
    }
    None
}

/// Open a file [`find_file`] found.
fn open(path: &Path, caching: Caching) -> LabResult<LabFile> {
    let file = std::fs::File::open(path).map_err(|_| not_found())?;
    let metadata = file.metadata().map_err(|_| not_found())?;
    let content_type = if path.extension().is_some_and(|e| e == "js" || e == "mjs") {
        JAVASCRIPT
    } else {
        mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("application/octet-stream")
    };
    Ok(LabFile {
        file,
        metadata,
        content_type,
        caching,
    })
}

fn find_and_open(roots: &[PathBuf], rel: &str, caching: Caching) -> LabResult<LabFile> {
    let path = find_file(roots, rel).ok_or_else(not_found)?;
    open(&path, caching)
}

/// Relative `url('x')` in a theme's CSS → `{themesUrl}/{dir}/x` (jupyterlab_server's
/// `ThemesHandler`), so fonts and images load from the theme's own directory.
fn rewrite_css_urls(css: &str, base: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(pos) = rest.find("url(") {
        out.push_str(&rest[..pos + 4]);
        rest = &rest[pos + 4..];
        let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"');
        let (open, body) = match quote {
            Some(q) => (q.to_string(), &rest[1..]),
            None => (String::new(), rest),
        };
        let end = match quote {
            Some(q) => body.find(q),
            None => body.find(')'),
        };
        let Some(end) = end else {
            continue;
        };
        let target = &body[..end];
        let relative = !(target.starts_with('/')
            || target.starts_with('#')
            || target.contains(':')
            || target.is_empty());
        out.push_str(&open);
        if relative {
            out.push_str(base);
            out.push('/');
        }
        out.push_str(target);
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

fn read_json_file(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Files answer "Not Found" and nothing more when JupyterLab is missing: they are public.
impl Lab {
    /// `/static/{rel}`: JupyterLab's built app under `lab/`, jupyter_server's favicons under
    /// `favicons/` (`rel` percent-encoded as in the URL). Blocking.
    pub fn static_file(&self, rel: &str) -> LabResult<LabFile> {
        let i = self.install().map_err(|_| not_found())?;
        if let Some(rel) = rel.strip_prefix("lab/") {
            find_and_open(std::slice::from_ref(&i.static_dir), rel, Caching::Immutable)
        } else if let Some(rel) = rel.strip_prefix("favicons/") {
            let roots: Vec<PathBuf> = i.favicons_dir.iter().cloned().collect();
            find_and_open(&roots, rel, Caching::Revalidate)
        } else {
            Err(not_found())
        }
    }

    /// `/favicon.ico`: jupyter_server's. Blocking.
    pub fn favicon(&self) -> LabResult<LabFile> {
        let i = self.install().map_err(|_| not_found())?;
        let roots: Vec<PathBuf> = i.favicons_dir.iter().cloned().collect();
        find_and_open(&roots, "favicon.ico", Caching::Revalidate)
    }

    /// `/lab/extensions/{rel}`: a federated extension's file (the first extension directory
    /// holding it wins); its `static/` files have hashed names and may be kept for a year.
    /// Blocking.
    pub fn extension_file(&self, rel: &str) -> LabResult<LabFile> {
        let i = self.install().map_err(|_| not_found())?;
        let caching = if rel.split('/').any(|s| s == "static") {
            Caching::Immutable
        } else {
            Caching::Revalidate
        };
        find_and_open(&i.labextensions, rel, caching)
    }

    /// `/lab/api/themes/{rel}`: a theme's file (extensions' themes, then the core's). CSS
    /// comes back rewritten so that its fonts and images load from the theme's own
    /// directory, as jupyterlab_server's `ThemesHandler`. Blocking.
    pub fn theme(&self, rel: &str) -> LabResult<ThemeAsset> {
        let i = self.install().map_err(|_| not_found())?;
        let path = find_file(&i.theme_roots, rel).ok_or_else(not_found)?;
        if path.extension().is_none_or(|e| e != "css") {
            return open(&path, Caching::Revalidate).map(ThemeAsset::File);
        }
        let css = std::fs::read_to_string(&path).map_err(|_| not_found())?;
        let decoded_rel = decoded(rel);
        let dir = decoded_rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let base = format!("{}lab/api/themes/{}", self.base_url, dir);
        Ok(ThemeAsset::Css(rewrite_css_urls(
            &css,
            base.trim_end_matches('/'),
        )))
    }

    /// The third-party licenses of the front end and of each federated extension (Help →
    /// Licenses), in jupyterlab_server's JSON report format; `bundle` keeps one bundle only.
    /// Blocking.
    pub fn licenses(&self, bundle: Option<&str>) -> LabResult<Value> {
        let i = self.install()?;
        let mut sources: Vec<(String, PathBuf)> = i.extension_dirs.clone();
        let app_name = read_json_file(&i.static_dir.join("package.json"))
            .and_then(|p| p.get("name").and_then(Value::as_str).map(String::from));
        if let Some(name) = app_name {
            sources.push((name, i.static_dir.clone()));
        }
        let mut bundles = Map::new();
        for (name, dir) in sources {
            if bundle.is_some_and(|w| w != name) {
                continue;
            }
            let mut packages = Vec::new();
            for file in [
                "third-party-licenses.json",
                "static/third-party-licenses.json",
            ] {
                if let Some(list) = read_json_file(&dir.join(file))
                    .and_then(|v| v.get("packages").and_then(Value::as_array).cloned())
                {
                    packages.extend(list);
                }
            }
            bundles.insert(name, json!({ "packages": packages }));
        }
        Ok(json!({ "bundles": bundles }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_urls_are_rebased() {
        let css = "a{background:url('img/x.png')} b{src:url(\"/abs.woff\")} c{x:url(data:image/png;base64,AA)} d{y:url(f.svg)}";
        let out = rewrite_css_urls(css, "/lab/api/themes/@x/t");
        assert!(
            out.contains("url('/lab/api/themes/@x/t/img/x.png')"),
            "{out}"
        );
        assert!(out.contains("url(\"/abs.woff\")"), "{out}");
        assert!(out.contains("url(data:image/png;base64,AA)"), "{out}");
        assert!(out.contains("url(/lab/api/themes/@x/t/f.svg)"), "{out}");
    }
}
