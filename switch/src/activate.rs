//! Activations: a deploy (the release linked to its env and its shared paths, checked against
//! the trust policy, flipped live) and a revert, with the service around the flip: the command
//! before it, the restart after it, the check, and the flip back when they fail.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use wheelship::doc::{doc_path, Bundle, Env, Release, Switch, Would, WouldDeploy, WouldRevert};
use wheelship::failpoint::point;
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::host::history::{Action, Event, History};
use wheelship::host::layout;
use wheelship::host::trust::{self, Policy, Record};
use wheelship::{Document, Hint, UsageError};

use crate::root::{check_env, check_id, lock, DeployRoot};
use crate::shared::{link_shared, shared_paths};
use crate::{service, Activate, Service, Trust, NOTHING_TO_ACTIVATE, RESERVED};

/// Under the trust policy in force on the root (`--trust` and ROOT/trusted), a release goes
/// live only if the record unpack wrote of it satisfies the policy; a deploy (not a revert)
/// also never goes back past the newest release ever live without `--allow-downgrade`.
fn check_trusted(trust: &Trust, root: &DeployRoot, id: &str, deploy: bool) -> Result<()> {
    let Some(opened) = &root.opened else {
        return Ok(());
    };
    let Some(policy) = Policy::load(opened, &trust.keys)? else {
        return Ok(());
    };
    let release = root.open_release(id)?;
    let had = release
        .read(Path::new(RESERVED).join("archive.sha256"))
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let verdict = match Record::read(&release) {
        None => Err(
            "it has no record of how it was verified (it was not put there by `bundle unpack`)"
                .to_string(),
        ),
        Some(r) if r.id != id || r.sha256 != had => {
            Err("its record is of another release or archive".to_string())
        }
        Some(r) => r.satisfies(id, &policy).map(|_| ()),
    };
    if let Err(why) = verdict {
        if !trust.insecure {
            return Err(Hint::new(
                format!(
                    "release `{id}` does not satisfy the trust policy of `{}` (trusted: {}): {why}; refusing to activate it",
                    root.dir.display(),
                    policy.ids()
                ),
                "unpack it again from its signed archive (`bundle unpack`, which records the signature), or deploy a signed release",
            )
            .into());
        }
        wheelship::cli::warn(format_args!("release `{id}` does not satisfy the trust policy ({why}): activating it anyway (--insecure-allow-unverified)"));
    }
    if deploy && root.current_id()?.as_deref() != Some(id) {
        let newest = trust::newest_activated(&root.dir)?;
        trust::check_not_older(
            id,
            newest.as_ref(),
            trust.allow_downgrade,
            "--allow-downgrade",
        )?;
    }
    Ok(())
}

/// A release marked bad goes live again only with `--allow-bad`, and that is said.
fn check_not_bad(root: &DeployRoot, id: &str, allow: bool) -> Result<()> {
    let hist = History::read(&root.dir)?;
    let Some(since) = hist.bad_since(id) else {
        return Ok(());
    };
    if !allow {
        return Err(Hint::new(
            format!("release `{id}` was marked bad at {since} (its check or --before failed): refusing to activate it"),
            "fix it and release again, or activate it anyway with --allow-bad",
        )
        .into());
    }
    wheelship::cli::warn(format_args!(
        "release `{id}` was marked bad at {since}: activating it anyway (--allow-bad)"
    ));
    Ok(())
}

/// A deploy: the release of the document (or `--release`) linked to its env and made live,
/// with the service around the flip.
pub(crate) fn deploy(
    a: &Activate,
    root: &DeployRoot,
    doc: &Document,
    doc_release: Option<&Release>,
) -> Result<Switch> {
    let (id, given_dir) = match (&a.release, doc_release) {
        (Some(r), _) => resolve_release_arg(r)?,
        (None, Some(rel)) => (rel.id.clone(), Some(PathBuf::from(&rel.dir))),
        (None, None) => return Err(UsageError(NOTHING_TO_ACTIVATE.into()).into()),
    };
    check_id(&id)?;
    let dir = root.release(&id);
    if let Some(given) = given_dir {
        let given_real = fs::canonicalize(&given).about("release", &given)?;
        if given_real != dir {
            bail!(
                "release `{}` is not in `{}`: refusing a release outside the root's releases/",
                given.display(),
                root.releases().display()
            );
        }
    }
    let release = root.open_release(&id)?;
    let env = match &a.env {
        Some(e) => Some(e.clone()),
        None => doc.section::<Env>("env")?.map(|e| PathBuf::from(e.path)),
    };
    let rev = doc.section::<Bundle>("bundle")?.and_then(|b| b.rev);
    let shared = shared_paths(&release, &a.shared)?;
    if a.dry_run {
        let env = env.as_deref().map(env_now).transpose()?;
        check_trusted(&a.trust, root, &id, true)?;
        let current = root.current_id()?;
        let previous = root.previous_of(current.as_deref());
        let would = Would::Deploy(WouldDeploy {
            activate: id,
            from: current.clone(),
            env: env.map(doc_path).transpose()?,
            shared,
            before: a.service.before.clone(),
            restart: a.service.restart.clone(),
            check: a.service.check.clone(),
            extra: Default::default(),
        });
        return Ok(Switch {
            dry_run: Some(true),
            would: Some(would),
            ..root.section(current, previous)?
        });
    }
    let _lock = lock(root, a.lock_timeout)?;
    check_trusted(&a.trust, root, &id, true)?;
    check_not_bad(root, &id, a.allow_bad)?;
    repair_restart(&a.service, root)?;
    let from = root.current_id()?;
    {
        // The env is checked under the root's lock and the env store's, which `mkenv gc` and
        // `switch prune` take to remove one: it cannot go between this check and its link,
        // and once linked from the release it is in use.
        let _envs = root.envs_lock(a.lock_timeout)?;
        let env = env.as_deref().map(env_now).transpose()?;
        root.open_release(&id).map_err(|e| gone(&id, e))?;
        prepare(root, &id, env.as_deref(), &shared)?;
    }
    let ctx = root.ctx(&id, from.as_deref());
    if let Some(f) = service::run_each(&a.service.before, &ctx, true)? {
        if f.signaled {
            bail!("`--before` command `{}` was killed ({}): nothing flipped; not a verdict on release `{id}`, which is not marked bad", f.cmd, f.why);
        }
        History::append(
            &root.dir,
            &Event::new(Action::Bad, None, Some(&id), None, None),
        )?;
        bail!(
            "`--before` command `{}` failed ({}): nothing flipped; release `{id}` is marked bad",
            f.cmd,
            f.why
        );
    }
    root.restart_owed(&a.service)?;
    flip(root, &id, Action::Deploy, from.as_deref(), rev)?;
    serve(&a.service, root, &id, from.as_deref())?;
    let hist = History::read(&root.dir)?;
    let previous = hist.previous(&id, |r| root.is_release(r));
    root.section(Some(id), previous)
}

/// The env to link, as it is now: its canonical path, checked (complete, ours); one that a
/// concurrent `mkenv gc` or `switch prune` removed is named as such.
fn env_now(e: &Path) -> Result<PathBuf> {
    let real = match fs::canonicalize(e) {
        Ok(r) => r,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(Hint::new(
                format!("env `{}` is gone (removed by `mkenv gc` or `switch prune` meanwhile?): nothing flipped", e.display()),
                "build it again (`mkenv`, or deploy again): it takes the store's files, seconds",
            )
            .into())
        }
        Err(err) => return Err(err).about("env", e),
    };
    check_env(&real)?;
    Ok(real)
}

/// A release that vanished between its unpack and its flip.
fn gone(id: &str, e: anyhow::Error) -> anyhow::Error {
    anyhow!("{e:#} (removed by a concurrent `switch prune`?): nothing flipped; deploy release `{id}` again")
}

fn resolve_release_arg(r: &str) -> Result<(String, Option<PathBuf>)> {
    if r.contains('/') {
        let p = PathBuf::from(r);
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("`{r}` does not name a release directory"))?
            .to_string();
        Ok((name, Some(p)))
    } else {
        check_id(r)?;
        Ok((r.to_string(), None))
    }
}

/// What an activation does before the flip, each step durable before the next: the venv
/// link, the shared links.
fn prepare(root: &DeployRoot, id: &str, env: Option<&Path>, shared: &[String]) -> Result<()> {
    let dir = root.release(id);
    let release = root.open_release(id)?;
    // A link a crash left half-made in this release (its temp name, never its final one).
    wheelship::fs::staged::remove_link_leftovers(&release);
    point("switch-before-venv");
    if let Some(env) = env {
        let target = match env.strip_prefix(&root.dir) {
            Ok(inside) => Path::new("../..").join(inside),
            Err(_) => env.to_path_buf(),
        };
        release.replace_symlink(&target, "venv")?;
    } else if let Ok(target) = release.read_link("venv") {
        // Reverting: the release keeps the env it had; it must still be there.
        check_env(&dir.join(&target)).with_context(|| format!("release `{id}`'s venv"))?;
    }
    point("switch-after-venv");
    link_shared(root, &release, shared)?;
    point("switch-after-shared");
    release.sync()
}

/// The flip of `current`, and its event in the history.
fn flip(
    root: &DeployRoot,
    id: &str,
    action: Action,
    from: Option<&str>,
    rev: Option<String>,
) -> Result<()> {
    let dir = root.release(id);
    // The history's new content is written (and synced) before the flip, so a full disk stops
    // the deploy before anything changes; after the flip only a rename remains.
    let prepared = if from != Some(id) {
        let env_key = fs::read_link(dir.join("venv"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().to_string()));
        Some(History::prepare(
            &root.dir,
            &Event::new(action, from, Some(id), rev, env_key),
        )?)
    } else {
        None
    };
    point("switch-before-flip");
    root.point_current(id)?;
    point("switch-after-flip");
    if let Some(p) = prepared {
        p.commit()?;
    }
    fsx::fsync_dir(&root.dir)?;
    point("switch-after-fsync");
    point("switch-after-history");
    Ok(())
}

/// After the flip: the restart, then the check with its deadline. If either fails: flip
/// back, restart again so that the previous release is what serves, mark this one bad, exit 1.
fn serve(service: &Service, root: &DeployRoot, id: &str, from: Option<&str>) -> Result<()> {
    let ctx = root.ctx(id, from);
    point("switch-before-restart");
    let restart = service::run_each(&service.restart, &ctx, false)?;
    // A restart killed by a signal is the machine's failure, not the release's: it goes back
    // all the same, and is not marked bad.
    let verdict = !restart.as_ref().is_some_and(|f| f.signaled);
    let mut failed = restart.map(|f| format!("restart `{}` failed ({})", f.cmd, f.why));
    if failed.is_none() {
        let (timeout, interval) = (service.check_timeout, service.check_interval);
        if let Some(f) = service::check(&service.check, &ctx, timeout, interval)? {
            eprint!("{}", f.output);
            failed = Some(format!(
                "health check `{}` did not pass within {}s ({})",
                f.cmd,
                timeout.as_secs_f64(),
                f.why
            ));
        }
    }
    let Some(failure) = failed else {
        root.restart_done()?;
        return Ok(());
    };
    point("switch-check-failed");
    if from == Some(id) {
        // It was live before this run: there is nothing to go back to, and taking it down
        // would not help.
        bail!("{failure}: `{id}` was already live and stays so; fix the service");
    }
    let back = match from {
        Some(prev) => {
            root.point_current(prev)?;
            format!("rolled back to `{prev}`")
        }
        None => {
            std::fs::remove_file(root.current()).at("remove", root.current())?;
            "removed `current` (there was no release live before)".to_string()
        }
    };
    fsx::fsync_dir(&root.dir)?;
    History::append(
        &root.dir,
        &Event::new(Action::Rollback, Some(id), from, None, None),
    )?;
    if verdict {
        History::append(
            &root.dir,
            &Event::new(Action::Bad, None, Some(id), None, None),
        )?;
    }
    let again = match from {
        Some(prev) => serve_again(service, root, prev, id)?,
        None => String::new(),
    };
    if !verdict {
        bail!("{failure}: {back}{again}; the restart was killed, which says nothing of release `{id}`: it is not marked bad, deploy it again");
    }
    bail!("{failure}: {back}{again}; release `{id}` is marked bad")
}

/// After a flip back to `prev`: the restart again, then the check again, so that what the
/// command reports is what serves. A failure of either is its own error, after the first.
fn serve_again(service: &Service, root: &DeployRoot, prev: &str, id: &str) -> Result<String> {
    let ctx = root.ctx(prev, Some(id));
    let mut said = String::new();
    if !service.restart.is_empty() {
        if let Some(f) = service::run_each(&service.restart, &ctx, false)? {
            return Ok(format!(
                ", and restarting on `{prev}` failed too ({}): the service may be down",
                f.why
            ));
        }
        root.restart_done()?;
        said = format!(", restarted on `{prev}`");
    }
    if !service.check.is_empty() {
        let (timeout, interval) = (service.check_back_timeout, service.check_interval);
        match service::check(&service.check, &ctx, timeout, interval)? {
            None => said.push_str(&format!(", `{prev}` passes the check")),
            Some(f) => {
                eprint!("{}", f.output);
                said.push_str(&format!(
                    ", and `{prev}` does not pass the check either ({}): the service may be down",
                    f.why
                ));
            }
        }
    }
    Ok(said)
}

/// A restart that a crash cut off (the flip happened, the restart did not): with `--restart`,
/// restart the release that is live now before anything else; without, say so.
fn repair_restart(service: &Service, root: &DeployRoot) -> Result<()> {
    if !root.dir.join(layout::RESTART_PENDING).exists() {
        return Ok(());
    }
    let Some(current) = root.current_id()? else {
        return root.restart_done();
    };
    if service.restart.is_empty() {
        wheelship::cli::warn(format_args!("a restart after the last flip did not run (a crash?): `{current}` is live but the service may still run the release before it; run your restart, or the next switch with --restart does"));
        return Ok(());
    }
    eprintln!("switch: the restart after the last flip did not run (a crash?): restarting on `{current}` first");
    let hist = History::read(&root.dir)?;
    let prev = hist.previous(&current, |r| root.is_release(r));
    match service::run_each(&service.restart, &root.ctx(&current, prev.as_deref()), false)? {
        None => root.restart_done(),
        Some(service::GateFailed { why, .. }) => bail!(
            "the restart owed since a crash failed ({why}): `{current}` is live; fix the service, then run switch again"
        ),
    }
}

pub(crate) fn revert(a: &Activate, root: &DeployRoot, to: Option<&str>) -> Result<Switch> {
    if let Some(t) = to {
        check_id(t)?;
    }
    // The history and `current` are read under the lock: a deploy flips `current` before it
    // commits its event, and a revert between the two would find no event that made the new
    // release live.
    let _lock = if a.dry_run {
        None
    } else {
        Some(lock(root, a.lock_timeout)?)
    };
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?.ok_or_else(|| {
        anyhow!(
            "nothing to revert: `{}` does not exist",
            root.current().display()
        )
    })?;
    let target = match to {
        Some(t) => {
            check_id(t)?;
            root.open_release(t)?;
            t.to_string()
        }
        None => hist
            .previous(&current, |r| root.is_release(r))
            .ok_or_else(|| Hint::new(
                format!("no release to revert to: the history has no good, kept release that was live before `{current}`"),
                "name one with `revert --to ID` (see `switch list`)",
            ))?,
    };
    let shared = shared_paths(&root.open_release(&target)?, &a.shared)?;
    if a.dry_run {
        check_trusted(&a.trust, root, &target, false)?;
        let would = Would::Revert(WouldRevert {
            revert: target,
            from: Some(current.clone()),
            restart: a.service.restart.clone(),
            check: a.service.check.clone(),
            extra: Default::default(),
        });
        let previous = hist.previous(&current, |r| root.is_release(r));
        return Ok(Switch {
            dry_run: Some(true),
            would: Some(would),
            ..root.section(Some(current), previous)?
        });
    }
    check_trusted(&a.trust, root, &target, false)?;
    check_not_bad(root, &target, a.allow_bad)?;
    repair_restart(&a.service, root)?;
    let from = root.current_id()?;
    {
        // Under the env store's lock too: its env cannot be collected between the check of
        // the link and the flip.
        let _envs = root.envs_lock(a.lock_timeout)?;
        prepare(root, &target, None, &shared)?;
    }
    root.restart_owed(&a.service)?;
    flip(root, &target, Action::Revert, from.as_deref(), None)?;
    serve(&a.service, root, &target, from.as_deref())?;
    root.section(Some(target), from)
}

/// `wheelship-host rebuild`'s link of a kept release to the env just built for it: under the
/// root's lock and the store's, the env checked (whole, ours, its interpreter alive), the
/// release's `venv` replaced by rename, the change in the history. `current` is not touched.
pub fn relink(root: &Path, id: &str, env: &Path) -> Result<()> {
    check_id(id)?;
    let opening = crate::root::Opening {
        root: Some(root),
        init: false,
        dry_run: false,
    };
    let root = crate::root::open_root(&opening, None)?;
    let wait = std::time::Duration::from_secs(600);
    let _lock = lock(&root, wait)?;
    let _envs = root.envs_lock(wait)?;
    let env = env_now(env)?;
    root.open_release(id).map_err(|e| gone(id, e))?;
    prepare(&root, id, Some(&env), &[])?;
    record_rebuild(&root.dir, id, &env)
}

/// The history's record of a release's env rebuilt.
pub fn record_rebuild(root: &Path, id: &str, env: &Path) -> Result<()> {
    let key = env.file_name().map(|n| n.to_string_lossy().to_string());
    History::append(
        root,
        &Event::new(Action::Rebuild, None, Some(id), None, key),
    )
}
