//! `mkenv gc`: removes the envs nothing keeps and the stored wheels no remaining env uses;
//! with `--verify`, rehashes every stored wheel first, and removes those that were changed.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use wheelship::doc::{doc_path, EnvGc};
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::fs::owned::OwnedDir;
use wheelship::Hint;

use crate::stamp::{self, Compiled};
use crate::EnvMeta;
use wheelship::fs::io::At;

/// What `gc` is asked to do.
pub struct Gc<'a> {
    pub keep: &'a [String],
    pub releases: &'a [PathBuf],
    pub grace: u64,
    pub dry_run: bool,
    pub verify: bool,
    pub lock_timeout: u64,
}

/// Removes envs not kept (by key, by a release's venv link, or by being built or reused in the
/// last `grace` seconds: a deploy in flight that has not linked it yet) and stored wheels no
/// remaining env uses. Each goes to a trash name first, then is deleted, through the store's
/// handle.
pub fn gc(envs: &Path, g: &Gc) -> Result<EnvGc> {
    let root = OwnedDir::open(envs, "env store")?;
    let envs_dir = root.dir();
    let _lock = if g.dry_run {
        None
    } else {
        Some(root.lock(
            Duration::from_secs(g.lock_timeout),
            "another mkenv on this store",
        )?)
    };
    if !g.dry_run {
        crate::clean_store(&root)?;
    }
    let (kept, mut removed_envs, users) = sort_envs(envs_dir, root.path(), g)?;
    let store = match envs_dir.kind(".store")? {
        Some(Kind::Dir) => Some(envs_dir.open_dir(".store")?),
        _ => None,
    };
    let entries: Vec<String> = store
        .as_ref()
        .map(|s| s.entries())
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .map(|(n, _)| n.to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    let (tampered, old) = match (&store, g.verify) {
        (Some(s), true) => verify_all(s, &entries),
        _ => Default::default(),
    };
    let used: HashSet<&String> = users.keys().collect();
    let mut removed_wheels: Vec<String> = entries
        .iter()
        .filter(|n| !used.contains(n) || old.contains(n) || tampered.iter().any(|(t, _)| t == *n))
        .cloned()
        .collect();
    removed_envs.sort();
    removed_wheels.sort();
    if !g.dry_run {
        for n in &removed_envs {
            wheelship::fs::staged::trash(envs_dir, n)?;
        }
        if let Some(store) = &store {
            for n in &removed_wheels {
                wheelship::fs::staged::trash(store, n)?;
            }
        }
    }
    if !tampered.is_empty() {
        return Err(tampered_error(&tampered, &users, g.dry_run));
    }
    let cannot_run: Vec<String> = if g.verify {
        kept.iter()
            .filter_map(|k| {
                let why = wheelship::python::env_interp::dead(&root.path().join(k))?;
                Some(format!("{k}: {why}"))
            })
            .collect()
    } else {
        Vec::new()
    };
    for line in &cannot_run {
        wheelship::cli::warn(format_args!("env {line}: rebuild the releases that link it for the interpreter here (`wheelship-host rebuild ROOT`)"));
    }
    Ok(EnvGc {
        envs: doc_path(root.path())?,
        kept: kept.into_iter().collect(),
        removed_envs,
        removed_wheels,
        dry_run: g.dry_run,
        verified: g.verify.then_some(entries.len()),
        cannot_run,
        extra: Default::default(),
    })
}

/// Which stored wheels the envs that stay use.
type Users = std::collections::HashMap<String, Vec<String>>;

/// The envs that stay (kept, or young) and those that go, and which stored wheels the ones
/// that stay use.
fn sort_envs(
    envs_dir: &Dir,
    envs: &Path,
    g: &Gc,
) -> Result<(BTreeSet<String>, Vec<String>, Users)> {
    let mut kept = linked_envs(envs, g.keep, g.releases)?;
    let mut removed = Vec::new();
    let mut users = Users::new();
    for (name, kind) in envs_dir.entries()? {
        let Some(name) = name.to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || kind != Kind::Dir {
            continue;
        }
        let young = envs_dir.age(&name)?.is_some_and(|age| age < g.grace);
        if kept.contains(&name) || young {
            kept.insert(name.clone());
            let meta = envs_dir
                .read(Path::new(&name).join(".wheelship-env.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<EnvMeta>(&b).ok())
                .unwrap_or_default();
            for w in meta.wheels {
                users.entry(w.sha256).or_default().push(name.clone());
            }
        } else {
            removed.push(name);
        }
    }
    Ok((kept, removed, users))
}

/// Every stored wheel rehashed (its files against RECORD, its bytecode against what was
/// recorded when it was compiled): the entries that fail, with why, and those an older mkenv
/// stored without stamps (removed too, quietly: the next build stores them again).
fn verify_all(store: &Dir, entries: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let (mut bad, mut old) = (Vec::new(), Vec::new());
    for name in entries {
        match verify_entry(store, name) {
            Ok(true) => {}
            Ok(false) => old.push(name.clone()),
            Err(why) => bad.push((name.clone(), why)),
        }
    }
    (bad, old)
}

/// Whether the entry is as stored: `Ok(false)` when it has no stamps to tell.
fn verify_entry(store: &Dir, name: &str) -> Result<bool, String> {
    let entry = Path::new(name);
    let info: crate::wheel::Info = store
        .read(entry.join("info.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("its info.json is missing or unreadable")?;
    let files = store
        .open_dir(entry.join("files"))
        .map_err(|e| format!("{e:#}"))?;
    let compiled = Compiled::all(store, entry)?;
    let Some(expect) = stamp::expected(&info, &compiled) else {
        return Ok(false);
    };
    stamp::check(&files, &expect, true).map(|()| true)
}

fn tampered_error(tampered: &[(String, String)], users: &Users, dry_run: bool) -> anyhow::Error {
    let mut lines = Vec::new();
    let mut envs = BTreeSet::new();
    for (entry, why) in tampered {
        lines.push(format!("`{entry}`: {why}"));
        envs.extend(users.get(entry).into_iter().flatten().cloned());
    }
    let done = if dry_run {
        "it would be removed"
    } else {
        "removed from the store"
    };
    let envs: Vec<String> = envs.into_iter().collect();
    Hint::new(
        format!(
            "{} stored wheel(s) were changed after they were stored ({done}): {}; envs that link them: {}",
            tampered.len(),
            lines.join("; "),
            if envs.is_empty() { "none".into() } else { envs.join(", ") }
        ),
        "rebuild each such env from its release: `mkenv --verify --envs ENVS --release RELEASE_DIR`",
    )
    .into()
}

/// The envs `keep` names and those a release under one of `releases` links as its `venv`.
fn linked_envs(envs: &Path, keep: &[String], releases: &[PathBuf]) -> Result<BTreeSet<String>> {
    let mut kept: BTreeSet<String> = keep.iter().cloned().collect();
    for r in releases {
        for e in std::fs::read_dir(r).at("list", r)?.flatten() {
            if let Ok(target) = std::fs::read_link(e.path().join("venv")) {
                let abs = e.path().join(target);
                let real = std::fs::canonicalize(&abs).unwrap_or(abs);
                if real.parent() == Some(envs) {
                    kept.insert(
                        real.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .to_string(),
                    );
                }
            }
        }
    }
    Ok(kept)
}
