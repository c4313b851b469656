//! Filling with uv: every target resolved at once, against DIR alone first (no index is
//! contacted when DIR satisfies the request), then with the index for the targets it does not
//! satisfy; then only the files DIR lacks are fetched (all targets' together, in parallel) and
//! sdists built once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use pep508_rs::MarkerTree;
use wheelship::doc::{LockedWheel, Requirements};
use wheelship::python::interp::Interp;
use wheelship::python::names::{canonicalize_name, WheelFilename};
use wheelship::Hint;

use crate::fetch::{self, Dirs};
use crate::select::{self, Choice, For, Source};
use crate::target::marker_env;
use crate::uv::{self, Answer, Compile, Python};
use crate::Fill;

/// One target uv resolves.
#[derive(Clone)]
pub struct Job {
    pub python: Python,
    /// Its tags and marker environment.
    pub interp: Interp,
    /// It is the `--python` interpreter: sdists are built for it.
    pub can_build: bool,
    pub describe: String,
}

/// What uv made of one target.
pub enum Outcome {
    Locked(Vec<LockedWheel>),
    /// uv found no resolution (offline: in DIR): pip is asked, for its answer or diagnosis.
    AskPip,
}

/// `exe`: the build box's interpreter itself (no shim), for the downloads.
pub fn run(f: &Fill, uv: &Path, exe: &str, jobs: &[Job], work: &Path) -> Result<Vec<Outcome>> {
    let (req, cons) = crate::write_files(f.source, work, true)?;
    let reqs = f.source.reqs();
    let downloader = std::sync::Mutex::new(if f.offline {
        fetch::Downloader::none()
    } else {
        fetch::Downloader::start(exe)
    });
    let resolved = wheelship::work::map(jobs.len(), jobs.len(), |i| {
        let c = Compile {
            uv,
            out: work.join(format!("pylock.target{i}.toml")),
            req: &req,
            cons: cons.as_deref(),
            find_links: &[],
            offline: true,
            python: &jobs[i].python,
            insecure_hosts: reqs.map_or(&[][..], |r| &r.options.trusted_hosts),
        };
        resolve_one(f, &c, &jobs[i])
    })?;
    crate::timing("resolved");
    let mut wheels: Vec<&uv::Artifact> = Vec::new();
    for c in resolved.iter().flatten().flatten() {
        if let Source::Wheel(a) = &c.source {
            wheels.push(a);
        }
    }
    let mut local: Vec<PathBuf> = vec![f.dir.to_path_buf()];
    local.extend(f.find_links.iter().cloned());
    local.extend(
        std::env::var("PIP_FIND_LINKS")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|d| std::fs::canonicalize(d).ok()),
    );
    let dirs = Dirs {
        local: &local,
        dir: f.dir,
        work,
        python: f.python,
        exe,
        downloader: &downloader,
    };
    let mut have = fetch::wheels(&dirs, &wheels)?;
    crate::timing("fetched");
    // sdists, each built once (the wheel named by the sdist's sha256).
    let mut built: BTreeMap<String, String> = BTreeMap::new();
    for (job, choices) in jobs.iter().zip(&resolved) {
        for c in choices.iter().flatten() {
            if let Source::Sdist(s) = &c.source {
                if !built.contains_key(&s.sha256) {
                    let (file, got) = fetch::build(&dirs, &c.name, s, &job.interp.tags)?;
                    built.insert(s.sha256.clone(), file.clone());
                    have.insert(file, got);
                }
            }
        }
    }
    Ok(resolved
        .into_iter()
        .map(|choices| match choices {
            None => Outcome::AskPip,
            Some(choices) => Outcome::Locked(locked(&choices, &have, &built)),
        })
        .collect())
}

/// The lock of one target, from what it chose and what DIR now holds.
fn locked(
    choices: &[Choice],
    have: &BTreeMap<String, (String, u64)>,
    built: &BTreeMap<String, String>,
) -> Vec<LockedWheel> {
    let mut out: Vec<LockedWheel> = choices
        .iter()
        .filter_map(|c| {
            let file = match &c.source {
                Source::Wheel(a) => a.file.clone(),
                Source::Sdist(s) => built.get(&s.sha256)?.clone(),
            };
            let (sha256, size) = have.get(&file)?.clone();
            Some(LockedWheel {
                name: c.name.clone(),
                version: c.version.clone(),
                file,
                sha256,
                size,
                extra: Default::default(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One target: against DIR (and --find-links) alone, then, unless offline, with the index.
/// None: uv found no resolution (offline: DIR does not satisfy it), and pip is asked.
fn resolve_one(f: &Fill, c: &Compile, job: &Job) -> Result<Option<Vec<Choice>>> {
    let markers = marker_env(&job.interp)?;
    let target = For {
        tags: &job.interp.tags,
        markers: &markers,
        can_build: job.can_build,
        describe: &job.describe,
    };
    let mut local: Vec<PathBuf> = vec![f.dir.to_path_buf()];
    local.extend(f.find_links.iter().cloned());
    let missing = if f.offline {
        Vec::new()
    } else {
        not_in(f.source.reqs(), &local, &target)
    };
    let why = if missing.is_empty() {
        let offline = Compile {
            find_links: &local,
            offline: true,
            ..c.clone()
        };
        let answer = uv::compile(&offline)?;
        crate::timing("uv against DIR");
        match answer {
            Answer::Resolved(p) => {
                let chosen = select::choose(&p, &target)?;
                select::check_hashes(&chosen, f.source.reqs())?;
                return Ok(Some(chosen));
            }
            Answer::Unresolved(e) => uv::reason(&e),
        }
    } else if missing.len() > 4 {
        format!(
            "it has no {} and {} more",
            missing[..3].join(", "),
            missing.len() - 3
        )
    } else {
        format!("it has no {}", missing.join(", "))
    };
    if f.offline {
        return Ok(None);
    }
    eprintln!(
        "wheelhouse: `{}` does not satisfy the requirements for {} ({why}): resolving with the index",
        f.dir.display(),
        job.describe
    );
    with_index(f, c, job, &target, &local)
}

/// uv with the index: its lock, or None when it finds no resolution (pip is asked).
fn with_index(
    f: &Fill,
    c: &Compile,
    job: &Job,
    target: &For,
    local: &[PathBuf],
) -> Result<Option<Vec<Choice>>> {
    // The index and --find-links, not DIR: uv would hash every file in it for its lock, and
    // what DIR already holds is found by name and sha256 after. Only when that finds no
    // resolution is DIR added (a wheel that is nowhere else, or one built here).
    let online = Compile {
        find_links: &local[1..],
        offline: false,
        ..c.clone()
    };
    let mut answer = uv::compile(&online)?;
    if matches!(&answer, Answer::Unresolved(e) if !uv::is_network(e)) {
        let with_dir = Compile {
            find_links: local,
            ..online
        };
        answer = uv::compile(&with_dir)?;
    }
    crate::timing("uv with the index");
    match answer {
        Answer::Resolved(p) => {
            let chosen = select::choose(&p, target)?;
            select::check_hashes(&chosen, f.source.reqs())?;
            Ok(Some(chosen))
        }
        Answer::Unresolved(e) if uv::is_network(&e) => Err(Hint::new(
            format!(
                "resolving with uv failed: cannot reach the package index (network): {}",
                uv::reason(&e)
            ),
            "check the network or the index URL, or lock from the wheelhouse alone with --offline",
        )
        .into()),
        Answer::Unresolved(e) => {
            eprintln!(
                "wheelhouse: uv found no resolution for {} ({}): pip resolves it",
                job.describe,
                uv::reason(&e)
            );
            Ok(None)
        }
    }
}

/// The requirements that no file in DIR or --find-links can satisfy, by name and, for a pin
/// (`==V`), version: they send the fill to the index without asking uv first. As written,
/// with where (`httpx==0.28.1 (requirements.txt:4)`).
fn not_in(reqs: Option<&Requirements>, dirs: &[PathBuf], target: &For) -> Vec<String> {
    let Some(reqs) = reqs else { return Vec::new() };
    let mut have: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in dirs {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let file = e.file_name().to_string_lossy().to_string();
            if let Some((name, version)) = name_version(&file) {
                have.entry(canonicalize_name(&name))
                    .or_default()
                    .push(version);
            }
        }
    }
    let mut missing = Vec::new();
    for e in &reqs.entries {
        let Some(name) = e.name.as_deref() else {
            continue;
        };
        if e.constraint {
            continue;
        }
        if let Some(m) = &e.marker {
            match MarkerTree::from_str(m) {
                Ok(t) if !t.evaluate(target.markers, &[]) => continue,
                Ok(_) => {}
                Err(_) => continue,
            }
        }
        let versions = have.get(name).map_or(&[][..], Vec::as_slice);
        let pinned = e
            .specifier
            .strip_prefix("==")
            .filter(|v| !v.contains([',', '*']))
            .and_then(|v| pep440_rs::Version::from_str(v).ok());
        let found = match pinned {
            Some(p) => versions
                .iter()
                .any(|v| pep440_rs::Version::from_str(v).is_ok_and(|v| v == p)),
            None => !versions.is_empty(),
        };
        if !found {
            let shown = Path::new(e.file.as_str())
                .file_name()
                .map_or(e.file.to_string(), |n| n.to_string_lossy().to_string());
            missing.push(format!("`{name}{}` ({shown}:{})", e.specifier, e.line));
        }
    }
    missing
}

/// (name, version) of a wheel or sdist file name.
fn name_version(file: &str) -> Option<(String, String)> {
    if let Ok(w) = WheelFilename::parse(file) {
        return Some((w.name, w.version));
    }
    let stem = file
        .strip_suffix(".tar.gz")
        .or_else(|| file.strip_suffix(".zip"))?;
    let (n, v) = stem.rsplit_once('-')?;
    Some((n.to_string(), v.to_string()))
}
