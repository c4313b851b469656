//! `bundle unpack`: verify, extract into a staging directory, fsync, rename into place. Fails
//! closed on anything hostile or corrupt (REFERENCE.md §3.1): the whole release is refused and
//! the staging directory removed.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use wheelship::cli::io_reason;
use wheelship::doc::Bundle;
use wheelship::fsx::{self, point, Lock};
use wheelship::{Document, Hint, UsageError};

use crate::{Manifest, UnpackArgs, RESERVED};

/// The largest path (after joining) and component an archive may name.
const MAX_PATH: usize = 4000;
const MAX_COMPONENT: usize = 255;
/// The ratio limit applies past this many output bytes, so small archives of zeros pass.
const RATIO_GRACE: u64 = 64 << 20;
/// zstd window allowed (2^27 = 128 MiB, what level 22 uses): a frame asking for more is refused
/// instead of allocating it.
const WINDOW_LOG_MAX: u32 = 27;

pub fn run(a: UnpackArgs) -> Result<()> {
    let stdin_doc = Document::from_stdin()?;
    let bundle: Option<Bundle> = stdin_doc.section("bundle")?;
    let archive = match (&a.archive, &bundle) {
        (Some(p), _) => p.clone(),
        (None, Some(b)) => PathBuf::from(&b.path),
        (None, None) => {
            return Err(UsageError(
                "no archive: give ARCHIVE, or a document with a `bundle` section".into(),
            )
            .into())
        }
    };
    let archive = std::path::absolute(&archive)?;
    let expected = bundle
        .as_ref()
        .map(|b| b.sha256.clone())
        .filter(|s| !s.is_empty());
    let mismatch = |found: &str| {
        anyhow!(
            "`{}`: sha256 mismatch: the document says {}, the file has {found}",
            archive.display(),
            expected.as_deref().unwrap_or_default()
        )
    };
    fs::create_dir_all(&a.releases).map_err(|e| {
        anyhow!(
            "cannot create `{}`: {}",
            a.releases.display(),
            io_reason(&e)
        )
    })?;
    let releases = fs::canonicalize(&a.releases)?;
    let _lock = Lock::acquire(
        &releases.join(".lock"),
        Duration::from_secs(600),
        "another unpack into this directory",
    )?;
    clean_staging(&releases);

    let manifest = match peek_manifest(&archive) {
        Ok(m) => m,
        Err(e) => {
            // A file that is not what the document describes: say that, it is the cause.
            if expected.is_some() {
                let (found, _) = fsx::sha256_file(&archive)?;
                if Some(&found) != expected.as_ref() {
                    return Err(mismatch(&found));
                }
            }
            return Err(e);
        }
    };
    let final_dir = releases.join(&manifest.id);
    let sha256 = if !final_dir.exists() {
        // One pass: the sha256 is computed while extracting into the staging directory, which
        // is thrown away if it does not match.
        let staging = releases.join(fsx::temp_name(".staging-"));
        let res = extract_into(&archive, &staging, &a, &manifest, expected.as_deref());
        let sha256 = match res {
            Ok(sha) => sha,
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                if expected.is_some() {
                    let (found, _) = fsx::sha256_file(&archive)?;
                    if Some(&found) != expected.as_ref() {
                        return Err(mismatch(&found));
                    }
                }
                return Err(e.context(format!("refusing `{}`", archive.display())));
            }
        };
        point("unpack-before-rename");
        fs::rename(&staging, &final_dir).map_err(|e| {
            anyhow!(
                "cannot rename into `{}`: {}",
                final_dir.display(),
                io_reason(&e)
            )
        })?;
        fsx::fsync_dir(&releases)?;
        sha256
    } else {
        // Re-deploying: the release is there; the document's sha256 (or the file's) must be the
        // one it was unpacked from.
        let sha256 = match &expected {
            Some(s) => s.clone(),
            None => fsx::sha256_file(&archive)?.0,
        };
        let had =
            fs::read_to_string(final_dir.join(RESERVED).join("archive.sha256")).unwrap_or_default();
        if had.trim() != sha256 {
            return Err(Hint::new(
                format!(
                    "`{}` exists but holds another archive (sha256 {})",
                    final_dir.display(),
                    had.trim()
                ),
                "remove it (it is not live) or check the archive",
            )
            .into());
        }
        sha256
    };
    let size = fs::metadata(&archive)?.len();

    // The document the archive carries, with the stdin document's other sections kept.
    let carried = fs::read_to_string(final_dir.join(RESERVED).join("document.json"))
        .with_context(|| format!("cannot read the document of `{}`", final_dir.display()))?;
    let mut doc = Document::parse(&carried, "the release's document.json")?;
    for (k, v) in stdin_doc.sections() {
        if !doc.has(k) {
            doc.set_raw(k, v.clone());
        }
    }
    if let Some(Value::Object(mut wh)) = doc.raw("wheelhouse").cloned() {
        wh.insert("dir".into(), json!(final_dir.join(RESERVED).join("wheels")));
        doc.set_raw("wheelhouse", Value::Object(wh));
    }
    let mut b = match doc.raw("bundle").cloned() {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    b.insert("path".into(), json!(archive));
    b.insert("id".into(), json!(manifest.id));
    b.insert("sha256".into(), json!(sha256));
    b.insert("size".into(), json!(size));
    b.insert("rev".into(), json!(manifest.rev));
    doc.set_raw("bundle", Value::Object(b));
    doc.set(
        "release",
        &json!({"id": manifest.id, "dir": final_dir, "name": manifest.name, "rev": manifest.rev}),
    )?;
    doc.write_stdout()
}

fn clean_staging(releases: &Path) {
    if let Ok(rd) = fs::read_dir(releases) {
        for e in rd.flatten() {
            if e.file_name().as_bytes().starts_with(b".staging-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

type Decoder = zstd::stream::read::Decoder<'static, io::BufReader<Counting<File>>>;

fn decoder(
    archive: &Path,
    counter: Rc<Cell<u64>>,
    hash: Option<Rc<std::cell::RefCell<sha2::Sha256>>>,
) -> Result<tar::Archive<Decoder>> {
    let f = File::open(archive)
        .map_err(|e| anyhow!("cannot read `{}`: {}", archive.display(), io_reason(&e)))?;
    let mut dec = zstd::stream::read::Decoder::new(Counting {
        inner: f,
        n: counter,
        hash,
    })
    .map_err(|e| anyhow!("`{}` is not a zstd archive: {e}", archive.display()))?;
    dec.window_log_max(WINDOW_LOG_MAX)?;
    Ok(tar::Archive::new(dec))
}

/// Reads `.wheelship/release.json`, which `bundle pack` writes first.
pub fn peek_manifest(archive: &Path) -> Result<Manifest> {
    let mut ar = decoder(archive, Rc::new(Cell::new(0)), None)?;
    let corrupt =
        |e: io::Error| anyhow!("`{}` is corrupt or not a tar.zst: {e}", archive.display());
    let mut entries = ar.entries().map_err(corrupt)?;
    let not_release = || {
        anyhow!(
            "`{}` is not a wheelship release: it does not start with `{RESERVED}/release.json`",
            archive.display()
        )
    };
    let mut e = match entries.next() {
        Some(e) => e.map_err(corrupt)?,
        None => return Err(not_release()),
    };
    if e.path_bytes().as_ref() != format!("{RESERVED}/release.json").as_bytes()
        || e.header().entry_size()? > 65_536
    {
        return Err(not_release());
    }
    let mut text = String::new();
    e.read_to_string(&mut text).map_err(corrupt)?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| anyhow!("`{}`: malformed release.json: {e}", archive.display()))?;
    let id_ok = !m.id.is_empty()
        && m.id.len() <= 200
        && !m.id.starts_with('.')
        && m.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !id_ok {
        bail!(
            "`{}`: release id `{}` is not safe as a directory name",
            archive.display(),
            m.id
        );
    }
    Ok(m)
}

/// Counts (for the ratio limit) and hashes (for the sha256) every byte read from the file.
struct Counting<R> {
    inner: R,
    n: Rc<Cell<u64>>,
    hash: Option<Rc<std::cell::RefCell<sha2::Sha256>>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.set(self.n.get() + n as u64);
        if let Some(h) = &self.hash {
            use sha2::Digest;
            h.borrow_mut().update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A member path made safe: relative, no `..`, no NUL, within the limits. `.` and empty
/// components (`./a//b`) are dropped; anything else that could leave the tree is an error.
fn safe_path(raw: &[u8]) -> Result<PathBuf, String> {
    let shown = String::from_utf8_lossy(raw);
    if raw.contains(&0) {
        return Err(format!(
            "`{}`: NUL in a member name",
            shown.replace('\0', "\\0")
        ));
    }
    if raw.first() == Some(&b'/') {
        return Err(format!("`{shown}`: absolute member name"));
    }
    if raw.len() > MAX_PATH {
        return Err(format!(
            "`{}…`: member name longer than {MAX_PATH} bytes",
            &shown[..64.min(shown.len())]
        ));
    }
    let mut p = PathBuf::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(format!("`{shown}`: `..` in a member name")),
            c if c.len() > MAX_COMPONENT => {
                return Err(format!(
                    "`{shown}`: a name component longer than {MAX_COMPONENT} bytes"
                ))
            }
            c => p.push(std::ffi::OsStr::from_bytes(c)),
        }
    }
    if p.as_os_str().is_empty() {
        return Err(format!("`{shown}`: empty member name"));
    }
    Ok(p)
}

/// A symlink target must be relative and stay inside the release from where the link sits.
fn check_link_target(link: &Path, target: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(target);
    if target.is_empty() || target.contains(&0) {
        return Err(format!("`{}`: empty or NUL symlink target", link.display()));
    }
    if target.first() == Some(&b'/') {
        return Err(format!(
            "`{}`: symlink to absolute path `{shown}`",
            link.display()
        ));
    }
    let mut depth = link.components().count() as i64 - 1;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "`{}`: symlink `{shown}` leaves the release",
                        link.display()
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

pub fn extract_into(
    archive: &Path,
    staging: &Path,
    a: &UnpackArgs,
    manifest: &Manifest,
    expected: Option<&str>,
) -> Result<String> {
    fs::create_dir(staging)
        .map_err(|e| anyhow!("cannot create `{}`: {}", staging.display(), io_reason(&e)))?;
    let compressed = Rc::new(Cell::new(0u64));
    let hash = Rc::new(std::cell::RefCell::new(
        <sha2::Sha256 as sha2::Digest>::new(),
    ));
    let mut ar = decoder(archive, compressed.clone(), Some(hash.clone()))?;
    let corrupt = |e: io::Error| anyhow!("corrupt or truncated archive: {e}");
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut files: HashSet<PathBuf> = HashSet::new();
    let mut links: HashSet<PathBuf> = HashSet::new();
    let (mut total, mut count) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    let mut first = true;
    let check_ratio = |total: u64| -> Result<()> {
        if total > a.max_bytes {
            bail!(
                "the archive expands to more than {} bytes (--max-bytes)",
                a.max_bytes
            );
        }
        if total > RATIO_GRACE && total / compressed.get().max(1) > a.max_ratio {
            bail!("the archive expands more than {} times its size (--max-ratio): a compression bomb?", a.max_ratio);
        }
        Ok(())
    };
    for entry in ar.entries().map_err(corrupt)? {
        let mut e = entry.map_err(corrupt)?;
        count += 1;
        if count > a.max_entries {
            bail!("more than {} entries (--max-entries)", a.max_entries);
        }
        let kind = e.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader) {
            continue;
        }
        let rel = safe_path(&e.path_bytes()).map_err(|m| anyhow!(m))?;
        if first && rel != Path::new(RESERVED).join("release.json") {
            bail!("not a wheelship release: `{RESERVED}/release.json` is not the first entry");
        }
        first = false;
        if let Some(l) = rel.ancestors().skip(1).find(|p| links.contains(*p)) {
            bail!(
                "`{}`: written through the symlink `{}`",
                rel.display(),
                l.display()
            );
        }
        if !seen.insert(rel.clone()) {
            bail!("`{}`: duplicate entry", rel.display());
        }
        let dest = staging.join(&rel);
        if staging.as_os_str().len() + 1 + rel.as_os_str().len() > MAX_PATH {
            bail!("`{}`: path too long once extracted", rel.display());
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| anyhow!("cannot create `{}`: {}", parent.display(), io_reason(&e)))?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mode = e.header().mode().map_err(corrupt)?;
                // setuid/setgid/sticky and group/other write never survive.
                let mode = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&dest)
                    .map_err(|e| {
                        anyhow!("cannot create `{}`: {}", dest.display(), io_reason(&e))
                    })?;
                let declared = e.size();
                if declared != e.header().entry_size().map_err(corrupt)? {
                    // A PAX size that disagrees with the header's is how entries get smuggled
                    // past other readers (CVE-2026-33055, TARmageddon): refuse it outright.
                    bail!("`{}`: the PAX and tar header sizes disagree", rel.display());
                }
                let mut got = 0u64;
                loop {
                    let n = e.read(&mut buf).map_err(corrupt)?;
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                    total += n as u64;
                    check_ratio(total)?;
                    f.write_all(&buf[..n]).map_err(|e| {
                        anyhow!("cannot write `{}`: {}", dest.display(), io_reason(&e))
                    })?;
                }
                if got != declared {
                    bail!("`{}`: truncated ({got} of {declared} bytes)", rel.display());
                }
                files.insert(rel);
            }
            tar::EntryType::Directory => {
                if fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_dir()) {
                    bail!("`{}`: a directory over a file", rel.display());
                }
                fs::create_dir_all(&dest).map_err(|e| {
                    anyhow!("cannot create `{}`: {}", dest.display(), io_reason(&e))
                })?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name_bytes().map(|t| t.to_vec()).unwrap_or_default();
                check_link_target(&rel, &target).map_err(|m| anyhow!(m))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &dest).map_err(
                    |e| anyhow!("cannot create `{}`: {}", dest.display(), io_reason(&e)),
                )?;
                links.insert(rel);
            }
            tar::EntryType::Link => {
                let target = e.link_name_bytes().map(|t| t.to_vec()).unwrap_or_default();
                let t = safe_path(&target)
                    .map_err(|m| anyhow!("hard link `{}`: {m}", rel.display()))?;
                if !files.contains(&t) {
                    bail!(
                        "`{}`: hard link to `{}`, which is not a file of this release",
                        rel.display(),
                        t.display()
                    );
                }
                fs::hard_link(staging.join(&t), &dest)?;
            }
            other => bail!(
                "`{}`: {} entries are refused (only files, directories and symlinks)",
                rel.display(),
                match other {
                    tar::EntryType::Char => "character device",
                    tar::EntryType::Block => "block device",
                    tar::EntryType::Fifo => "FIFO",
                    tar::EntryType::GNUSparse => "sparse file",
                    _ => "unknown",
                }
            ),
        }
    }
    if first {
        bail!("empty archive: not a wheelship release");
    }
    // Read to the end of the zstd frame, so its checksum is verified and trailing junk (or a
    // bomb after the tar end) is noticed.
    let mut rest = ar.into_inner();
    let mut trailing = 0u64;
    loop {
        let n = rest.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        trailing += n as u64;
        if trailing > 1 << 20 {
            bail!("more than 1 MiB of data after the end of the tar archive");
        }
    }
    // Whatever the zstd frame did not use (another frame, junk) is hashed too.
    let mut raw = rest.finish();
    let mut junk = 0u64;
    loop {
        let n = raw.read(&mut buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        junk += n as u64;
    }
    let sha256 = {
        use sha2::Digest;
        fsx::hex(&hash.borrow_mut().clone().finalize())
    };
    if let Some(e) = expected {
        if e != sha256 {
            bail!("sha256 mismatch: the document says {e}, the file has {sha256}");
        }
    }
    if junk > 0 {
        bail!("{junk} bytes after the end of the zstd frame");
    }
    let got: Manifest =
        serde_json::from_slice(&fs::read(staging.join(RESERVED).join("release.json"))?)?;
    if &got != manifest {
        bail!("release.json changed between two reads of the archive");
    }
    fsx::write_atomic(
        &staging.join(RESERVED).join("archive.sha256"),
        format!("{sha256}\n").as_bytes(),
    )?;
    point("unpack-before-sync");
    // One syncfs for the whole tree instead of an fsync per file.
    let d = File::open(staging)?;
    rustix::fs::syncfs(&d).map_err(|e| anyhow!("cannot sync `{}`: {e}", staging.display()))?;
    Ok(sha256)
}
