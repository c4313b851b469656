//! File-system primitives the tools share: temp-then-rename, directory fsync, the lock file,
//! leftovers of a crash, regular-file reads, and failpoints for crash-injection tests (atomic
//! symlink replacement is `beneath::Dir::replace_symlink`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::beneath::Dir;
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

/// Starts writing a file's dirty pages to disk now, without waiting: the one sync at the end of
/// a build then finds them mostly written, instead of writing them all at once. (Linux starts
/// writeback of a file's dirty pages on `POSIX_FADV_DONTNEED`, and drops only pages already
/// clean, which these are not; `sync_file_range(2)`, which git's `core.fsyncMethod=batch` uses,
/// has no safe binding in rustix.) Best effort: a failure only loses the head start.
pub fn start_writeback(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
}

/// The alignment [`write_new`] asks of a large file's bytes in memory (and uses for its blocks):
/// the page size, a multiple of every block size a direct write may ask for.
pub const DIRECT_ALIGN: usize = 4096;

/// Files at least this large are written past the page cache, when their bytes are aligned.
pub const DIRECT_MIN: usize = 256 << 10;

/// Cleared when a filesystem refuses direct writes: the rest are written through the cache.
static DIRECT_WORKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Writes `data` into the new, empty `file`. A large file whose bytes start at a
/// [`DIRECT_ALIGN`] boundary in memory has its whole blocks written past the page cache
/// (`O_DIRECT`) and its last partial block through it: the bytes go from this buffer to the
/// device, with no copy into pages that the final sync would write out anyway. (Allocating
/// and filling page cache for hundreds of megabytes costs more than the device's writes on the
/// machines measured in docs/bench.md.) A filesystem that refuses direct writes gets the
/// ordinary write, then and for the rest of the process.
pub fn write_new(file: &mut File, data: &[u8]) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    use std::sync::atomic::Ordering::Relaxed;
    let whole = data.len() / DIRECT_ALIGN * DIRECT_ALIGN;
    if data.len() < DIRECT_MIN
        || !data.as_ptr().addr().is_multiple_of(DIRECT_ALIGN)
        || !DIRECT_WORKS.load(Relaxed)
    {
        return file.write_all(data);
    }
    let flags = fcntl_getfl(&*file)?;
    if fcntl_setfl(&*file, flags | OFlags::DIRECT).is_err() {
        DIRECT_WORKS.store(false, Relaxed);
        return file.write_all(data);
    }
    let direct = file.write_all(&data[..whole]);
    fcntl_setfl(&*file, flags)?;
    match direct {
        Ok(()) => file.write_all(&data[whole..]),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            // Refused (alignment, or the filesystem): start again through the cache.
            DIRECT_WORKS.store(false, Relaxed);
            file.set_len(0)?;
            io::Seek::rewind(file)?;
            file.write_all(data)
        }
        Err(e) => Err(e),
    }
}

/// `len` bytes of `buf` that start at a [`DIRECT_ALIGN`] boundary in memory, for
/// [`write_new`] (the buffer grows to hold them; what it held is not kept).
pub fn aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len + DIRECT_ALIGN {
        buf.resize(len + DIRECT_ALIGN, 0);
    }
    let pad = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
    &mut buf[pad..pad + len]
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
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl Prepared {
    pub fn write(path: &Path, data: &[u8]) -> Result<Prepared> {
        let cannot = |e: io::Error| anyhow!("cannot write `{}`: {}", path.display(), io_reason(&e));
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(parent(path))
            .map_err(cannot)?;
        tmp.write_all(data).map_err(cannot)?;
        tmp.as_file().sync_all().map_err(cannot)?;
        Ok(Prepared {
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Renames the new content into place (the caller fsyncs the directory).
    pub fn commit(self) -> Result<()> {
        self.tmp.persist(&self.path).map_err(|e| {
            anyhow!(
                "cannot write `{}`: {}",
                self.path.display(),
                io_reason(&e.error)
            )
        })?;
        Ok(())
    }
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
        Lock::wait(file, path, timeout, what)
    }

    /// The same lock taken on a directory itself, for a directory that must hold nothing but
    /// its own content (a wheelhouse may be committed).
    pub fn on_dir(dir: &Path, timeout: Duration, what: &str) -> Result<Lock> {
        let file = File::open(dir)
            .map_err(|e| anyhow!("cannot open `{}`: {}", dir.display(), io_reason(&e)))?;
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
    let (mut f, _) = open_regular(path)?;
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
    data_encoding::HEXLOWER.encode(bytes)
}

/// Deletes the entry `name` of `dir` in two steps, a rename to `.trash-…` (synced), then the
/// removal through the handle: a crash leaves the whole entry or a trash one that the next run
/// removes, never a half-deleted one under its name; nothing outside `dir` is ever touched.
pub fn trash(dir: &crate::beneath::Dir, name: impl AsRef<Path>) -> Result<()> {
    let t = temp_name(".trash-");
    dir.rename(name, dir, &t)?;
    dir.sync()?;
    dir.remove_all(&t)
}

/// File systems whose files are not data a tool should read as input: the kernel's views of
/// processes and devices (`/proc/self/environ` is a regular file there), control files.
/// Magic numbers from <https://man7.org/linux/man-pages/man2/statfs.2.html>.
const PSEUDO_FS: &[(i64, &str)] = &[
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroupfs"),
    (0x6367_7270, "cgroup2fs"),
    (0x6265_6570, "configfs"),
    (0xcafe_4a11, "bpffs"),
    (0x1cd1, "devpts"),
    (0xde5e_81e4, "efivarfs"),
    (0x6165_676c, "pstorefs"),
    (0x6573_5543, "fusectl"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4341_5d53, "smackfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6e73_6673, "nsfs"),
];

/// Refuses a file that lives on one of [`PSEUDO_FS`], by the file system's type.
pub fn check_ordinary_fs(f: &File, path: &Path) -> Result<()> {
    let st = rustix::fs::fstatfs(f)
        .map_err(|e| anyhow!("cannot read `{}`: {}", path.display(), io_reason(&e.into())))?;
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    if let Some((_, name)) = PSEUDO_FS.iter().find(|(m, _)| *m == magic) {
        bail!(
            "cannot read `{}`: it is on {name}, not an ordinary file system",
            path.display()
        );
    }
    Ok(())
}

/// Opens `path` for reading only if it is a regular file on an ordinary file system, and
/// returns it with its size. The open does not block (a FIFO would wait for a writer for
/// ever) and the type is checked on the open file, so a device, a FIFO, a directory or a file
/// of procfs or sysfs is refused with a message that names it.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| anyhow!("cannot read `{}`: {}", path.display(), io_reason(&e)))?;
    let m = f
        .metadata()
        .map_err(|e| anyhow!("cannot read `{}`: {}", path.display(), io_reason(&e)))?;
    let t = m.file_type();
    if !t.is_file() {
        let what = if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        bail!(
            "cannot read `{}`: it is {what}, not a regular file",
            path.display()
        );
    }
    check_ordinary_fs(&f, path)?;
    Ok((f, m.len()))
}

/// Reads the regular file `path` whole, refusing one larger than `max` bytes (`flag` names the
/// option that raises the limit).
pub fn read_capped(path: &Path, max: u64, flag: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let (f, size) = open_regular(path)?;
    if size > max {
        bail!(
            "`{}` is {size} bytes, more than the limit of {max} ({flag})",
            path.display()
        );
    }
    let mut out = Vec::with_capacity(size as usize);
    // The size may grow while we read: never more than the limit.
    f.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("cannot read `{}`: {}", path.display(), io_reason(&e)))?;
    if out.len() as u64 > max {
        bail!(
            "`{}` grew past the limit of {max} bytes ({flag})",
            path.display()
        );
    }
    Ok(out)
}

/// Removes what a crashed run of a tool left in `dir`: every entry whose name starts with one
/// of `prefixes` (temp files, staging and trash directories). Called with the lock held; what
/// cannot be removed now is left for the next run.
pub fn remove_leftovers(dir: &crate::beneath::Dir, prefixes: &[&str]) {
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

/// Copies `src` into `dir` as `name`: under a temp name first (removed on any failure), then
/// renamed, so `dir/name` is never a partial file. With `sha256`, the copy must have it, or it
/// never gets its name. Returns the copy's sha256 and size.
pub fn copy_in(src: &Path, dir: &Path, name: &str, sha256: Option<&str>) -> Result<(String, u64)> {
    let shown = || format!("cannot copy `{}` into `{}`", src.display(), dir.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(shown)?;
    let mut from = File::open(src).with_context(shown)?;
    io::copy(&mut from, tmp.as_file_mut()).with_context(shown)?;
    let (got, size) = sha256_file(tmp.path())?;
    if let Some(want) = sha256 {
        if got != want {
            bail!(
                "`{}`: sha256 {got}, the lock says {want}: refusing it",
                src.display()
            );
        }
    }
    tmp.persist(dir.join(name))
        .map_err(|e| anyhow!("{}: {}", shown(), io_reason(&e.error)))?;
    Ok((got, size))
}

#[cfg(test)]
mod tests {
    use super::{aligned, write_new, DIRECT_ALIGN, DIRECT_MIN};

    /// Past the page cache or through it, aligned or not, large or small: the file holds the
    /// bytes, read back after the cache is bypassed or not.
    #[test]
    fn write_new_writes_every_byte() {
        let t = tempfile::tempdir().unwrap();
        let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 + i / 4096) as u8).collect() };
        let mut buf = Vec::new();
        for (i, n) in [
            0,
            10,
            DIRECT_MIN - 1,
            DIRECT_MIN,
            DIRECT_MIN + 123,
            3 * DIRECT_MIN + 4095,
        ]
        .into_iter()
        .enumerate()
        {
            let want = pattern(n);
            let region = aligned(&mut buf, n);
            assert!(region.as_ptr().addr().is_multiple_of(DIRECT_ALIGN));
            region.copy_from_slice(&want);
            for (kind, data) in [("aligned", &*region), ("unaligned", &want[..])] {
                let path = t.path().join(format!("{i}-{kind}"));
                let mut f = std::fs::File::create_new(&path).unwrap();
                write_new(&mut f, data).unwrap();
                drop(f);
                assert!(std::fs::read(&path).unwrap() == want, "{n} bytes, {kind}");
            }
        }
    }
}
