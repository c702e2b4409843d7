//! Resources written as one string, for `concord policy check --resource …`.

use crate::model::{Owner, Resource, ResourceType};
use crate::path::CanonicalPath;

impl Resource {
    /// Parse a resource written as text:
    ///
    /// - `api`, `kernelspecs`, … : a resource type as a whole;
    /// - `contents` (type-level) or `contents:/projects/a/x.ipynb`;
    /// - `kernels` (type-level), or an owned instance
    ///   `kernels:ID@OWNER[group1,group2]/path/of/notebook.ipynb`, where the id, the owner's
    ///   groups and the path are optional (`kernels@alice`, `terminals:1@bob`,
    ///   `sessions:s1@alice[students]/home/alice/a.ipynb`).
    pub fn parse_spec(spec: &str) -> Result<Resource, String> {
        let spec = spec.trim();
        let (kind_text, rest) = match spec.find([':', '@']) {
            Some(i) => (&spec[..i], Some(&spec[i..])),
            None => (spec, None),
        };
        let kind: ResourceType = kind_text.parse()?;
        let Some(rest) = rest else {
            return Ok(Resource::service(kind));
        };
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        let path_of = |text: &str| {
            CanonicalPath::parse(text).map_err(|e| format!("in resource {spec:?}: {e}"))
        };
        if kind == ResourceType::Contents {
            if !rest.starts_with('/') {
                return Err(format!(
                    "in resource {spec:?}: a contents path must start with / (e.g. contents:/projects/a/x.ipynb)"
                ));
            }
            return Ok(Resource::contents(path_of(rest)?));
        }
        if !kind.is_owned() {
            return Err(format!(
                "resource type {kind} has no instances: write just {kind:?}"
            ));
        }
        let (id_text, owner_text) = match rest.find('@') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let id = (!id_text.is_empty()).then(|| id_text.to_string());
        let Some(owner_text) = owner_text else {
            return Err(format!(
                "in resource {spec:?}: name the owner, e.g. {kind}:{}@alice",
                id_text
            ));
        };
        let (owner_part, path) = match owner_text.find('/') {
            Some(i) => (&owner_text[..i], Some(path_of(&owner_text[i..])?)),
            None => (owner_text, None),
        };
        let (username, groups) = match owner_part.find('[') {
            Some(i) => {
                let list = owner_part[i + 1..].strip_suffix(']').ok_or_else(|| {
                    format!("in resource {spec:?}: the owner's groups are written [g1,g2]")
                })?;
                let groups = list
                    .split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect();
                (&owner_part[..i], groups)
            }
            None => (owner_part, Vec::new()),
        };
        if username.is_empty() {
            return Err(format!("in resource {spec:?}: empty owner name after @"));
        }
        Ok(Resource::owned(
            kind,
            id,
            Owner {
                username: username.to_string(),
                groups,
            },
            path,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Resource::parse_spec("api").unwrap(),
            Resource::service(ResourceType::Api)
        );
        assert_eq!(
            Resource::parse_spec("contents").unwrap(),
            Resource::service(ResourceType::Contents)
        );
        let r = Resource::parse_spec("contents:/projects/a/./x.ipynb").unwrap();
        assert_eq!(r.path.unwrap().as_str(), "/projects/a/x.ipynb");
        let k =
            Resource::parse_spec("kernels:abc@alice[students,staff]/home/alice/n.ipynb").unwrap();
        assert_eq!(k.id.as_deref(), Some("abc"));
        let owner = k.owner.unwrap();
        assert_eq!(owner.username, "alice");
        assert_eq!(owner.groups, vec!["students", "staff"]);
        assert_eq!(k.path.unwrap().as_str(), "/home/alice/n.ipynb");
        let t = Resource::parse_spec("terminals@bob").unwrap();
        assert_eq!(t.id, None);
        assert_eq!(t.owner.unwrap().username, "bob");
    }

    #[test]
    fn refuses_bad_specs() {
        for bad in [
            "nope",
            "contents:relative",
            "contents:/../x",
            "kernels:abc",
            "kernels:abc@",
            "api:x",
            "kernels:a@b[g",
        ] {
            assert!(Resource::parse_spec(bad).is_err(), "{bad}");
        }
    }
}
