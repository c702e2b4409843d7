//! Per-user limits from the policy file's `[[limits]]` tables: how many kernels, sessions,
//! terminals and collaboration rooms one user may hold at once.
//!
//! Which entry applies, for each counted kind separately: entries naming the user beat
//! entries naming one of their groups, which beat `everyone = true`; among several entries
//! at the same level the most generous wins (a user in two groups gets the larger of the
//! two). A kind no matching entry mentions is unlimited.

use std::fmt;

use crate::policy::Subjects;

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitedKind {
    /// Running (and starting) kernels owned by the user.
    Kernels,
    /// Notebook/console sessions owned by the user.
    Sessions,
    /// Terminals owned by the user.
    Terminals,
    /// Collaboration rooms the user takes part in.
    Rooms,
}

impl LimitedKind {
    /// Every kind, in the order the policy file documents them.
    pub const ALL: [LimitedKind; 4] = [
        LimitedKind::Kernels,
        LimitedKind::Sessions,
        LimitedKind::Terminals,
        LimitedKind::Rooms,
    ];

    /// The key in a `[[limits]]` table, and the plural noun in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedKind::Kernels => "kernels",
            LimitedKind::Sessions => "sessions",
            LimitedKind::Terminals => "terminals",
            LimitedKind::Rooms => "rooms",
        }
    }

    /// The noun for one of them, in messages.
    pub fn singular(self) -> &'static str {
        match self {
            LimitedKind::Kernels => "kernel",
            LimitedKind::Sessions => "notebook session",
            LimitedKind::Terminals => "terminal",
            LimitedKind::Rooms => "collaboration room",
        }
    }

    /// The kind whose key is `key`.
    pub fn from_key(key: &str) -> Option<LimitedKind> {
        LimitedKind::ALL.into_iter().find(|k| k.as_str() == key)
    }
}

/// One `[[limits]]` table of the policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRule {
    /// To whom it applies.
    pub subjects: Subjects,
    /// The maximum for each kind the table mentions; `None` in the value is "unlimited".
    pub maxima: Vec<(LimitedKind, Option<u32>)>,
    /// Line of the `[[limits]]` header.
    pub line: usize,
}

/// The limit on one kind for one user, and where it comes from (for the refusal message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// What is counted.
    pub kind: LimitedKind,
    /// How many the user may hold at once.
    pub max: u32,
    /// Which entry set it, in words: `group students (classroom.toml:61)`.
    pub set_by: String,
}

impl Limit {
    /// The refusal when `username` already holds `max` of them.
    pub fn refusal(&self, username: &str) -> String {
        let noun = if self.max == 1 {
            self.kind.singular().to_string()
        } else {
            match self.kind {
                LimitedKind::Sessions => "notebook sessions".to_string(),
                LimitedKind::Rooms => "collaboration rooms".to_string(),
                other => other.as_str().to_string(),
            }
        };
        let how = match self.kind {
            LimitedKind::Kernels => "shut one of your kernels down to start another",
            LimitedKind::Sessions => "close one of your notebooks or consoles to open another",
            LimitedKind::Terminals => "close one of your terminals to open another",
            LimitedKind::Rooms => "close one of your shared documents to open another",
        };
        format!(
            "{username} may have at most {} {noun} at once (limit for {}); {how}",
            self.max, self.set_by
        )
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ≤ {} ({})", self.kind.as_str(), self.max, self.set_by)
    }
}

/// Every limit that applies to one user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// One entry per limited kind; kinds not present are unlimited.
    pub limits: Vec<Limit>,
}

impl Limits {
    /// The limit on `kind`, if any.
    pub fn get(&self, kind: LimitedKind) -> Option<&Limit> {
        self.limits.iter().find(|l| l.kind == kind)
    }
}

/// How specifically an entry names a user: higher beats lower.
fn specificity(subjects: &Subjects, username: &str, groups: &[String]) -> Option<u8> {
    if subjects.users.iter().any(|u| u == username) {
        Some(3)
    } else if subjects.groups.iter().any(|g| groups.contains(g)) {
        Some(2)
    } else if subjects.everyone {
        Some(1)
    } else {
        None
    }
}

fn describe(subjects: &Subjects, username: &str, groups: &[String], level: u8) -> String {
    match level {
        3 => format!("user {username}"),
        2 => {
            let matched: Vec<&str> = subjects
                .groups
                .iter()
                .filter(|g| groups.contains(g))
                .map(String::as_str)
                .collect();
            format!("group {}", matched.join(", "))
        }
        _ => "everyone".to_string(),
    }
}

/// The limits `rules` (from the policy file `file`) set for a user.
pub fn resolve(file: &str, rules: &[LimitRule], username: &str, groups: &[String]) -> Limits {
    // Users read the refusal: the file's name is enough, the server's paths are not theirs.
    let file = std::path::Path::new(file)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or(file);
    let mut limits = Vec::new();
    for kind in LimitedKind::ALL {
        // (level, max or None for unlimited, rule)
        let mut best: Option<(u8, Option<u32>, &LimitRule)> = None;
        for rule in rules {
            let Some(level) = specificity(&rule.subjects, username, groups) else {
                continue;
            };
            let Some(&(_, max)) = rule.maxima.iter().find(|(k, _)| *k == kind) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((best_level, best_max, _)) => {
                    level > *best_level || (level == *best_level && more_generous(max, *best_max))
                }
            };
            if better {
                best = Some((level, max, rule));
            }
        }
        if let Some((level, Some(max), rule)) = best {
            limits.push(Limit {
                kind,
                max,
                set_by: format!(
                    "{} ({file}:{})",
                    describe(&rule.subjects, username, groups, level),
                    rule.line
                ),
            });
        }
    }
    Limits { limits }
}

fn more_generous(candidate: Option<u32>, current: Option<u32>) -> bool {
    match (candidate, current) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}
