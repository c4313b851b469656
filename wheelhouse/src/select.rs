//! From a resolver's lock to the files of one target: each package whose marker holds, the
//! wheel the target ranks best (a file already in DIR before the same file elsewhere), or its
//! sdist to build when the target is this machine's interpreter.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use pep508_rs::{MarkerEnvironment, MarkerTree};
use wheelship::doc::Requirements;
use wheelship::python::names::WheelFilename;
use wheelship::Hint;

use crate::uv::{Artifact, Package};

/// What one package of a target comes from.
#[derive(Debug, Clone)]
pub struct Choice {
    pub name: String,
    pub version: String,
    pub source: Source,
    /// The sha256 of its sdist, when the index has one: a wheel built here from it stands for
    /// it in the requirements' hashes.
    pub sdist_sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Source {
    /// A wheel (in DIR, in a --find-links directory, or on an index).
    Wheel(Artifact),
    /// An sdist, built here into a wheel.
    Sdist(Artifact),
}

/// The target a selection is for.
pub struct For<'a> {
    pub tags: &'a [String],
    pub markers: &'a MarkerEnvironment,
    /// Whether an sdist can be built for it (it is the interpreter that builds).
    pub can_build: bool,
    /// The target in words, for messages.
    pub describe: &'a str,
}

pub fn choose(packages: &[Package], target: &For) -> Result<Vec<Choice>> {
    let rank: HashMap<&str, usize> = target
        .tags
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for p in packages {
        if let Some(m) = &p.marker {
            let tree = MarkerTree::from_str(m)
                .map_err(|e| anyhow!("uv's lock: package `{}`: marker `{m}`: {e}", p.name))?;
            if !tree.evaluate(target.markers, &[]) {
                continue;
            }
        }
        if let Some(kind) = p.other {
            bail!(
                "uv locked `{}` from a {kind} source, which wheelhouse leaves to pip: run with --resolver pip",
                p.name
            );
        }
        let best = p
            .wheels
            .iter()
            .filter_map(|w| {
                let f = WheelFilename::parse(&w.file).ok()?;
                let r = f
                    .tags()
                    .iter()
                    .filter_map(|t| rank.get(t.as_str()))
                    .min()
                    .copied()?;
                // The same rank: a file already here first.
                let remote = matches!(w.at, crate::uv::Location::Url(_));
                Some(((r, remote), w))
            })
            .min_by_key(|(k, _)| *k)
            .map(|(_, w)| w.clone());
        let source = match (best, &p.sdist) {
            (Some(w), _) => Source::Wheel(w),
            (None, Some(s)) if target.can_build => Source::Sdist(s.clone()),
            (None, sdist) => {
                let why = if sdist.is_some() {
                    "an sdist-only project cannot be built for one"
                } else {
                    "none of its files is for it"
                };
                return Err(Hint::new(
                    format!(
                        "no wheel of `{}=={}` for the target ({}): {why}",
                        p.name, p.version, target.describe
                    ),
                    "build it on the target's own interpreter: `wheelhouse --python /path/to/python3.X`, and add that directory with --find-links".to_string(),
                )
                .into());
            }
        };
        out.push(Choice {
            name: p.name.clone(),
            version: p.version.clone(),
            source,
            sdist_sha256: p.sdist.as_ref().map(|s| s.sha256.clone()),
        });
    }
    Ok(out)
}

/// The hashes the requirements give (`--hash`), checked against what was chosen: a wheel must
/// have one of its project's hashes, and with `--require-hashes` every project needs some. (A
/// hash of an sdist holds for the sdist that is built.)
pub fn check_hashes(choices: &[Choice], reqs: Option<&Requirements>) -> Result<()> {
    let Some(reqs) = reqs else { return Ok(()) };
    let mut given: HashMap<&str, (Vec<&str>, String)> = HashMap::new();
    for e in &reqs.entries {
        if let (Some(n), false) = (&e.name, e.hashes.is_empty()) {
            let at = format!("{}:{}", e.file, e.line);
            let v = given.entry(n.as_str()).or_insert((Vec::new(), at));
            v.0.extend(e.hashes.iter().map(String::as_str));
        }
    }
    if given.is_empty() && !reqs.options.require_hashes {
        return Ok(());
    }
    for c in choices {
        let a = match &c.source {
            Source::Wheel(a) | Source::Sdist(a) => a,
        };
        let ok = |hashes: &[&str]| {
            let has = |sha: &str| hashes.iter().any(|h| *h == format!("sha256:{sha}"));
            let built_here =
                matches!(a.at, crate::uv::Location::Local(_)) && a.file.contains("-linux_");
            has(&a.sha256) || (built_here && c.sdist_sha256.as_deref().is_some_and(has))
        };
        match given.get(c.name.as_str()) {
            Some((hashes, at)) if !ok(hashes) => bail!(
                "`{}` (sha256 {}) is not among the hashes {at} gives for `{}`",
                a.file,
                a.sha256,
                c.name
            ),
            None if reqs.options.require_hashes => bail!(
                "`{}=={}` has no --hash in the requirements, and they --require-hashes",
                c.name,
                c.version
            ),
            _ => {}
        }
    }
    Ok(())
}
