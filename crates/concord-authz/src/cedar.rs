//! Compiling the TOML policy to Cedar, loading raw `.cedar` policies, and validating both
//! against Concord's schema (strict mode).

use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{
    ActionConstraint, EntityUid, PolicyId, PolicySet, PrincipalConstraint, ResourceConstraint,
    Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::model::{Action, ResourceType};
use crate::policy::{LineIndex, PathPattern, Policy, PolicyError, Scope, Subjects};

/// Concord's Cedar schema, as shipped.
pub const CEDAR_SCHEMA: &str = include_str!("../schema/concord.cedarschema");

/// The parsed schema; it is part of the crate, so failing to parse it is a build defect that
/// the crate's tests catch.
pub(crate) fn schema() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Schema::from_cedarschema_str(CEDAR_SCHEMA)
                .map(|(schema, _warnings)| schema)
                .map_err(|e| format!("Concord's Cedar schema does not parse: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The Cedar entity type that models a resource type.
pub fn cedar_type(kind: ResourceType) -> &'static str {
    match kind {
        ResourceType::Api => "Api",
        ResourceType::Config => "Config",
        ResourceType::Contents => "Contents",
        ResourceType::Csp => "Csp",
        ResourceType::Events => "Events",
        ResourceType::Kernels => "Kernels",
        ResourceType::Kernelspecs => "Kernelspecs",
        ResourceType::Nbconvert => "Nbconvert",
        ResourceType::Server => "Server",
        ResourceType::Sessions => "Sessions",
        ResourceType::Terminals => "Terminals",
    }
}

/// Whether rules' `paths` limit this resource type.
pub(crate) fn carries_path(kind: ResourceType) -> bool {
    kind == ResourceType::Contents || kind.is_owned()
}

/// Whether a rule of type `kind` with these (substituted) patterns has a path condition in
/// its Cedar form. The engine's path index relies on this being exactly what `render` writes.
pub(crate) fn limits_paths(kind: ResourceType, paths: &[PathPattern]) -> bool {
    carries_path(kind)
        && !paths.is_empty()
        && !paths
            .iter()
            .any(|p| matches!(p, PathPattern::Subtree(b) if b == "/"))
}

/// A Cedar string literal.
pub(crate) fn cedar_string(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, pattern: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '*' if pattern => out.push_str("\\*"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Permit or forbid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    Permit,
    Forbid,
}

/// One Cedar policy compiled from a binding or deny, for one resource type.
#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    /// Cedar policy id (`b3.contents.own`, `d0.kernels.any`): unique in the set.
    pub id: String,
    pub effect: Effect,
    pub subjects: Subjects,
    pub kind: ResourceType,
    pub actions: Vec<Action>,
    pub scope: Scope,
    /// Path limits (only for path-carrying types); empty means none.
    pub paths: Vec<PathPattern>,
    /// `policy.toml:14: binding "editor" for alice on /projects/a/**`.
    pub annotation: String,
}

impl CompiledRule {
    /// Whether slicing must substitute `{username}`.
    pub fn has_username(&self) -> bool {
        self.paths.iter().any(PathPattern::has_username)
    }

    /// The rule's patterns for one user (`None`: unsubstituted); `None` when no pattern can
    /// apply to that user, so the rule is left out of their slice.
    pub fn paths_for(&self, username: Option<&str>) -> Option<Vec<PathPattern>> {
        match username {
            None => Some(self.paths.clone()),
            Some(user) => {
                let paths: Vec<PathPattern> =
                    self.paths.iter().filter_map(|p| p.for_user(user)).collect();
                if paths.is_empty() && !self.paths.is_empty() {
                    None
                } else {
                    Some(paths)
                }
            }
        }
    }

    /// The Cedar text, with `{username}` substituted when `username` is given.
    pub fn render(&self, username: Option<&str>) -> Option<String> {
        let paths = self.paths_for(username)?;
        let mut out = String::new();
        let _ = writeln!(out, "@id({})", cedar_string(&self.annotation));
        out.push_str(match self.effect {
            Effect::Permit => "permit (\n",
            Effect::Forbid => "forbid (\n",
        });
        let s = &self.subjects;
        let single_subject = !s.everyone && s.users.len() + s.groups.len() == 1;
        if s.everyone {
            out.push_str("  principal,\n");
        } else if single_subject {
            match s.users.first() {
                Some(u) => {
                    let _ = writeln!(out, "  principal == User::{},", cedar_string(u));
                }
                None => {
                    let _ = writeln!(out, "  principal in Group::{},", cedar_string(&s.groups[0]));
                }
            }
        } else {
            out.push_str("  principal,\n");
        }
        if self.actions.len() == 1 {
            let _ = writeln!(out, "  action == Action::\"{}\",", self.actions[0]);
        } else {
            let list: Vec<String> = self
                .actions
                .iter()
                .map(|a| format!("Action::\"{a}\""))
                .collect();
            let _ = writeln!(out, "  action in [{}],", list.join(", "));
        }
        let _ = writeln!(out, "  resource is {}", cedar_type(self.kind));
        out.push(')');
        let mut conditions: Vec<String> = Vec::new();
        if !s.everyone && !single_subject {
            let mut alternatives: Vec<String> = s
                .users
                .iter()
                .map(|u| format!("principal == User::{}", cedar_string(u)))
                .collect();
            alternatives.extend(
                s.groups
                    .iter()
                    .map(|g| format!("principal in Group::{}", cedar_string(g))),
            );
            conditions.push(format!("({})", alternatives.join(" || ")));
        }
        if limits_paths(self.kind, &paths) {
            let alternatives: Vec<String> = paths.iter().map(path_condition).collect();
            let any_path = alternatives.join(" || ");
            conditions.push(match self.effect {
                // Type-level questions (no path) are answered "somewhere": a limited grant
                // counts, a limited denial does not.
                Effect::Permit => format!("(if resource has path then {any_path} else true)"),
                Effect::Forbid => format!("(resource has path && ({any_path}))"),
            });
        }
        if self.kind.is_owned() && self.scope != Scope::Any {
            let owner_test = match self.scope {
                Scope::Own => "resource.owner == principal".to_string(),
                _ => "resource.owner == principal || (resource has owner_groups && resource.owner_groups.containsAny(principal.groups))".to_string(),
            };
            conditions.push(match self.effect {
                Effect::Permit => format!("(if resource has owner then {owner_test} else true)"),
                Effect::Forbid => format!("(resource has owner && ({owner_test}))"),
            });
        }
        if conditions.is_empty() {
            out.push_str(";\n");
        } else {
            let _ = write!(out, "\nwhen {{\n  {}\n}};\n", conditions.join("\n  && "));
        }
        Some(out)
    }
}

fn path_condition(pattern: &PathPattern) -> String {
    match pattern {
        PathPattern::Exact(p) => format!("resource.path == {}", cedar_string(p)),
        PathPattern::Subtree(p) => format!(
            "resource.path == {} || resource.path like {}",
            cedar_string(p),
            subtree_like(p)
        ),
    }
}

/// The `like` pattern for everything strictly below `base`: `"/a/*"`, with `*` in the base
/// escaped so it is matched literally.
fn subtree_like(base: &str) -> String {
    let mut pattern = escape(&format!("{base}/"), true);
    pattern.pop();
    pattern.push_str("*\"");
    pattern
}

fn file_label(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_string())
}

fn paths_suffix(paths: &[PathPattern]) -> String {
    if paths.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = paths.iter().map(ToString::to_string).collect();
        format!(" on {}", list.join(", "))
    }
}

/// Compile a parsed policy into one Cedar rule per (binding or deny, resource type, scope).
pub(crate) fn compile_rules(policy: &Policy) -> Vec<CompiledRule> {
    let label = file_label(&policy.file);
    let mut rules = Vec::new();
    for (index, binding) in policy.bindings.iter().enumerate() {
        let Some(role) = policy.roles.get(&binding.role) else {
            continue;
        };
        let annotation = format!(
            "{label}:{}: binding {:?} for {}{}",
            binding.line,
            binding.role,
            binding.subjects,
            paths_suffix(&binding.paths)
        );
        let perms: Vec<(ResourceType, Action, Scope)> = role
            .permissions
            .iter()
            .flat_map(|p| {
                p.kinds.iter().flat_map(move |k| {
                    p.actions
                        .iter()
                        .map(move |a| (*k, *a, if k.is_owned() { p.scope } else { Scope::Any }))
                })
            })
            .collect();
        group_rules(
            &mut rules,
            &format!("b{index}"),
            Effect::Permit,
            &binding.subjects,
            &binding.paths,
            &annotation,
            perms,
        );
    }
    for (index, deny) in policy.denies.iter().enumerate() {
        let texts: Vec<&str> = deny.permissions.iter().map(|p| p.text.as_str()).collect();
        let annotation = format!(
            "{label}:{}: deny {} for {}{}",
            deny.line,
            texts.join(", "),
            deny.subjects,
            paths_suffix(&deny.paths)
        );
        let perms: Vec<(ResourceType, Action, Scope)> = deny
            .permissions
            .iter()
            .flat_map(|p| {
                p.kinds.iter().flat_map(move |k| {
                    p.actions
                        .iter()
                        .map(move |a| (*k, *a, if k.is_owned() { p.scope } else { Scope::Any }))
                })
            })
            .collect();
        group_rules(
            &mut rules,
            &format!("d{index}"),
            Effect::Forbid,
            &deny.subjects,
            &deny.paths,
            &annotation,
            perms,
        );
    }
    rules
}

fn group_rules(
    rules: &mut Vec<CompiledRule>,
    prefix: &str,
    effect: Effect,
    subjects: &Subjects,
    paths: &[PathPattern],
    annotation: &str,
    mut perms: Vec<(ResourceType, Action, Scope)>,
) {
    perms.sort();
    perms.dedup();
    for kind in ResourceType::ALL {
        for scope in [Scope::Own, Scope::Group, Scope::Any] {
            let actions: Vec<Action> = perms
                .iter()
                .filter(|(k, _, s)| *k == kind && *s == scope)
                .map(|(_, a, _)| *a)
                .collect();
            if actions.is_empty() {
                continue;
            }
            rules.push(CompiledRule {
                id: format!("{prefix}.{kind}.{}", scope.as_str()),
                effect,
                subjects: subjects.clone(),
                kind,
                actions,
                scope,
                paths: if carries_path(kind) {
                    paths.to_vec()
                } else {
                    Vec::new()
                },
                annotation: annotation.to_string(),
            });
        }
    }
}

/// The whole policy as Cedar text (for `concord policy show --cedar`). Patterns naming
/// `{username}` are shown unsubstituted: the engine substitutes them per caller.
pub fn compile_to_cedar(policy: &Policy) -> String {
    let rules = compile_rules(policy);
    let mut out = format!(
        "// Compiled from {} ({} Cedar policies). Deny rules are `forbid`, which beats any `permit`.\n",
        policy.file,
        rules.len()
    );
    if rules.iter().any(CompiledRule::has_username) {
        out.push_str("// \"{username}\" inside a path is replaced by the caller's username when the policy is applied.\n");
    }
    for rule in &rules {
        out.push('\n');
        if let Some(text) = rule.render(None) {
            out.push_str(&text);
        }
    }
    out
}

/// Which requests a raw Cedar policy can possibly apply to, read from its scope, so slices
/// leave out policies that cannot matter.
#[derive(Clone, Debug)]
pub(crate) struct RawFilter {
    principal: PrincipalConstraint,
    actions: Option<Vec<Action>>,
    kinds: Option<Vec<ResourceType>>,
}

impl RawFilter {
    fn of(policy: &cedar_policy::Policy) -> RawFilter {
        let action_of = |uid: &EntityUid| uid.id().unescaped().parse::<Action>().ok();
        let actions = match policy.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(uid) => Some(action_of(&uid).into_iter().collect()),
            ActionConstraint::In(uids) => Some(uids.iter().filter_map(action_of).collect()),
        };
        let kind_of = |name: String| {
            ResourceType::ALL
                .into_iter()
                .find(|k| cedar_type(*k) == name)
        };
        let kinds = match policy.resource_constraint() {
            ResourceConstraint::Any => None,
            ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => {
                Some(kind_of(t.to_string()).into_iter().collect())
            }
            // Resources have no parents, so `in` an entity means being that entity.
            ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => {
                Some(kind_of(uid.type_name().to_string()).into_iter().collect())
            }
        };
        RawFilter {
            principal: policy.principal_constraint(),
            actions,
            kinds,
        }
    }

    pub(crate) fn may_apply(
        &self,
        username: &str,
        groups: &[String],
        action: Action,
        kind: ResourceType,
    ) -> bool {
        if let Some(actions) = &self.actions {
            if !actions.contains(&action) {
                return false;
            }
        }
        if let Some(kinds) = &self.kinds {
            if !kinds.contains(&kind) {
                return false;
            }
        }
        let names = |uid: &EntityUid| {
            let id = uid.id().unescaped();
            match uid.type_name().to_string().as_str() {
                "User" => id == username,
                "Group" => groups.iter().any(|g| g == id),
                _ => false,
            }
        };
        match &self.principal {
            PrincipalConstraint::Any => true,
            PrincipalConstraint::Is(t) => t.to_string() == "User",
            PrincipalConstraint::Eq(uid) => {
                uid.type_name().to_string() == "User" && uid.id().unescaped() == username
            }
            PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid) => names(uid),
        }
    }
}

/// One policy from the raw `.cedar` file.
#[derive(Clone, Debug)]
pub(crate) struct RawRule {
    pub policy: cedar_policy::Policy,
    pub annotation: String,
    pub filter: RawFilter,
}

fn diagnostic_offset(d: &dyn Diagnostic) -> Option<usize> {
    d.labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
}

fn diagnostic_message(d: &(impl Diagnostic + std::fmt::Display)) -> String {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        let _ = write!(message, " ({help})");
    }
    message
}

/// Byte offsets where each top-level policy of a Cedar file starts (its first annotation or
/// `permit`/`forbid`), skipping comments and strings.
fn policy_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    let mut expecting_start = true;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                if expecting_start {
                    starts.push(i);
                    expecting_start = false;
                }
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b';' => expecting_start = true,
            c if c.is_ascii_whitespace() => {}
            _ => {
                if expecting_start {
                    starts.push(i);
                    expecting_start = false;
                }
            }
        }
        i += 1;
    }
    starts
}

/// Parse a raw `.cedar` file. Errors carry the file's line and column.
pub(crate) fn parse_raw(file: &str, text: &str) -> Result<Vec<RawRule>, Vec<PolicyError>> {
    let lines = LineIndex::new(text);
    let error_at = |offset: usize, message: String| {
        let (line, column) = lines.position(offset);
        PolicyError {
            file: file.to_string(),
            line,
            column,
            message,
        }
    };
    let set = match PolicySet::from_str(text) {
        Ok(set) => set,
        Err(errors) => {
            return Err(errors
                .iter()
                .map(|e| {
                    error_at(
                        diagnostic_offset(e).unwrap_or(0),
                        format!("Cedar syntax: {}", diagnostic_message(e)),
                    )
                })
                .collect())
        }
    };
    if set.templates().next().is_some() {
        return Err(vec![error_at(
            0,
            "Cedar templates (?principal / ?resource slots) are not supported; write static policies".into(),
        )]);
    }
    let starts = policy_starts(text);
    let label = file_label(file);
    let mut policies: Vec<&cedar_policy::Policy> = set.policies().collect();
    // Parsed ids are "policy0", "policy1", … in file order.
    policies.sort_by_key(|p| {
        p.id()
            .to_string()
            .trim_start_matches("policy")
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    Ok(policies
        .into_iter()
        .enumerate()
        .map(|(index, policy)| {
            let line = starts
                .get(index)
                .map(|offset| lines.position(*offset).0)
                .unwrap_or(1);
            let name = policy
                .annotation("id")
                .map(ToString::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "raw Cedar {} policy",
                        match policy.effect() {
                            cedar_policy::Effect::Permit => "permit",
                            cedar_policy::Effect::Forbid => "forbid",
                        }
                    )
                });
            RawRule {
                policy: policy.new_id(PolicyId::new(format!("raw{index}"))),
                annotation: format!("{label}:{line}: {name}"),
                filter: RawFilter::of(policy),
            }
        })
        .collect())
}

/// Validate compiled rules and raw policies against the schema (strict mode), returning the
/// compiled rules parsed (in order, `{username}` unsubstituted). Errors in raw
/// policies point into the `.cedar` file; errors in compiled rules (a defect, not an admin
/// mistake) point at the binding or deny they came from.
pub(crate) fn validate(
    policy: &Policy,
    rules: &[CompiledRule],
    raw: &[RawRule],
    raw_file: Option<(&str, &str)>,
) -> Result<Vec<cedar_policy::Policy>, Vec<PolicyError>> {
    let schema = match schema() {
        Ok(s) => s,
        Err(message) => {
            return Err(vec![PolicyError {
                file: policy.file.clone(),
                line: 1,
                column: 1,
                message,
            }])
        }
    };
    let mut errors = Vec::new();
    let mut set = PolicySet::new();
    let mut parsed = Vec::with_capacity(rules.len());
    for rule in rules {
        let line = rule_line(&rule.annotation);
        let text = rule.render(None).unwrap_or_default();
        match cedar_policy::Policy::parse(Some(PolicyId::new(&rule.id)), &text) {
            Ok(p) => {
                parsed.push(p.clone());
                if let Err(e) = set.add(p) {
                    errors.push(PolicyError {
                        file: policy.file.clone(),
                        line,
                        column: 1,
                        message: format!("internal error compiling this rule: {e}"),
                    });
                }
            }
            Err(e) => errors.push(PolicyError {
                file: policy.file.clone(),
                line,
                column: 1,
                message: format!("internal error compiling this rule to Cedar: {e}"),
            }),
        }
    }
    for rule in raw {
        if let Err(e) = set.add(rule.policy.clone()) {
            errors.push(PolicyError {
                file: raw_file.map(|(f, _)| f.to_string()).unwrap_or_default(),
                line: rule_line(&rule.annotation),
                column: 1,
                message: e.to_string(),
            });
        }
    }
    let validator = Validator::new(schema.clone());
    let result = validator.validate(&set, ValidationMode::Strict);
    let raw_lines = raw_file.map(|(_, text)| LineIndex::new(text));
    for e in result.validation_errors() {
        let id = e.policy_id().to_string();
        if let Some(index) = id.strip_prefix("raw").and_then(|n| n.parse::<usize>().ok()) {
            let fallback = raw
                .get(index)
                .map(|r| rule_line(&r.annotation))
                .unwrap_or(1);
            let (line, column) = match (diagnostic_offset(e), &raw_lines) {
                (Some(offset), Some(lines)) => lines.position(offset),
                _ => (fallback, 1),
            };
            errors.push(PolicyError {
                file: raw_file.map(|(f, _)| f.to_string()).unwrap_or_default(),
                line,
                column,
                message: format!("Cedar validation: {}", diagnostic_message(e)),
            });
        } else {
            let line = rules
                .iter()
                .find(|r| r.id == id)
                .map(|r| rule_line(&r.annotation))
                .unwrap_or(1);
            errors.push(PolicyError {
                file: policy.file.clone(),
                line,
                column: 1,
                message: format!(
                    "internal error: this rule's Cedar form fails validation: {}",
                    diagnostic_message(e)
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The line number inside an annotation `file:LINE: …`.
fn rule_line(annotation: &str) -> usize {
    annotation
        .split(':')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}
