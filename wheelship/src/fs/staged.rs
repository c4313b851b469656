//! What is made under a temp name and renamed into place when whole, or renamed away before it
//! is deleted: a directory staged beside its final name ([`Staged`]), two-step deletion
//! ([`trash`]), and the removal of what a crashed run left ([`remove_leftovers`]).

use std::path::Path;

use anyhow::Result;

use crate::fs::beneath::Dir;
use crate::fs::temp::temp_name;

/// Deletes the entry `name` of `dir` in two steps, a rename to `.trash-…` (synced), then the
/// removal through the handle: a crash leaves the whole entry or a trash one that the next run
/// removes, never a half-deleted one under its name; nothing outside `dir` is ever touched.
pub fn trash(dir: &Dir, name: impl AsRef<Path>) -> Result<()> {
    let t = temp_name(crate::fs::temp::TRASH);
    dir.rename(name, dir, &t)?;
    dir.sync()?;
    dir.remove_all(&t)
}

/// Removes what a crashed run of a tool left in `dir`: every entry whose name starts with one
/// of `prefixes` (temp files, staging and trash directories). Called with the lock held; what
/// cannot be removed now is left for the next run.
pub fn remove_leftovers(dir: &Dir, prefixes: &[&str]) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = dir.entries() else { return };
    for (name, _) in entries {
        if prefixes
            .iter()
            .any(|p| name.as_bytes().starts_with(p.as_bytes()))
        {
            let _ = dir.remove_all(&name);
        }
    }
}

/// Removes the symlinks of `dir` named with [`crate::fs::temp::LINK`]: what a crash between a
/// link's temp name and its rename left, in a directory that also holds files of others (a
/// release).
pub fn remove_link_leftovers(dir: &Dir) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = dir.entries() else { return };
    for (name, kind) in entries {
        if kind == crate::fs::beneath::Kind::Symlink
            && name
                .as_bytes()
                .starts_with(crate::fs::temp::LINK.as_bytes())
        {
            let _ = dir.remove_file(&name);
        }
    }
}

/// A directory made under a temp name in `parent` (`<prefix><pid>-<n>-<nanos>`), removed whole
/// when dropped unless `commit` gave it its final name: a failure at any step leaves nothing
/// half-made, and a crash leaves only a name that `remove_leftovers` knows.
pub struct Staged<'a> {
    parent: &'a Dir,
    name: String,
    committed: bool,
}

impl<'a> Staged<'a> {
    pub fn new(parent: &'a Dir, prefix: &str) -> Result<Self> {
        let name = temp_name(prefix);
        parent.create_dir(&name, 0o755)?;
        Ok(Staged {
            parent,
            name,
            committed: false,
        })
    }

    /// Its name in the parent.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on it.
    pub fn open(&self) -> Result<Dir> {
        self.parent.open_dir(&self.name)
    }

    /// Renames it to `to` in the parent (atomic; `to` must not be a non-empty directory).
    pub fn commit(mut self, to: impl AsRef<Path>) -> Result<()> {
        self.parent.rename(&self.name, self.parent, to)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.parent.remove_all(&self.name);
        }
    }
}
