//! What the SBOM derives from each wheel's METADATA: the dependency graph (`Requires-Dist`
//! with its markers evaluated for the lock's target and its extras only where they were asked
//! for) and the license as an SPDX id or expression where the metadata gives or maps to one.
//! <https://packaging.python.org/en/latest/specifications/core-metadata/>,
//! <https://peps.python.org/pep-0639/>, <https://spdx.org/licenses/>.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep508_rs::{ExtraName, MarkerEnvironment, MarkerTree};
use serde_json::{json, Value};
use wheelship::python::names::canonicalize_name;
use wheelship::python::quiet_catch;

/// One `Requires-Dist`: the project, the extras it asks of it, and when it applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Requires {
    pub name: String,
    pub extras: BTreeSet<String>,
    /// The marker as written; `None` when there is none.
    pub marker: Option<String>,
}

/// A `Requires-Dist` value (PEP 508): name, `[extras]`, then a version, a URL or nothing, then
/// `; marker`. `None` when it does not start with a project name.
pub fn requires(value: &str) -> Option<Requires> {
    let v = value.trim();
    let end = v
        .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .unwrap_or(v.len());
    if end == 0 {
        return None;
    }
    let name = canonicalize_name(&v[..end]);
    let rest = v[end..].trim_start();
    let mut extras = BTreeSet::new();
    if let Some(inner) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        extras = inner
            .0
            .split(',')
            .map(|e| canonicalize_name(e.trim()))
            .filter(|e| !e.is_empty())
            .collect();
    }
    // A marker holds no `;`: the last one starts it (a URL before it may hold one).
    let marker = v
        .rsplit_once(';')
        .map(|(_, m)| m.trim().to_string())
        .filter(|m| !m.is_empty());
    Some(Requires {
        name,
        extras,
        marker,
    })
}

/// Where a lock applies: each target's marker environment, `None` for a target whose
/// environment is not known (a cross target named by tags alone): there only extras decide.
pub type Environments = Vec<Option<MarkerEnvironment>>;

/// Whether a requirement applies, for any of the environments, when its package was asked for
/// with `extras`. A marker that does not parse is taken as applying (the edge is kept).
fn applies(r: &Requires, extras: &BTreeSet<String>, envs: &Environments) -> bool {
    let Some(m) = &r.marker else { return true };
    let tree = match quiet_catch(|| MarkerTree::from_str(m)) {
        Some(Ok(t)) => t,
        _ => return true,
    };
    let extras: Vec<ExtraName> = extras
        .iter()
        .filter_map(|e| ExtraName::from_str(e).ok())
        .collect();
    envs.iter().any(|env| {
        quiet_catch(|| tree.evaluate_optional_environment(env.as_ref(), &extras)).unwrap_or(true)
    })
}

/// The graph: for each package of the lock, the packages of the lock it depends on. `asked`
/// holds the extras each requested package was asked with (the requirements' entries); the
/// extras a dependency asks of another are followed until nothing changes.
pub fn graph(
    requires: &BTreeMap<String, Vec<Requires>>,
    asked: &BTreeMap<String, BTreeSet<String>>,
    envs: &Environments,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut extras: BTreeMap<String, BTreeSet<String>> = requires
        .keys()
        .map(|n| (n.clone(), asked.get(n).cloned().unwrap_or_default()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    loop {
        let mut changed = false;
        for (name, reqs) in requires {
            let have = extras[name].clone();
            for r in reqs {
                if r.name == *name || !requires.contains_key(&r.name) || !applies(r, &have, envs) {
                    continue;
                }
                changed |= edges
                    .entry(name.clone())
                    .or_default()
                    .insert(r.name.clone());
                let theirs = extras.get_mut(&r.name).expect("a package of the lock");
                for e in &r.extras {
                    changed |= theirs.insert(e.clone());
                }
            }
        }
        if !changed {
            return edges;
        }
    }
}

/// License classifiers that name exactly one SPDX license (the ambiguous ones, `BSD License`
/// or `Apache Software License`, stay names).
const CLASSIFIERS: &[(&str, &str)] = &[
    ("Boost Software License 1.0 (BSL-1.0)", "BSL-1.0"),
    (
        "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication",
        "CC0-1.0",
    ),
    ("Eclipse Public License 2.0 (EPL-2.0)", "EPL-2.0"),
    ("European Union Public Licence 1.2 (EUPL 1.2)", "EUPL-1.2"),
    ("GNU Affero General Public License v3", "AGPL-3.0-only"),
    (
        "GNU Affero General Public License v3 or later (AGPLv3+)",
        "AGPL-3.0-or-later",
    ),
    ("GNU General Public License v2 (GPLv2)", "GPL-2.0-only"),
    (
        "GNU General Public License v2 or later (GPLv2+)",
        "GPL-2.0-or-later",
    ),
    ("GNU General Public License v3 (GPLv3)", "GPL-3.0-only"),
    (
        "GNU General Public License v3 or later (GPLv3+)",
        "GPL-3.0-or-later",
    ),
    (
        "GNU Lesser General Public License v2 (LGPLv2)",
        "LGPL-2.0-only",
    ),
    (
        "GNU Lesser General Public License v2 or later (LGPLv2+)",
        "LGPL-2.0-or-later",
    ),
    (
        "GNU Lesser General Public License v3 (LGPLv3)",
        "LGPL-3.0-only",
    ),
    (
        "GNU Lesser General Public License v3 or later (LGPLv3+)",
        "LGPL-3.0-or-later",
    ),
    ("Historical Permission Notice and Disclaimer (HPND)", "HPND"),
    ("ISC License (ISCL)", "ISC"),
    ("MIT License", "MIT"),
    ("MIT No Attribution License (MIT-0)", "MIT-0"),
    ("Mozilla Public License 1.1 (MPL 1.1)", "MPL-1.1"),
    ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
    ("Python Software Foundation License", "PSF-2.0"),
    ("The Unlicense (Unlicense)", "Unlicense"),
    ("Universal Permissive License (UPL)", "UPL-1.0"),
    ("zlib/libpng License", "Zlib"),
];

/// A free-text license naming one SPDX license as people write it.
const NAMES: &[(&str, &str)] = &[
    ("Apache 2.0", "Apache-2.0"),
    ("Apache License 2.0", "Apache-2.0"),
    ("Apache License, Version 2.0", "Apache-2.0"),
    ("Apache Software License 2.0", "Apache-2.0"),
    ("BSD 3-Clause", "BSD-3-Clause"),
    ("BSD-3", "BSD-3-Clause"),
    ("3-Clause BSD License", "BSD-3-Clause"),
    ("BSD 2-Clause", "BSD-2-Clause"),
    ("GPLv2", "GPL-2.0-only"),
    ("GPLv3", "GPL-3.0-only"),
    ("MPL 2.0", "MPL-2.0"),
];

/// An SPDX id as the list spells it, for a text that is one (whatever its case).
fn spdx_id(text: &str) -> Option<&'static str> {
    if let Some(id) = spdx::license_id(text) {
        return Some(id.name);
    }
    let lower = text.to_ascii_lowercase();
    // The list is small enough to scan once per wheel.
    spdx::identifiers::LICENSES
        .iter()
        .find(|(id, _, _)| id.to_ascii_lowercase() == lower)
        .map(|(id, _, _)| *id)
}

/// A text that maps to one SPDX id: an id itself, a classifier's name, or a usual name.
fn mapped(text: &str) -> Option<&'static str> {
    let t = text.trim();
    spdx_id(t).or_else(|| {
        CLASSIFIERS
            .iter()
            .chain(NAMES)
            .find(|(name, _)| name.eq_ignore_ascii_case(t))
            .map(|(_, id)| *id)
    })
}

/// The license as CycloneDX has it (its `licenses` array): PEP 639's `License-Expression`
/// (an SPDX expression), else the `License` field as an id or an expression when it is one or
/// maps to one, else the license classifiers (ids where they map to one); a name only where
/// nothing fits.
pub fn licenses(expression: &[&str], field: Option<&str>, classifiers: &[&str]) -> Vec<Value> {
    if let Some(e) = expression
        .first()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
    {
        return vec![expression_or_name(e)];
    }
    if let Some(f) = field
        .map(str::trim)
        .filter(|f| !f.is_empty() && !f.contains('\n') && f.len() <= 100 && *f != "UNKNOWN")
    {
        return vec![expression_or_name(f)];
    }
    let mut out: Vec<Value> = Vec::new();
    for c in classifiers {
        let Some(c) = c.strip_prefix("License :: ") else {
            continue;
        };
        let name = c.rsplit(" :: ").next().unwrap_or(c);
        let v = match mapped(name) {
            Some(id) => json!({"license": {"id": id}}),
            None => json!({"license": {"name": name}}),
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// One id (`{"license": {"id"}}`), an expression of known ids (`{"expression"}`), or a name.
fn expression_or_name(text: &str) -> Value {
    if let Some(id) = mapped(text) {
        return json!({"license": {"id": id}});
    }
    match spdx::Expression::parse(text) {
        Ok(e) if e.requirements().all(|r| r.req.license.id().is_some()) => {
            json!({"expression": text})
        }
        _ => json!({"license": {"name": text}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> MarkerEnvironment {
        MarkerEnvironment::try_from(pep508_rs::MarkerEnvironmentBuilder {
            implementation_name: "cpython",
            implementation_version: "3.11.2",
            os_name: "posix",
            platform_machine: "x86_64",
            platform_python_implementation: "CPython",
            platform_release: "",
            platform_system: "Linux",
            platform_version: "",
            python_full_version: "3.11.2",
            python_version: "3.11",
            sys_platform: "linux",
        })
        .unwrap()
    }

    #[test]
    fn markers_and_extras_decide_the_edges() {
        let r = |s: &str| requires(s).unwrap();
        let lock: BTreeMap<String, Vec<Requires>> = [
            (
                "gunicorn".to_string(),
                vec![
                    r("packaging"),
                    r("setproctitle ; extra == 'setproctitle'"),
                    r("importlib-metadata; python_version < '3.8'"),
                    r("eventlet[dns]>=0.24; extra == 'eventlet'"),
                ],
            ),
            ("packaging".into(), vec![]),
            ("setproctitle".into(), vec![]),
            ("importlib-metadata".into(), vec![]),
            (
                "eventlet".into(),
                vec![r("dnspython>=1.15; extra == \"dns\""), r("greenlet")],
            ),
            ("dnspython".into(), vec![]),
            ("greenlet".into(), vec![]),
        ]
        .into();
        let envs = vec![Some(env())];
        let g = graph(&lock, &BTreeMap::new(), &envs);
        assert_eq!(g["gunicorn"], ["packaging".to_string()].into());
        assert_eq!(g["eventlet"], ["greenlet".to_string()].into());
        // Asked with an extra: it and the extras it asks of its dependencies count.
        let asked = [("gunicorn".to_string(), ["eventlet".to_string()].into())].into();
        let g = graph(&lock, &asked, &envs);
        assert_eq!(
            g["gunicorn"],
            ["eventlet".to_string(), "packaging".into()].into()
        );
        assert_eq!(
            g["eventlet"],
            ["dnspython".to_string(), "greenlet".into()].into()
        );
        // An unknown environment: only extras decide.
        let g = graph(&lock, &BTreeMap::new(), &vec![None]);
        assert!(g["gunicorn"].contains("importlib-metadata"));
        assert!(!g["gunicorn"].contains("setproctitle"));
        assert_eq!(
            r("Foo.Bar[X,y] @ https://e/x;y.whl ; os_name=='nt'")
                .marker
                .as_deref(),
            Some("os_name=='nt'")
        );
        assert_eq!(r("Foo.Bar[X,y]>=1").name, "foo-bar");
        assert!(requires("; x").is_none());
    }

    #[test]
    fn licenses_as_spdx_where_they_map() {
        assert_eq!(
            licenses(&["MIT"], Some("x"), &[]),
            [json!({"license": {"id": "MIT"}})]
        );
        assert_eq!(
            licenses(&["MIT OR Apache-2.0"], None, &[]),
            [json!({"expression": "MIT OR Apache-2.0"})]
        );
        assert_eq!(
            licenses(&[], Some("mpl-2.0"), &[]),
            [json!({"license": {"id": "MPL-2.0"}})]
        );
        assert_eq!(
            licenses(&[], Some("MIT License"), &[]),
            [json!({"license": {"id": "MIT"}})]
        );
        assert_eq!(
            licenses(&[], Some("BSD"), &[]),
            [json!({"license": {"name": "BSD"}})]
        );
        assert_eq!(
            licenses(
                &[],
                Some("UNKNOWN"),
                &[
                    "License :: OSI Approved :: MIT License",
                    "License :: OSI Approved :: BSD License"
                ]
            ),
            [
                json!({"license": {"id": "MIT"}}),
                json!({"license": {"name": "BSD License"}})
            ]
        );
        assert!(licenses(&[], None, &[]).is_empty());
    }
}
