//! The admin-facing policy file (TOML): roles, bindings and denies, parsed with every error
//! collected and located (`file:line:col: message`).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::limits::{LimitRule, LimitedKind};
use crate::model::{Action, ResourceType};

/// One problem found in a policy file, located by file, line and column (both 1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// The file's name as the admin gave it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong, in words an admin understands.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for PolicyError {}

/// Turns byte offsets into 1-based (line, column) pairs.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, line_starts }
    }

    /// The (line, column) of byte `offset`, clamped to the text.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line + 1, column + 1)
    }
}

/// Which actions a permission covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Only resources the caller created.
    Own,
    /// Resources whose creator shares a group with the caller (and the caller's own).
    Group,
    /// Every instance.
    Any,
}

impl Scope {
    /// The word used in permission strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Own => "own",
            Scope::Group => "group",
            Scope::Any => "any",
        }
    }
}

/// One permission: some actions on some resource types, with a scope for owned types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The resource types covered (all of them for `*`).
    pub kinds: Vec<ResourceType>,
    /// The actions covered (all three for `*`).
    pub actions: Vec<Action>,
    /// For owned types (kernels, sessions, terminals): whose instances.
    pub scope: Scope,
    /// The permission as written, for messages.
    pub text: String,
}

impl Permission {
    /// Parse `type:action` or `type:action:scope`; `default_scope` applies when no scope is given.
    pub fn parse(text: &str, default_scope: Scope) -> Result<Permission, String> {
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(format!(
                "permission {text:?} must look like \"type:action\" or \"type:action:scope\" (e.g. \"contents:read\", \"kernels:*:own\")"
            ));
        }
        let kinds: Vec<ResourceType> = if parts[0] == "*" {
            ResourceType::ALL.to_vec()
        } else {
            vec![parts[0]
                .parse::<ResourceType>()
                .map_err(|e| format!("in permission {text:?}: {e}"))?]
        };
        let actions: Vec<Action> = if parts[1] == "*" {
            Action::ALL.to_vec()
        } else {
            vec![parts[1]
                .parse::<Action>()
                .map_err(|e| format!("in permission {text:?}: {e}"))?]
        };
        let scope = match parts.get(2) {
            None => default_scope,
            Some(s) => {
                let scope = match *s {
                    "own" => Scope::Own,
                    "group" => Scope::Group,
                    "any" => Scope::Any,
                    other => {
                        return Err(format!(
                            "in permission {text:?}: unknown scope {other:?} (expected own, group or any)"
                        ))
                    }
                };
                if parts[0] != "*" && !kinds[0].is_owned() {
                    return Err(format!(
                        "in permission {text:?}: a scope only applies to kernels, sessions and terminals"
                    ));
                }
                scope
            }
        };
        Ok(Permission {
            kinds,
            actions,
            scope,
            text: text.to_string(),
        })
    }
}

/// A path pattern: an exact canonical path or a subtree, possibly naming `{username}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathPattern {
    /// Exactly this path (`/a/b.ipynb`).
    Exact(String),
    /// This path and everything below it, by whole segments (`/a/**`; `/**` is everything).
    Subtree(String),
}

/// The placeholder replaced by the caller's username.
pub const USERNAME_PLACEHOLDER: &str = "{username}";

impl PathPattern {
    /// Parse a pattern as written in a policy file.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let bad = |why: &str| {
            Err(format!(
                "bad path pattern {text:?}: {why} (expected an absolute path like \"/a/b.ipynb\", or a subtree like \"/a/**\" or \"/**\"; {{username}} may stand for the caller's name)"
            ))
        };
        if !text.starts_with('/') {
            return bad("it must start with /");
        }
        let (base, subtree) = match text.strip_suffix("/**") {
            Some(base) => (base, true),
            None => (text, false),
        };
        let base = if base.is_empty() { "/" } else { base };
        if base != "/" {
            if base.ends_with('/') {
                return bad(
                    "it must not end with / (write /dir/** for a directory and everything in it)",
                );
            }
            for segment in base[1..].split('/') {
                match segment {
                    "" => return bad("empty path segment (//)"),
                    "." | ".." => return bad("'.' and '..' are not allowed"),
                    s if s.contains('*') => {
                        return bad("'*' is only allowed as a whole final '/**'")
                    }
                    s if s.contains('\0') => return bad("NUL byte"),
                    s if s.contains(USERNAME_PLACEHOLDER) && s != USERNAME_PLACEHOLDER => {
                        return bad("{username} must be a whole path segment")
                    }
                    s if (s.contains('{') || s.contains('}')) && s != USERNAME_PLACEHOLDER => {
                        return bad("the only placeholder is {username}")
                    }
                    _ => {}
                }
            }
        } else if !subtree {
            // A bare "/" names only the root directory itself.
            return Ok(PathPattern::Exact("/".to_string()));
        }
        Ok(if subtree {
            PathPattern::Subtree(base.to_string())
        } else {
            PathPattern::Exact(base.to_string())
        })
    }

    /// The pattern's base path (the path itself, or the subtree's root).
    pub fn base(&self) -> &str {
        match self {
            PathPattern::Exact(p) | PathPattern::Subtree(p) => p,
        }
    }

    /// Whether the pattern mentions `{username}`.
    pub fn has_username(&self) -> bool {
        self.base().contains(USERNAME_PLACEHOLDER)
    }

    /// The pattern with `{username}` replaced. `None` when the username cannot stand as one
    /// path segment (then the pattern matches nothing for that user).
    pub fn for_user(&self, username: &str) -> Option<PathPattern> {
        if !self.has_username() {
            return Some(self.clone());
        }
        if username.is_empty() || username == "." || username == ".." || username.contains('/') {
            return None;
        }
        let base = self.base().replace(USERNAME_PLACEHOLDER, username);
        Some(match self {
            PathPattern::Exact(_) => PathPattern::Exact(base),
            PathPattern::Subtree(_) => PathPattern::Subtree(base),
        })
    }

    /// Whether a canonical path matches (the pattern must have no `{username}` left).
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Subtree(p) => {
                p == "/"
                    || p == path
                    || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(p) => f.write_str(p),
            PathPattern::Subtree(p) if p == "/" => f.write_str("/**"),
            PathPattern::Subtree(p) => write!(f, "{p}/**"),
        }
    }
}

/// Who a binding or deny applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subjects {
    /// Every authenticated user.
    pub everyone: bool,
    /// Usernames.
    pub users: Vec<String>,
    /// Group names.
    pub groups: Vec<String>,
}

impl Subjects {
    /// Whether a caller with this username and these groups is among the subjects.
    pub fn includes(&self, username: &str, groups: &[String]) -> bool {
        self.everyone
            || self.users.iter().any(|u| u == username)
            || self.groups.iter().any(|g| groups.contains(g))
    }
}

impl fmt::Display for Subjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.everyone {
            return f.write_str("everyone");
        }
        let mut parts: Vec<String> = self.users.clone();
        parts.extend(self.groups.iter().map(|g| format!("group {g}")));
        f.write_str(&parts.join(", "))
    }
}

/// A named set of permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    /// The role's name.
    pub name: String,
    /// What it grants.
    pub permissions: Vec<Permission>,
    /// Line of its `[roles.NAME]` header.
    pub line: usize,
}

/// A grant of a role to some subjects, optionally limited to some paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The role granted (it exists: checked at load).
    pub role: String,
    /// To whom.
    pub subjects: Subjects,
    /// Path limits; empty means no limit.
    pub paths: Vec<PathPattern>,
    /// Line of the `[[bindings]]` header.
    pub line: usize,
}

/// An explicit denial, which beats any grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    /// To whom.
    pub subjects: Subjects,
    /// What is denied (scope defaults to `any`).
    pub permissions: Vec<Permission>,
    /// Path limits; empty means no limit.
    pub paths: Vec<PathPattern>,
    /// Line of the `[[deny]]` header.
    pub line: usize,
}

/// A parsed and validated policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The file name shown in messages and rule annotations.
    pub file: String,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
    /// Grants, in file order.
    pub bindings: Vec<Binding>,
    /// Denials, in file order.
    pub denies: Vec<Deny>,
    /// Per-user limits (`[[limits]]`), in file order.
    pub limits: Vec<LimitRule>,
}

struct Ctx<'a> {
    file: &'a str,
    lines: LineIndex<'a>,
    errors: Vec<PolicyError>,
}

impl Ctx<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = self.lines.position(span.start);
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.lines.position(span.start).0
    }

    fn string_list(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Vec<Spanned<String>> {
        let mut out = Vec::new();
        match value.get_ref() {
            DeValue::Array(items) => {
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(Spanned::new(item.span(), s.to_string())),
                        _ => self.error(item.span(), format!("{key} must be a list of strings")),
                    }
                }
            }
            _ => self.error(
                value.span(),
                format!("{key} must be a list of strings, e.g. {key} = [\"…\"]"),
            ),
        }
        out
    }

    fn subjects_and_paths(
        &mut self,
        what: &str,
        table: &DeTable<'_>,
        header: Range<usize>,
        extra_keys: &[&str],
    ) -> (Subjects, Vec<PathPattern>) {
        let mut subjects = Subjects::default();
        let mut paths = Vec::new();
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "users" | "groups" => {
                    let names = self.string_list(key.get_ref(), value);
                    for name in names {
                        if name.get_ref().trim().is_empty() {
                            self.error(name.span(), format!("empty name in {}", key.get_ref()));
                        }
                        if key.get_ref() == "users" {
                            subjects.users.push(name.into_inner());
                        } else {
                            subjects.groups.push(name.into_inner());
                        }
                    }
                }
                "everyone" => match value.get_ref() {
                    DeValue::Boolean(b) => subjects.everyone = *b,
                    _ => self.error(value.span(), "everyone must be true or false"),
                },
                "paths" => {
                    for pattern in self.string_list("paths", value) {
                        match PathPattern::parse(pattern.get_ref()) {
                            Ok(p) => paths.push(p),
                            Err(e) => self.error(pattern.span(), e),
                        }
                    }
                    if matches!(value.get_ref(), DeValue::Array(a) if a.is_empty()) {
                        self.error(
                            value.span(),
                            "paths = [] would match nothing; leave paths out to mean everywhere",
                        );
                    }
                }
                k if extra_keys.contains(&k) => {}
                other => self.error(
                    key.span(),
                    format!(
                        "unknown key {other:?} in {what} (expected {})",
                        ["users", "groups", "everyone", "paths"]
                            .iter()
                            .chain(extra_keys)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if !subjects.everyone && subjects.users.is_empty() && subjects.groups.is_empty() {
            self.error(
                header,
                format!("{what} names nobody: give users, groups or everyone = true"),
            );
        }
        (subjects, paths)
    }
}

fn array_of_tables<'a, 'i>(
    ctx: &mut Ctx<'_>,
    key: &str,
    value: &'a Spanned<DeValue<'i>>,
) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .filter_map(|item| match item.get_ref() {
                DeValue::Table(t) => Some((t, item.span())),
                _ => {
                    ctx.error(item.span(), format!("each {key} entry must be a table"));
                    None
                }
            })
            .collect(),
        _ => {
            ctx.error(
                value.span(),
                format!("{key} must be written as [[{key}]] tables"),
            );
            Vec::new()
        }
    }
}

/// Where a table's header starts: `[[bindings]]` / `[roles.x]` tables are located by the
/// nearest header line at or above their span; inline tables by their own span.
fn header_span(text: &str, span: Range<usize>) -> Range<usize> {
    let start = span.start.min(text.len());
    if text[start..].starts_with('{') {
        return span;
    }
    let mut line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    loop {
        if text[line_start..].trim_start().starts_with('[') || line_start == 0 {
            return line_start..line_start + 1;
        }
        line_start = text[..line_start - 1]
            .rfind('\n')
            .map(|i| i + 1)
            .unwrap_or(0);
    }
}

impl Policy {
    /// Parse and validate a policy file's text; `file` names it in errors and annotations.
    /// Every error found is returned, sorted by position.
    pub fn parse(file: &str, text: &str) -> Result<Policy, Vec<PolicyError>> {
        let mut ctx = Ctx {
            file,
            lines: LineIndex::new(text),
            errors: Vec::new(),
        };
        let (document, syntax_errors) = DeTable::parse_recoverable(text);
        for e in &syntax_errors {
            let span = e.span().unwrap_or(0..0);
            ctx.error(
                span,
                format!("TOML syntax: {}", e.message().trim_end().replace('\n', " ")),
            );
        }
        let mut policy = Policy {
            file: file.to_string(),
            roles: BTreeMap::new(),
            bindings: Vec::new(),
            denies: Vec::new(),
            limits: Vec::new(),
        };
        if !syntax_errors.is_empty() {
            return Err(ctx.errors);
        }
        let mut role_refs: Vec<(Spanned<String>, usize)> = Vec::new();
        for (key, value) in document.get_ref().iter() {
            match key.get_ref().as_ref() {
                "roles" => {
                    let DeValue::Table(roles) = value.get_ref() else {
                        ctx.error(value.span(), "roles must be tables: [roles.NAME]");
                        continue;
                    };
                    for (name, role) in roles.iter() {
                        let header = header_span(text, name.span());
                        let DeValue::Table(role_table) = role.get_ref() else {
                            ctx.error(role.span(), format!("role {:?} must be a table with permissions = [...]", name.get_ref()));
                            continue;
                        };
                        let mut permissions = Vec::new();
                        let mut saw_permissions = false;
                        for (k, v) in role_table.iter() {
                            match k.get_ref().as_ref() {
                                "permissions" => {
                                    saw_permissions = true;
                                    for p in ctx.string_list("permissions", v) {
                                        match Permission::parse(p.get_ref(), Scope::Own) {
                                            Ok(p) => permissions.push(p),
                                            Err(e) => ctx.error(p.span(), e),
                                        }
                                    }
                                }
                                "description" => {
                                    if !v.get_ref().is_str() {
                                        ctx.error(v.span(), "description must be a string");
                                    }
                                }
                                other => ctx.error(
                                    k.span(),
                                    format!("unknown key {other:?} in role {:?} (expected permissions, description)", name.get_ref()),
                                ),
                            }
                        }
                        if !saw_permissions {
                            ctx.error(
                                name.span(),
                                format!("role {:?} has no permissions = [...]", name.get_ref()),
                            );
                        }
                        let line = ctx.line(&header);
                        policy.roles.insert(
                            name.get_ref().to_string(),
                            Role {
                                name: name.get_ref().to_string(),
                                permissions,
                                line,
                            },
                        );
                    }
                }
                "bindings" => {
                    for (table, span) in array_of_tables(&mut ctx, "bindings", value) {
                        let header = header_span(text, span);
                        let (subjects, paths) =
                            ctx.subjects_and_paths("binding", table, header.clone(), &["role"]);
                        let role = match table.get("role") {
                            Some(v) => match v.get_ref() {
                                DeValue::String(s) => {
                                    Some(Spanned::new(v.span(), s.to_string()))
                                }
                                _ => {
                                    ctx.error(v.span(), "role must be a role's name (a string)");
                                    None
                                }
                            },
                            None => {
                                ctx.error(header.clone(), "binding has no role = \"…\"");
                                None
                            }
                        };
                        let line = ctx.line(&header);
                        if let Some(role) = role {
                            role_refs.push((role.clone(), policy.bindings.len()));
                            policy.bindings.push(Binding {
                                role: role.into_inner(),
                                subjects,
                                paths,
                                line,
                            });
                        }
                    }
                }
                "deny" => {
                    for (table, span) in array_of_tables(&mut ctx, "deny", value) {
                        let header = header_span(text, span);
                        let (subjects, paths) = ctx.subjects_and_paths(
                            "deny",
                            table,
                            header.clone(),
                            &["permissions"],
                        );
                        let mut permissions = Vec::new();
                        match table.get("permissions") {
                            Some(v) => {
                                for p in ctx.string_list("permissions", v) {
                                    match Permission::parse(p.get_ref(), Scope::Any) {
                                        Ok(p) => permissions.push(p),
                                        Err(e) => ctx.error(p.span(), e),
                                    }
                                }
                            }
                            None => ctx.error(header.clone(), "deny has no permissions = [...]"),
                        }
                        let line = ctx.line(&header);
                        policy.denies.push(Deny {
                            subjects,
                            permissions,
                            paths,
                            line,
                        });
                    }
                }
                "limits" => {
                    for (table, span) in array_of_tables(&mut ctx, "limits", value) {
                        let header = header_span(text, span);
                        let keys: Vec<&str> =
                            LimitedKind::ALL.iter().map(|k| k.as_str()).collect();
                        let (subjects, paths) =
                            ctx.subjects_and_paths("limits", table, header.clone(), &keys);
                        if !paths.is_empty() {
                            if let Some(v) = table.get("paths") {
                                ctx.error(
                                    v.span(),
                                    "limits count per user wherever things run: paths are not allowed here",
                                );
                            }
                        }
                        let mut maxima = Vec::new();
                        for kind in LimitedKind::ALL {
                            let Some(v) = table.get(kind.as_str()) else {
                                continue;
                            };
                            match v.get_ref() {
                                DeValue::Integer(i) => {
                                    match u32::from_str_radix(i.as_str(), i.radix()) {
                                        Ok(n) => maxima.push((kind, Some(n))),
                                        Err(_) => ctx.error(
                                            v.span(),
                                            format!(
                                                "{} must be a whole number from 0 to {} or \"unlimited\"",
                                                kind.as_str(),
                                                u32::MAX
                                            ),
                                        ),
                                    }
                                }
                                DeValue::String(s) if s.as_ref() == "unlimited" => {
                                    maxima.push((kind, None))
                                }
                                _ => ctx.error(
                                    v.span(),
                                    format!(
                                        "{} must be a whole number or \"unlimited\", e.g. {} = 2",
                                        kind.as_str(),
                                        kind.as_str()
                                    ),
                                ),
                            }
                        }
                        if maxima.is_empty() {
                            ctx.error(
                                header.clone(),
                                format!("limits sets nothing: give at least one of {}", keys.join(", ")),
                            );
                        }
                        let line = ctx.line(&header);
                        policy.limits.push(LimitRule {
                            subjects,
                            maxima,
                            line,
                        });
                    }
                }
                other => ctx.error(
                    key.span(),
                    format!("unknown top-level key {other:?} (expected [roles.NAME], [[bindings]], [[deny]] or [[limits]])"),
                ),
            }
        }
        for (role, _) in &role_refs {
            if !policy.roles.contains_key(role.get_ref()) {
                let known: Vec<&str> = policy.roles.keys().map(String::as_str).collect();
                ctx.error(
                    role.span(),
                    format!(
                        "unknown role {:?} (defined roles: {})",
                        role.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
        if ctx.errors.is_empty() {
            Ok(policy)
        } else {
            ctx.errors.sort_by_key(|e| (e.line, e.column));
            Err(ctx.errors)
        }
    }
}
