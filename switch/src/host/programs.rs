//! The programs the door runs, held to one rule where they are opened: nothing runs that
//! anybody but this user or root could have written. The directory they live in and each
//! program are checked on the handle that is then used — the program runs through
//! `/proc/self/fd/N`, the very file that was checked, never a path looked up again.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Result};
use wheelship::fs::beneath::Dir;
use wheelship::fs::io::At;
use wheelship::Hint;

/// Refuses an entry (a directory or a program) that a user other than this one or root owns,
/// or that its group or others may write: whatever runs from it would be theirs to choose.
pub fn check_runnable(fd: &impl std::os::fd::AsFd, path: &Path, what: &str) -> Result<()> {
    let st = rustix::fs::fstat(fd).at("inspect", path)?;
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me && st.st_uid != 0 {
        return Err(Hint::new(
            format!(
                "{what} `{}` is owned by uid {}, not by this user (uid {me}) or root: refusing to run anything from it",
                path.display(),
                st.st_uid
            ),
            "give it to this user (chown), or deploy again to replace it",
        )
        .into());
    }
    if st.st_mode & 0o022 != 0 {
        return Err(Hint::new(
            format!(
                "{what} `{}` is writable by other users (mode {:04o}): refusing to run anything from it",
                path.display(),
                st.st_mode & 0o7777
            ),
            format!("chmod go-w {}", path.display()),
        )
        .into());
    }
    Ok(())
}

/// The directory of the door's programs, opened and checked once.
pub struct Programs {
    dir: Dir,
}

/// One program, open: the file that was checked, which is the file that runs.
pub struct Program {
    file: File,
    path: PathBuf,
}

impl Programs {
    /// The programs beside the running door (ROOT/bin on a host, /usr/bin from the package),
    /// or in `WHEELSHIP_BIN` when that is set (a checkout's build).
    pub fn find() -> Result<Programs> {
        Programs::open(&Programs::dir()?)
    }

    /// The directory [`Programs::find`] opens.
    pub fn dir() -> Result<PathBuf> {
        Ok(match std::env::var_os("WHEELSHIP_BIN") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let exe = std::env::current_exe().map_err(|e| {
                    anyhow!(
                        "cannot find the door's own path: {}",
                        wheelship::cli::io_reason(&e)
                    )
                })?;
                exe.parent()
                    .ok_or_else(|| anyhow!("`{}` has no directory", exe.display()))?
                    .to_path_buf()
            }
        })
    }

    /// The programs once the uploads in `uploads` are in place: ROOT/bin's when the door runs
    /// from the uploads (the controller sent it), else [`Programs::find`]'s.
    pub fn after_uploads(uploads: &Path, bin: &Path) -> Result<Programs> {
        let here = Programs::dir()?;
        let sent = std::fs::canonicalize(uploads).ok();
        if sent.is_some() && std::fs::canonicalize(&here).ok() == sent {
            Programs::open(bin)
        } else {
            Programs::open(&here)
        }
    }

    /// The programs in `dir`, which is checked: owned by this user or root, written by no one
    /// else.
    pub fn open(dir: &Path) -> Result<Programs> {
        let dir = Dir::open(dir)?;
        check_runnable(&dir, dir.path(), "the programs' directory")?;
        Ok(Programs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Opens `name` (a regular file, never a link) and checks it.
    pub fn open_program(&self, name: &str) -> Result<Program> {
        let file = self.dir.open_file(name).map_err(|e| {
            anyhow!(
                "{e:#}: the wheelship binaries are expected in `{}`",
                self.dir.path().display()
            )
        })?;
        let path = self.dir.show(name);
        check_runnable(&file, &path, "the program")?;
        Ok(Program { file, path })
    }
}

impl Program {
    /// A command that runs exactly this file: through `/proc/self/fd/N` of the handle that was
    /// checked (the kernel opens it before the handle closes on exec). Keep the program alive
    /// until the command has been spawned.
    pub fn command(&self) -> Command {
        let mut c = Command::new(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        c.arg0(self.path.as_os_str());
        c
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
