//! The lock of a root or store: an exclusive `flock` on a lock file, released when dropped or
//! when the process dies, so a crash can never leave it stale.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::fs::io::At;

/// An exclusive lock on a lock file, released when dropped or when the process dies (flock),
/// so a crash can never leave it stale.
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

impl Lock {
    /// Waits up to `timeout` for the lock, then fails with a message that names the file.
    pub fn acquire(path: &Path, timeout: Duration, what: &str) -> Result<Lock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .at("open lock file", path)?;
        Lock::wait(file, path, timeout, what)
    }

    /// The same lock taken on a directory itself, for a directory that must hold nothing but
    /// its own content (a wheelhouse may be committed).
    pub fn on_dir(dir: &Path, timeout: Duration, what: &str) -> Result<Lock> {
        let file = File::open(dir).at("open", dir)?;
        Lock::wait(file, dir, timeout, what)
    }

    fn wait(file: File, path: &Path, timeout: Duration, what: &str) -> Result<Lock> {
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Lock {
                        _file: file,
                        path: path.to_path_buf(),
                    })
                }
                Err(fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        return Err(crate::Hint::new(
                            format!(
                                "another process holds `{}` ({what}); gave up after {}s",
                                path.display(),
                                timeout.as_secs()
                            ),
                            "wait for it to finish, or raise --lock-timeout",
                        )
                        .into());
                    }
                    if !told && start.elapsed() > Duration::from_secs(1) {
                        eprintln!("waiting for the lock `{}` ({what})", path.display());
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock `{}`", path.display()))
                }
            }
        }
    }
}
