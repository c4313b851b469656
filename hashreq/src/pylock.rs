//! `pylock.toml` (PEP 751, https://packaging.python.org/en/latest/specifications/pylock-toml/)
//! read where requirement files are: every package becomes an exact entry (its version, its
//! marker, every wheel with its hashes, or the sdist, VCS, directory or archive it names).
//! Nothing is resolved here: markers (which may name the selected `extras` and
//! `dependency_groups`) are evaluated by wheelhouse, for the target interpreter.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use wheelship::doc::{Entry, PylockMeta, PylockWheel, ReqOptions, Requirements};
use wheelship::python::names::{canonicalize_name, is_valid_name};

pub use wheelship::python::names::is_pylock_name;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Lock {
    lock_version: String,
    #[serde(default)]
    environments: Vec<String>,
    requires_python: Option<String>,
    #[serde(default)]
    extras: Vec<String>,
    #[serde(default)]
    dependency_groups: Vec<String>,
    #[serde(default)]
    default_groups: Vec<String>,
    created_by: Option<String>,
    #[serde(default)]
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Package {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    requires_python: Option<String>,
    vcs: Option<toml::Value>,
    directory: Option<toml::Value>,
    archive: Option<toml::Value>,
    sdist: Option<toml::Value>,
    #[serde(default)]
    wheels: Vec<Wheel>,
}

#[derive(Debug, Deserialize)]
struct Wheel {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    size: Option<u64>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// The file name of a wheel: `name`, else the last segment of its URL or path.
fn wheel_file(w: &Wheel) -> Option<String> {
    w.name.clone().or_else(|| {
        let s = w.url.as_deref().or(w.path.as_deref())?;
        let last = s.split(['#', '?']).next()?.rsplit('/').next()?;
        Some(last.to_string())
    })
}

/// Which extras and dependency groups are selected: the ones asked for, else the lock's
/// `default-groups`; each must be one the lock declares.
fn selection(
    lock: &Lock,
    extras: &[String],
    groups: &[String],
    shown: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    for e in extras {
        if !lock
            .extras
            .iter()
            .any(|x| canonicalize_name(x) == canonicalize_name(e))
        {
            bail!(
                "{shown}: --extra `{e}` is not one of the lock's extras ({})",
                lock.extras.join(", ")
            );
        }
    }
    let groups = if groups.is_empty() {
        lock.default_groups.clone()
    } else {
        groups.to_vec()
    };
    for g in &groups {
        if !lock
            .dependency_groups
            .iter()
            .any(|x| canonicalize_name(x) == canonicalize_name(g))
        {
            bail!(
                "{shown}: dependency group `{g}` is not one of the lock's ({})",
                lock.dependency_groups.join(", ")
            );
        }
    }
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| canonicalize_name(s)).collect();
        v.sort();
        v.dedup();
        v
    };
    Ok((norm(extras), norm(&groups)))
}

/// The lock file read (at most `max` bytes) and parsed; a major lock-version other than 1 is
/// refused, as PEP 751 requires of a tool that does not know it.
fn parse_lock(path: &Path, shown: &str, max: u64) -> Result<Lock> {
    let bytes = wheelship::fs::fsx::read_capped(path, max, "--max-file-size")
        .map_err(|e| anyhow!("{shown}: cannot read the lock file: {e:#}"))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{shown}: not UTF-8"))?;
    let lock: Lock = toml::from_str(&text)
        .map_err(|e| anyhow!("{shown}: not a pylock.toml: {}", e.message()))?;
    let major = lock.lock_version.split('.').next().unwrap_or_default();
    if major != "1" {
        bail!(
            "{shown}: lock-version `{}` is not supported: this hashreq reads pylock.toml 1.x",
            lock.lock_version
        );
    }
    Ok(lock)
}

/// A package's wheels as the document carries them (paths made absolute), each with its
/// sha256, and every hash the lock gives them (`algo:hex`, sorted).
fn package_wheels(
    p: &Package,
    dir: &Path,
    at: &dyn Fn(String) -> anyhow::Error,
) -> Result<(Vec<PylockWheel>, Vec<String>)> {
    let mut wheels = Vec::new();
    let mut hashes = Vec::new();
    for w in &p.wheels {
        let file = wheel_file(w).ok_or_else(|| at("a wheel without a name, url or path".into()))?;
        let sha = w.hashes.get("sha256").map(|h| h.to_ascii_lowercase());
        if sha.is_none() {
            return Err(at(format!("wheel `{file}` has no sha256 hash")));
        }
        for (algo, h) in &w.hashes {
            hashes.push(format!("{algo}:{}", h.to_ascii_lowercase()));
        }
        wheels.push(PylockWheel {
            file,
            // Credentials never reach the document or the hash: a rotated token is the same
            // lock (wheelhouse reads the URL to fetch from the lock file itself).
            url: w.url.as_deref().map(crate::redact::redact_userinfo),
            path: w.path.as_ref().map(|p| dir.join(p).display().to_string()),
            size: w.size,
            sha256: sha,
        });
    }
    hashes.sort();
    hashes.dedup();
    Ok((wheels, hashes))
}

/// What the lock means, in a fixed order: every package with its version, marker, wheels
/// (names, where, hashes) and other sources, and what selects among them. JSON arrays only, so
/// the bytes do not depend on any map's order.
fn lock_hash(
    lock: &Lock,
    sel_extras: &[String],
    sel_groups: &[String],
    mut form: Vec<Value>,
) -> String {
    form.sort_by_key(|v| v.to_string());
    let canonical = json!([
        "wheelship-pylock-v1",
        lock.environments,
        lock.requires_python,
        sel_extras,
        sel_groups,
        form
    ]);
    format!(
        "sha256:{}",
        wheelship::hash::sha256_hex(canonical.to_string().as_bytes())
    )
}

/// A package's other source (a table of the lock), as the document carries it: credentials in
/// its URLs never reach the document or the hash.
fn source_json(v: &Option<toml::Value>) -> Option<Value> {
    v.as_ref().map(|v| {
        let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
        crate::redact::redact_value(&mut v);
        v
    })
}

/// Reads a lock file into the `requirements` section.
pub fn read(
    path: &Path,
    shown: &str,
    extras: &[String],
    groups: &[String],
    max: u64,
) -> Result<Requirements> {
    let lock = parse_lock(path, shown, max)?;
    let (sel_extras, sel_groups) = selection(&lock, extras, groups, shown)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut entries = Vec::new();
    let mut form = Vec::new();
    let mut unpinned = Vec::new();
    for (i, p) in lock.packages.iter().enumerate() {
        let at = |m: String| anyhow!("{shown}: packages[{i}] (`{}`): {m}", p.name);
        if !is_valid_name(&p.name) {
            return Err(at("not a valid project name".into()));
        }
        let name = canonicalize_name(&p.name);
        let (wheels, hashes) = package_wheels(p, dir, &at)?;
        let source = source_json;
        if wheels.is_empty() && p.version.is_none() {
            unpinned.push(name.clone());
        }
        let specifier = p
            .version
            .as_ref()
            .map(|v| crate::req::normal_specifier(&format!("=={v}")))
            .unwrap_or_default();
        let marker = p.marker.as_ref().map(|m| m.trim().to_string());
        let sources = json!([
            source(&p.sdist),
            source(&p.vcs),
            source(&p.directory),
            source(&p.archive)
        ]);
        form.push(json!([
            name,
            specifier,
            marker,
            p.requires_python,
            wheels,
            sources
        ]));
        entries.push(Entry {
            name: Some(name),
            specifier,
            extras: Vec::new(),
            marker,
            hashes,
            url: None,
            file: crate::walk::recorded(path, shown)?,
            line: (i + 1) as u32,
            constraint: false,
            editable: false,
            config_settings: Default::default(),
            requires_python: p.requires_python.clone(),
            pylock_wheels: Some(wheels),
            pylock_sdist: source(&p.sdist),
            pylock_vcs: source(&p.vcs),
            pylock_directory: source(&p.directory),
            pylock_archive: source(&p.archive),
            extra: Default::default(),
        });
    }
    let hash = lock_hash(&lock, &sel_extras, &sel_groups, form);
    Ok(Requirements {
        hash,
        files: vec![crate::walk::recorded(path, shown)?],
        entries,
        options: ReqOptions::default(),
        unpinned,
        format: Some("pylock".into()),
        pylock: Some(PylockMeta {
            lock_version: lock.lock_version,
            environments: lock.environments,
            requires_python: lock.requires_python,
            extras: sel_extras,
            dependency_groups: sel_groups,
            created_by: lock.created_by,
            extra: Default::default(),
        }),
        extra: Default::default(),
    })
}
