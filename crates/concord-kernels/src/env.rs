//! Which environment variables a client may give a kernel (`POST /api/kernels` `env`).
//!
//! A name is accepted when it is on the allow-list (by default `JPY_SESSION_NAME` and
//! `KERNEL_*`: what jupyter_server's gateway client sends), is well formed, and is not
//! reserved. Reserved names decide where a kernel's files go or how programs find and load
//! code (`HOME`, `TMPDIR`, `JUPYTER_*`, `LD_*`, `PYTHON*`, anything ending in `PATH`, …):
//! the server, the kernelspec or the confinement set them, and no request may, whatever the
//! admin's allow-list says. `KERNEL_*` names are never reserved: no loader or interpreter
//! reads them, only gateway-side launchers (which concord does not have).

/// The allow-list every server starts with.
pub const DEFAULT_ALLOWED: &[&str] = &["JPY_SESSION_NAME", "KERNEL_*"];

/// The prefix jupyter_server's gateway client forwards (every `KERNEL_*` of its environment,
/// `KERNEL_LAUNCH_TIMEOUT` and `KERNEL_WORKING_DIR` always).
const GATEWAY_PREFIX: &str = "KERNEL_";

/// Reserved names.
const RESERVED_NAMES: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "TMPDIR",
    "TMP",
    "TEMP",
    "IFS",
    "ENV",
    "BASH_ENV",
    "JPY_PARENT_PID",
    "IPYTHONDIR",
    "MPLCONFIGDIR",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "NLSPATH",
    "TZDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_OPTIONS",
    "PERL5LIB",
    "PERL5OPT",
    "RUBYLIB",
    "RUBYOPT",
    "R_LIBS",
    "R_LIBS_USER",
    "R_PROFILE",
    "R_PROFILE_USER",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
];

/// Reserved prefixes.
const RESERVED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "PYTHON",
    "JUPYTER",
    "XDG_",
    "BASH_FUNC_",
    "MALLOC_",
    "GLIBC_",
    "GCONV_",
    "CONCORD_",
];

/// Longest name accepted.
const MAX_NAME_BYTES: usize = 256;
/// Longest value accepted.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// Most variables in one request.
pub const MAX_VARIABLES: usize = 128;

/// Whether `name` is reserved (never settable by a request).
pub fn is_reserved(name: &str) -> bool {
    if name.starts_with(GATEWAY_PREFIX) {
        return false;
    }
    RESERVED_NAMES.contains(&name)
        || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || name.ends_with("PATH")
}

/// Whether `name` is a well-formed variable name: ASCII letters, digits and `_`, not
/// starting with a digit.
fn well_formed(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_NAME_BYTES
}

fn matches_entry(entry: &str, name: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => entry == name,
    }
}

/// Check a request's variables against the allow-list; the error says why one is refused.
pub fn check_request(allow: &[String], env: &[(String, String)]) -> Result<(), String> {
    if env.len() > MAX_VARIABLES {
        return Err(format!(
            "too many environment variables for a kernel ({}; at most {MAX_VARIABLES})",
            env.len()
        ));
    }
    for (name, value) in env {
        if !well_formed(name) {
            return Err(format!(
                "invalid environment variable name {name:?}: use ASCII letters, digits and _ \
                 (at most {MAX_NAME_BYTES})"
            ));
        }
        if is_reserved(name) {
            return Err(format!(
                "environment variable {name:?} is reserved: the server sets what decides where \
                 a kernel's files go and how it loads code"
            ));
        }
        if !allow.iter().any(|entry| matches_entry(entry, name)) {
            return Err(format!(
                "environment variable {name:?} may not be set for a kernel (allowed: {})",
                allow.join(", ")
            ));
        }
        if value.contains('\0') {
            return Err(format!(
                "environment variable {name:?} contains a NUL character"
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "environment variable {name:?} is too long ({} bytes; at most {MAX_VALUE_BYTES})",
                value.len()
            ));
        }
    }
    Ok(())
}

/// Check one entry an admin adds to the allow-list (`NAME` or `PREFIX*`): it must be well
/// formed and must not let a request reach a reserved name.
pub fn check_allow_entry(entry: &str) -> Result<(), String> {
    let (stem, is_prefix) = match entry.strip_suffix('*') {
        Some(prefix) => (prefix, true),
        None => (entry, false),
    };
    let stem_ok = if is_prefix {
        stem.is_empty() || well_formed(stem)
    } else {
        well_formed(stem)
    };
    if !stem_ok || stem.contains('*') {
        return Err(format!(
            "{entry:?} is not a variable name or a prefix followed by *"
        ));
    }
    if !is_prefix {
        if is_reserved(stem) {
            return Err(format!(
                "{entry:?} is reserved: kernels get it from the server, never from a request"
            ));
        }
        return Ok(());
    }
    if stem.is_empty() {
        return Err("\"*\" would let requests set any variable, reserved ones too".into());
    }
    let covers = RESERVED_NAMES
        .iter()
        .chain(RESERVED_PREFIXES)
        .any(|reserved| reserved.starts_with(stem) || stem.starts_with(reserved));
    if covers && !stem.starts_with(GATEWAY_PREFIX) {
        return Err(format!(
            "{entry:?} covers reserved variables (HOME, TMPDIR, JUPYTER_*, LD_*, PYTHON*, …)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Vec<String> {
        DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect()
    }

    fn one(name: &str, value: &str) -> Result<(), String> {
        check_request(&allow(), &[(name.to_string(), value.to_string())])
    }

    #[test]
    fn gateway_variables_are_accepted_by_default() {
        for name in [
            "KERNEL_USERNAME",
            "KERNEL_LAUNCH_TIMEOUT",
            "KERNEL_WORKING_DIR",
            "KERNEL_EXTRA_SPARK_OPTS",
            "KERNEL_SOME_PATH",
            "JPY_SESSION_NAME",
        ] {
            one(name, "/some value=with spaces").unwrap();
        }
    }

    #[test]
    fn reserved_malformed_and_unlisted_names_are_refused() {
        for name in [
            "HOME",
            "TMPDIR",
            "JUPYTER_RUNTIME_DIR",
            "LD_PRELOAD",
            "PATH",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "CLASSPATH",
            "BASH_FUNC_x%%",
            "JPY_PARENT_PID",
        ] {
            let e = one(name, "x").unwrap_err();
            assert!(
                e.contains("reserved") || e.contains("invalid"),
                "{name}: {e}"
            );
        }
        for name in ["KERNEL-X", "KERNEL_A=B", "", "1KERNEL", "KERNEL_é"] {
            assert!(one(name, "x").unwrap_err().contains("invalid"), "{name:?}");
        }
        assert!(one("kernel_x", "x").unwrap_err().contains("may not be set"));
        assert!(one("MY_VAR", "x").unwrap_err().contains("may not be set"));
        assert!(one("KERNEL_X", "a\0b").unwrap_err().contains("NUL"));
        assert!(one("KERNEL_X", &"x".repeat(MAX_VALUE_BYTES + 1))
            .unwrap_err()
            .contains("too long"));
        let many: Vec<(String, String)> = (0..=MAX_VARIABLES)
            .map(|i| (format!("KERNEL_{i}"), String::new()))
            .collect();
        assert!(check_request(&allow(), &many)
            .unwrap_err()
            .contains("too many"));
    }

    #[test]
    fn an_allow_list_entry_never_reaches_reserved_names() {
        for ok in ["MY_VAR", "MYAPP_*", "KERNEL_*", "OMP_NUM_THREADS"] {
            check_allow_entry(ok).unwrap();
        }
        for bad in [
            "*",
            "HOME",
            "LD_*",
            "L*",
            "P*",
            "PYTH*",
            "JUPYTER_*",
            "HO*",
            "PATH",
            "A-B",
            "A*B*",
            "",
        ] {
            assert!(check_allow_entry(bad).is_err(), "{bad:?}");
        }
        // An admin's prefix still never sets a reserved name at request time.
        let allow = vec!["MYAPP_*".to_string()];
        check_request(&allow, &[("MYAPP_X".into(), "1".into())]).unwrap();
        assert!(check_request(&allow, &[("MYAPP_PATH".into(), "1".into())]).is_err());
    }
}
