//! `mimetypes.guess_type` as jupyter_server calls it (strict table, suffix and encoding maps).

#[path = "mimetypes_table.rs"]
mod table;

const SUFFIX_MAP: &[(&str, &str)] = &[
    (".svgz", ".svg.gz"),
    (".tgz", ".tar.gz"),
    (".taz", ".tar.gz"),
    (".tz", ".tar.gz"),
    (".tbz2", ".tar.bz2"),
    (".txz", ".tar.xz"),
];
const ENCODINGS: &[&str] = &[".gz", ".Z", ".bz2", ".xz", ".br"];

/// `posixpath.splitext`: the extension of the last segment, ignoring leading dots.
fn splitext(path: &str) -> (&str, &str) {
    let name_start = path.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name = &path[name_start..];
    let leading_dots = name.len() - name.trim_start_matches('.').len();
    match name[leading_dots..].rfind('.') {
        Some(i) => path.split_at(name_start + leading_dots + i),
        None => (path, ""),
    }
}

fn lookup(ext: &str) -> Option<&'static str> {
    table::TYPES
        .binary_search_by(|(e, _)| (*e).cmp(ext))
        .ok()
        .map(|i| table::TYPES[i].1)
}

/// The mimetype Python's `mimetypes.guess_type(path)[0]` gives, or `None`.
pub fn guess_type(path: &str) -> Option<&'static str> {
    let (base, ext) = splitext(path);
    // Fast path: most names have a plain extension with a direct entry.
    let plain = !ext.is_empty()
        && !ENCODINGS.contains(&ext)
        && !SUFFIX_MAP.iter().any(|(s, _)| s.eq_ignore_ascii_case(ext));
    if plain {
        if let Some(t) = lookup(ext) {
            return Some(t);
        }
    }
    let (mut base, mut ext) = (base.to_string(), ext.to_string());
    while let Some((_, replacement)) = SUFFIX_MAP.iter().find(|(s, _)| *s == ext.to_lowercase()) {
        let joined = format!("{base}{replacement}");
        let (b, e) = splitext(&joined);
        (base, ext) = (b.to_string(), e.to_string());
    }
    if ENCODINGS.contains(&ext.as_str()) {
        let (_, e) = splitext(&base);
        ext = e.to_string();
    }
    lookup(&ext).or_else(|| lookup(&ext.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_like_python() {
        assert_eq!(guess_type("/r/a.py"), Some("text/x-python"));
        assert_eq!(guess_type("/r/a.ipynb"), None);
        assert_eq!(guess_type("/r/a.txt"), Some("text/plain"));
        assert_eq!(guess_type("/r/a.TXT"), Some("text/plain"));
        assert_eq!(guess_type("/r/a.tar.gz"), Some("application/x-tar"));
        assert_eq!(guess_type("/r/a.gz"), None);
        assert_eq!(guess_type("/r/.bashrc"), None);
        assert_eq!(guess_type("/r/a.js"), Some("application/javascript"));
        assert_eq!(guess_type("/r/noext"), None);
    }
}
