//! `bundle pack`: the committed tree (exactly what `git archive` gives), the locked wheels and
//! the document, as a reproducible `.tar.zst`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use wheelship::cli::io_reason;
use wheelship::doc::{doc_path, Bundle, BundleEntries, Wheelhouse};
use wheelship::fs::fsx;
use wheelship::hash::HashWriter;
use wheelship::{Document, Hint};

use crate::{Manifest, PackArgs, RESERVED};
use wheelship::fs::io::At;

enum Kind {
    Dir,
    File { exec: bool, data: Vec<u8> },
    Wheel(PathBuf, u64),
    Symlink(Vec<u8>),
}

struct Item {
    path: Vec<u8>,
    kind: Kind,
}

fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow!("cannot run git: {}", io_reason(&e)))?;
    if !out.status.success() {
        bail!(
            "`git {}` failed in `{}`: {}",
            args.join(" "),
            repo.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn git_line(repo: &Path, args: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&git(repo, args)?)
        .trim()
        .to_string())
}

pub fn run(a: PackArgs) -> Result<()> {
    let started = wheelship::time::now_rfc3339();
    let mut doc = Document::from_stdin()?;
    let repo = std::fs::canonicalize(&a.repo).about("repository", &a.repo)?;
    let (rev, tree, commit_time) = commit(&repo, &a.rev)?;

    let mut items = tree_items(&repo, &rev)?;
    let (wheel_dir, wheels) = if a.no_wheels {
        (PathBuf::new(), Vec::new())
    } else {
        let wh: Wheelhouse = doc.section("wheelhouse")?.ok_or_else(|| {
            Hint::new(
                "the document has no `wheelhouse` section (the lock)",
                "pipe the output of `wheelhouse` into `bundle pack`, or pack the code alone with --no-wheels",
            )
        })?;
        (PathBuf::from(&wh.dir), checked_wheels(&wh)?)
    };

    // The embedded document is the build's; a `bundle` section there would describe another
    // archive.
    let mut embedded = doc.clone();
    embedded.remove("bundle");
    let document = format!("{}\n", portable(&embedded, &repo)?.to_json());

    let name = sanitize_name(&match &a.name {
        Some(n) => n.clone(),
        None => repo
            .file_name()
            .map_or("app".into(), |n| n.to_string_lossy().to_string()),
    })?;
    let id = release_id(&tree, &rev, commit_time, &wheels, &document);
    wheelship::host::trust::check_not_future(&id, "this build box")?;
    let manifest = Manifest {
        id: id.clone(),
        name: name.clone(),
        rev: rev.clone(),
        tree,
        commit_time,
    };

    let counts = counts(&items, wheels.len());
    // What was asked for, for the SBOM's graph: read as it is (pack passes the section on).
    let reqs: Option<serde_json::Value> = doc.section("requirements").unwrap_or(None);
    let wh: Option<wheelship::doc::Wheelhouse> = doc.section("wheelhouse").unwrap_or(None);
    let targets = crate::sbom::Targets::of(wh.as_ref());
    let sbom = crate::sbom::sbom(&manifest, &wheel_dir, &wheels, reqs.as_ref(), &targets)?;
    let first = reserved_items(&mut items, &manifest, document, sbom, &wheel_dir, &wheels)?;

    let out = Out {
        dir: &a.out,
        level: a.level,
        threads: a.threads,
    };
    let (final_path, sha256, size) = write_out(
        &out,
        &format!("{name}-{id}.tar.zst"),
        &first,
        &items,
        commit_time,
    )?;

    let mut section = Bundle {
        path: doc_path(&final_path)?,
        id: id.clone(),
        sha256: sha256.clone(),
        size,
        rev: Some(rev),
        name: Some(name),
        level: Some(a.level),
        entries: Some(counts),
        ..Bundle::default()
    };
    let build = Beside {
        repo: &repo,
        manifest: &manifest,
        wheels: &wheels,
        sources: &targets.sources,
        started,
        sign: a.sign.as_deref(),
        no_wheels: a.no_wheels,
    };
    beside(&build, &mut section)?;
    doc.set("bundle", &section)?;
    doc.write_stdout()
}

/// Where and how the archive is written.
struct Out<'a> {
    dir: &'a Path,
    level: i32,
    threads: Option<u32>,
}

/// The archive written under a temp name in OUT (removed on any failure), renamed when whole:
/// its path, sha256 and size.
fn write_out(
    a: &Out,
    file: &str,
    first: &Item,
    items: &[Item],
    commit_time: i64,
) -> Result<(PathBuf, String, u64)> {
    let out_dir = wheelship::fs::owned::OwnedDir::create(a.dir, "output directory")?
        .path()
        .to_path_buf();
    let final_path = out_dir.join(file);
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
        .max(1);
    let cannot = || format!("cannot write `{}`", final_path.display());
    // Under a temp name beside the archive (removed on any failure), renamed when whole.
    let tmp = tempfile::Builder::new()
        .prefix(wheelship::fs::temp::TMP)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(&out_dir)
        .with_context(cannot)?;
    let (sha256, size) = write_archive(
        tmp.as_file().try_clone()?,
        std::iter::once(first).chain(items.iter()),
        commit_time,
        a.level,
        threads,
    )
    .with_context(cannot)?;
    tmp.persist(&final_path)
        .map_err(|e| anyhow!("{}: {}", cannot(), io_reason(&e.error)))?;
    fsx::fsync_dir(&out_dir)?;
    Ok((final_path, sha256, size))
}

/// What the provenance says of the build, and the key that signs.
struct Beside<'a> {
    repo: &'a Path,
    manifest: &'a Manifest,
    wheels: &'a [(String, String, u64)],
    sources: &'a std::collections::BTreeMap<String, serde_json::Value>,
    started: String,
    sign: Option<&'a Path>,
    no_wheels: bool,
}

/// What goes beside the archive: the provenance, and with --sign the signatures of both.
fn beside(b: &Beside, section: &mut Bundle) -> Result<()> {
    let final_path = PathBuf::from(section.path.as_str());
    let (id, sha256) = (section.id.clone(), section.sha256.clone());
    let provenance = crate::provenance::write(&crate::provenance::Build {
        archive: &final_path,
        sha256: &sha256,
        manifest: b.manifest,
        repository: crate::provenance::repository(b.repo),
        wheels: b.wheels,
        sources: b.sources,
        level: section.level.unwrap_or(crate::DEFAULT_LEVEL),
        no_wheels: b.no_wheels,
        started: b.started.clone(),
    })?;
    section.provenance = Some(doc_path(&provenance)?);
    if let Some(key) = b.sign {
        let signed = crate::sign::sign(&final_path, key, &id, &sha256)?;
        section.signature = Some(doc_path(signed.path)?);
        section.key_id = Some(signed.key_id);
        crate::sign::sign_file(
            &provenance,
            key,
            &crate::provenance::comment(&id, &sha256),
            "provenance from wheelship bundle pack",
        )?;
    }
    Ok(())
}

/// What the archive holds, counted by kind.
fn counts(items: &[Item], wheels: usize) -> BundleEntries {
    BundleEntries {
        files: items
            .iter()
            .filter(|i| matches!(i.kind, Kind::File { .. }))
            .count(),
        dirs: items.iter().filter(|i| matches!(i.kind, Kind::Dir)).count(),
        symlinks: items
            .iter()
            .filter(|i| matches!(i.kind, Kind::Symlink(_)))
            .count(),
        wheels,
        extra: Default::default(),
    }
}

/// Adds `.wheelship/` (the document, the SBOM, the wheels) to the tree's items, sorted; the manifest
/// `.wheelship/release.json`, which goes first in the archive.
fn reserved_items(
    items: &mut Vec<Item>,
    manifest: &Manifest,
    document: String,
    sbom: Vec<u8>,
    wheel_dir: &Path,
    wheels: &[(String, String, u64)],
) -> Result<Item> {
    let r = RESERVED.as_bytes();
    items.push(Item {
        path: r.to_vec(),
        kind: Kind::Dir,
    });
    items.push(Item {
        path: [r, b"/document.json"].concat(),
        kind: Kind::File {
            exec: false,
            data: document.into_bytes(),
        },
    });
    items.push(Item {
        path: [r, b"/sbom.cdx.json"].concat(),
        kind: Kind::File {
            exec: false,
            data: sbom,
        },
    });
    items.push(Item {
        path: [r, b"/wheels"].concat(),
        kind: Kind::Dir,
    });
    for (file, _, size) in wheels {
        items.push(Item {
            path: [r, b"/wheels/", file.as_bytes()].concat(),
            kind: Kind::Wheel(wheel_dir.join(file), *size),
        });
    }
    items.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(Item {
        path: [r, b"/release.json"].concat(),
        kind: Kind::File {
            exec: false,
            data: format!("{}\n", serde_json::to_string(&manifest)?).into_bytes(),
        },
    })
}

/// The commit `rev` names in `repo`: its full id, its tree's, and its commit time.
fn commit(repo: &Path, rev: &str) -> Result<(String, String, i64)> {
    let full = git_line(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{rev}^{{commit}}"),
        ],
    )
    .map_err(|_| anyhow!("`{rev}` is not a commit in `{}`", repo.display()))?;
    let tree = git_line(repo, &["rev-parse", &format!("{full}^{{tree}}")])?;
    let commit_time: i64 = git_line(repo, &["log", "-1", "--format=%ct", &full])?
        .parse()
        .context("cannot read the commit time")?;
    Ok((full, tree, commit_time))
}

/// `<commit time>-<rev[..12]>-<content[..12]>`: the content hash covers the tree, every
/// locked wheel (file and sha256) and the embedded document.
fn release_id(
    tree: &str,
    rev: &str,
    commit_time: i64,
    wheels: &[(String, String, u64)],
    document: &str,
) -> String {
    let mut content = Sha256::new();
    content.update(format!("wheelship-release-v1\n{tree}\n").as_bytes());
    for (file, sha, _) in wheels {
        content.update(format!("{file} {sha}\n").as_bytes());
    }
    content.update(document.as_bytes());
    let content = wheelship::hash::hex(&content.finalize());
    format!(
        "{}-{}-{}",
        wheelship::time::compact(commit_time),
        &rev[..12],
        &content[..12]
    )
}

/// The lock's wheels, each checked against its sha256 and size: (file, sha256, size).
fn checked_wheels(wh: &Wheelhouse) -> Result<Vec<(String, String, u64)>> {
    let mut out = Vec::new();
    for w in &wh.wheels {
        if w.file.contains('/') || !w.file.ends_with(".whl") || w.file.starts_with('.') {
            bail!(
                "the lock names `{}`, which is not a wheel file name",
                w.file
            );
        }
        let path = Path::new(&wh.dir).join(&w.file);
        let (sha, size) = fsx::sha256_file(&path)?;
        if sha != w.sha256 || size != w.size {
            return Err(Hint::new(
                format!(
                    "wheel `{}` does not match the lock: sha256 {sha} ({size} bytes), the lock says {} ({} bytes)",
                    path.display(),
                    w.sha256,
                    w.size
                ),
                "the wheelhouse changed since it was locked: run `wheelhouse` again",
            )
            .into());
        }
        out.push((w.file.clone(), sha, size));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The entries `git archive` gives for the commit, paths without a trailing `/`.
fn tree_items(repo: &Path, rev: &str) -> Result<Vec<Item>> {
    let bytes = git(repo, &["archive", "--format=tar", rev])?;
    let mut ar = tar::Archive::new(&bytes[..]);
    let mut items = Vec::new();
    for m in
        crate::members::members(&mut ar, 1 << 20).context("cannot read `git archive` output")?
    {
        let m = m.context("cannot read `git archive` output")?;
        let mut e = m.entry;
        let path = m.path.strip_suffix(b"/").unwrap_or(&m.path).to_vec();
        plain_name(&path)?;
        let top = path.split(|&b| b == b'/').next().unwrap_or_default();
        let kind = match e.header().entry_type() {
            _ if top == RESERVED.as_bytes() => bail!(
                "the repository has `{}`, which is reserved for wheelship's files in a release",
                String::from_utf8_lossy(&path)
            ),
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular => {
                let exec = e.header().mode()? & 0o111 != 0;
                let mut data = Vec::new();
                io::copy(&mut e, &mut data)?;
                Kind::File { exec, data }
            }
            tar::EntryType::Symlink => Kind::Symlink(m.link.unwrap_or_default()),
            other => bail!(
                "unexpected {other:?} entry `{}` from git archive",
                String::from_utf8_lossy(&path)
            ),
        };
        items.push(Item { path, kind });
    }
    Ok(items)
}

/// Where the embedded lock's wheels are: the release's own (unpack sets the real path).
pub const WHEELS_IN_RELEASE: &str = "/.wheelship/wheels";

/// The document as the archive carries it: nothing of the build box's own paths or kernel, so
/// that the same commit, lock and options give the same release on any box, from any
/// directory. The requirement files are named relative to the repository (by name when
/// outside it), the wheel directory is the release's own, and a target keeps what describes
/// the target (not the interpreter's path, nor the kernel's release and version).
fn portable(doc: &Document, repo: &Path) -> Result<Document> {
    let mut v: serde_json::Value = serde_json::from_str(&doc.to_json())?;
    let relative = |p: &serde_json::Value| -> Option<serde_json::Value> {
        let path = Path::new(p.as_str()?);
        let rel = path
            .strip_prefix(repo)
            .ok()
            .map(Path::to_path_buf)
            .or_else(|| path.file_name().map(PathBuf::from))?;
        Some(serde_json::Value::String(rel.to_string_lossy().to_string()))
    };
    if let Some(r) = v.get_mut("requirements") {
        if let Some(files) = r.get_mut("files").and_then(|f| f.as_array_mut()) {
            for f in files {
                if let Some(n) = relative(f) {
                    *f = n;
                }
            }
        }
        if let Some(entries) = r.get_mut("entries").and_then(|e| e.as_array_mut()) {
            for e in entries {
                if let Some(n) = e.get("file").and_then(relative) {
                    e["file"] = n;
                }
            }
        }
    }
    if let Some(w) = v.get_mut("wheelhouse").and_then(|w| w.as_object_mut()) {
        if w.contains_key("dir") {
            w.insert("dir".into(), WHEELS_IN_RELEASE.into());
        }
        if let Some(t) = w.get_mut("target") {
            box_free(t);
        }
        if let Some(locks) = w.get_mut("locks").and_then(|l| l.as_array_mut()) {
            for l in locks {
                if let Some(t) = l.get_mut("target") {
                    box_free(t);
                }
            }
        }
    }
    Document::parse(&v.to_string(), "the document")
}

/// A target without what belongs to the build box rather than to the target.
fn box_free(t: &mut serde_json::Value) {
    if let Some(o) = t.as_object_mut() {
        o.remove("executable");
        if let Some(m) = o.get_mut("markers").and_then(|m| m.as_object_mut()) {
            m.remove("platform_release");
            m.remove("platform_version");
        }
    }
}

/// A file name of the repository that every host will unpack: UTF-8 without control
/// characters, as unpack requires (a newline or an escape would reach every terminal and log
/// that names the file). Refused here, where it can be renamed, rather than on every host.
fn plain_name(path: &[u8]) -> Result<()> {
    let shown = || wheelship::text::shown(&String::from_utf8_lossy(path), 200);
    match std::str::from_utf8(path) {
        Err(_) => bail!(
            "the repository's file `{}` has a name that is not UTF-8: a release refuses it (rename it with `git mv`)",
            shown()
        ),
        Ok(t) if t.chars().any(char::is_control) => bail!(
            "the repository's file `{}` has a control character in its name: a release refuses it (rename it with `git mv`)",
            shown()
        ),
        Ok(_) => Ok(()),
    }
}

fn sanitize_name(n: &str) -> Result<String> {
    let s: String = n
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_start_matches(['.', '-']);
    let s: String = s.chars().take(100).collect();
    if s.is_empty() {
        bail!("`{n}` gives an empty release name: give --name");
    }
    wheelship::text::check_file_name(&s).map_err(|e| anyhow!("--name: {e}"))?;
    Ok(s)
}

/// The archive's zstd stream, with the parameters that make it reproducible: a release and its
/// thin copy rebuilt on a host (`bundle thick`) must give the same bytes.
pub(crate) fn encoder<W: Write>(
    sink: W,
    level: i32,
    threads: u32,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(sink, level)?;
    enc.multithread(threads.max(1))?;
    enc.include_checksum(true)?;
    enc.include_contentsize(false)?;
    Ok(enc)
}

/// Writes the entries with normalised headers (uid/gid 0, no user names, mtime of the
/// commit, 0644/0755 modes) through zstd with fixed parameters. Multithreaded zstd output does
/// not depend on the number of workers (≥ 1), so the bytes do not either.
fn write_archive<'a>(
    file: File,
    items: impl Iterator<Item = &'a Item>,
    mtime: i64,
    level: i32,
    threads: u32,
) -> Result<(String, u64)> {
    let sink = HashWriter::new(BufWriter::with_capacity(1 << 20, file));
    let enc = encoder(sink, level, threads)?;
    let mut b = tar::Builder::new(enc);
    b.mode(tar::HeaderMode::Deterministic);
    let mtime = mtime.max(0) as u64;
    for it in items {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        let p = String::from_utf8(it.path.clone())
            .map_err(|_| anyhow!("path `{}` is not UTF-8", String::from_utf8_lossy(&it.path)))?;
        match &it.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{p}/"), io::empty())?;
            }
            Kind::File { exec, data } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if *exec { 0o755 } else { 0o644 });
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &p, &data[..])?;
            }
            Kind::Wheel(src, size) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(*size);
                let f = File::open(src).at("read", src)?;
                b.append_data(&mut h, &p, io::Read::take(f, *size))?;
            }
            Kind::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                let t = String::from_utf8(target.clone())
                    .map_err(|_| anyhow!("symlink target of `{p}` is not UTF-8"))?;
                b.append_link(&mut h, &p, &t)?;
            }
        }
    }
    let enc = b.into_inner()?;
    let mut sink = enc.finish()?;
    sink.flush()?;
    let HashWriter { inner, hash, n } = sink;
    let file = inner.into_inner().map_err(|e| anyhow!("{}", e.error()))?;
    file.sync_all()?;
    Ok((wheelship::hash::hex(&hash.finalize()), n))
}
