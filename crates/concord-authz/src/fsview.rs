//! What a user may touch on disk through `contents` permissions, as concrete paths, for the
//! operating system's confinement of their kernels and terminals (Landlock).
//!
//! Landlock can only grant access to file hierarchies, never carve a hole out of one. So a
//! deny inside a granted subtree is carried as an *exception* of that grant
//! ([`FsGrant::except`]); whoever applies the view must then grant only the parts of the
//! subtree that avoid every exception (concord-confine splits the subtree into the existing
//! siblings that remain). Everything here errs on the side of granting less than the policy:
//! a view may be narrower than what the API allows, never wider.

use crate::cedar::RawRule;
use crate::engine::PolicyEngine;
use crate::model::{Action, Identity, ResourceType};
use crate::path::CanonicalPath;
use crate::policy::{PathPattern, Policy};

/// A path, alone (`subtree == false`) or with everything below it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FsScope {
    /// The canonical path (relative to the server's root; `/` is the root itself).
    pub path: CanonicalPath,
    /// Whether everything below `path` is included.
    pub subtree: bool,
}

impl FsScope {
    /// Whether `other` lies entirely inside `self`.
    pub fn covers(&self, other: &FsScope) -> bool {
        if self.subtree {
            other.path.is_within(&self.path)
        } else {
            !other.subtree && other.path == self.path
        }
    }
}

impl std::fmt::Display for FsScope {
    /// `/a/b` alone, `/a/b/**` with everything below, `/**` for the whole root.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.subtree, self.path.is_root()) {
            (true, true) => f.write_str("/**"),
            (true, false) => write!(f, "{}/**", self.path),
            (false, _) => write!(f, "{}", self.path),
        }
    }
}

/// One grant: a scope, minus the exceptions that deny rules take out of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsGrant {
    /// What is granted.
    pub scope: FsScope,
    /// Paths inside `scope` that are *not* granted (each strictly inside a subtree grant, or
    /// the subtree's own directory when only it is denied). Empty for most grants.
    pub except: Vec<FsScope>,
}

/// The paths one user may read and write through `contents` permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilesystemView {
    /// Paths the user may read (`contents:read`).
    pub read: Vec<FsGrant>,
    /// Paths the user may write (`contents:write`). Independent of `read`: a path may be
    /// writable without being readable if the policy says so.
    pub write: Vec<FsGrant>,
    /// Why the view may be narrower than the policy (raw Cedar, usernames that cannot be a
    /// path segment), for logs and `concord policy check`.
    pub notes: Vec<String>,
}

impl FilesystemView {
    /// Whether the user may read something somewhere.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }
}

fn grants_contents(kinds: &[ResourceType], actions: &[Action], action: Action) -> bool {
    kinds.contains(&ResourceType::Contents) && actions.contains(&action)
}

/// The scopes of a rule's patterns for one user; `None` for a pattern that names
/// `{username}` when the username cannot be one path segment (it then matches nothing).
fn scopes(patterns: &[PathPattern], username: &str) -> Vec<FsScope> {
    if patterns.is_empty() {
        return vec![FsScope {
            path: CanonicalPath::root(),
            subtree: true,
        }];
    }
    patterns
        .iter()
        .filter_map(|p| p.for_user(username))
        .filter_map(|p| {
            let subtree = matches!(p, PathPattern::Subtree(_));
            CanonicalPath::parse(p.base())
                .ok()
                .map(|path| FsScope { path, subtree })
        })
        .collect()
}

/// Drop scopes that another scope in the list covers; sort for stable output.
fn minimal(mut list: Vec<FsScope>) -> Vec<FsScope> {
    list.sort();
    list.dedup();
    let all = list.clone();
    list.retain(|s| !all.iter().any(|o| o != s && o.covers(s)));
    list
}

fn view_for(
    policy: &Policy,
    raw: &[RawRule],
    who: &Identity,
    action: Action,
    notes: &mut Vec<String>,
) -> Vec<FsGrant> {
    let username = who.username();
    let groups = &who.groups;
    // Raw Cedar may say anything about any path; it cannot be analysed. Its permits only
    // widen access, so ignoring them keeps the view conservative; a forbid could narrow it
    // anywhere, so then nothing is granted for this action.
    let mut raw_permits = false;
    for rule in raw {
        if !rule
            .filter
            .may_apply(username, groups, action, ResourceType::Contents)
        {
            continue;
        }
        match rule.policy.effect() {
            cedar_policy::Effect::Forbid => {
                notes.push(format!(
                    "raw Cedar policy {} may forbid contents:{action} to {username}: nothing is granted for {action} on disk (write the deny in the TOML policy instead)",
                    rule.annotation
                ));
                return Vec::new();
            }
            cedar_policy::Effect::Permit => raw_permits = true,
        }
    }
    if raw_permits {
        notes.push(format!(
            "raw Cedar permits for contents:{action} are not reflected on disk (only the TOML policy is)"
        ));
    }
    let mut granted = Vec::new();
    for binding in &policy.bindings {
        if !binding.subjects.includes(username, groups) {
            continue;
        }
        let Some(role) = policy.roles.get(&binding.role) else {
            continue;
        };
        if role
            .permissions
            .iter()
            .any(|p| grants_contents(&p.kinds, &p.actions, action))
        {
            granted.extend(scopes(&binding.paths, username));
        }
    }
    let mut denied = Vec::new();
    for deny in &policy.denies {
        if !deny.subjects.includes(username, groups)
            || !deny
                .permissions
                .iter()
                .any(|p| grants_contents(&p.kinds, &p.actions, action))
        {
            continue;
        }
        denied.extend(scopes(&deny.paths, username));
    }
    let denied = minimal(denied);
    let mut out = Vec::new();
    for scope in minimal(granted) {
        // A deny covering the whole grant removes it.
        if denied.iter().any(|d| d.covers(&scope)) {
            continue;
        }
        let except: Vec<FsScope> = if scope.subtree {
            denied
                .iter()
                .filter(|d| d.path.is_within(&scope.path))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        out.push(FsGrant { scope, except });
    }
    out
}

impl PolicyEngine {
    /// The paths `who` may read and write through `contents` permissions, from the TOML
    /// policy's bindings that apply to them (`{username}` substituted; a binding without
    /// `paths` is the whole root) minus what its denies take away (see [`FsGrant::except`]).
    ///
    /// Raw Cedar policies cannot be analysed: their permits are ignored (the view is then
    /// narrower than the API), and a raw `forbid` that may apply to the user's contents
    /// access empties the view for that action; both are said in [`FilesystemView::notes`].
    pub fn filesystem_view(&self, who: &Identity) -> FilesystemView {
        let (policy, raw) = self.policy_and_raw();
        let mut notes = Vec::new();
        let read = view_for(&policy, &raw, who, Action::Read, &mut notes);
        let write = view_for(&policy, &raw, who, Action::Write, &mut notes);
        FilesystemView { read, write, notes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;

    fn who(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: User::named(user),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn engine(toml: &str) -> PolicyEngine {
        PolicyEngine::from_text("policy.toml", toml, None).unwrap()
    }

    fn show(grants: &[FsGrant]) -> Vec<String> {
        grants
            .iter()
            .map(|g| {
                let mut s = g.scope.to_string();
                for e in &g.except {
                    s.push_str(&format!(" -{e}"));
                }
                s
            })
            .collect()
    }

    const POLICY: &str = r#"
[roles.all]
permissions = ["*:*:any"]
[roles.editor]
permissions = ["contents:read", "contents:write", "kernels:*:own"]
[roles.reader]
permissions = ["contents:read"]
[roles.runner]
permissions = ["kernels:*:own"]

[[bindings]]
role = "all"
groups = ["admin"]

[[bindings]]
role = "editor"
users = ["alice"]
paths = ["/projects/a/**", "/home/{username}/**"]

[[bindings]]
role = "reader"
everyone = true
paths = ["/", "/shared/**", "/shared/docs/**", "/readme.md"]

[[bindings]]
role = "runner"
everyone = true

[[deny]]
everyone = true
permissions = ["contents:read"]
paths = ["/shared/secret/**", "/shared/docs"]

[[deny]]
users = ["bob"]
permissions = ["contents:*"]
paths = ["/shared/**"]
"#;

    #[test]
    fn a_user_sees_their_paths_with_username_substituted() {
        let view = engine(POLICY).filesystem_view(&who("alice", &[]));
        assert_eq!(
            show(&view.read),
            [
                "/",
                "/home/alice/**",
                "/projects/a/**",
                "/readme.md",
                "/shared/** -/shared/docs -/shared/secret/**"
            ]
        );
        assert_eq!(show(&view.write), ["/home/alice/**", "/projects/a/**"]);
        assert!(view.notes.is_empty());
    }

    #[test]
    fn a_deny_covering_a_grant_removes_it() {
        let view = engine(POLICY).filesystem_view(&who("bob", &[]));
        assert_eq!(show(&view.read), ["/", "/readme.md"]);
        assert!(view.write.is_empty());
    }

    #[test]
    fn a_binding_without_paths_is_the_whole_root() {
        let view = engine(POLICY).filesystem_view(&who("root", &["admin"]));
        assert_eq!(
            show(&view.read),
            ["/** -/shared/docs -/shared/secret/**"],
            "the everyone-deny applies to admins too"
        );
        assert_eq!(show(&view.write), ["/**"]);
    }

    #[test]
    fn permissions_on_other_types_grant_nothing_on_disk() {
        let view = engine(
            r#"
[roles.runner]
permissions = ["kernels:*:any", "terminals:*:own"]
[[bindings]]
role = "runner"
everyone = true
"#,
        )
        .filesystem_view(&who("carol", &[]));
        assert!(view.is_empty());
    }

    #[test]
    fn a_deny_without_paths_empties_that_action() {
        let view = engine(
            r#"
[roles.all]
permissions = ["*:*:any"]
[[bindings]]
role = "all"
everyone = true
[[deny]]
users = ["dave"]
permissions = ["contents:write"]
"#,
        )
        .filesystem_view(&who("dave", &[]));
        assert_eq!(show(&view.read), ["/**"]);
        assert!(view.write.is_empty());
    }

    #[test]
    fn a_username_that_is_not_a_segment_gets_no_home() {
        let view = engine(POLICY).filesystem_view(&who("..", &[]));
        assert!(!show(&view.read).iter().any(|s| s.starts_with("/home")));
    }

    #[test]
    fn raw_cedar_forbid_empties_and_permit_is_ignored() {
        let toml = r#"
[roles.editor]
permissions = ["contents:read", "contents:write"]
[[bindings]]
role = "editor"
everyone = true
paths = ["/projects/**"]
"#;
        let cedar = r#"
@id("nobody reads the vault")
forbid (principal, action == Action::"read", resource is Contents)
when { resource has path && resource.path like "/projects/vault/*" };

@id("erin writes notes")
permit (principal == User::"erin", action == Action::"write", resource is Contents)
when { resource has path && resource.path like "/notes/*" };
"#;
        let engine =
            PolicyEngine::from_text("policy.toml", toml, Some(("extra.cedar", cedar))).unwrap();
        let view = engine.filesystem_view(&who("erin", &[]));
        assert!(view.read.is_empty());
        assert_eq!(show(&view.write), ["/projects/**"]);
        assert_eq!(view.notes.len(), 2, "{:?}", view.notes);
        assert!(view.notes[0].contains("nobody reads the vault"));
        assert!(view.notes[1].contains("not reflected"));
    }

    #[test]
    fn covers_is_by_whole_segments() {
        let s = |p: &str, subtree| FsScope {
            path: CanonicalPath::parse(p).unwrap(),
            subtree,
        };
        assert!(s("/a", true).covers(&s("/a/b", false)));
        assert!(s("/a", true).covers(&s("/a", true)));
        assert!(!s("/a", true).covers(&s("/ab", true)));
        assert!(!s("/a", false).covers(&s("/a", true)));
        assert!(s("/", true).covers(&s("/x", true)));
    }
}
