//! File-system primitives the tools share: writes past the page cache, temp-then-rename of a
//! file, directory fsync, and reads of regular files on ordinary file systems only (atomic
//! symlink replacement is `beneath::Dir::replace_symlink`; staged directories, trash and
//! leftovers are `staged`; the lock is `lock`).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::io_reason;
use crate::fs::io::At;

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
    File::open(dir)
        .and_then(|f| f.sync_all())
        .at("sync directory", dir)
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
        let cannot = |e: io::Error| Err::<(), _>(e).at("write", path).unwrap_err();
        let mut tmp = tempfile::Builder::new()
            .prefix(crate::fs::temp::TMP)
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
        self.tmp
            .persist(&self.path)
            .map_err(|e| e.error)
            .at("write", &self.path)?;
        Ok(())
    }
}

fn parent(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The SHA-256 (lowercase hex) and size of a file, read in one streaming pass.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let (f, _) = open_regular(path)?;
    let mut r = crate::hash::Hashing::new(f);
    io::copy(&mut r, &mut io::sink()).at("read", path)?;
    let t = r.tally();
    Ok((t.sha256(), t.bytes()))
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
    let st = rustix::fs::fstatfs(f).at("read", path)?;
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

/// What a file of type `t` is, in words: `a regular file`, `a directory`, `a FIFO`, …
pub fn kind(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading only if it is a regular file on an ordinary file system, and
/// returns it with its size. The open does not block (a FIFO would wait for a writer for
/// ever) and the type is checked on the open file, so a device, a FIFO, a directory or a file
/// of procfs or sysfs is refused with a message that names it.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .at("read", path)?;
    let m = f.metadata().at("read", path)?;
    if !m.file_type().is_file() {
        bail!(
            "cannot read `{}`: it is {}, not a regular file",
            path.display(),
            kind(m.file_type())
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
    f.take(max + 1).read_to_end(&mut out).at("read", path)?;
    if out.len() as u64 > max {
        bail!(
            "`{}` grew past the limit of {max} bytes ({flag})",
            path.display()
        );
    }
    Ok(out)
}

/// Copies `src` into `dir` as `name`: under a temp name first (removed on any failure), then
/// renamed, so `dir/name` is never a partial file. With `sha256`, the copy must have it, or it
/// never gets its name. Returns the copy's sha256 and size.
pub fn copy_in(src: &Path, dir: &Path, name: &str, sha256: Option<&str>) -> Result<(String, u64)> {
    let shown = || format!("cannot copy `{}` into `{}`", src.display(), dir.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(crate::fs::temp::TMP)
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
