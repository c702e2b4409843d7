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

/// Whether `ext` is an extension whose type depends on nothing else: neither an encoding
/// (`.gz`: the type is the base's) nor a suffix standing for two (`.tgz`).
fn is_plain(ext: &str) -> bool {
    !ext.is_empty()
        && !ENCODINGS.contains(&ext)
        && !SUFFIX_MAP.iter().any(|(s, _)| s.eq_ignore_ascii_case(ext))
}

/// `guess_type` for many names in a row (a listing): the last plain extension's answer is
/// kept, since a directory's names mostly share a few extensions.
#[derive(Default)]
pub struct Memo {
    ext: String,
    mimetype: Option<&'static str>,
}

impl Memo {
    /// The same answer as [`guess_type`].
    pub fn guess_type(&mut self, path: &str) -> Option<&'static str> {
        let (_, ext) = splitext(path);
        if !is_plain(ext) {
            return guess_type(path);
        }
        if self.ext != ext {
            self.ext.clear();
            self.ext.push_str(ext);
            self.mimetype = guess_type(path);
        }
        self.mimetype
    }
}

/// The mimetype Python's `mimetypes.guess_type(path)[0]` gives, or `None`.
pub fn guess_type(path: &str) -> Option<&'static str> {
    let (base, ext) = splitext(path);
    // Fast path: most names have a plain extension with a direct entry.
    let plain = is_plain(ext);
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

    #[test]
    fn memo_answers_like_guess_type() {
        let names = [
            "a.txt",
            "b.txt",
            "c.py",
            "d.txt",
            "e.TXT",
            "f.tar.gz",
            "g.gz",
            "h.tgz",
            "i.TGZ",
            "j.svgz",
            "k.txt.gz",
            "l",
            ".bashrc",
            "m.ipynb",
            "n.unknownext",
            "o.PY",
            "p.txt",
            "q.tar.bz2",
            "r.Z",
            "s.z",
            "t.tz",
            "u.json",
            "v.json",
        ];
        let mut memo = Memo::default();
        for name in names.iter().chain(names.iter().rev()) {
            assert_eq!(memo.guess_type(name), guess_type(name), "{name}");
        }
    }
}
