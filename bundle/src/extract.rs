//! Extraction of a release archive into a staging directory: every member made safe, made
//! through a handle that cannot leave the directory, counted against the limits, its links
//! judged by where they lead; the archive's sha256 computed in the same pass.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use wheelship::failpoint::point;
use wheelship::fs::beneath::{Dir, Dirs};
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::hash::{Hashing, Tally};

use crate::tree::{Tree, BYTES_PER_ENTRY};
use crate::{Manifest, RESERVED};

/// The largest path (after joining) and component an archive may name.
const MAX_PATH: usize = 4000;
const MAX_COMPONENT: usize = 255;
/// The ratio limit applies past this many output bytes, so small archives of zeros pass.
const RATIO_GRACE: u64 = 64 << 20;
/// zstd window allowed (2^27 = 128 MiB, what level 22 uses): a frame asking for more is refused
/// instead of allocating it.
pub(crate) const WINDOW_LOG_MAX: u32 = 27;

/// What an archive may cost: the bytes it expands to, its entries, how many times its size it
/// expands (past the first 64 MiB), and the bytes of bookkeeping its entries need.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: u64,
    pub max_ratio: u64,
    pub max_memory: u64,
}

type Decoder = zstd::stream::read::Decoder<'static, io::BufReader<Hashing<File>>>;

/// The archive's tar stream, and the tally of the compressed bytes read (how many, their
/// sha256: the archive's).
pub(crate) fn decoder(archive: &Path) -> Result<(tar::Archive<Decoder>, Tally)> {
    let (f, _) = fsx::open_regular(archive)?;
    let reader = Hashing::new(f);
    let tally = reader.tally();
    let mut dec = zstd::stream::read::Decoder::new(reader)
        .map_err(|e| anyhow!("`{}` is not a zstd archive: {e}", archive.display()))?;
    dec.window_log_max(WINDOW_LOG_MAX)?;
    Ok((tar::Archive::new(dec), tally))
}

/// Reads `.wheelship/release.json`, which `bundle pack` writes first.
pub fn peek_manifest(archive: &Path) -> Result<Manifest> {
    let (mut ar, _) = decoder(archive)?;
    let corrupt =
        |e: anyhow::Error| anyhow!("`{}` is corrupt or not a tar.zst: {e:#}", archive.display());
    let mut members = crate::members::members(&mut ar, 1 << 20).map_err(corrupt)?;
    let not_release = || {
        anyhow!(
            "`{}` is not a wheelship release: it does not start with `{RESERVED}/release.json`",
            archive.display()
        )
    };
    let mut m = match members.next() {
        Some(m) => m.map_err(corrupt)?,
        None => return Err(not_release()),
    };
    if m.path != format!("{RESERVED}/release.json").as_bytes()
        || m.entry.header().entry_size()? > 65_536
    {
        return Err(not_release());
    }
    let mut text = String::new();
    m.entry
        .read_to_string(&mut text)
        .map_err(|e| corrupt(e.into()))?;
    let m: Manifest = serde_json::from_str(&text)
        .map_err(|e| anyhow!("`{}`: malformed release.json: {e}", archive.display()))?;
    if wheelship::text::check_file_name(&m.id).is_err() {
        bail!(
            "`{}`: release id `{}` is not safe as a directory name",
            archive.display(),
            m.id.escape_debug()
        );
    }
    if wheelship::text::check_file_name(&m.name).is_err() {
        bail!(
            "`{}`: release name `{}` is not safe as a file name",
            archive.display(),
            m.name.escape_debug()
        );
    }
    Ok(m)
}

/// A member path made safe: relative, no `..`, UTF-8 without control characters (a newline
/// or an escape in a file name would reach every terminal and log that names it; mkenv
/// refuses the same in wheels), within the limits. `.` and empty components (`./a//b`) are
/// dropped; anything else that could leave the tree is an error. Names in messages are shown
/// with their control characters escaped.
fn safe_path(raw: &[u8]) -> Result<PathBuf, String> {
    let lossy = String::from_utf8_lossy(raw);
    let shown = wheelship::text::shown(&lossy, 200);
    if raw.len() > MAX_PATH {
        return Err(format!(
            "`{}…`: member name longer than {MAX_PATH} bytes",
            wheelship::text::shown(&lossy, 64)
        ));
    }
    if raw.contains(&0) {
        return Err(format!("`{shown}`: NUL in a member name"));
    }
    let Ok(text) = std::str::from_utf8(raw) else {
        return Err(format!("`{shown}`: a member name that is not UTF-8"));
    };
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!(
            "`{shown}`: the control character {c:?} in a member name"
        ));
    }
    if raw.first() == Some(&b'/') {
        return Err(format!("`{shown}`: absolute member name"));
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

/// A symlink's target, judged by its text before anything is made: not empty, no NUL, not
/// absolute. Where it really leads is judged once the whole tree is known ([`Tree::check_links`]).
fn check_link_text(link: &Path, target: &[u8]) -> Result<(), String> {
    let shown = wheelship::text::shown(&String::from_utf8_lossy(target), 200);
    if target.is_empty() || target.contains(&0) {
        return Err(format!("`{}`: empty or NUL symlink target", link.display()));
    }
    if target.first() == Some(&b'/') {
        return Err(format!(
            "`{}`: symlink to absolute path `{shown}`",
            link.display()
        ));
    }
    if target.len() > MAX_PATH {
        return Err(format!("`{}`: symlink target too long", link.display()));
    }
    Ok(())
}

/// What an archive may hold in `.wheelship/`: what `bundle pack` writes there. The rest of it
/// (`archive.sha256`, the record) is unpack's to write, never an archive's to supply.
fn reserved_member_ok(rel: &Path, kind: tar::EntryType) -> bool {
    let Ok(inside) = rel.strip_prefix(RESERVED) else {
        return true;
    };
    let dir = kind == tar::EntryType::Directory;
    let file = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
    let parts: Vec<&OsStr> = inside.iter().collect();
    match parts.as_slice() {
        [] => dir,
        [w] if *w == "wheels" => dir,
        [name] => file && crate::ARCHIVE_OWNED.iter().any(|o| name == o),
        [w, name] => file && *w == "wheels" && name.as_bytes().ends_with(b".whl"),
        _ => false,
    }
}

/// Extraction into the staging directory, through a handle that cannot leave it.
struct Extract<'a> {
    /// The staging directory, and every directory made in it, each opened once.
    dirs: Dirs,
    a: &'a Limits,
    compressed: Tally,
    total: u64,
    tree: Tree,
    buf: Vec<u8>,
}

impl Extract<'_> {
    fn check_size(&self) -> Result<()> {
        if self.total > self.a.max_bytes {
            bail!(
                "the archive expands to more than {} bytes (--max-bytes)",
                self.a.max_bytes
            );
        }
        if self.total > RATIO_GRACE
            && self.total / self.compressed.bytes().max(1) > self.a.max_ratio
        {
            bail!(
                "the archive expands more than {} times its size (--max-ratio): a compression bomb?",
                self.a.max_ratio
            );
        }
        Ok(())
    }

    /// A regular file: its bytes, no more and no fewer than the header says, counted against
    /// the archive's limits; executable or not is the only mode bit kept.
    fn file<R: Read>(&mut self, e: &mut tar::Entry<R>, rel: PathBuf) -> Result<()> {
        let corrupt = |e: io::Error| anyhow!("corrupt or truncated archive: {e}");
        let name = rel.file_name().expect("a safe path has a last component");
        let mode = e.header().mode().map_err(corrupt)?;
        // setuid/setgid/sticky and group/other write never survive.
        let mode = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
        let declared = e.size();
        if declared != e.header().entry_size().map_err(corrupt)? {
            // A PAX size that disagrees with the header's is how entries get smuggled
            // past other readers (CVE-2026-33055, TARmageddon): refuse it outright.
            bail!("`{}`: the PAX and tar header sizes disagree", rel.display());
        }
        let mut f = self.dirs.parent(&rel)?.0.create_file(name, mode)?;
        let mut buf = std::mem::take(&mut self.buf);
        let mut got = 0u64;
        loop {
            let n = e.read(&mut buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            got += n as u64;
            self.total += n as u64;
            self.check_size()?;
            f.write_all(&buf[..n])
                .at("write", self.dirs.root().show(&rel))?;
        }
        self.buf = buf;
        if got != declared {
            bail!("`{}`: truncated ({got} of {declared} bytes)", rel.display());
        }
        let key = self.tree.keys.path(&rel);
        self.tree.files.insert(key);
        Ok(())
    }

    fn entry<R: Read>(&mut self, m: &mut crate::members::Member<'_, R>) -> Result<()> {
        let rel = safe_path(&m.path).map_err(|m| anyhow!(m))?;
        let link = m.link.clone().unwrap_or_default();
        let e = &mut m.entry;
        if let Some(l) = self.tree.link_above(&rel) {
            bail!(
                "`{}`: written through the symlink `{}`",
                rel.display(),
                l.display()
            );
        }
        if !reserved_member_ok(&rel, e.header().entry_type()) {
            bail!(
                "`{}`: `{RESERVED}/` holds only what `bundle pack` writes there",
                rel.display()
            );
        }
        let key = self.tree.keys.path(&rel);
        if !self.tree.seen.insert(key) {
            bail!("`{}`: duplicate entry", rel.display());
        }
        self.tree.count(BYTES_PER_ENTRY, self.a.max_memory)?;
        if self.dirs.root().path().as_os_str().len() + 1 + rel.as_os_str().len() > MAX_PATH {
            bail!("`{}`: path too long once extracted", rel.display());
        }
        let name = rel.file_name().expect("a safe path has a last component");
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => self.file(e, rel)?,
            tar::EntryType::Directory => {
                // Fails on a file or a link already there: a directory never replaces them.
                self.dirs.dir(&rel).map_err(|_| {
                    anyhow!("`{}`: a directory over a file or a link", rel.display())
                })?;
            }
            tar::EntryType::Symlink => {
                let target = link;
                check_link_text(&rel, &target).map_err(|m| anyhow!(m))?;
                // Judged now against what is there (the obvious escapes fail early), and again
                // when the whole tree is known (a later link can change where this one leads).
                self.tree.check_link(&rel, &target)?;
                self.dirs
                    .parent(&rel)?
                    .0
                    .symlink(OsStr::from_bytes(&target), name)?;
                let cost = (rel.as_os_str().len() + target.len()) as u64 + BYTES_PER_ENTRY;
                self.tree.count(cost, self.a.max_memory)?;
                self.tree.links.insert(key, (rel, target));
            }
            tar::EntryType::Link => {
                let target = link;
                let t = safe_path(&target)
                    .map_err(|m| anyhow!("hard link `{}`: {m}", rel.display()))?;
                if !self.tree.files.contains(&self.tree.keys.path(&t)) {
                    bail!(
                        "`{}`: hard link to `{}`, which is not a file of this release",
                        rel.display(),
                        t.display()
                    );
                }
                self.dirs.parent(&rel)?;
                let root = self.dirs.root();
                root.hard_link(&t, root, &rel)?;
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
        Ok(())
    }
}

/// Extracts the archive into `staging` (a new directory in `releases`), verifying its sha256
/// in the same pass; returns the sha256.
pub fn extract_into(
    archive: &Path,
    releases: &Dir,
    staging: &str,
    a: &Limits,
    manifest: &Manifest,
    expected: Option<&str>,
) -> Result<String> {
    releases.create_dir(staging, 0o755)?;
    let (mut ar, compressed) = decoder(archive)?;
    let mut x = Extract {
        dirs: Dirs::new(releases.open_dir(staging)?),
        a,
        compressed: compressed.clone(),
        total: 0,
        tree: Tree::default(),
        buf: vec![0u8; 1 << 16],
    };
    let mut count = 0u64;
    for m in crate::members::members(&mut ar, a.max_memory)? {
        let mut m = m?;
        count += 1;
        if count > a.max_entries {
            bail!("more than {} entries (--max-entries)", a.max_entries);
        }
        if x.tree.seen.is_empty()
            && safe_path(&m.path).ok() != Some(Path::new(RESERVED).join("release.json"))
        {
            bail!("not a wheelship release: `{RESERVED}/release.json` is not the first entry");
        }
        x.entry(&mut m)?;
    }
    if x.tree.seen.is_empty() {
        bail!("empty archive: not a wheelship release");
    }
    x.tree.check_links()?;
    let (sha256, junk) = drain(ar, &compressed, &mut x.buf)?;
    if let Some(e) = expected {
        if e != sha256 {
            bail!("sha256 mismatch: the document says {e}, the file has {sha256}");
        }
    }
    if junk > 0 {
        bail!("{junk} bytes after the end of the zstd frame");
    }
    let got: Manifest = serde_json::from_slice(
        &x.dirs
            .root()
            .read(Path::new(RESERVED).join("release.json"))?,
    )?;
    if &got != manifest {
        bail!("release.json changed between two reads of the archive");
    }
    let mut f = x
        .dirs
        .root()
        .create_file(Path::new(RESERVED).join("archive.sha256"), 0o644)?;
    f.write_all(format!("{sha256}\n").as_bytes())?;
    point("unpack-before-sync");
    // One syncfs for the whole tree instead of an fsync per file.
    x.dirs.root().sync_fs()?;
    Ok(sha256)
}

/// Reads to the end of the zstd frame, so its checksum is verified and trailing junk (or a
/// bomb after the tar end) is noticed; whatever the frame did not use is hashed too. Returns
/// the archive's sha256 and how many bytes followed the frame.
fn drain(ar: tar::Archive<Decoder>, read: &Tally, buf: &mut [u8]) -> Result<(String, u64)> {
    let corrupt = |e: io::Error| anyhow!("corrupt or truncated archive: {e}");
    let mut rest = ar.into_inner();
    let mut trailing = 0u64;
    loop {
        let n = rest.read(buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        trailing += n as u64;
        if trailing > 1 << 20 {
            bail!("more than 1 MiB of data after the end of the tar archive");
        }
    }
    let mut raw = rest.finish();
    let mut junk = 0u64;
    loop {
        let n = raw.read(buf).map_err(corrupt)?;
        if n == 0 {
            break;
        }
        junk += n as u64;
    }
    let sha256 = read.sha256();
    Ok((sha256, junk))
}
