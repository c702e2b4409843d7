//! Decision latency with 1,000 users, 50 groups and 200 path rules.
//!
//! Run: `cargo bench -p concord-authz --bench decisions`. Prints lines like
//! `authz.cached.p99_us 1.2`.

use std::hint::black_box;
use std::time::Instant;

use concord_authz::{
    Action, Authorize, CanonicalPath, Identity, Owner, PolicyEngine, Resource, ResourceType,
    TokenScope, User,
};

const USERS: usize = 1_000;
const GROUPS: usize = 50;
const PATH_RULES: usize = 200;

/// Deterministic pseudo-random numbers (xorshift64*), so runs are comparable.
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

fn policy_text() -> String {
    let mut text = String::from(
        r#"[roles.everything]
permissions = ["*:*:any"]
[roles.basics]
permissions = ["api:read", "config:read", "kernelspecs:read", "kernels:*:own", "sessions:*:own"]
[roles.reader]
permissions = ["contents:read", "kernels:read:group"]
[roles.editor]
permissions = ["contents:read", "contents:write", "kernels:*:own", "sessions:*:own"]

[[bindings]]
role = "everything"
groups = ["admin"]

[[bindings]]
role = "basics"
everyone = true

[[bindings]]
role = "editor"
everyone = true
paths = ["/home/{username}/**"]

[[deny]]
everyone = true
permissions = ["contents:write"]
paths = ["/projects/p0/archive/**"]
"#,
    );
    for i in 0..PATH_RULES {
        let role = if i % 3 == 0 { "editor" } else { "reader" };
        let subjects = if i % 10 == 0 {
            format!("users = [\"u{}\"]", i * 5)
        } else {
            format!("groups = [\"g{}\"]", i % GROUPS)
        };
        text.push_str(&format!(
            "\n[[bindings]]\nrole = \"{role}\"\n{subjects}\npaths = [\"/projects/p{i}/**\", \"/shared/s{}/readme.md\"]\n",
            i % 40
        ));
    }
    text
}

fn identities() -> Vec<Identity> {
    (0..USERS)
        .map(|u| Identity {
            user: User::named(&format!("u{u}")),
            groups: vec![
                format!("g{}", u % GROUPS),
                format!("g{}", (u * 7 + 3) % GROUPS),
            ],
        })
        .collect()
}

fn random_request(g: &mut Gen, who: &Identity, unique: usize) -> (Action, Resource) {
    let action = if g.below(3) == 0 {
        Action::Write
    } else {
        Action::Read
    };
    match g.below(10) {
        0 => (
            Action::Execute,
            Resource::owned(
                ResourceType::Kernels,
                Some(format!("k{unique}")),
                Owner::of(who),
                None,
            ),
        ),
        1 => (
            action,
            Resource::contents(
                CanonicalPath::parse(&format!("/home/{}/n{unique}.ipynb", who.username()))
                    .unwrap_or_else(|_| CanonicalPath::root()),
            ),
        ),
        _ => (
            action,
            Resource::contents(
                CanonicalPath::parse(&format!(
                    "/projects/p{}/dir{}/f{unique}.ipynb",
                    g.below(PATH_RULES + 20),
                    g.below(5)
                ))
                .unwrap_or_else(|_| CanonicalPath::root()),
            ),
        ),
    }
}

fn percentile(sorted_ns: &[u128], p: f64) -> f64 {
    let index = ((sorted_ns.len() as f64 - 1.0) * p).round() as usize;
    sorted_ns[index] as f64 / 1000.0
}

fn report(name: &str, mut samples: Vec<u128>) {
    samples.sort_unstable();
    println!("authz.{name}.p50_us {:.2}", percentile(&samples, 0.50));
    println!("authz.{name}.p99_us {:.2}", percentile(&samples, 0.99));
}

fn main() {
    let text = policy_text();
    let started = Instant::now();
    let engine = match PolicyEngine::from_text("bench.toml", &text, None) {
        Ok(e) => e,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            std::process::exit(1);
        }
    };
    println!(
        "authz.load_ms {:.1}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    println!("# {}", engine.summary());
    let people = identities();
    let mut g = Gen(0x0dd_ba11_cafe_f00d);

    // Cold: the first request of each user for a resource type builds their policy slice.
    let mut cold = Vec::with_capacity(USERS);
    for (u, who) in people.iter().enumerate() {
        let (action, resource) = random_request(&mut g, who, u);
        let t = Instant::now();
        black_box(engine.authorize(who, action, &resource));
        cold.push(t.elapsed().as_nanos());
    }
    report("cold_slice", cold);

    // Warm every user's slices for the request kinds used below.
    for (u, who) in people.iter().enumerate() {
        for action in Action::ALL {
            for kind in [ResourceType::Contents, ResourceType::Kernels] {
                let resource = match kind {
                    ResourceType::Contents => Resource::contents(CanonicalPath::root()),
                    _ => Resource::owned(kind, Some(format!("w{u}")), Owner::of(who), None),
                };
                black_box(engine.authorize(who, action, &resource));
            }
        }
    }

    // Uncached: every request names a resource never asked about before (a fresh kernel id
    // or file name), so each sample misses the decision cache and is decided by the engine;
    // the caller's slice is warm. Most of these questions match no rule of the caller and
    // are settled without Cedar; the allowed ones are the requests a grant decides, which
    // always run Cedar, and are reported on their own as well.
    let cached_before = engine.cached_decisions();
    let mut uncached = Vec::with_capacity(50_000);
    let mut uncached_allowed = Vec::new();
    let mut requests = Vec::with_capacity(50_000);
    for i in 0..50_000 {
        let who = &people[g.below(USERS)];
        let (action, resource) = random_request(&mut g, who, 1_000_000 + i);
        let t = Instant::now();
        let decision = black_box(engine.authorize(who, action, &resource));
        let elapsed = t.elapsed().as_nanos();
        uncached.push(elapsed);
        if decision.allowed {
            uncached_allowed.push(elapsed);
        }
        requests.push((who, action, resource));
    }
    // Each sample added one decision (the cache is large enough not to be emptied here).
    assert_eq!(engine.cached_decisions(), cached_before + requests.len());
    println!(
        "authz.uncached_allowed_share {:.2}",
        uncached_allowed.len() as f64 / uncached.len() as f64
    );
    report("uncached", uncached);
    report("uncached_allowed", uncached_allowed);

    // Cached: the same questions again.
    let mut cached = Vec::with_capacity(200_000);
    for _ in 0..4 {
        for (who, action, resource) in &requests {
            let t = Instant::now();
            black_box(engine.authorize(who, *action, resource));
            cached.push(t.elapsed().as_nanos());
        }
    }
    report("cached", cached);

    // The same cached questions asked as a request with a token: unscoped (which must cost
    // what `authorize` does) and scoped (the owner's decision, then the scope's grants).
    let scope = TokenScope::parse(&["contents:read:/projects/**", "kernels:*"])
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, scope) in [
        ("cached_unscoped_token", None),
        ("cached_scoped_token", Some(&scope)),
    ] {
        let mut samples = Vec::with_capacity(200_000);
        for _ in 0..4 {
            for (who, action, resource) in &requests {
                let t = Instant::now();
                black_box(engine.authorize_scoped(who, scope, *action, resource));
                samples.push(t.elapsed().as_nanos());
            }
        }
        report(name, samples);
    }

    // Listing a 10,000-entry directory.
    let names: Vec<String> = (0..10_000).map(|i| format!("entry{i}.ipynb")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let dir = CanonicalPath::parse("/projects/p3/dir1").unwrap_or_else(|_| CanonicalPath::root());
    let mut listing = Vec::new();
    for who in people.iter().take(20) {
        let t = Instant::now();
        black_box(engine.authorize_children(who, Action::Read, &dir, &refs));
        listing.push(t.elapsed().as_nanos());
    }
    listing.sort_unstable();
    println!(
        "authz.children_10k.p50_ms {:.3}",
        percentile(&listing, 0.5) / 1000.0
    );
    println!(
        "authz.children_10k.max_ms {:.3}",
        listing[listing.len() - 1] as f64 / 1e6
    );
    // For comparison: the same listing decided entry by entry (cache cold for these paths).
    let who = &people[21];
    let t = Instant::now();
    for name in &refs {
        if let Ok(path) = dir.child(name) {
            black_box(engine.authorize(who, Action::Read, &Resource::contents(path)));
        }
    }
    println!(
        "authz.children_10k_per_entry_ms {:.1}",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
