//! `authorize_children` must agree with one `authorize` per entry, whatever the rules.

use concord_authz::{Action, Authorize, CanonicalPath, Identity, PolicyEngine, Resource, User};

/// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SEGMENTS: &[&str] = &["a", "ab", "b", "u1", "{username}", "x.ipynb"];
const USERS: &[&str] = &["u1", "u2"];
const GROUPS: &[&str] = &["g1", "g2"];

fn random_path(g: &mut Gen, max_depth: usize) -> String {
    let depth = g.below(max_depth + 1);
    let mut path = String::new();
    for _ in 0..depth {
        path.push('/');
        path.push_str(g.pick(SEGMENTS));
    }
    path
}

fn random_pattern(g: &mut Gen) -> String {
    let base = random_path(g, 3);
    match g.below(3) {
        0 if !base.is_empty() => base,
        _ => format!("{base}/**"),
    }
}

fn random_subjects(g: &mut Gen) -> String {
    match g.below(3) {
        0 => "everyone = true".to_string(),
        1 => format!("users = [\"{}\"]", g.pick(USERS)),
        _ => format!("groups = [\"{}\"]", g.pick(GROUPS)),
    }
}

fn random_policy(g: &mut Gen) -> String {
    let mut text = String::from(
        "[roles.r]\npermissions = [\"contents:read\"]\n[roles.w]\npermissions = [\"contents:read\", \"contents:write\"]\n",
    );
    for _ in 0..g.below(6) + 1 {
        let paths: Vec<String> = (0..g.below(3))
            .map(|_| format!("\"{}\"", random_pattern(g)))
            .collect();
        let paths = if paths.is_empty() {
            String::new()
        } else {
            format!("paths = [{}]\n", paths.join(", "))
        };
        if g.below(4) == 0 {
            let permission = if g.below(2) == 0 {
                "contents:read"
            } else {
                "contents:*"
            };
            text.push_str(&format!(
                "[[deny]]\n{}\npermissions = [\"{permission}\"]\n{paths}",
                random_subjects(g)
            ));
        } else {
            let role = if g.below(2) == 0 { "r" } else { "w" };
            text.push_str(&format!(
                "[[bindings]]\nrole = \"{role}\"\n{}\n{paths}",
                random_subjects(g)
            ));
        }
    }
    text
}

fn identity(g: &mut Gen) -> Identity {
    let groups = match g.below(4) {
        0 => vec![],
        1 => vec!["g1".to_string()],
        2 => vec!["g2".to_string()],
        _ => vec!["g1".to_string(), "g2".to_string()],
    };
    Identity {
        user: User::named(g.pick(USERS)),
        groups,
    }
}

#[test]
fn listing_agrees_with_per_entry_decisions() {
    let mut g = Gen(0x5eed_1234_abcd_0001);
    let names: Vec<&str> = vec!["a", "ab", "b", "u1", "u2", "x.ipynb", "zz", "..", "", "q"];
    let mut checked = 0;
    for round in 0..300 {
        let text = random_policy(&mut g);
        let raw = (round % 7 == 0).then_some((
            "extra.cedar",
            "forbid (principal, action, resource is Contents) when { resource has path && resource.path like \"*/b\" };\n",
        ));
        let listing = PolicyEngine::from_text("policy.toml", &text, raw)
            .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
        let single = PolicyEngine::from_text("policy.toml", &text, raw).unwrap();
        for _ in 0..5 {
            let who = identity(&mut g);
            let dir_text = random_path(&mut g, 2).replace("{username}", "u1");
            let dir = CanonicalPath::parse(&dir_text).unwrap();
            let action = if g.below(2) == 0 {
                Action::Read
            } else {
                Action::Write
            };
            let got = listing.authorize_children(&who, action, &dir, &names);
            let expected: Vec<bool> = names
                .iter()
                .map(|n| match dir.child(n) {
                    Ok(p) => {
                        single
                            .authorize(&who, action, &Resource::contents(p))
                            .allowed
                    }
                    Err(_) => false,
                })
                .collect();
            assert_eq!(
                got, expected,
                "policy:\n{text}\nwho {who:?} {action} children of {dir} {names:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1500);
}

#[test]
fn large_listing_shares_one_decision() {
    let e = PolicyEngine::from_preset("classroom").unwrap();
    let sam = Identity {
        user: User::named("sam"),
        groups: vec!["students".into()],
    };
    let names: Vec<String> = (0..10_000).map(|i| format!("file{i}.ipynb")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let home = CanonicalPath::parse("/home/sam").unwrap();
    assert!(e
        .authorize_children(&sam, Action::Write, &home, &refs)
        .iter()
        .all(|a| *a));
    let other = CanonicalPath::parse("/home/kim").unwrap();
    assert!(e
        .authorize_children(&sam, Action::Read, &other, &refs)
        .iter()
        .all(|a| !*a));
    // /home: only one's own directory shows.
    let listed = e.authorize_children(
        &sam,
        Action::Read,
        &CanonicalPath::parse("/home").unwrap(),
        &["kim", "sam", "samuel"],
    );
    assert_eq!(listed, vec![false, true, false]);
}
