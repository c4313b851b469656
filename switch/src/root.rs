//! The deploy root as switch sees it: its paths, what `current` points at, the releases in it,
//! its lock and what a crash left.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use wheelship::doc::{doc_path, Release, Switch};
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::fs::lock::Lock;
use wheelship::host::history::{Action, Event, History};
use wheelship::host::layout;
use wheelship::{Hint, UsageError};

use crate::service;
use crate::Service;

pub(crate) struct DeployRoot {
    pub dir: PathBuf,
    /// The root opened and checked (mode, owner); `None` only for a `--dry-run --init` of a
    /// root that does not exist yet.
    pub opened: Option<wheelship::fs::owned::OwnedDir>,
}

impl DeployRoot {
    pub fn releases(&self) -> PathBuf {
        self.dir.join(layout::RELEASES)
    }
    pub fn current(&self) -> PathBuf {
        self.dir.join(layout::CURRENT)
    }
    pub fn release(&self, id: &str) -> PathBuf {
        self.releases().join(id)
    }
    /// The context of a command run for release `id` in its own directory.
    pub fn ctx<'a>(&'a self, id: &'a str, previous: Option<&'a str>) -> service::Ctx<'a> {
        service::Ctx {
            root: &self.dir,
            release: id,
            previous,
            dir: self.release(id),
        }
    }

    /// A flip followed by `--restart` is about to happen: a crash before the restart ran leaves
    /// this mark for the next run.
    pub fn restart_owed(&self, service: &Service) -> Result<()> {
        if !service.restart.is_empty() {
            fsx::write_atomic(
                &self.dir.join(layout::RESTART_PENDING),
                b"a restart is owed\n",
            )?;
        }
        Ok(())
    }

    /// Renames a new `current -> releases/<id>` over the old one: never a moment without it.
    pub fn point_current(&self, id: &str) -> Result<()> {
        self.handle()?
            .replace_symlink(Path::new(layout::RELEASES).join(id), layout::CURRENT)
    }

    /// The restart owed is done: the marker goes.
    pub fn restart_done(&self) -> Result<()> {
        match fs::remove_file(self.dir.join(layout::RESTART_PENDING)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).at("remove", self.dir.join(layout::RESTART_PENDING))
            }
            _ => Ok(()),
        }
    }

    /// The env store's lock (`envs/.lock`, mkenv's), when the root has a store.
    pub fn envs_lock(&self, timeout: std::time::Duration) -> Result<Option<Lock>> {
        let Some(opened) = &self.opened else {
            return Ok(None);
        };
        if opened.dir().kind(layout::ENVS)?.is_none() {
            return Ok(None);
        }
        let envs = opened.sub(layout::ENVS, "env store", false)?;
        envs.lock(timeout, "mkenv on this root's envs").map(Some)
    }

    pub fn handle(&self) -> Result<Dir> {
        Dir::open(&self.dir)
    }
    pub fn releases_dir(&self) -> Result<Dir> {
        self.handle()?.open_dir(layout::RELEASES)
    }

    /// The `switch` section: the root, what is live and what revert would go back to.
    pub fn section(&self, current: Option<String>, previous: Option<String>) -> Result<Switch> {
        Ok(Switch {
            root: doc_path(&self.dir)?,
            current,
            previous,
            ..Switch::default()
        })
    }

    /// The release the history says was live before `current`.
    pub fn previous_of(&self, current: Option<&str>) -> Option<String> {
        let hist = History::read(&self.dir).ok()?;
        hist.previous(current?, |r| self.is_release(r))
    }

    /// Whether `releases/<id>` is a release: a directory itself, never a link to one (which
    /// could lead anywhere).
    pub fn is_release(&self, id: &str) -> bool {
        self.releases_dir()
            .and_then(|d| d.kind(id))
            .is_ok_and(|k| k == Some(Kind::Dir))
    }

    /// Opens `releases/<id>`, refusing anything but a real directory there.
    pub fn open_release(&self, id: &str) -> Result<Dir> {
        let releases = self.releases_dir()?;
        match releases.kind(id)? {
            Some(Kind::Dir) => releases.open_dir(id),
            None => bail!(
                "release `{id}` not found: `{}` does not exist",
                self.release(id).display()
            ),
            Some(Kind::Symlink) => bail!(
                "release `{id}`: `{}` is a symlink, not a release directory: refusing it",
                self.release(id).display()
            ),
            Some(_) => bail!(
                "release `{id}` not found: `{}` is not a directory",
                self.release(id).display()
            ),
        }
    }

    /// The id `current` points at; refuses a `current` that is not a symlink.
    pub fn current_id(&self) -> Result<Option<String>> {
        let link = self.current();
        match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("read", &link),
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(Hint::new(
                    format!(
                        "`{}` is not a symlink: refusing to replace it",
                        link.display()
                    ),
                    "move it out of the way; switch manages `current` as a symlink into releases/",
                )
                .into())
            }
            Ok(_) => {}
        }
        let target = fs::read_link(&link).at("read", &link)?;
        let id = target
            .strip_prefix(layout::RELEASES)
            .ok()
            .and_then(|p| p.to_str())
            .filter(|s| check_id(s).is_ok())
            .ok_or_else(|| {
                anyhow!(
                    "`{}` points at `{}`, not at a release in releases/",
                    link.display(),
                    target.display()
                )
            })?;
        Ok(Some(id.to_string()))
    }

    /// Removes what a crash may have left: temp links and files, trash directories.
    pub fn clean_leftovers(&self) {
        let Ok(root) = self.handle() else { return };
        use wheelship::fs::temp::{TMP, TRASH};
        // `.tmp-link-*` (under `.tmp-`): a new `current` that a crash left before its rename.
        wheelship::fs::staged::remove_leftovers(&root, &[TRASH, TMP]);
        // Only what switch itself makes there: `.staging-*` belongs to bundle.
        if let Ok(d) = root.open_dir(layout::RELEASES) {
            wheelship::fs::staged::remove_leftovers(&d, &[TRASH]);
        }
        // envs/: what a crashed prune (or gc) left on its way out, under the store's lock
        // (taken at once or not at all: a build holding it cleans the store itself).
        if let Ok(Some(_envs)) = self.envs_lock(std::time::Duration::ZERO) {
            if let Ok(d) = root.open_dir(layout::ENVS) {
                wheelship::fs::staged::remove_leftovers(&d, &[TRASH, TMP]);
            }
        }
    }
}

/// A release id is one safe path component.
pub(crate) fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || id.starts_with('.')
        || id.contains('/')
        || id.contains('\0')
        || id.len() > 255
    {
        bail!("`{id}` is not a valid release id (one path component, no `/` or `..`, not starting with `.`)");
    }
    Ok(())
}

/// An env is complete when it exists under its final name with its `pyvenv.cfg`: mkenv
/// renames an env into place only when it is whole. It is ours: another user's env, or one
/// they could write to, is never linked.
pub(crate) fn check_env(env: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(env).about("env", env)?;
    wheelship::fs::owned::check_mode(meta.uid(), meta.mode(), env, "env")?;
    if !env.join("pyvenv.cfg").is_file() {
        bail!(
            "env `{}` is not complete (no `pyvenv.cfg`): refusing to link it",
            env.display()
        );
    }
    // Never live on a dead interpreter: a system Python upgrade took it from under the env.
    if let Some(dead) = wheelship::python::env_interp::dead(env) {
        let root = env
            .parent()
            .and_then(Path::parent)
            .map_or("ROOT".into(), |r| r.display().to_string());
        return Err(wheelship::Hint::new(
            format!(
                "env `{}` cannot run: {dead} ({}): refusing to make it live",
                env.display(),
                wheelship::python::env_interp::host_python("python3")
            ),
            format!("rebuild the kept releases' envs for the interpreter now on this host, offline from their own locks and wheels: `wheelship-host rebuild {root}`"),
        )
        .into());
    }
    Ok(())
}

/// Where the root is and how to open it, from the command line.
pub(crate) struct Opening<'a> {
    pub root: Option<&'a Path>,
    pub init: bool,
    pub dry_run: bool,
}

pub(crate) fn open_root(args: &Opening, doc_release: Option<&Release>) -> Result<DeployRoot> {
    let dir = match (&args.root, doc_release) {
        (Some(r), _) => r.to_path_buf(),
        (None, Some(rel)) => Path::new(&rel.dir)
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("cannot derive the root from `release.dir` `{}`", rel.dir))?,
        (None, None) => {
            return Err(UsageError("--root DIR is required without a document".into()).into())
        }
    };
    let exists = fs::symlink_metadata(&dir).is_ok();
    if !exists && !args.init {
        return Err(Hint::new(
            format!("root `{}` does not exist", dir.display()),
            "create it with `switch --init`, or check --root",
        )
        .into());
    }
    if !exists && args.dry_run {
        return Ok(DeployRoot {
            dir: std::path::absolute(&dir)?,
            opened: None,
        });
    }
    let opened = if exists {
        wheelship::fs::owned::OwnedDir::open(&dir, "root")?
    } else {
        wheelship::fs::owned::OwnedDir::create(&dir, "root")?
    };
    if !exists {
        for (sub, what) in [
            (layout::RELEASES, "releases directory"),
            (layout::ENVS, "env store"),
            (layout::SHARED, "shared directory"),
        ] {
            opened.sub(sub, what, true)?;
        }
    }
    Ok(DeployRoot {
        dir: opened.path().to_path_buf(),
        opened: Some(opened),
    })
}

pub(crate) fn lock(root: &DeployRoot, timeout: std::time::Duration) -> Result<Lock> {
    let l = Lock::acquire(
        &root.dir.join(".lock"),
        timeout,
        "another switch on this root",
    )?;
    root.clean_leftovers();
    reconcile(root)?;
    Ok(l)
}

/// A crash between the flip and the history leaves `current` ahead of the history: record the
/// flip that happened, so that revert and prune read a true story.
fn reconcile(root: &DeployRoot) -> Result<()> {
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?;
    if current.is_some() && hist.live() != current {
        let ev = Event::new(
            Action::Recover,
            hist.live().as_deref(),
            current.as_deref(),
            None,
            None,
        );
        History::append(&root.dir, &ev)?;
    }
    Ok(())
}
