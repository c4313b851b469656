//! File-system primitives the tools share: temp-then-rename, directory fsync, atomic symlink
//! replacement, the lock file, and failpoints for crash-injection tests.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use crate::cli::io_reason;

/// A name unique to this process and call, for temporary siblings (`.tmp-<pid>-<n>`).
pub fn temp_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{}-{n}-{nanos:x}", std::process::id())
}

/// fsync a directory, so that renames and new entries in it survive a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(|e| {
        anyhow!(
            "cannot sync directory `{}`: {}",
            dir.display(),
            io_reason(&e)
        )
    })
}

/// Writes `data` to `path` atomically: a temp file in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves the old content or the new.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    Prepared::write(path, data)?.commit()?;
    fsync_dir(parent(path))
}

/// New content for a file, written and synced under a temp name beside it: every allocation
/// that can fail (a full disk) has happened; `commit` only renames. Dropped without a commit,
/// the temp file goes.
pub struct Prepared {
    tmp: Option<PathBuf>,
    path: PathBuf,
}

impl Prepared {
    pub fn write(path: &Path, data: &[u8]) -> Result<Prepared> {
        let tmp = parent(path).join(temp_name(".tmp-"));
        let written = (|| -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(anyhow!(
                "cannot write `{}`: {}",
                path.display(),
                io_reason(&e)
            ));
        }
        Ok(Prepared {
            tmp: Some(tmp),
            path: path.to_path_buf(),
        })
    }

    /// Renames the new content into place (the caller fsyncs the directory).
    pub fn commit(mut self) -> Result<()> {
        let tmp = self.tmp.take().expect("committed once");
        fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            anyhow!("cannot write `{}`: {}", self.path.display(), io_reason(&e))
        })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            let _ = fs::remove_file(t);
        }
    }
}

/// Points the symlink `link` at `target` by creating a new link under a temp name and
/// renaming it over `link`: there is never a moment without `link` (never unlink-then-create).
/// Does not fsync; callers sync the directory once after their last change.
pub fn replace_symlink(target: &Path, link: &Path) -> Result<()> {
    let dir = parent(link);
    let tmp = dir.join(temp_name(&format!(
        ".{}.tmp-",
        link.file_name()
            .map_or("link".into(), |n| n.to_string_lossy())
    )));
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| {
        anyhow!(
            "cannot create symlink `{}`: {}",
            tmp.display(),
            io_reason(&e)
        )
    })?;
    point("replace-symlink-before-rename");
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(anyhow!(
            "cannot replace `{}`: {}",
            link.display(),
            io_reason(&e)
        ));
    }
    Ok(())
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

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
            .map_err(|e| {
                anyhow!(
                    "cannot open lock file `{}`: {}",
                    path.display(),
                    io_reason(&e)
                )
            })?;
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

/// A failpoint for crash-injection tests: when `WHEELSHIP_FAILPOINT` names this point, the
/// process dies on the spot (SIGABRT: no destructor, no cleanup), as a `kill -9` would leave it.
/// `WHEELSHIP_FAILPOINT=list` prints each point reached on stderr, so tests can enumerate them.
pub fn point(name: &str) {
    if let Some(v) = std::env::var_os("WHEELSHIP_FAILPOINT") {
        if v == "list" {
            eprintln!("failpoint: {name}");
        } else if v == name {
            std::process::abort();
        }
    }
}

/// The SHA-256 (lowercase hex) and size of a file, read in one streaming pass.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = File::open(path)
        .map_err(|e| anyhow!("cannot read `{}`: {}", path.display(), io_reason(&e)))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| anyhow!("cannot read `{}`: {}", path.display(), io_reason(&e)))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&h.finalize()), size))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Deletes a directory in two steps, a rename to `.trash-…` in `parent` (synced), then the
/// removal: a crash leaves the whole directory or a trash one that the next run removes,
/// never a half-deleted one under its name.
pub fn trash(parent: &Path, p: &Path) -> Result<()> {
    let t = parent.join(temp_name(".trash-"));
    fs::rename(p, &t).map_err(|e| {
        anyhow!(
            "cannot move `{}` to the trash: {}",
            p.display(),
            io_reason(&e)
        )
    })?;
    fsync_dir(parent)?;
    fs::remove_dir_all(&t)
        .map_err(|e| anyhow!("cannot delete `{}`: {}", t.display(), io_reason(&e)))
}
