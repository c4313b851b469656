//! `switch prune`: releases beyond the newest `keep` activated (never current, previous, one
//! activated after them, or a deploy in flight) and the envs only they used, each renamed away
//! and then deleted; and the archives of those releases that deploys left in `incoming/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use wheelship::doc::{self, doc_path, Switch};
use wheelship::failpoint::point;
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::host::history::{Action, Event, History};
use wheelship::host::layout;

use crate::list::{releases, Listed};
use crate::root::{lock, DeployRoot};
use crate::RESERVED;

/// Whether `name` in `dir` was made or touched less than `grace` seconds ago (a deploy in
/// flight: an unpack touches `<release>/.wheelship`, mkenv its env).
fn young(dir: &Dir, name: impl AsRef<Path>, grace: u64) -> bool {
    dir.age(name).ok().flatten().is_some_and(|age| age < grace)
}

/// What `prune` removes: releases beyond the newest `keep` activated (never current, previous,
/// anything activated since the older of them, or a deploy in flight), and the envs only they
/// used.
struct Doomed<'a> {
    releases: Vec<&'a Listed>,
    envs: Vec<PathBuf>,
    /// Releases that would have gone but for the grace period.
    young: Vec<&'a str>,
}

/// What `prune` is asked for.
pub(crate) struct Prune {
    pub keep: usize,
    pub grace: u64,
    pub dry_run: bool,
    pub lock_timeout: Duration,
}

pub(crate) fn prune(job: &Prune, root: &DeployRoot) -> Result<Switch> {
    let (keep, grace) = (job.keep, job.grace);
    let _lock = if job.dry_run {
        None
    } else {
        Some(lock(root, job.lock_timeout)?)
    };
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?;
    let previous = current
        .as_deref()
        .and_then(|c| hist.previous(c, |r| root.is_release(r)));
    let rels = releases(root, &hist)?;
    let releases_dir = root.releases_dir()?;
    let envs_dir = root
        .handle()?
        .kind(layout::ENVS)?
        .map(|_| root.handle()?.open_dir(layout::ENVS))
        .transpose()?;
    let protect = [current.as_deref(), previous.as_deref()];
    let doomed = doomed(root, &hist, &rels, protect, keep, grace, envs_dir.as_ref())?;
    if !doomed.young.is_empty() {
        eprintln!(
            "switch: prune kept {} release(s) younger than the grace of {grace}s (a deploy may be between its unpack and its switch): {}; `--grace 0` prunes them now",
            doomed.young.len(),
            doomed.young.join(", ")
        );
    }
    let pruned = doc::Pruned {
        releases: doomed.releases.iter().map(|r| r.id.clone()).collect(),
        envs: doomed.envs.iter().map(doc_path).collect::<Result<_>>()?,
        extra: Default::default(),
    };
    let section = Switch {
        pruned: Some(pruned),
        dry_run: Some(job.dry_run),
        ..root.section(current.clone(), previous.clone())?
    };
    if !job.dry_run {
        remove_doomed(job, root, &doomed, &releases_dir, envs_dir.as_ref())?;
    }
    Ok(section)
}

fn doomed<'a>(
    root: &DeployRoot,
    hist: &History,
    rels: &'a [Listed],
    protect: [Option<&str>; 2],
    keep: usize,
    grace: u64,
    envs_dir: Option<&Dir>,
) -> Result<Doomed<'a>> {
    let releases_dir = root.releases_dir()?;
    // Anything activated at or after the oldest of current and previous is kept too.
    let floor = protect
        .iter()
        .flatten()
        .filter_map(|id| hist.last_activation(id).map(|l| l.0))
        .min();
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    let mut kept_young = Vec::new();
    let mut activated_seen = 0;
    for r in rels {
        // A release that never went live (refused by --before, or abandoned) counts for no
        // keep: it goes once it is older than the grace period, like any other.
        let protected = match &r.last {
            Some((pos, _)) => {
                activated_seen += 1;
                protect.contains(&Some(r.id.as_str()))
                    || floor.is_some_and(|f| *pos >= f)
                    || activated_seen <= keep
            }
            None => false,
        };
        if protected {
            kept.push(r);
        } else if young(&releases_dir, Path::new(&r.id).join(RESERVED), grace)
            || (r.last.is_none()
                && releases_dir
                    .kind(Path::new(&r.id).join(RESERVED))?
                    .is_none()
                && young(&releases_dir, &r.id, grace))
        {
            kept.push(r);
            kept_young.push(r.id.as_str());
        } else {
            doomed.push(r);
        }
    }
    let kept_envs: Vec<&PathBuf> = kept.iter().filter_map(|r| r.env.as_ref()).collect();
    // Only envs in ROOT/envs, named by one plain component, that no kept release uses and no
    // deploy in flight may be about to link.
    let envs_path = root.dir.join(layout::ENVS);
    let mut envs: Vec<PathBuf> = doomed
        .iter()
        .filter_map(|r| r.env.clone())
        .filter(|e| !kept_envs.contains(&e) && e.parent() == Some(envs_path.as_path()))
        .filter(|e| {
            let name = e.file_name().expect("an env under envs/ has a name");
            envs_dir.is_some_and(|d| {
                d.kind(name).ok().flatten() == Some(Kind::Dir) && !young(d, name, grace)
            })
        })
        .collect();
    envs.sort();
    envs.dedup();
    Ok(Doomed {
        releases: doomed,
        envs,
        young: kept_young,
    })
}

/// Each release and env goes to a trash name first, then is deleted: a crash leaves a whole
/// release or a trash directory that the next run removes, never a half-deleted release.
fn remove_doomed(
    job: &Prune,
    root: &DeployRoot,
    doomed: &Doomed,
    releases_dir: &Dir,
    envs_dir: Option<&Dir>,
) -> Result<()> {
    let grace = job.grace;
    for (i, r) in doomed.releases.iter().enumerate() {
        wheelship::fs::staged::trash(releases_dir, &r.id)?;
        if i == 0 {
            point("switch-prune-after-first-trash");
        }
    }
    if !doomed.envs.is_empty() {
        // envs/ is mkenv's store: its lock keeps this from racing a build or a gc there.
        let opened = root.opened.as_ref().expect("a root that is pruned exists");
        let envs = opened.sub(layout::ENVS, "env store", false)?;
        let _envs_lock = envs.lock(job.lock_timeout, "mkenv on this root's envs")?;
        let d = envs_dir.expect("doomed envs exist only with envs/");
        for e in &doomed.envs {
            // Reused by a deploy while we waited for the lock: keep it.
            let name = e.file_name().expect("checked above");
            if !young(d, name, grace) {
                wheelship::fs::staged::trash(d, name)?;
            }
        }
    }
    remove_archives(root, doomed.releases.iter().map(|r| r.id.as_str()))?;
    for r in &doomed.releases {
        History::append(
            &root.dir,
            &Event::new(Action::Prune, Some(&r.id), None, None, None),
        )?;
    }
    Ok(())
}

/// What deploys leave in `incoming/` beside a release: its archive (`<id>.tar.zst` as the
/// Ansible playbook and `bundle thick` name it, `<name>-<id>.tar.zst` as `bundle pack` does)
/// with its signature and provenance. Files only; a host keeps no archive of a release it no
/// longer has.
const ARCHIVE_SUFFIXES: [&str; 4] = [
    ".tar.zst",
    ".tar.zst.minisig",
    ".tar.zst.intoto.json",
    ".tar.zst.intoto.json.minisig",
];

fn remove_archives<'a>(root: &DeployRoot, ids: impl Iterator<Item = &'a str>) -> Result<()> {
    let ids: Vec<&str> = ids.collect();
    let handle = root.handle()?;
    if ids.is_empty() || handle.kind(layout::INCOMING)? != Some(Kind::Dir) {
        return Ok(());
    }
    let incoming = handle.open_dir(layout::INCOMING)?;
    for (name, kind) in incoming.entries()? {
        let Some(n) = name.to_str() else { continue };
        let of_pruned = ARCHIVE_SUFFIXES
            .iter()
            .filter_map(|s| n.strip_suffix(s))
            .any(|stem| {
                ids.iter().any(|id| {
                    stem == *id || stem.strip_suffix(id).is_some_and(|p| p.ends_with('-'))
                })
            });
        if kind == Kind::File && of_pruned {
            incoming.remove_file(&name)?;
        }
    }
    Ok(())
}
