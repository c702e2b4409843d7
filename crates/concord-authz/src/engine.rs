//! The policy engine: Cedar evaluation over per-caller slices of the policy, with a bounded
//! decision cache that a reload replaces wholesale.
//!
//! An uncached decision hands Cedar only the slice's rules that the request's path can
//! satisfy (found through a per-slice index of path patterns), with the caller's entity
//! built once per slice; a request no rule can match is a default deny without running
//! Cedar at all. Leaving out rules that cannot be satisfied changes neither the decision nor
//! the rule reported as deciding it (tests compare against Cedar on the whole policy).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, RandomState};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression,
};

use crate::cedar::{self, cedar_type, CompiledRule, Effect, RawRule};
use crate::model::{Action, Decision, Identity, Resource, ResourceType};
use crate::path::CanonicalPath;
use crate::policy::{PathPattern, Policy, PolicyError, USERNAME_PLACEHOLDER};
use crate::presets;
use crate::Authorize;

/// Upper bound on memoized decisions (spread over shards; a full shard is emptied).
const DECISION_CACHE_ENTRIES: usize = 1 << 16;
/// Upper bound on cached policy slices.
const SLICE_CACHE_ENTRIES: usize = 1 << 14;
const SHARDS: usize = 16;

/// A concurrent map with a hard size bound: when a shard is full it is emptied, which keeps
/// memory bounded without bookkeeping on the hot path.
struct BoundedCache<K, V> {
    shards: Vec<RwLock<HashMap<K, V>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl<K: Hash + Eq, V: Clone> BoundedCache<K, V> {
    fn new(capacity: usize) -> Self {
        BoundedCache {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: (capacity / SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &K) -> &RwLock<HashMap<K, V>> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        &self.shards[index]
    }

    fn get(&self, key: &K) -> Option<V> {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        shard.get(key).cloned()
    }

    fn insert(&self, key: K, value: V) {
        let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(key, value);
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SliceKey {
    username: String,
    groups: Vec<String>,
    kind: ResourceType,
    action: Action,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct DecisionKey {
    username: String,
    groups: Vec<String>,
    action: Action,
    resource: Resource,
}

/// The policies that can matter to one caller for one (resource type, action).
struct Slice {
    /// Names this slice's entries in `State::policy_sets`.
    serial: u64,
    /// The compiled rules whose subjects include the caller (`{username}` substituted), then
    /// the raw Cedar policies that may apply; indexed by `PathIndex` and `raw`.
    policies: Vec<cedar_policy::Policy>,
    /// All of `policies` as one set, for requests where every one of them is a candidate.
    all: Arc<PolicySet>,
    /// Which compiled rules can apply to a request's path.
    paths: PathIndex,
    /// Indexes of the raw Cedar policies in `policies`: they may look at anything, so they
    /// are evaluated for every request.
    raw: Vec<u32>,
    /// Per compiled rule in `policies`: whether it is a grant (`permit`).
    grants: Vec<bool>,
    /// Per compiled rule in `policies`: its place in the order deciding rules are reported
    /// in (file, then line).
    rank: Vec<u32>,
    /// Whether there is any policy at all (an empty slice is a default deny).
    empty: bool,
    /// Whether raw Cedar policies are in the slice (they may look at anything, so listings
    /// fall back to per-entry decisions).
    has_raw: bool,
    /// Base paths of every pattern in the slice, `{username}` substituted.
    bases: Vec<String>,
    /// The caller as a Cedar entity store (the user, member of its groups), built once per
    /// slice: the key of a slice is exactly what the principal entity is made of.
    principal: Result<(EntityUid, Entities), String>,
}

/// Which compiled rules of a slice can possibly be satisfied, judged from their path
/// patterns alone. A rule left out cannot be satisfied by the request (its path condition is
/// false), so Cedar reaches the same decision, with the same deciding rules, on the
/// candidates alone; compiled rules never fail to evaluate, so no error is hidden either.
#[derive(Default)]
struct PathIndex {
    /// Rules without a path condition: candidates for every request.
    always: Vec<u32>,
    /// Path-limited grants: a question without a path ("may they do this anywhere?") counts
    /// them (`if resource has path then … else true`). Path-limited denials never apply to it.
    permits_without_path: Vec<u32>,
    /// Exact patterns, by path. (Ordered maps: a lookup is a few string comparisons, cheaper
    /// than hashing the path once per ancestor.)
    exact: BTreeMap<String, Vec<u32>>,
    /// Subtree patterns (other than `/**`, which is no condition), by base: a path matches
    /// the base itself and every base that is a proper ancestor of it.
    subtree: BTreeMap<String, Vec<u32>>,
}

impl PathIndex {
    fn add(&mut self, index: u32, kind: ResourceType, effect: Effect, paths: &[PathPattern]) {
        if !cedar::limits_paths(kind, paths) {
            self.always.push(index);
            return;
        }
        if effect == Effect::Permit {
            self.permits_without_path.push(index);
        }
        for pattern in paths {
            let map = match pattern {
                PathPattern::Exact(_) => &mut self.exact,
                PathPattern::Subtree(_) => &mut self.subtree,
            };
            map.entry(pattern.base().to_string())
                .or_default()
                .push(index);
        }
    }

    /// Appends the candidates for a request whose resource has `path` (`None`: no path
    /// attribute), possibly with repeats.
    fn candidates(&self, path: Option<&str>, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.always);
        let Some(path) = path else {
            out.extend_from_slice(&self.permits_without_path);
            return;
        };
        if let Some(rules) = self.exact.get(path) {
            out.extend_from_slice(rules);
        }
        if self.subtree.is_empty() {
            return;
        }
        if let Some(rules) = self.subtree.get(path) {
            out.extend_from_slice(rules);
        }
        // `path like "base/*"`: every proper ancestor of the path, by whole segments.
        for (i, byte) in path.bytes().enumerate().skip(1) {
            if byte == b'/' {
                if let Some(rules) = self.subtree.get(&path[..i]) {
                    out.extend_from_slice(rules);
                }
            }
        }
    }
}

static NEXT_SLICE_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Where the policy came from, so `reload` can read it again.
#[derive(Clone, Debug)]
enum Sources {
    Files {
        toml: PathBuf,
        cedar: Option<PathBuf>,
    },
    /// A built-in preset, optionally with the admin's raw Cedar file (re-read on reload).
    Preset {
        name: String,
        cedar: Option<PathBuf>,
    },
    Text {
        toml_name: String,
        toml: String,
        cedar: Option<(String, String)>,
    },
}

/// One loaded policy with its caches; replaced as a whole on reload.
struct State {
    policy: Policy,
    rules: Vec<CompiledRule>,
    raw: Vec<RawRule>,
    /// Pre-parsed Cedar for rules without `{username}` (indexed like `rules`).
    static_policies: Vec<Option<cedar_policy::Policy>>,
    /// For rules naming `{username}`: their Cedar in JSON form, to substitute per user
    /// without running the Cedar parser (about twice as fast).
    username_templates: Vec<Option<serde_json::Value>>,
    /// Per-user Cedar for `{username}` rules, shared by that user's slices.
    user_policies: BoundedCache<(usize, String), Option<cedar_policy::Policy>>,
    /// Indexes into `rules` per (resource type, action), so building a slice only looks at
    /// rules that can matter.
    rules_by_kind_action: HashMap<(ResourceType, Action), Vec<usize>>,
    annotations: HashMap<String, String>,
    raw_cedar_text: Option<String>,
    generation: u64,
    slices: BoundedCache<SliceKey, Arc<Slice>>,
    /// Policy sets of the candidates of a slice for some request, by (slice serial,
    /// candidate indexes): few distinct ones per slice, each built once.
    policy_sets: BoundedCache<(u64, Box<[u32]>), Arc<PolicySet>>,
    decisions: BoundedCache<DecisionKey, Decision>,
}

/// The Cedar-backed [`Authorize`] implementation.
pub struct PolicyEngine {
    sources: Sources,
    state: ArcSwap<State>,
    generation: AtomicU64,
    authorizer: Authorizer,
    action_uids: [EntityUid; 3],
    type_names: Vec<EntityTypeName>,
    user_type: EntityTypeName,
    group_type: EntityTypeName,
}

fn read_file(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.display().to_string(),
        line: 1,
        column: 1,
        message: format!("cannot read the policy file: {e}"),
    })
}

fn build_state(
    toml_name: &str,
    toml_text: &str,
    cedar: Option<(&str, &str)>,
    generation: u64,
) -> Result<State, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let policy = match Policy::parse(toml_name, toml_text) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.extend(e);
            None
        }
    };
    let raw = match cedar {
        Some((name, text)) => match cedar::parse_raw(name, text) {
            Ok(raw) => raw,
            Err(e) => {
                errors.extend(e);
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let Some(policy) = policy else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let rules = cedar::compile_rules(&policy);
    let parsed = cedar::validate(&policy, &rules, &raw, cedar)?;
    let static_policies: Vec<Option<cedar_policy::Policy>> = rules
        .iter()
        .zip(&parsed)
        .map(|(rule, p)| (!rule.has_username()).then(|| p.clone()))
        .collect();
    let username_templates = rules
        .iter()
        .zip(&parsed)
        .map(|(rule, p)| {
            let s = &rule.subjects;
            if !rule.has_username()
                || s.users
                    .iter()
                    .chain(&s.groups)
                    .any(|n| n.contains(USERNAME_PLACEHOLDER))
            {
                return None;
            }
            p.to_json().ok()
        })
        .collect();
    let mut rules_by_kind_action: HashMap<(ResourceType, Action), Vec<usize>> = HashMap::new();
    for (index, rule) in rules.iter().enumerate() {
        for action in &rule.actions {
            rules_by_kind_action
                .entry((rule.kind, *action))
                .or_default()
                .push(index);
        }
    }
    let mut annotations = HashMap::new();
    for rule in &rules {
        annotations.insert(rule.id.clone(), rule.annotation.clone());
    }
    for rule in &raw {
        annotations.insert(rule.policy.id().to_string(), rule.annotation.clone());
    }
    Ok(State {
        policy,
        rules,
        raw,
        static_policies,
        username_templates,
        user_policies: BoundedCache::new(SLICE_CACHE_ENTRIES),
        rules_by_kind_action,
        annotations,
        raw_cedar_text: cedar.map(|(_, text)| text.to_string()),
        generation,
        slices: BoundedCache::new(SLICE_CACHE_ENTRIES),
        policy_sets: BoundedCache::new(SLICE_CACHE_ENTRIES),
        decisions: BoundedCache::new(DECISION_CACHE_ENTRIES),
    })
}

fn load_state(sources: &Sources, generation: u64) -> Result<State, Vec<PolicyError>> {
    match sources {
        Sources::Files { toml, cedar } => {
            let toml_name = toml.display().to_string();
            let mut errors = Vec::new();
            let toml_text = read_file(toml).map_err(|e| errors.push(e)).ok();
            let cedar_text = match cedar {
                Some(path) => match read_file(path) {
                    Ok(text) => Some((path.display().to_string(), text)),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                },
                None => None,
            };
            match toml_text {
                Some(text) if errors.is_empty() => build_state(
                    &toml_name,
                    &text,
                    cedar_text.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
                    generation,
                ),
                _ => Err(errors),
            }
        }
        Sources::Preset { name, cedar } => {
            let text = presets::preset(name).ok_or_else(|| {
                vec![PolicyError {
                    file: format!("preset:{name}"),
                    line: 1,
                    column: 1,
                    message: format!(
                        "unknown preset {name:?} (expected one of: {})",
                        presets::PRESET_NAMES.join(", ")
                    ),
                }]
            })?;
            let cedar_text = match cedar {
                Some(path) => Some((
                    path.display().to_string(),
                    read_file(path).map_err(|e| vec![e])?,
                )),
                None => None,
            };
            build_state(
                &format!("{name}.toml"),
                text,
                cedar_text.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
                generation,
            )
        }
        Sources::Text {
            toml_name,
            toml,
            cedar,
        } => build_state(
            toml_name,
            toml,
            cedar.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
            generation,
        ),
    }
}

fn sorted_groups(groups: &[String]) -> Vec<String> {
    let mut groups = groups.to_vec();
    groups.sort();
    groups.dedup();
    groups
}

fn type_name(name: &str) -> EntityTypeName {
    // These are fixed identifiers, always valid Cedar type names.
    EntityTypeName::from_str(name).unwrap_or_else(|_| unreachable!("valid type name {name}"))
}

impl PolicyEngine {
    fn new(sources: Sources) -> Result<PolicyEngine, Vec<PolicyError>> {
        let state = load_state(&sources, 1)?;
        let action_type = type_name("Action");
        Ok(PolicyEngine {
            sources,
            state: ArcSwap::from_pointee(state),
            generation: AtomicU64::new(1),
            authorizer: Authorizer::new(),
            action_uids: Action::ALL.map(|a| {
                EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.as_str()))
            }),
            type_names: ResourceType::ALL
                .iter()
                .map(|k| type_name(cedar_type(*k)))
                .collect(),
            user_type: type_name("User"),
            group_type: type_name("Group"),
        })
    }

    /// Load a policy file and, optionally, a file of raw Cedar policies. Every problem in
    /// either file is returned, located by file, line and column.
    pub fn load(toml: &Path, cedar: Option<&Path>) -> Result<PolicyEngine, Vec<PolicyError>> {
        Self::new(Sources::Files {
            toml: toml.to_path_buf(),
            cedar: cedar.map(Path::to_path_buf),
        })
    }

    /// Build an engine from policy text (`toml_name` names it in errors and rules), with
    /// optional raw Cedar as `(name, text)`.
    pub fn from_text(
        toml_name: &str,
        toml: &str,
        cedar: Option<(&str, &str)>,
    ) -> Result<PolicyEngine, Vec<PolicyError>> {
        Self::new(Sources::Text {
            toml_name: toml_name.to_string(),
            toml: toml.to_string(),
            cedar: cedar.map(|(n, t)| (n.to_string(), t.to_string())),
        })
    }

    /// An engine running one of the built-in presets (see [`crate::PRESET_NAMES`]).
    pub fn from_preset(name: &str) -> Result<PolicyEngine, Vec<PolicyError>> {
        Self::new(Sources::Preset {
            name: name.to_string(),
            cedar: None,
        })
    }

    /// A built-in preset plus the admin's raw Cedar file, which `reload` re-reads.
    pub fn from_preset_with_cedar(
        name: &str,
        cedar: &Path,
    ) -> Result<PolicyEngine, Vec<PolicyError>> {
        Self::new(Sources::Preset {
            name: name.to_string(),
            cedar: Some(cedar.to_path_buf()),
        })
    }

    /// Re-read the policy files. On any error the policy in force stays in force and the
    /// errors are returned; on success every cached decision is dropped.
    pub fn reload(&self) -> Result<(), Vec<PolicyError>> {
        let next = self.generation.load(Ordering::SeqCst) + 1;
        let state = load_state(&self.sources, next)?;
        self.generation.store(next, Ordering::SeqCst);
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Drop every cached decision and slice (e.g. after a change the engine cannot see).
    pub fn invalidate(&self) {
        let current = self.state.load_full();
        let next = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.store(Arc::new(State {
            policy: current.policy.clone(),
            rules: current.rules.clone(),
            raw: current.raw.clone(),
            static_policies: current.static_policies.clone(),
            username_templates: current.username_templates.clone(),
            user_policies: BoundedCache::new(SLICE_CACHE_ENTRIES),
            rules_by_kind_action: current.rules_by_kind_action.clone(),
            annotations: current.annotations.clone(),
            raw_cedar_text: current.raw_cedar_text.clone(),
            generation: next,
            slices: BoundedCache::new(SLICE_CACHE_ENTRIES),
            policy_sets: BoundedCache::new(SLICE_CACHE_ENTRIES),
            decisions: BoundedCache::new(DECISION_CACHE_ENTRIES),
        }));
    }

    /// Bumped by every successful reload or invalidation.
    pub fn generation(&self) -> u64 {
        self.state.load().generation
    }

    /// The files to watch (policy file, then the raw Cedar file); a preset has only its
    /// raw Cedar file, if any; an engine built from text has none.
    pub fn policy_files(&self) -> Vec<PathBuf> {
        match &self.sources {
            Sources::Files { toml, cedar } => {
                std::iter::once(toml.clone()).chain(cedar.clone()).collect()
            }
            Sources::Preset { cedar, .. } => cedar.iter().cloned().collect(),
            Sources::Text { .. } => Vec::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.state.load().policy.clone()
    }

    /// The policy in force as Cedar: the compiled TOML, then the raw Cedar file if any.
    pub fn cedar_text(&self) -> String {
        let state = self.state.load();
        let mut out = cedar::compile_to_cedar(&state.policy);
        if let Some(raw) = &state.raw_cedar_text {
            out.push_str("\n// Raw Cedar policies\n");
            out.push_str(raw);
        }
        out
    }

    /// The limits the policy in force sets for a user (see [`crate::Limits`]).
    pub fn limits_for(&self, username: &str, groups: &[String]) -> crate::Limits {
        let state = self.state.load();
        crate::limits::resolve(&state.policy.file, &state.policy.limits, username, groups)
    }

    /// A one-line description: `3 roles, 4 bindings, 1 deny, 2 raw Cedar policies (27 Cedar policies in all)`.
    pub fn summary(&self) -> String {
        let state = self.state.load();
        format!(
            "{} roles, {} bindings, {} denies, {} raw Cedar policies ({} Cedar policies in all)",
            state.policy.roles.len(),
            state.policy.bindings.len(),
            state.policy.denies.len(),
            state.raw.len(),
            state.rules.len() + state.raw.len()
        )
    }

    /// The policy in force and its raw Cedar rules, read together (one generation), for the
    /// file-system view (`fsview.rs`).
    pub(crate) fn policy_and_raw(&self) -> (Policy, Vec<RawRule>) {
        let state = self.state.load();
        (state.policy.clone(), state.raw.clone())
    }

    /// How many decisions are memoized now (for tests and metrics).
    pub fn cached_decisions(&self) -> usize {
        self.state.load().decisions.len()
    }

    fn slice(&self, state: &State, key: SliceKey) -> Arc<Slice> {
        if let Some(slice) = state.slices.get(&key) {
            return slice;
        }
        let mut all = PolicySet::new();
        let mut policies: Vec<cedar_policy::Policy> = Vec::new();
        let mut paths_index = PathIndex::default();
        let mut grants = Vec::new();
        let mut annotations = Vec::new();
        let mut bases: Vec<String> = Vec::new();
        let candidates = state
            .rules_by_kind_action
            .get(&(key.kind, key.action))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for index in candidates {
            let (rule, parsed) = (&state.rules[*index], &state.static_policies[*index]);
            if !rule.subjects.includes(&key.username, &key.groups) {
                continue;
            }
            let Some(paths) = rule.paths_for(Some(&key.username)) else {
                continue;
            };
            let policy = match parsed {
                Some(p) => Some(p.clone()),
                None => Self::user_policy(state, *index, &key.username, paths.len()),
            };
            // A username that cannot be written into Cedar leaves its rule out (no grant).
            if let Some(policy) = policy {
                if all.add(policy.clone()).is_ok() {
                    paths_index.add(policies.len() as u32, rule.kind, rule.effect, &paths);
                    grants.push(rule.effect == Effect::Permit);
                    annotations.push(rule_sort_key(&rule.annotation));
                    policies.push(policy);
                    bases.extend(paths.iter().map(|p| p.base().to_string()));
                }
            }
        }
        let mut raw = Vec::new();
        for rule in &state.raw {
            if rule
                .filter
                .may_apply(&key.username, &key.groups, key.action, key.kind)
                && all.add(rule.policy.clone()).is_ok()
            {
                raw.push(policies.len() as u32);
                policies.push(rule.policy.clone());
            }
        }
        bases.sort();
        bases.dedup();
        let mut by_order: Vec<usize> = (0..annotations.len()).collect();
        by_order.sort_by(|a, b| annotations[*a].cmp(&annotations[*b]));
        let mut rank = vec![0; annotations.len()];
        for (place, index) in by_order.into_iter().enumerate() {
            rank[index] = place as u32;
        }
        let slice = Arc::new(Slice {
            serial: NEXT_SLICE_SERIAL.fetch_add(1, Ordering::Relaxed),
            empty: policies.is_empty(),
            has_raw: !raw.is_empty(),
            policies,
            all: Arc::new(all),
            paths: paths_index,
            raw,
            grants,
            rank,
            bases,
            principal: self.principal(&key.username, &key.groups),
        });
        state.slices.insert(key, slice.clone());
        slice
    }

    /// The caller as a Cedar entity store: `User::"name"` with attribute `groups`, member of
    /// `Group::"g"` for each of its groups.
    fn principal(
        &self,
        username: &str,
        groups: &[String],
    ) -> Result<(EntityUid, Entities), String> {
        let uid = EntityUid::from_type_name_and_id(self.user_type.clone(), EntityId::new(username));
        let group_set = RestrictedExpression::new_set(
            groups
                .iter()
                .map(|g| RestrictedExpression::new_string(g.clone())),
        );
        let entity = Entity::new(
            uid.clone(),
            HashMap::from([("groups".to_string(), group_set)]),
            groups
                .iter()
                .map(|g| {
                    EntityUid::from_type_name_and_id(self.group_type.clone(), EntityId::new(g))
                })
                .collect(),
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([entity], None).map_err(|e| e.to_string())?;
        Ok((uid, entities))
    }

    /// The policies of `slice` that can matter to a request about `resource`, as indexes
    /// into `slice.policies`: the compiled rules its path can satisfy, then every raw policy.
    fn candidates(slice: &Slice, resource: &Resource) -> Vec<u32> {
        let path = if cedar::carries_path(resource.kind) {
            resource.path.as_ref().map(CanonicalPath::as_str)
        } else {
            None
        };
        let mut candidates: Vec<u32> = Vec::new();
        slice.paths.candidates(path, &mut candidates);
        candidates.sort_unstable();
        candidates.dedup();
        candidates.extend_from_slice(&slice.raw);
        candidates
    }

    /// The policy set of some of a slice's policies (`candidates`, ascending, then raw).
    fn policy_set(state: &State, slice: &Slice, candidates: Vec<u32>) -> Arc<PolicySet> {
        if candidates.len() == slice.policies.len() {
            return slice.all.clone();
        }
        let key = (slice.serial, candidates.into_boxed_slice());
        if let Some(set) = state.policy_sets.get(&key) {
            return set;
        }
        let mut set = PolicySet::new();
        for index in key.1.iter() {
            // Every policy here was added to `slice.all` already, so ids are unique.
            let _ = set.add(slice.policies[*index as usize].clone());
        }
        let set = Arc::new(set);
        state.policy_sets.insert(key, set.clone());
        set
    }

    /// A `{username}` rule's Cedar for one user, from the per-user cache or built now.
    fn user_policy(
        state: &State,
        index: usize,
        username: &str,
        usable_paths: usize,
    ) -> Option<cedar_policy::Policy> {
        let key = (index, username.to_string());
        if let Some(policy) = state.user_policies.get(&key) {
            return policy;
        }
        let rule = &state.rules[index];
        let id = PolicyId::new(&rule.id);
        let from_template = match &state.username_templates[index] {
            // Every pattern must survive substitution for the JSON form to be right.
            Some(template) if usable_paths == rule.paths.len() => {
                let mut json = template.clone();
                if let Some(conditions) = json.get_mut("conditions") {
                    substitute_username(conditions, username);
                }
                cedar_policy::Policy::from_json(Some(id.clone()), json).ok()
            }
            _ => None,
        };
        let policy = from_template.or_else(|| {
            rule.render(Some(username))
                .and_then(|text| cedar_policy::Policy::parse(Some(id), text).ok())
        });
        state.user_policies.insert(key, policy.clone());
        policy
    }

    fn default_deny(action: Action, resource: &Resource) -> Decision {
        Decision::deny(format!(
            "default deny: no rule grants {action} on {resource}"
        ))
    }

    fn decide(
        &self,
        state: &State,
        who: &Identity,
        groups: &[String],
        action: Action,
        resource: &Resource,
    ) -> Decision {
        let slice = self.slice(
            state,
            SliceKey {
                username: who.username().to_string(),
                groups: groups.to_vec(),
                kind: resource.kind,
                action,
            },
        );
        if slice.empty {
            return Self::default_deny(action, resource);
        }
        let principal = match &slice.principal {
            Ok(principal) => principal,
            Err(message) => return Decision::deny(format!("error: {message}")),
        };
        let candidates = Self::candidates(&slice, resource);
        // No candidate: Cedar would find no policy satisfied and no error, a default deny.
        if candidates.is_empty() {
            return Self::default_deny(action, resource);
        }
        match self.evaluate(state, &slice, candidates, principal, action, resource) {
            Ok(decision) => decision,
            Err(message) => Decision::deny(format!("error: {message}")),
        }
    }

    /// Run Cedar on the `candidates` of `slice` (see `candidates`).
    fn evaluate(
        &self,
        state: &State,
        slice: &Slice,
        mut candidates: Vec<u32>,
        principal: &(EntityUid, Entities),
        action: Action,
        resource: &Resource,
    ) -> Result<Decision, String> {
        let (request, entities) = self.request(principal, action, resource)?;
        // When every candidate is a grant (no denial, no raw policy; compiled rules never fail
        // to evaluate), the answer is "allowed by the first satisfied grant in file order", or
        // a default deny. Often the first grant in file order decides on its own: try it
        // alone, and run the others only if it is not satisfied.
        if candidates.len() > 1
            && slice.raw.is_empty()
            && candidates.iter().all(|c| slice.grants[*c as usize])
        {
            let first = (0..candidates.len())
                .min_by_key(|i| slice.rank[candidates[*i] as usize])
                .unwrap_or(0);
            let alone = Self::policy_set(state, slice, vec![candidates[first]]);
            let response = self.authorizer.is_authorized(&request, &alone, &entities);
            if response.decision() == cedar_policy::Decision::Allow {
                return Ok(Self::decision_of(state, &response, action, resource));
            }
            if response.diagnostics().errors().next().is_none() {
                candidates.remove(first);
            }
        }
        let policies = Self::policy_set(state, slice, candidates);
        let response = self
            .authorizer
            .is_authorized(&request, &policies, &entities);
        Ok(Self::decision_of(state, &response, action, resource))
    }

    /// The Cedar request and entity store for `action` on `resource` by `principal`.
    fn request(
        &self,
        (principal_uid, principal): &(EntityUid, Entities),
        action: Action,
        resource: &Resource,
    ) -> Result<(Request, Entities), String> {
        let kind_index = ResourceType::ALL
            .iter()
            .position(|k| *k == resource.kind)
            .unwrap_or(0);
        let resource_id = resource
            .id
            .clone()
            .or_else(|| resource.path.as_ref().map(|p| p.as_str().to_string()))
            .unwrap_or_default();
        let resource_uid = EntityUid::from_type_name_and_id(
            self.type_names[kind_index].clone(),
            EntityId::new(resource_id),
        );
        let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
        if cedar::carries_path(resource.kind) {
            if let Some(path) = &resource.path {
                attrs.insert(
                    "path".into(),
                    RestrictedExpression::new_string(path.as_str().to_string()),
                );
            }
        }
        if resource.kind.is_owned() {
            if let Some(owner) = &resource.owner {
                attrs.insert(
                    "owner".into(),
                    RestrictedExpression::new_entity_uid(EntityUid::from_type_name_and_id(
                        self.user_type.clone(),
                        EntityId::new(&owner.username),
                    )),
                );
                attrs.insert(
                    "owner_groups".into(),
                    RestrictedExpression::new_set(
                        owner
                            .groups
                            .iter()
                            .map(|g| RestrictedExpression::new_string(g.clone())),
                    ),
                );
            }
        }
        let resource_entity =
            Entity::new(resource_uid.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
        // The principal's closure is already computed; adding the resource (no parents)
        // only repairs it for that one entity.
        let entities = principal
            .clone()
            .add_entities([resource_entity], None)
            .map_err(|e| e.to_string())?;
        let action_index = Action::ALL.iter().position(|a| *a == action).unwrap_or(0);
        let request = Request::new(
            principal_uid.clone(),
            self.action_uids[action_index].clone(),
            resource_uid,
            Context::empty(),
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// The decision Cedar's `response` stands for, naming the rule that decided.
    fn decision_of(
        state: &State,
        response: &cedar_policy::Response,
        action: Action,
        resource: &Resource,
    ) -> Decision {
        let rule_of = |id: &PolicyId| {
            state
                .annotations
                .get(AsRef::<str>::as_ref(id))
                .cloned()
                .unwrap_or_else(|| id.to_string())
        };
        // Several rules may agree; report the first in file order, deterministically.
        let mut reasons: Vec<String> = response.diagnostics().reason().map(rule_of).collect();
        reasons.sort_by_key(|r| rule_sort_key(r));
        match response.decision() {
            cedar_policy::Decision::Allow => Decision::allow(
                reasons
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| "allowed".to_string()),
            ),
            cedar_policy::Decision::Deny => match reasons.into_iter().next() {
                Some(rule) => Decision::deny(rule),
                None => {
                    let errors: Vec<String> = response
                        .diagnostics()
                        .errors()
                        .map(ToString::to_string)
                        .collect();
                    if errors.is_empty() {
                        Self::default_deny(action, resource)
                    } else {
                        Decision::deny(format!(
                            "default deny: no rule grants {action} on {resource} (rules that failed to evaluate: {})",
                            errors.join("; ")
                        ))
                    }
                }
            },
        }
    }

    /// Decide `action` on every child `names` of directory `dir`, in order. When no rule in
    /// the caller's slice names a path strictly below `dir` (and no raw Cedar policy could
    /// apply), all children that no rule names get one shared decision. A name that is not a
    /// single path segment is denied.
    pub fn authorize_children(
        &self,
        who: &Identity,
        action: Action,
        dir: &CanonicalPath,
        names: &[&str],
    ) -> Vec<bool> {
        let state = self.state.load();
        let groups = sorted_groups(&who.groups);
        let slice = self.slice(
            &state,
            SliceKey {
                username: who.username().to_string(),
                groups,
                kind: ResourceType::Contents,
                action,
            },
        );
        let per_entry = |name: &str| match dir.child(name) {
            Ok(path) => {
                self.authorize(who, action, &Resource::contents(path))
                    .allowed
            }
            Err(_) => false,
        };
        if slice.has_raw {
            return names.iter().map(|n| per_entry(n)).collect();
        }
        if slice.empty {
            return vec![false; names.len()];
        }
        // Children named (or containing something named) by a rule are decided one by one.
        let dir_prefix = if dir.is_root() {
            "/".to_string()
        } else {
            format!("{}/", dir.as_str())
        };
        let named: HashSet<&str> = slice
            .bases
            .iter()
            .filter_map(|base| base.strip_prefix(dir_prefix.as_str()))
            .filter_map(|rest| rest.split('/').next())
            .filter(|segment| !segment.is_empty())
            .collect();
        let mut shared: Option<bool> = None;
        names
            .iter()
            .map(|name| {
                if named.contains(name) {
                    return per_entry(name);
                }
                if name.is_empty() || *name == "." || *name == ".." || name.contains('/') {
                    return false;
                }
                match shared {
                    Some(allowed) => allowed,
                    None => match dir.child(name) {
                        Ok(_) => {
                            let allowed = per_entry(name);
                            shared = Some(allowed);
                            allowed
                        }
                        Err(_) => false,
                    },
                }
            })
            .collect()
    }
}

/// Replace `{username}` in every string of a Cedar JSON (EST) condition.
fn substitute_username(value: &mut serde_json::Value, username: &str) {
    match value {
        serde_json::Value::String(s) if s.contains(USERNAME_PLACEHOLDER) => {
            *s = s.replace(USERNAME_PLACEHOLDER, username);
        }
        serde_json::Value::Array(items) => {
            if let Some(pattern) = like_pattern_literals(items) {
                // A `like` pattern is stored one character per literal: join the runs of
                // literals so the placeholder can be found, then substitute.
                *items = pattern
                    .into_iter()
                    .map(|part| match part {
                        Some(literal) => serde_json::json!({
                            "Literal": literal.replace(USERNAME_PLACEHOLDER, username)
                        }),
                        None => serde_json::Value::String("Wildcard".into()),
                    })
                    .collect();
                return;
            }
            for item in items {
                substitute_username(item, username);
            }
        }
        serde_json::Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                substitute_username(item, username);
            }
        }
        _ => {}
    }
}

/// If `items` is a Cedar JSON `like` pattern, its runs of literal text (`Some`) and
/// wildcards (`None`).
fn like_pattern_literals(items: &[serde_json::Value]) -> Option<Vec<Option<String>>> {
    let mut parts: Vec<Option<String>> = Vec::new();
    for item in items {
        match item {
            serde_json::Value::String(w) if w == "Wildcard" => parts.push(None),
            serde_json::Value::Object(map) if map.len() == 1 => {
                let literal = map.get("Literal")?.as_str()?;
                match parts.last_mut() {
                    Some(Some(run)) => run.push_str(literal),
                    _ => parts.push(Some(literal.to_string())),
                }
            }
            _ => return None,
        }
    }
    (!parts.is_empty()).then_some(parts)
}

/// Orders rule annotations by (file, line) so the first rule in the file is reported.
fn rule_sort_key(rule: &str) -> (String, usize) {
    let mut parts = rule.splitn(3, ':');
    let file = parts.next().unwrap_or_default().to_string();
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    (file, line)
}

impl Authorize for PolicyEngine {
    fn limits(&self, who: &Identity) -> crate::Limits {
        self.limits_for(who.username(), &who.groups)
    }

    fn authorize(&self, who: &Identity, action: Action, resource: &Resource) -> Decision {
        let state = self.state.load();
        let groups = sorted_groups(&who.groups);
        let key = DecisionKey {
            username: who.username().to_string(),
            groups,
            action,
            resource: resource.clone(),
        };
        if let Some(decision) = state.decisions.get(&key) {
            return decision;
        }
        let decision = self.decide(&state, who, &key.groups, action, resource);
        state.decisions.insert(key, decision.clone());
        decision
    }

    fn authorize_children(
        &self,
        who: &Identity,
        action: Action,
        dir: &CanonicalPath,
        names: &[&str],
    ) -> Vec<bool> {
        PolicyEngine::authorize_children(self, who, action, dir, names)
    }
}

/// Whether a raw pattern names a path below `dir` (used by tests of the listing fast path).
#[cfg(test)]
pub(crate) fn pattern_below(pattern: &PathPattern, dir: &CanonicalPath) -> bool {
    let base = pattern.base();
    base != dir.as_str() && CanonicalPath::parse(base).is_ok_and(|b| b.is_within(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Owner, User};

    #[test]
    fn bounded_cache_stays_bounded() {
        let cache: BoundedCache<u32, u32> = BoundedCache::new(64);
        for i in 0..10_000 {
            cache.insert(i, i);
        }
        assert!(cache.len() <= 64);
        assert_eq!(cache.get(&9_999), Some(9_999));
    }

    /// The whole policy as one Cedar set for `who`, without slices, path index or
    /// shortcuts: every compiled rule (`{username}` substituted by rendering its text) and
    /// every raw policy.
    fn whole_policy(engine: &PolicyEngine, who: &Identity) -> PolicySet {
        let state = engine.state.load();
        let mut set = PolicySet::new();
        for rule in &state.rules {
            if let Some(text) = rule.render(Some(who.username())) {
                let policy = cedar_policy::Policy::parse(Some(PolicyId::new(&rule.id)), text)
                    .expect("compiled rule parses");
                set.add(policy).expect("unique id");
            }
        }
        for rule in &state.raw {
            set.add(rule.policy.clone()).expect("unique id");
        }
        set
    }

    /// Cedar's answer on the whole policy, with the entity store's closure computed from
    /// scratch.
    fn reference(
        engine: &PolicyEngine,
        whole: &PolicySet,
        who: &Identity,
        action: Action,
        resource: &Resource,
    ) -> Decision {
        let principal = engine
            .principal(who.username(), &sorted_groups(&who.groups))
            .expect("principal entity");
        let (request, entities) = engine
            .request(&principal, action, resource)
            .expect("request");
        let entities =
            Entities::from_entities(entities.iter().cloned(), None).expect("entity store");
        let response = engine.authorizer.is_authorized(&request, whole, &entities);
        PolicyEngine::decision_of(&engine.state.load(), &response, action, resource)
    }

    const DIFFERENTIAL_TOML: &str = r#"
[roles.all]
permissions = ["*:*:any"]
[roles.basics]
permissions = ["api:read", "kernelspecs:read", "kernels:*:own", "sessions:read:group"]
[roles.reader]
permissions = ["contents:read", "kernels:read:group", "terminals:read:group"]
[roles.editor]
permissions = ["contents:*", "kernels:*:own", "sessions:*:own", "terminals:*:own"]

[[bindings]]
role = "all"
groups = ["admin"]
[[bindings]]
role = "basics"
everyone = true
[[bindings]]
role = "editor"
everyone = true
paths = ["/home/{username}/**", "/scratch/{username}"]
[[bindings]]
role = "reader"
groups = ["staff", "students"]
paths = ["/projects/p1/**", "/shared/readme.md", "/"]
[[bindings]]
role = "editor"
users = ["alice", "a*b"]
groups = ["staff"]
paths = ["/projects/p1/x/**", "/projects/p10/**"]
[[bindings]]
role = "reader"
groups = ["students"]
paths = ["/**"]
[[bindings]]
role = "editor"
groups = ["students"]
paths = ["/projects/p1/x/**"]

[[deny]]
everyone = true
permissions = ["contents:write"]
paths = ["/projects/p1/x/archive/**", "/shared/readme.md"]
[[deny]]
groups = ["students"]
permissions = ["kernels:execute:group", "contents:read"]
paths = ["/home/{username}/secret", "/projects/p10/**"]
[[deny]]
users = ["bob"]
permissions = ["terminals:*"]
"#;

    const DIFFERENTIAL_CEDAR: &str = r#"
@id("guests read /guest")
permit (principal in Group::"guests", action == Action::"read", resource is Contents)
when { resource has path && resource.path like "/guest/*" };
forbid (principal == User::"carol", action, resource)
when { resource has path && resource.path like "*private*" };
"#;

    fn differential_requests() -> (Vec<Identity>, Vec<(Action, Resource)>) {
        let people: Vec<Identity> = [
            ("alice", vec!["staff"]),
            ("bob", vec!["students"]),
            ("carol", vec!["students", "guests"]),
            ("dave", vec![]),
            ("a*b", vec!["staff"]),
            ("ab", vec!["students"]),
            ("x/y", vec!["students"]),
            ("root", vec!["admin", "staff"]),
        ]
        .into_iter()
        .map(|(name, groups)| Identity {
            user: User::named(name),
            groups: groups.into_iter().map(String::from).collect(),
        })
        .collect();
        let paths = [
            "/",
            "/home",
            "/home/alice",
            "/home/alice/n.ipynb",
            "/home/alice2/n.ipynb",
            "/home/a*b/f",
            "/home/ab/f",
            "/home/ab/secret",
            "/home/bob/secret/x",
            "/home/bob/secret",
            "/home/x/y/z",
            "/scratch/bob",
            "/scratch/bob/x",
            "/projects",
            "/projects/p1",
            "/projects/p1/x",
            "/projects/p1/x/y.ipynb",
            "/projects/p1x",
            "/projects/p10",
            "/projects/p10/z",
            "/projects/p1/x/archive/a",
            "/shared/readme.md",
            "/shared/readme.md/x",
            "/shared",
            "/guest/a",
            "/guest",
            "/private/a",
            "/home/carol/private",
        ];
        let mut requests = Vec::new();
        for action in Action::ALL {
            for kind in ResourceType::ALL {
                requests.push((action, Resource::service(kind)));
                for path in paths {
                    let path = CanonicalPath::parse(path).expect("test path");
                    if kind == ResourceType::Contents {
                        requests.push((action, Resource::contents(path.clone())));
                    }
                    if kind.is_owned() {
                        for owner in &people[..3] {
                            requests.push((
                                action,
                                Resource::owned(
                                    kind,
                                    Some("k".into()),
                                    Owner::of(owner),
                                    Some(path.clone()),
                                ),
                            ));
                        }
                    }
                }
                if kind.is_owned() {
                    for owner in &people {
                        requests.push((
                            action,
                            Resource::owned(kind, Some("k".into()), Owner::of(owner), None),
                        ));
                    }
                }
            }
        }
        (people, requests)
    }

    #[test]
    fn sliced_decisions_match_cedar_on_the_whole_policy() {
        let engine = PolicyEngine::from_text(
            "diff.toml",
            DIFFERENTIAL_TOML,
            Some(("diff.cedar", DIFFERENTIAL_CEDAR)),
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let without_raw = PolicyEngine::from_text("diff.toml", DIFFERENTIAL_TOML, None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let (people, requests) = differential_requests();
        let mut allowed = 0;
        for engine in [&engine, &without_raw] {
            for who in &people {
                let whole = whole_policy(engine, who);
                for (action, resource) in &requests {
                    let expected = reference(engine, &whole, who, *action, resource);
                    let got = engine.authorize(who, *action, resource);
                    assert_eq!(got, expected, "{} {action} {resource}", who.username());
                    allowed += usize::from(got.allowed);
                }
            }
        }
        // The workload exercises both answers, and several deciding rules.
        assert!(allowed > 1_000 && allowed < 2 * people.len() * requests.len() - 1_000);
    }

    #[test]
    fn preset_decisions_match_cedar_on_the_whole_policy() {
        let (people, requests) = differential_requests();
        for name in crate::PRESET_NAMES {
            let engine = PolicyEngine::from_preset(name).unwrap_or_else(|e| panic!("{e:?}"));
            for who in &people {
                let whole = whole_policy(&engine, who);
                for (action, resource) in &requests {
                    let expected = reference(&engine, &whole, who, *action, resource);
                    let got = engine.authorize(who, *action, resource);
                    assert_eq!(
                        got,
                        expected,
                        "{name}: {} {action} {resource}",
                        who.username()
                    );
                }
            }
        }
    }

    #[test]
    fn path_index_finds_exactly_the_rules_a_path_can_satisfy() {
        let mut index = PathIndex::default();
        let pattern = |p: &str| PathPattern::parse(p).expect("pattern");
        index.add(
            0,
            ResourceType::Contents,
            Effect::Permit,
            &[pattern("/a/**")],
        );
        index.add(
            1,
            ResourceType::Contents,
            Effect::Forbid,
            &[pattern("/a/b"), pattern("/c/**")],
        );
        index.add(2, ResourceType::Contents, Effect::Permit, &[pattern("/**")]);
        index.add(3, ResourceType::Contents, Effect::Permit, &[]);
        index.add(4, ResourceType::Api, Effect::Permit, &[pattern("/a/**")]);
        let find = |path: Option<&str>| {
            let mut out = Vec::new();
            index.candidates(path, &mut out);
            out.sort_unstable();
            out.dedup();
            out
        };
        assert_eq!(find(None), vec![0, 2, 3, 4]);
        assert_eq!(find(Some("/")), vec![2, 3, 4]);
        assert_eq!(find(Some("/a")), vec![0, 2, 3, 4]);
        assert_eq!(find(Some("/a/b")), vec![0, 1, 2, 3, 4]);
        assert_eq!(find(Some("/a/b/c")), vec![0, 2, 3, 4]);
        assert_eq!(find(Some("/ab")), vec![2, 3, 4]);
        assert_eq!(find(Some("/c")), vec![1, 2, 3, 4]);
        assert_eq!(find(Some("/c/d/e")), vec![1, 2, 3, 4]);
    }

    #[test]
    fn pattern_below_is_strict() {
        let dir = CanonicalPath::parse("/a").unwrap();
        assert!(pattern_below(&PathPattern::Subtree("/a/b".into()), &dir));
        assert!(!pattern_below(&PathPattern::Subtree("/a".into()), &dir));
        assert!(!pattern_below(&PathPattern::Subtree("/ab".into()), &dir));
    }
}
