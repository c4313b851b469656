//! Paths under a root, resolved by the kernel beneath a directory handle.
//!
//! A [`Dir`] is an open directory. Every path given to its methods is relative to it and is
//! resolved by `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: a `..` that would
//! leave the directory, an absolute path, or a symlink anywhere on the way (the last component
//! included) makes the call fail, whatever the text of the path looked like and whatever
//! another process did to the tree since it was checked. Nothing here ever follows a symlink,
//! so a hostile tree can make an operation fail but never reach outside its root.
//! (<https://man7.org/linux/man-pages/man2/openat2.2.html>, Linux ≥ 5.6.)
//!
//! Errors name the whole path (`cannot create `/srv/app/releases/x/a`: …`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::fs::io::At;
use anyhow::{anyhow, bail, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);
const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// An open directory that the paths given to its methods cannot leave.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What kind of entry a name is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    fn of(t: FileType) -> Kind {
        match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// The reason of a failed call, in words; the two refusals of the resolution say what they
/// refused.
fn reason(e: Errno) -> String {
    match e {
        Errno::XDEV => "the path leads outside its root".into(),
        Errno::LOOP => "the path passes through a symlink".into(),
        Errno::NOSYS => "the kernel has no openat2 (Linux 5.6 or later is needed)".into(),
        e => crate::cli::io_reason(&std::io::Error::from(e)),
    }
}

/// `rel` as a path that is relative and has no `..`: the text is checked too, so that a
/// mistake reads as one before the kernel refuses it.
fn relative(rel: &Path) -> Result<&Path> {
    if rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(rel)
    } else {
        bail!("`{}` is not a relative path inside its root", rel.display())
    }
}

impl Dir {
    /// Opens `path` (which the caller trusts: the root itself) as a root.
    pub fn open(path: &Path) -> Result<Dir> {
        let fd = rustix::fs::open(path, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
            .map_err(|e| anyhow!("cannot open directory `{}`: {}", path.display(), reason(e)))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path this directory was opened as (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` joined to this directory's path, for messages.
    pub fn show(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    fn fail(&self, what: &str, rel: &Path, e: Errno) -> anyhow::Error {
        anyhow!(
            "cannot {what} `{}`: {}",
            self.show(rel).display(),
            reason(e)
        )
    }

    fn open_raw(&self, rel: &Path, flags: OFlags, mode: u32) -> Result<OwnedFd, Errno> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        loop {
            match rustix::fs::openat2(&self.fd, rel, flags, Mode::from_raw_mode(mode), RESOLVE) {
                // openat2 asks to be retried when a rename raced the resolution.
                Err(Errno::AGAIN) | Err(Errno::INTR) => continue,
                // A link as the last component of a directory open reads as "not a directory";
                // say what it is (links before it already fail with ELOOP).
                Err(Errno::NOTDIR)
                    if flags.contains(OFlags::DIRECTORY)
                        && rustix::fs::statat(&self.fd, rel, AtFlags::SYMLINK_NOFOLLOW)
                            .is_ok_and(|st| {
                                FileType::from_raw_mode(st.st_mode) == FileType::Symlink
                            }) =>
                {
                    return Err(Errno::LOOP)
                }
                r => return r,
            }
        }
    }

    /// Opens the directory `rel` beneath this one.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<Dir> {
        let rel = relative(rel.as_ref())?;
        let fd = self
            .open_raw(rel, DIR_FLAGS, 0)
            .map_err(|e| self.fail("open directory", rel, e))?;
        Ok(Dir {
            fd,
            path: self.show(rel),
        })
    }

    /// The directory holding `rel`, opened, and `rel`'s last component.
    fn parent_of<'p>(&self, rel: &'p Path) -> Result<(Option<Dir>, &'p OsStr)> {
        let rel = relative(rel)?;
        let name = rel
            .file_name()
            .ok_or_else(|| anyhow!("`{}` names no entry", self.show(rel).display()))?;
        match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => Ok((Some(self.open_dir(p)?), name)),
            _ => Ok((None, name)),
        }
    }

    fn fd_or<'a>(&'a self, parent: &'a Option<Dir>) -> BorrowedFd<'a> {
        parent.as_ref().map_or(self.fd.as_fd(), |d| d.fd.as_fd())
    }

    /// Creates `rel` and every missing directory above it (mode 0755), one component at a time,
    /// never through a symlink; returns it opened.
    pub fn create_dir_all(&self, rel: impl AsRef<Path>) -> Result<Dir> {
        let rel = relative(rel.as_ref())?;
        let mut cur: Option<Dir> = None;
        let mut done = PathBuf::new();
        for c in rel.components() {
            let Component::Normal(name) = c else { continue };
            done.push(name);
            let here = cur.as_ref().unwrap_or(self);
            match rustix::fs::mkdirat(&here.fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(self.fail("create directory", &done, e)),
            }
            let fd = here
                .open_raw(Path::new(name), DIR_FLAGS, 0)
                .map_err(|e| self.fail("open directory", &done, e))?;
            cur = Some(Dir {
                fd,
                path: self.show(&done),
            });
        }
        match cur {
            Some(d) => Ok(d),
            None => self.open_dir(""),
        }
    }

    /// Creates the directory `rel` (its parent must exist); fails if it exists.
    pub fn create_dir(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        rustix::fs::mkdirat(self.fd_or(&parent), name, Mode::from_raw_mode(mode))
            .map_err(|e| self.fail("create directory", rel, e))
    }

    /// Creates a new file (never replacing anything, never through a link) for writing.
    pub fn create_file(&self, rel: impl AsRef<Path>, mode: u32) -> Result<File> {
        let rel = relative(rel.as_ref())?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = self
            .open_raw(rel, flags | OFlags::CLOEXEC, mode)
            .map_err(|e| self.fail("create", rel, e))?;
        Ok(File::from(fd))
    }

    /// Opens the regular file `rel` for reading.
    pub fn open_file(&self, rel: impl AsRef<Path>) -> Result<File> {
        let rel = relative(rel.as_ref())?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = self
            .open_raw(rel, flags, 0)
            .map_err(|e| self.fail("read", rel, e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| self.fail("read", rel, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            bail!(
                "cannot read `{}`: not a regular file",
                self.show(rel).display()
            );
        }
        Ok(File::from(fd))
    }

    /// Reads the whole regular file `rel`.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Vec<u8>> {
        use std::io::Read;
        let rel = rel.as_ref();
        let mut out = Vec::new();
        self.open_file(rel)?
            .read_to_end(&mut out)
            .at("read", self.show(rel))?;
        Ok(out)
    }

    /// What `rel` is, without following it; `None` when it does not exist.
    pub fn kind(&self, rel: impl AsRef<Path>) -> Result<Option<Kind>> {
        let rel = relative(rel.as_ref())?;
        let name = rel
            .file_name()
            .ok_or_else(|| anyhow!("`{}` names no entry", self.show(rel).display()))?;
        let parent = match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => match self.open_raw(p, DIR_FLAGS, 0) {
                Ok(fd) => Some(fd),
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(self.fail("inspect", rel, e)),
            },
            _ => None,
        };
        let fd = parent.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(Kind::of(FileType::from_raw_mode(st.st_mode)))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.fail("inspect", rel, e)),
        }
    }

    /// The target of the symlink `rel`.
    pub fn read_link(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let t = rustix::fs::readlinkat(self.fd_or(&parent), name, Vec::new())
            .map_err(|e| self.fail("read the link", rel, e))?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    /// Creates the symlink `rel` pointing at `target` (the target is not resolved here).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        rustix::fs::symlinkat(target.as_ref(), self.fd_or(&parent), name)
            .map_err(|e| self.fail("create symlink", rel, e))
    }

    /// Points the symlink `rel` at `target` by renaming a new link over it: there is never a
    /// moment without `rel`. A directory at `rel` is not replaced (the rename fails).
    pub fn replace_symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let dir = parent.as_ref().unwrap_or(self);
        let tmp = crate::fs::temp::temp_name(crate::fs::temp::LINK);
        dir.symlink(target, &tmp)?;
        crate::failpoint::point("replace-symlink-before-rename");
        dir.rename(&tmp, dir, name).inspect_err(|_| {
            let _ = dir.remove_file(&tmp);
        })
    }

    /// Hard-links `src` (beneath this directory) as `dst` beneath `to`; never follows a link.
    pub fn hard_link(&self, src: impl AsRef<Path>, to: &Dir, dst: impl AsRef<Path>) -> Result<()> {
        let (src, dst) = (src.as_ref(), dst.as_ref());
        self.hard_link_raw(src, to, dst)
            .map_err(|e| to.fail(&format!("link `{}` to", self.show(src).display()), dst, e))
    }

    /// [`Dir::hard_link`] with the bare error, for callers that fall back on some of them.
    pub fn hard_link_raw(&self, src: &Path, to: &Dir, dst: &Path) -> Result<(), Errno> {
        let (sp, sn) = self.parent_of(src).map_err(|_| Errno::INVAL)?;
        let (dp, dn) = to.parent_of(dst).map_err(|_| Errno::INVAL)?;
        rustix::fs::linkat(self.fd_or(&sp), sn, to.fd_or(&dp), dn, AtFlags::empty())
    }

    /// Renames `from` (beneath this directory) to `to` beneath `dir`, replacing a file or
    /// symlink (or an empty directory) there.
    pub fn rename(&self, from: impl AsRef<Path>, dir: &Dir, to: impl AsRef<Path>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (fp, fname) = self.parent_of(from)?;
        let (tp, tname) = dir.parent_of(to)?;
        rustix::fs::renameat(self.fd_or(&fp), fname, dir.fd_or(&tp), tname)
            .map_err(|e| dir.fail(&format!("rename `{}` to", self.show(from).display()), to, e))
    }

    /// Swaps `a` and `b` (both beneath this directory, both existing) in one step
    /// (`renameat2(RENAME_EXCHANGE)`): a directory in use is replaced with no moment without it.
    pub fn exchange(&self, a: impl AsRef<Path>, b: impl AsRef<Path>) -> Result<()> {
        let (a, b) = (a.as_ref(), b.as_ref());
        let (ap, an) = self.parent_of(a)?;
        let (bp, bn) = self.parent_of(b)?;
        rustix::fs::renameat_with(
            self.fd_or(&ap),
            an,
            self.fd_or(&bp),
            bn,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| self.fail(&format!("exchange `{}` with", self.show(a).display()), b, e))
    }

    /// Removes the file or symlink `rel` (a symlink itself, never what it points at).
    pub fn remove_file(&self, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        rustix::fs::unlinkat(self.fd_or(&parent), name, AtFlags::empty())
            .map_err(|e| self.fail("remove", rel, e))
    }

    /// Removes `rel` whatever it is, and everything under it when it is a directory; symlinks
    /// are removed, never followed. Nothing outside this directory can be touched.
    pub fn remove_all(&self, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let p = parent.as_ref().unwrap_or(self);
        p.remove_entry(Path::new(name))
    }

    fn remove_entry(&self, name: &Path) -> Result<()> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(self.fail("remove", name, e)),
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let d = self.open_dir(name)?;
                for (child, _) in d.entries()? {
                    d.remove_entry(Path::new(&child))?;
                }
                rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
            }
            Ok(_) => rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()),
        }
        .map_err(|e| self.fail("remove", name, e))
    }

    /// The names in this directory (not `.` and `..`) with their kinds.
    pub fn entries(&self) -> Result<Vec<(OsString, Kind)>> {
        let mut rd = rustix::fs::Dir::read_from(&self.fd)
            .map_err(|e| self.fail("list", Path::new(""), e))?;
        let mut out = Vec::new();
        while let Some(e) = rd.read() {
            let e = e.map_err(|e| self.fail("list", Path::new(""), e))?;
            let name = e.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push((
                OsStr::from_bytes(name).to_os_string(),
                Kind::of(e.file_type()),
            ));
        }
        Ok(out)
    }

    /// Sets the modification time of `rel` to now (a directory or a file, not followed).
    pub fn touch(&self, rel: impl AsRef<Path>) -> Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let now = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        };
        rustix::fs::utimensat(self.fd_or(&parent), name, &now, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fail("touch", rel, e))
    }

    /// Seconds since `rel` was last modified (not followed); `None` when it does not exist.
    pub fn age(&self, rel: impl AsRef<Path>) -> Result<Option<u64>> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        match rustix::fs::statat(self.fd_or(&parent), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                Ok(Some(now.saturating_sub(st.st_mtime).max(0) as u64))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.fail("inspect", rel, e)),
        }
    }

    /// fsync this directory, so that entries made in it survive a crash.
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd).map_err(|e| self.fail("sync", Path::new(""), e))
    }

    /// syncfs on the file system that holds this directory.
    pub fn sync_fs(&self) -> Result<()> {
        rustix::fs::syncfs(&self.fd).map_err(|e| self.fail("sync", Path::new(""), e))
    }
}

/// Makes many entries under one root, keeping the directories it opened: each directory is
/// walked (and made, if missing) once, then every entry in it is one call on its handle.
pub struct Dirs {
    root: Dir,
    open: std::collections::HashMap<PathBuf, Dir>,
}

/// How many directory handles [`Dirs`] keeps open at most (far below the usual fd limit).
const DIRS_OPEN_MAX: usize = 256;

impl Dirs {
    pub fn new(root: Dir) -> Dirs {
        Dirs {
            root,
            open: Default::default(),
        }
    }

    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// The directory `rel`, made if missing, opened once: made from its parent's handle (itself
    /// made or opened once), so a directory costs one `mkdir` and one open, however many
    /// entries are made in it or below it.
    pub fn dir(&mut self, rel: &Path) -> Result<&Dir> {
        if rel.as_os_str().is_empty() {
            return Ok(&self.root);
        }
        if !self.open.contains_key(rel) {
            let rel = relative(rel)?;
            let name = rel
                .file_name()
                .ok_or_else(|| anyhow!("`{}` names no entry", self.root.show(rel).display()))?;
            let parent = rel.parent().unwrap_or(Path::new(""));
            let d = self.dir(parent)?.create_dir_all(name)?;
            if self.open.len() >= DIRS_OPEN_MAX {
                self.open.clear();
            }
            self.open.insert(rel.to_path_buf(), d);
        }
        Ok(&self.open[rel])
    }

    /// The directory that holds `rel` (made if missing) and `rel`'s last component.
    pub fn parent<'r>(&mut self, rel: &'r Path) -> Result<(&Dir, &'r OsStr)> {
        let rel = relative(rel)?;
        let name = rel
            .file_name()
            .ok_or_else(|| anyhow!("`{}` names no entry", self.root.show(rel).display()))?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        Ok((self.dir(parent)?, name))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Dir) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("root")).unwrap();
        std::fs::create_dir(t.path().join("outside")).unwrap();
        let d = Dir::open(&t.path().join("root")).unwrap();
        (t, d)
    }

    #[test]
    fn nothing_leaves_the_root() {
        let (t, d) = tree();
        std::os::unix::fs::symlink("../outside", t.path().join("root/up")).unwrap();
        std::os::unix::fs::symlink("sub", t.path().join("root/inside")).unwrap();
        d.create_dir_all("sub").unwrap();
        for rel in ["up/x", "inside/x"] {
            let e = d.create_file(rel, 0o644).unwrap_err().to_string();
            assert!(e.contains("passes through a symlink"), "{e}");
        }
        assert!(d.create_dir_all("up/a/b").is_err());
        assert!(d.create_file("../outside/x", 0o644).is_err());
        assert!(d.create_file("/tmp/x", 0o644).is_err());
        // The link itself can be removed; what it points at is untouched.
        std::fs::write(t.path().join("outside/keep"), "k").unwrap();
        d.remove_all("up").unwrap();
        assert!(t.path().join("outside/keep").exists());
        assert_eq!(
            std::fs::read_dir(t.path().join("outside")).unwrap().count(),
            1
        );
    }

    #[test]
    fn remove_all_does_not_follow_links_inside() {
        let (t, d) = tree();
        std::fs::write(t.path().join("outside/keep"), "k").unwrap();
        let sub = d.create_dir_all("a/b").unwrap();
        sub.symlink("../../../outside", "out").unwrap();
        sub.create_file("f", 0o644).unwrap();
        d.remove_all("a").unwrap();
        assert_eq!(d.kind("a").unwrap(), None);
        assert!(t.path().join("outside/keep").exists());
    }

    #[test]
    fn errors_name_the_whole_path() {
        let (t, d) = tree();
        let e = d.open_file("no/such").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "cannot read `{}`: No such file or directory",
                t.path().join("root/no/such").display()
            )
        );
    }
}
