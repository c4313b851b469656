//! Thin copies of a release, for deploys whose cost grows with the change.
//!
//! A host keeps the wheels of the releases it has (`<release>/.wheelship/wheels/*.whl`, named in
//! each release's document with their sha256). `bundle have` lists them by sha256. `bundle thin`
//! makes, from the full archive, a thin copy without the wheels the host has: the archive's tar
//! stream with those wheels' bytes cut out, and where they were. `bundle thick`, on the host,
//! puts each wheel back from its own copy (verified against its sha256) and compresses the
//! stream as `bundle pack` did, which gives the full archive again, byte for byte: its sha256 is
//! checked against the one the thin copy names, and `bundle unpack` then verifies it (sha256,
//! signature) as any archive. The full archive stays the artifact of record; a host that cannot
//! rebuild it (another version of bundle, a wheel gone) says so, and the full archive is sent.
//!
//! A thin copy is a zstd stream: one JSON line ([`Header`]), then the tar stream less the cuts.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wheelship::cli::io_reason;
use wheelship::doc::{doc_path, Bundle, Have, HaveWheel, Thin, Wheelhouse};
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::fs::fsx;
use wheelship::fs::owned::{OwnedDir, TMP};
use wheelship::{python::names::WheelFilename, text::check_sha256};
use wheelship::{Document, UsageError};

use crate::pack::encoder;
use crate::{HaveArgs, ThickArgs, ThinArgs, RESERVED};
use wheelship::fs::io::At;
use wheelship::hash::HashWriter;

const FORMAT: &str = "wheelship-thin-v2";
/// The header line is small; a longer one is not a thin copy.
const HEADER_MAX: u64 = 16 << 20;
/// The largest archive (its tar stream) a thin copy is made of: what unpack takes by default.
const MAX_TAR: u64 = 8 << 30;

/// The first line of a thin copy. Nothing in it is trusted: what the rebuilt archive must be
/// (id, sha256, size, level) comes from the release's document on stdin, and the header must
/// agree with it before anything is written.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    /// The full archive: its sha256, size, release id and zstd level.
    sha256: String,
    size: u64,
    id: String,
    level: i32,
    /// The size of the full tar stream.
    tar_size: u64,
    /// The wheels cut out, in stream order.
    cuts: Vec<Cut>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cut {
    /// Where the wheel's bytes start in the full tar stream.
    offset: u64,
    size: u64,
    sha256: String,
    file: String,
}

/// The wheels of the releases under RELEASES, as their documents name them and as they are on
/// disk (a regular file of the named size): sha256 → (release, path beneath it, size).
fn inventory(releases: &Path) -> Result<BTreeMap<String, (Dir, PathBuf, u64)>> {
    let mut out = BTreeMap::new();
    if std::fs::symlink_metadata(releases).is_err() {
        return Ok(out); // a host with no releases yet holds no wheels
    }
    let root = OwnedDir::open(releases, "releases directory")?;
    let dir = root.dir();
    for (name, kind) in dir.entries()? {
        if kind != Kind::Dir || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(release) = dir.open_dir(&name) else {
            continue;
        };
        let Some(wh) = release_lock(&release) else {
            continue;
        };
        for w in wh.wheels {
            if check_sha256(&w.sha256).is_err()
                || w.file.contains('/')
                || out.contains_key(&w.sha256)
            {
                continue;
            }
            let rel = Path::new(RESERVED).join("wheels").join(&w.file);
            if release.kind(&rel).ok().flatten() == Some(Kind::File) {
                out.insert(w.sha256, (dir.open_dir(&name)?, rel, w.size));
            }
        }
    }
    Ok(out)
}

/// The lock of a release's document, when it has one that reads.
fn release_lock(release: &Dir) -> Option<Wheelhouse> {
    let text = release
        .read(Path::new(RESERVED).join("document.json"))
        .ok()?;
    let doc = Document::parse(std::str::from_utf8(&text).ok()?, "document.json").ok()?;
    doc.section::<Wheelhouse>("wheelhouse").ok().flatten()
}

/// `bundle have`: the document from stdin, with a `have` section.
pub fn have(a: HaveArgs) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    let wheels = inventory(&a.releases)?
        .into_iter()
        .map(|(sha256, (_, _, size))| HaveWheel {
            sha256,
            size,
            extra: Default::default(),
        })
        .collect();
    doc.set(
        "have",
        &Have {
            wheels,
            extra: Default::default(),
        },
    )?;
    doc.write_stdout()
}

/// `bundle thin`: the thin copy of ARCHIVE for a host that has the wheels of HAVE.
pub fn thin(a: ThinArgs) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    let text = std::fs::read_to_string(&a.have).at("read", &a.have)?;
    let have: Have = Document::parse(&text, &a.have.display().to_string())?
        .section("have")?
        .ok_or_else(|| anyhow!("`{}` has no `have` section", a.have.display()))?;
    let has: HashMap<String, u64> = have
        .wheels
        .into_iter()
        .map(|w| (w.sha256, w.size))
        .collect();
    let manifest = crate::extract::peek_manifest(&a.archive)?;
    let (sha256, size, tar) = read_archive(&a.archive)?;
    let mut cuts = Vec::new();
    let mut ar = tar::Archive::new(io::Cursor::new(&tar[..]));
    let wheels = format!("{RESERVED}/wheels/");
    for m in crate::members::members(&mut ar, 1 << 20)? {
        let m = m?;
        let e = m.entry;
        let path = String::from_utf8_lossy(&m.path).to_string();
        let Some(file) = path.strip_prefix(&wheels) else {
            continue;
        };
        let (offset, len) = (e.raw_file_position(), e.size());
        let bytes = usize::try_from(offset + len)
            .ok()
            .and_then(|end| tar.get(offset as usize..end))
            .ok_or_else(|| {
                anyhow!(
                    "`{}`: `{path}` runs past the archive's end",
                    a.archive.display()
                )
            })?;
        let sha = wheelship::hash::hex(&Sha256::digest(bytes));
        if has.get(&sha) == Some(&len) {
            cuts.push(Cut {
                offset,
                size: len,
                sha256: sha,
                file: file.to_string(),
            });
        }
    }
    let header = Header {
        format: FORMAT.into(),
        sha256,
        size,
        id: manifest.id,
        level: match a.level {
            Some(l) => l,
            None => doc
                .section::<Bundle>("bundle")?
                .and_then(|b| b.level)
                .unwrap_or(crate::DEFAULT_LEVEL),
        },
        tar_size: tar.len() as u64,
        cuts,
    };
    let kept = write_thin(&a.out, &header, &tar)?;
    doc.set(
        "thin",
        &Thin {
            path: doc_path(&a.out)?,
            size: kept,
            archive_size: size,
            wheels_cut: header.cuts.len(),
            worth: !header.cuts.is_empty() && kept * 2 < size,
            extra: Default::default(),
        },
    )?;
    doc.write_stdout()
}

/// One read of the archive: its sha256 and size, and its tar stream decompressed in memory.
fn read_archive(archive: &Path) -> Result<(String, u64, Vec<u8>)> {
    let (mut f, _) = fsx::open_regular(archive)?;
    let mut compressed = Vec::new();
    f.read_to_end(&mut compressed)
        .with_context(|| format!("cannot read `{}`", archive.display()))?;
    // Decoded with the window unpack allows, and never past what unpack would expand.
    let mut dec = zstd::stream::read::Decoder::new(&compressed[..])
        .with_context(|| format!("`{}` is not a zstd archive", archive.display()))?;
    dec.window_log_max(crate::extract::WINDOW_LOG_MAX)?;
    let mut tar = Vec::new();
    dec.take(MAX_TAR + 1)
        .read_to_end(&mut tar)
        .with_context(|| format!("`{}` is not a zstd archive", archive.display()))?;
    if tar.len() as u64 > MAX_TAR {
        bail!(
            "`{}` expands to more than {MAX_TAR} bytes",
            archive.display()
        );
    }
    let sha256 = wheelship::hash::hex(&Sha256::digest(&compressed));
    Ok((sha256, compressed.len() as u64, tar))
}

/// Writes the header line and the tar stream less the cuts, compressed; its size.
fn write_thin(out: &Path, header: &Header, tar: &[u8]) -> Result<u64> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(wheelship::fs::temp::TMP)
        .tempfile_in(dir)
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    {
        let mut enc = zstd::stream::write::Encoder::new(BufWriter::new(tmp.as_file_mut()), 3)?;
        serde_json::to_writer(&mut enc, header)?;
        enc.write_all(b"\n")?;
        let mut at = 0usize;
        for c in &header.cuts {
            enc.write_all(&tar[at..c.offset as usize])?;
            at = (c.offset + c.size) as usize;
        }
        enc.write_all(&tar[at..])?;
        enc.finish()?.flush()?;
    }
    let size = tmp.as_file().metadata()?.len();
    tmp.persist(out)
        .map_err(|e| anyhow!("cannot write `{}`: {}", out.display(), e.error))?;
    Ok(size)
}

/// What the rebuilt archive must be, from the release's document (never from the thin copy):
/// its id, sha256, size and zstd level.
struct Want {
    id: String,
    sha256: String,
    size: u64,
    level: i32,
}

impl Want {
    fn of(doc: &Document, max_bytes: u64) -> Result<Want> {
        let b: Bundle = doc.section("bundle")?.ok_or_else(|| {
            UsageError("bundle thick needs the release's document on stdin: its `bundle` section says which archive to rebuild (id, sha256, size)".into())
        })?;
        check_sha256(&b.sha256).map_err(|e| anyhow!("stdin: `bundle.sha256`: {e}"))?;
        wheelship::text::check_file_name(&b.id).map_err(|e| anyhow!("stdin: `bundle.id`: {e}"))?;
        let level = b.level.unwrap_or(crate::DEFAULT_LEVEL);
        if !(1..=22).contains(&level) {
            bail!("stdin: `bundle.level` {level} is not a zstd level (1-22)");
        }
        if b.size > max_bytes {
            bail!(
                "the release's archive is {} bytes, more than --max-bytes ({max_bytes})",
                b.size
            );
        }
        Ok(Want {
            id: b.id,
            sha256: b.sha256,
            size: b.size,
            level,
        })
    }
}

/// Temp files in the output directory older than this are what a killed `thick` left.
const LEFTOVER_AGE: u64 = 600;

/// `bundle thick`: the full archive again, from a thin copy and this host's wheels, as
/// `OUT/<id>.tar.zst`.
pub fn thick(a: ThickArgs) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    let want = Want::of(&doc, a.max_bytes)?;
    let (f, _) = fsx::open_regular(&a.thin)?;
    let mut r = BufReader::new(
        zstd::stream::read::Decoder::new(f)
            .with_context(|| format!("`{}` is not a thin copy", a.thin.display()))?,
    );
    let header = read_header(&mut r, &a.thin, &want, a.max_bytes)?;
    let have = inventory(&a.releases)?;
    let out_dir = OwnedDir::create(&a.out, "incoming directory")?;
    let _lock = out_dir.lock(Duration::from_secs(600), "another bundle thick here")?;
    out_dir.clean_older(&[TMP], LEFTOVER_AGE);
    let name = format!("{}.tar.zst", want.id);
    let tmp = tempfile::Builder::new()
        .prefix(TMP)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(out_dir.path())
        .with_context(|| format!("cannot write in `{}`", out_dir.path().display()))?;
    // Workers: the output does not depend on their number, the memory does.
    let threads = wheelship::work::cores().min(4) as u32;
    let sink = HashWriter::new(Capped {
        inner: BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?),
        left: want.size,
    });
    let mut enc = encoder(sink, want.level, threads)?;
    let mut at = 0u64;
    for c in &header.cuts {
        copy_exact(&mut r, &mut enc, c.offset - at, &a.thin)?;
        put_wheel(&have, c, &mut enc)?;
        at = c.offset + c.size;
    }
    copy_exact(&mut r, &mut enc, header.tar_size - at, &a.thin)?;
    if r.read(&mut [0u8; 1])? != 0 {
        bail!("`{}` holds more than its header says", a.thin.display());
    }
    let HashWriter { inner, hash, n } = enc.finish().map_err(|e| {
        anyhow!(
            "`{}`: cannot rebuild the archive: {}",
            a.thin.display(),
            io_reason(&e)
        )
    })?;
    inner
        .inner
        .into_inner()
        .map_err(|e| anyhow!("{}", e.error()))?
        .sync_all()?;
    let sha = wheelship::hash::hex(&hash.finalize());
    if sha != want.sha256 || n != want.size {
        bail!(
            "`{}`: rebuilt, the archive is not the release's (sha256 {sha}, {n} bytes; the document says {}, {} bytes): another version of bundle packed it, send the full archive",
            a.thin.display(),
            want.sha256,
            want.size
        );
    }
    let out = out_dir.join(&name);
    tmp.persist(&out)
        .map_err(|e| anyhow!("cannot write `{}`: {}", out.display(), e.error))?;
    out_dir.dir().sync()?;
    let carried: Bundle = doc.section("bundle")?.unwrap_or_default();
    doc.set(
        "bundle",
        &Bundle {
            path: doc_path(&out)?,
            id: want.id,
            sha256: sha,
            size: n,
            // Only `bundle unpack` establishes who signed it.
            verified_by: None,
            ..carried
        },
    )?;
    doc.write_stdout()
}

/// A writer that refuses to grow past `left` bytes: a thin copy never makes more than the
/// archive the document describes.
struct Capped<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other(
                "it grows past the size of the release's archive",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The header, checked against what the document says and within the limits: the cuts in
/// order, inside the stream, each a distinct wheel (by file name and sha256).
fn read_header(r: &mut impl BufRead, thin: &Path, want: &Want, max_bytes: u64) -> Result<Header> {
    let mut line = Vec::new();
    r.take(HEADER_MAX)
        .read_until(b'\n', &mut line)
        .with_context(|| format!("`{}` is not a thin copy", thin.display()))?;
    let h: Header = serde_json::from_slice(&line)
        .with_context(|| format!("`{}` is not a thin copy", thin.display()))?;
    let bad = |why: &str| anyhow!("`{}`: {why}", thin.display());
    if h.format != FORMAT {
        return Err(bad(&format!("not a thin copy of the format `{FORMAT}`")));
    }
    if h.sha256 != want.sha256 || h.size != want.size || h.id != want.id || h.level != want.level {
        return Err(bad(&format!(
            "not a thin copy of release `{}` (sha256 {}, {} bytes, level {}), which the document names",
            want.id, want.sha256, want.size, want.level
        )));
    }
    if h.tar_size > max_bytes {
        return Err(bad(&format!(
            "its stream is larger than --max-bytes ({max_bytes})"
        )));
    }
    let mut at = 0u64;
    let mut seen = std::collections::HashSet::new();
    for c in &h.cuts {
        check_sha256(&c.sha256).map_err(|e| bad(&e))?;
        if WheelFilename::parse(&c.file).is_err() || c.file.contains('/') {
            return Err(bad("a cut that is not a wheel file"));
        }
        if !seen.insert(c.sha256.as_str()) || !seen.insert(c.file.as_str()) {
            return Err(bad("the same wheel cut out twice"));
        }
        let end = c
            .offset
            .checked_add(c.size)
            .ok_or_else(|| bad("a cut overflows"))?;
        if c.offset < at || end > h.tar_size {
            return Err(bad("cuts out of order or past the stream"));
        }
        at = end;
    }
    Ok(h)
}

/// Copies exactly `n` bytes of the thin stream.
fn copy_exact(r: &mut impl Read, w: &mut impl Write, n: u64, thin: &Path) -> Result<()> {
    let copied =
        io::copy(&mut r.take(n), w).with_context(|| format!("`{}` is corrupt", thin.display()))?;
    if copied != n {
        bail!("`{}` is truncated", thin.display());
    }
    Ok(())
}

/// Puts a cut wheel back from this host's copy, checked against its sha256 as it goes.
fn put_wheel(
    have: &BTreeMap<String, (Dir, PathBuf, u64)>,
    c: &Cut,
    w: &mut impl Write,
) -> Result<()> {
    let (release, rel, size) = have.get(&c.sha256).ok_or_else(|| {
        anyhow!(
            "`{}` (sha256 {}) is not on this host any more",
            c.file,
            c.sha256
        )
    })?;
    if *size != c.size {
        bail!(
            "`{}`: {} bytes here, {} in the release",
            c.file,
            size,
            c.size
        );
    }
    let mut f = release.open_file(rel)?;
    let mut hash = HashWriter::new(w);
    let n = io::copy(&mut (&mut f).take(c.size), &mut hash)?;
    let sha = wheelship::hash::hex(&hash.hash.finalize());
    if n != c.size || sha != c.sha256 {
        bail!(
            "`{}`: this host's copy has sha256 {sha} ({n} bytes), the release's is {}",
            release.show(rel).display(),
            c.sha256
        );
    }
    Ok(())
}
