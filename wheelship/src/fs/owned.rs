//! A directory wheelship owns (a deploy root, a releases directory, an env store, an incoming
//! directory), opened in one place: created with our modes, known by its canonical path, held
//! by a handle that no path given later can leave, refused when another user could change it,
//! locked, and cleaned of what a crashed run left. The temp prefixes every tool uses are named
//! here, once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::fs::beneath::{Dir, Kind};
use crate::fs::io::At;
use crate::fs::lock::Lock;
use crate::Hint;

pub use crate::fs::temp::{STAGING, TMP, TRASH};
/// The lock file of a root.
pub const LOCK: &str = ".lock";

/// A directory wheelship owns, open.
#[derive(Debug)]
pub struct OwnedDir {
    path: PathBuf,
    dir: Dir,
}

impl OwnedDir {
    /// Opens the existing directory `path` (the operator's: symlinks on the way are followed,
    /// once, to its canonical path). `what` names it in messages (`root`, `env store`).
    pub fn open(path: &Path, what: &str) -> Result<OwnedDir> {
        let real = std::fs::canonicalize(path).at(&format!("open the {what}"), path)?;
        let dir = Dir::open(&real)?;
        check_owned(&dir, what)?;
        Ok(OwnedDir { path: real, dir })
    }

    /// [`OwnedDir::open`], creating the directory first (and its missing parents) with mode 0755.
    pub fn create(path: &Path, what: &str) -> Result<OwnedDir> {
        make_dir(path, what)?;
        OwnedDir::open(path, what)
    }

    /// [`OwnedDir::create`] for a directory whose files are checked by their sha256 wherever they
    /// are used (a wheelhouse, which a team may share): its owner and mode are not refused.
    pub fn create_shared(path: &Path, what: &str) -> Result<OwnedDir> {
        make_dir(path, what)?;
        let real = std::fs::canonicalize(path).at(&format!("open the {what}"), path)?;
        let dir = Dir::open(&real)?;
        Ok(OwnedDir { path: real, dir })
    }

    /// The directory `name` in this one, created (0755) when `create` and missing, and checked
    /// as a root itself. Reached through this root's handle: a symlink there is refused.
    pub fn sub(&self, name: &str, what: &str, create: bool) -> Result<OwnedDir> {
        if create && self.dir.kind(name)?.is_none() {
            match self.dir.create_dir(name, 0o755) {
                Ok(()) => {}
                // Made by another run meanwhile.
                Err(_) if self.dir.kind(name)? == Some(Kind::Dir) => {}
                Err(e) => return Err(e),
            }
        }
        let dir = self.dir.open_dir(name)?;
        check_owned(&dir, what)?;
        Ok(OwnedDir {
            path: self.path.join(name),
            dir,
        })
    }

    /// Its canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its handle.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// `rel` joined to its path, for messages and for the document.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Takes its lock (`.lock` in it), waiting up to `timeout`; `what` says who holds it.
    pub fn lock(&self, timeout: Duration, what: &str) -> Result<Lock> {
        Lock::acquire(&self.path.join(LOCK), timeout, what)
    }

    /// The same lock taken on the directory itself, for one that must hold nothing but its own
    /// content (a wheelhouse may be committed to git).
    pub fn lock_itself(&self, timeout: Duration, what: &str) -> Result<Lock> {
        Lock::on_dir(&self.path, timeout, what)
    }

    /// Removes what a crashed run left in it: every entry whose name starts with one of
    /// `prefixes`. Call it with the lock held.
    pub fn clean(&self, prefixes: &[&str]) {
        crate::fs::staged::remove_leftovers(&self.dir, prefixes);
    }

    /// [`OwnedDir::clean`] of entries last changed more than `secs` seconds ago only: for a
    /// directory where other runs put their files before they take the lock (`incoming/`).
    pub fn clean_older(&self, prefixes: &[&str], secs: u64) {
        use std::os::unix::ffi::OsStrExt;
        let Ok(entries) = self.dir.entries() else {
            return;
        };
        for (name, _) in entries {
            let ours = prefixes
                .iter()
                .any(|p| name.as_bytes().starts_with(p.as_bytes()));
            if ours && self.dir.age(&name).ok().flatten().is_some_and(|a| a > secs) {
                let _ = self.dir.remove_all(&name);
            }
        }
    }
}

/// Refuses a directory that another user could change under us: owned by another user, or
/// writable by its group or by others. Whatever it holds (keys, envs, releases) would be theirs
/// to replace.
pub fn check_owned(dir: &Dir, what: &str) -> Result<()> {
    let st = rustix::fs::fstat(dir).at(&format!("inspect the {what}"), dir.path())?;
    check_mode(st.st_uid, st.st_mode, dir.path(), what)
}

/// The check of [`check_owned`] on an owner and mode already read.
pub fn check_mode(uid: u32, mode: u32, path: &Path, what: &str) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    if uid != me {
        return Err(Hint::new(
            format!(
                "the {what} `{}` is owned by uid {uid}, not by this user (uid {me}): refusing it",
                path.display()
            ),
            "run as its owner, or give it to this user (chown)",
        )
        .into());
    }
    if mode & 0o022 != 0 {
        return Err(Hint::new(
            format!(
                "the {what} `{}` is writable by other users (mode {:04o}): refusing it",
                path.display(),
                mode & 0o7777
            ),
            format!("chmod go-w {}", path.display()),
        )
        .into());
    }
    Ok(())
}

/// The parent of a canonical path (a root's root: `ROOT` of `ROOT/releases`).
pub fn parent_of(root: &OwnedDir, what: &str) -> Result<OwnedDir> {
    match root.path().parent() {
        Some(p) => OwnedDir::open(p, what),
        None => bail!("`{}` has no parent directory", root.path().display()),
    }
}

/// Creates `path` and its missing parents, mode 0755. When it, or a directory it needs, is
/// there as something else (a file), that is what the error says.
fn make_dir(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path);
    let Err(e) = made else {
        return Ok(());
    };
    for p in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(m) = std::fs::metadata(p) {
            if !m.is_dir() {
                let whose = if p == path {
                    String::new()
                } else {
                    format!(" (a directory the {what} `{}` needs)", path.display())
                };
                anyhow::bail!(
                    "cannot create the {what}: `{}`{whose} is {}, not a directory",
                    p.display(),
                    crate::fs::fsx::kind(m.file_type())
                );
            }
            break;
        }
    }
    Err(e).at(&format!("create the {what}"), path)
}
