//! `bundle unpack`: verify, extract into a staging directory, fsync, rename into place. Fails
//! closed on anything hostile or corrupt (the policy of PEP 706's `data` filter, https://peps.python.org/pep-0706/, stricter): the whole release is refused and
//! the staging directory removed.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use wheelship::beneath::{Dir, Dirs, Kind};
use wheelship::doc::{doc_path, Bundle, Release, Wheelhouse};
use wheelship::failpoint::point;
use wheelship::fsx;
use wheelship::root::{self, Root, STAGING, TMP};
use wheelship::trust::{self, Policy, Record, RECORD};
use wheelship::{Document, Hint, UsageError};

use crate::{sign, Manifest, UnpackArgs, RESERVED};
use wheelship::io::At;

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
    let expected = match bundle.as_ref().map(|b| b.sha256.as_str()) {
        None | Some("") => None,
        Some(s) => Some(
            wheelship::names::check_sha256(s)
                .map_err(|e| anyhow!("stdin: `bundle.sha256`: {e}"))?
                .to_string(),
        ),
    };
    // Only a regular file is an archive: a FIFO or a device would hang or never end.
    let size = fsx::open_regular(&archive)?.1;
    let releases = Root::create(&a.releases, "releases directory")?;
    // The root whose policy applies is the canonical parent, however RELEASES was spelled.
    let root = root::parent_of(&releases, "deploy root")?;
    let policy = Policy::load(&root, &a.trust)?;
    let (expected, verified) = check_signature(policy.as_ref(), &root, &archive, expected)?;
    let _lock = releases.lock(
        Duration::from_secs(600),
        "another unpack into this directory",
    )?;
    releases.clean(&[STAGING]);

    let manifest = match peek_manifest(&archive) {
        Ok(m) => m,
        Err(e) => {
            // A file that is not what the document describes: say that, it is the cause.
            if let Some(want) = &expected {
                let (found, _) = fsx::sha256_file(&archive)?;
                if found != *want {
                    return Err(mismatch(&archive, want, &found));
                }
            }
            return Err(e);
        }
    };
    if let Some(v) = &verified {
        check_signed_release(&archive, v, &manifest.id)?;
        // Replay: an old signed release is not put back over a newer one by dropping a file.
        let newest = trust::newest_activated(root.path())?;
        trust::check_not_older(
            &manifest.id,
            newest.as_deref(),
            a.allow_downgrade,
            "--allow-downgrade",
        )?;
    }
    let record = place(
        releases.dir(),
        &manifest,
        &archive,
        &a,
        expected.as_deref(),
        verified.as_ref(),
    )?;
    let doc = document(
        releases.dir(),
        &manifest,
        &stdin_doc,
        &archive,
        size,
        &record,
    )?;
    doc.write_stdout()
}

fn mismatch(archive: &Path, want: &str, found: &str) -> anyhow::Error {
    anyhow!(
        "`{}`: sha256 mismatch: the document says {want}, the file has {found}",
        archive.display()
    )
}

/// Under a policy, the signature must be for this release: its trusted comment names the
/// release id and the sha256 of the bytes it signed (what `bundle pack --sign` writes). A
/// comment that names nothing (`minisign -S` without `-t`) would let a signature follow any
/// archive and leave the release's record unverifiable.
fn check_signed_release(archive: &Path, v: &sign::Verified, id: &str) -> Result<()> {
    match trust::comment_names(&v.comment) {
        Some((signed_id, sha)) if signed_id == id && sha == v.sha256 => Ok(()),
        Some((signed_id, _)) if signed_id != id => bail!(
            "`{}`: signed by key {} as release `{signed_id}`, but it is release `{id}`",
            archive.display(),
            v.signer
        ),
        Some((_, sha)) => bail!(
            "`{}`: the signature's trusted comment names sha256 {sha}, the file has {}",
            archive.display(),
            v.sha256
        ),
        None => Err(Hint::new(
            format!(
                "`{}`: the signature by key {} does not say which release it is for (trusted comment `{}`)",
                archive.display(),
                v.signer,
                v.comment
            ),
            format!(
                "sign with `bundle pack --sign`, or `minisign -S -t \"{}\" -m ARCHIVE`",
                trust::comment(id, &v.sha256)
            ),
        )
        .into()),
    }
}

/// The release extracted into a staging directory and renamed into place (or, when it is
/// there, checked as the same), with its record: what the archive's sha256 was and what
/// verified it.
fn place(
    releases: &Dir,
    manifest: &Manifest,
    archive: &Path,
    a: &UnpackArgs,
    expected: Option<&str>,
    verified: Option<&sign::Verified>,
) -> Result<Record> {
    let id = manifest.id.as_str();
    let record = |sha256: String| Record {
        id: id.to_string(),
        sha256,
        verified_by: verified.map(|v| v.signer.clone()),
        signature: verified.map(|v| v.text.clone()),
    };
    match releases.kind(id)? {
        None => {
            // One pass: the sha256 is computed while extracting into the staging directory,
            // which is thrown away if it does not match.
            let staging = wheelship::names::temp_name(STAGING);
            let res = extract_into(archive, releases, &staging, a, manifest, expected).and_then(
                |sha256| {
                    let r = record(sha256);
                    write_record(&releases.open_dir(&staging)?, &r)?;
                    Ok(r)
                },
            );
            let record = match res {
                Ok(r) => r,
                Err(e) => {
                    let _ = releases.remove_all(&staging);
                    if let Some(want) = expected {
                        let (found, _) = fsx::sha256_file(archive)?;
                        if found != want {
                            return Err(mismatch(archive, want, &found));
                        }
                    }
                    return Err(e.context(format!("refusing `{}`", archive.display())));
                }
            };
            point("unpack-before-rename");
            releases.rename(&staging, releases, id)?;
            releases.sync()?;
            Ok(record)
        }
        Some(Kind::Dir) => {
            let sha256 = reuse(releases, id, archive, expected)?;
            let release = releases.open_dir(id)?;
            let had = Record::read(&release);
            // Verified now, or verified before: a run without trust never erases a record.
            match (verified, had) {
                (None, Some(had)) if had.sha256 == sha256 => Ok(had),
                _ => {
                    let r = record(sha256);
                    write_record(&release, &r)?;
                    Ok(r)
                }
            }
        }
        Some(_) => bail!(
            "`{}` exists and is not a directory: refusing it",
            releases.show(id).display()
        ),
    }
}

/// Writes (or replaces) the release's record, atomically and durably.
fn write_record(release: &Dir, r: &Record) -> Result<()> {
    let tmp = Path::new(RESERVED).join(wheelship::names::temp_name(TMP));
    let mut f = release.create_file(&tmp, 0o644)?;
    f.write_all(&serde_json::to_vec_pretty(r)?)
        .and_then(|()| f.sync_all())
        .at("write", release.show(&tmp))?;
    release.rename(&tmp, release, RECORD)?;
    release.open_dir(RESERVED)?.sync()
}

/// Signed releases: under a policy, nothing is extracted from an archive that none of its keys
/// signed, and what is extracted is held to the bytes whose signature was checked. The sha256
/// to hold the archive to, and what the verification established.
fn check_signature(
    policy: Option<&Policy>,
    root: &Root,
    archive: &Path,
    expected: Option<String>,
) -> Result<(Option<String>, Option<sign::Verified>)> {
    let Some(policy) = policy else {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!(
                "bundle: no trusted key (--trust, or `{}`): the archive's signature is not checked",
                root.join(trust::TRUSTED_FILE).display()
            );
        }
        return Ok((expected, None));
    };
    let v = sign::verify(archive, policy)?;
    if let Some(e) = &expected {
        if *e != v.sha256 {
            bail!(
                "`{}`: sha256 mismatch: the document says {e}, the signed file has {}",
                archive.display(),
                v.sha256
            );
        }
    }
    Ok((Some(v.sha256.clone()), Some(v)))
}

/// Sections of the document that `bundle unpack` and the tools after it write: an archive's
/// document never supplies them (a hand-made one could claim `bundle.verified_by`, an `env`,
/// a `switch`). `bundle pack` leaves them out of what it embeds.
const NOT_CARRIED: &[&str] = &["bundle", "release", "env", "switch", "have", "thin", "deb"];

/// The document the archive carries, with the stdin document's other sections kept, the
/// lock's `dir` where its wheels now are, and the `bundle` and `release` sections, which
/// unpack writes from what it established itself.
fn document(
    releases: &Dir,
    manifest: &Manifest,
    stdin_doc: &Document,
    archive: &Path,
    size: u64,
    record: &Record,
) -> Result<Document> {
    let id = manifest.id.as_str();
    let final_dir = releases.show(id);
    let release = releases.open_dir(id)?;
    let carried = String::from_utf8(release.read(Path::new(RESERVED).join("document.json"))?)
        .with_context(|| format!("the document of `{}` is not UTF-8", final_dir.display()))?;
    // Unpacked or reused just now: a prune racing this deploy keeps it (switch prune --grace).
    if let Err(e) = release.touch(RESERVED) {
        eprintln!("bundle: warning: {e:#} (switch prune will not see it as in flight)");
    }
    let mut doc = Document::parse(&carried, "the release's document.json")?;
    for name in NOT_CARRIED {
        doc.remove(name);
    }
    for (k, v) in stdin_doc.sections() {
        if !doc.has(k) {
            doc.set_raw(k, v.clone());
        }
    }
    if let Some(wh) = doc.section::<Wheelhouse>("wheelhouse")? {
        let dir = doc_path(final_dir.join(RESERVED).join("wheels"))?;
        doc.set("wheelhouse", &Wheelhouse { dir, ..wh })?;
    }
    // The build box's `bundle` section (from stdin) keeps what pack said; what unpack
    // establishes is its own.
    let given: Bundle = stdin_doc.section("bundle")?.unwrap_or_default();
    let bundle = Bundle {
        path: doc_path(archive)?,
        id: manifest.id.clone(),
        sha256: record.sha256.clone(),
        size,
        rev: Some(manifest.rev.clone()),
        name: Some(manifest.name.clone()),
        verified_by: record.verified_by.clone(),
        ..given
    };
    doc.set("bundle", &bundle)?;
    let release = Release {
        id: manifest.id.clone(),
        dir: doc_path(final_dir)?,
        name: Some(manifest.name.clone()),
        rev: Some(manifest.rev.clone()),
        extra: Default::default(),
    };
    doc.set("release", &release)?;
    Ok(doc)
}

/// Re-deploying: the release is there; the document's sha256 (or the file's) must be the one
/// it was unpacked from.
fn reuse(releases: &Dir, id: &str, archive: &Path, expected: Option<&str>) -> Result<String> {
    let sha256 = match expected {
        Some(s) => s.to_string(),
        None => fsx::sha256_file(archive)?.0,
    };
    let had = releases
        .read(Path::new(id).join(RESERVED).join("archive.sha256"))
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    if had != sha256 {
        return Err(Hint::new(
            format!(
                "`{}` exists but holds another archive (sha256 {had})",
                releases.show(id).display(),
            ),
            "remove it (it is not live) or check the archive",
        )
        .into());
    }
    Ok(sha256)
}

type Decoder = zstd::stream::read::Decoder<'static, io::BufReader<Counting<File>>>;

fn decoder(
    archive: &Path,
    counter: Rc<Cell<u64>>,
    hash: Option<Rc<std::cell::RefCell<sha2::Sha256>>>,
) -> Result<tar::Archive<Decoder>> {
    let (f, _) = fsx::open_regular(archive)?;
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
    if wheelship::names::check_file_name(&m.id).is_err() {
        bail!(
            "`{}`: release id `{}` is not safe as a directory name",
            archive.display(),
            m.id.escape_debug()
        );
    }
    if wheelship::names::check_file_name(&m.name).is_err() {
        bail!(
            "`{}`: release name `{}` is not safe as a file name",
            archive.display(),
            m.name.escape_debug()
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

/// A symlink's target, judged by its text before anything is made: not empty, no NUL, not
/// absolute. Where it really leads is judged once the whole tree is known ([`Tree::check_links`]).
fn check_link_text(link: &Path, target: &[u8]) -> Result<(), String> {
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
    if target.len() > MAX_PATH {
        return Err(format!("`{}`: symlink target too long", link.display()));
    }
    Ok(())
}

/// A path of the release as the bookkeeping keeps it: 128 bits of two keyed hashes (SipHash,
/// keys random per run), not the path itself, so that what unpack remembers of an entry is a
/// few bytes whatever its name's length.
type PathKey = u128;

/// The two hashers of [`PathKey`]s, keyed once per run.
struct Keys(std::hash::RandomState, std::hash::RandomState);

impl Keys {
    fn new() -> Keys {
        Keys(Default::default(), Default::default())
    }

    /// The key of the path made of `components`.
    fn of<'c>(&self, components: impl Iterator<Item = &'c [u8]> + Clone) -> PathKey {
        use std::hash::{BuildHasher, Hasher};
        let hash = |s: &std::hash::RandomState| {
            let mut h = s.build_hasher();
            for c in components.clone() {
                h.write(c);
                h.write_u8(b'/');
            }
            h.finish()
        };
        (u128::from(hash(&self.0)) << 64) | u128::from(hash(&self.1))
    }

    fn path(&self, p: &Path) -> PathKey {
        self.of(p.components().map(|c| c.as_os_str().as_bytes()))
    }
}

/// What one entry costs the bookkeeping, beyond a symlink's path and target: its key in two
/// sets, with their overhead.
pub const BYTES_PER_ENTRY: u64 = 48;

/// What the archive has made so far, by path relative to the release: the model against which
/// every link is resolved, component by component, as the kernel would resolve it.
pub struct Tree {
    keys: Keys,
    files: HashSet<PathKey>,
    /// Each symlink: its path and target (symlinks are few; both are counted).
    links: HashMap<PathKey, (PathBuf, Vec<u8>)>,
    seen: HashSet<PathKey>,
    /// Bytes of bookkeeping so far, against `--max-memory`.
    bytes: u64,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree {
            keys: Keys::new(),
            files: HashSet::new(),
            links: HashMap::new(),
            seen: HashSet::new(),
            bytes: 0,
        }
    }
}

/// How many links one resolution may pass through (the kernel's own limit is 40).
const MAX_LINK_HOPS: u32 = 40;

impl Tree {
    /// Where `target`, read from the directory `from`, really leads: a path inside the release,
    /// or an error when it leaves it (through any chain of links) or loops. Components that do
    /// not exist are taken as directories, as they would be if someone made them later.
    fn resolve(&self, from: &Path, target: &[u8], hops: &mut u32) -> Result<PathBuf, ()> {
        let mut cur: Vec<Vec<u8>> = from
            .components()
            .map(|c| c.as_os_str().as_bytes().to_vec())
            .collect();
        for c in target.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    cur.pop().ok_or(())?;
                }
                name => {
                    cur.push(name.to_vec());
                    let key = self.keys.of(cur.iter().map(Vec::as_slice));
                    if let Some((here, t)) = self.links.get(&key) {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS || t.first() == Some(&b'/') {
                            return Err(());
                        }
                        let parent = here.parent().unwrap_or(Path::new(""));
                        cur = self
                            .resolve(parent, t, hops)?
                            .components()
                            .map(|c| c.as_os_str().as_bytes().to_vec())
                            .collect();
                    }
                }
            }
        }
        Ok(cur.iter().map(|c| OsStr::from_bytes(c)).collect())
    }

    /// Every link of the finished tree, resolved through every link before it, must stay in
    /// the release (PEP 706's `data` filter judges the real path the same way).
    fn check_links(&self) -> Result<()> {
        let mut links: Vec<_> = self.links.values().collect();
        links.sort();
        for (link, target) in links {
            self.check_link(link, target)?;
        }
        Ok(())
    }

    fn check_link(&self, link: &Path, target: &[u8]) -> Result<()> {
        let parent = link.parent().unwrap_or(Path::new(""));
        if self.resolve(parent, target, &mut 0).is_err() {
            bail!(
                "`{}`: symlink `{}` leaves the release",
                link.display(),
                String::from_utf8_lossy(target)
            );
        }
        Ok(())
    }

    /// Counts `n` more bytes of bookkeeping against the limit.
    fn count(&mut self, n: u64, max: u64) -> Result<()> {
        self.bytes += n;
        if self.bytes > max {
            bail!(
                "the archive's entries need more than {max} bytes of bookkeeping (--max-memory): too many entries or symlinks"
            );
        }
        Ok(())
    }

    /// The nearest ancestor of `rel` that is a symlink, if any.
    fn link_above(&self, rel: &Path) -> Option<&Path> {
        if self.links.is_empty() {
            return None;
        }
        let comps: Vec<&[u8]> = rel.components().map(|c| c.as_os_str().as_bytes()).collect();
        (1..comps.len())
            .rev()
            .find_map(|n| self.links.get(&self.keys.of(comps[..n].iter().copied())))
            .map(|(p, _)| p.as_path())
    }
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
    a: &'a UnpackArgs,
    compressed: Rc<Cell<u64>>,
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
        if self.total > RATIO_GRACE && self.total / self.compressed.get().max(1) > self.a.max_ratio
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

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<()> {
        let rel = safe_path(&e.path_bytes()).map_err(|m| anyhow!(m))?;
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
                let target = e.link_name_bytes().map(|t| t.to_vec()).unwrap_or_default();
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
                let target = e.link_name_bytes().map(|t| t.to_vec()).unwrap_or_default();
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
    a: &UnpackArgs,
    manifest: &Manifest,
    expected: Option<&str>,
) -> Result<String> {
    releases.create_dir(staging, 0o755)?;
    let compressed = Rc::new(Cell::new(0u64));
    let hash = Rc::new(std::cell::RefCell::new(
        <sha2::Sha256 as sha2::Digest>::new(),
    ));
    let mut ar = decoder(archive, compressed.clone(), Some(hash.clone()))?;
    let corrupt = |e: io::Error| anyhow!("corrupt or truncated archive: {e}");
    let mut x = Extract {
        dirs: Dirs::new(releases.open_dir(staging)?),
        a,
        compressed,
        total: 0,
        tree: Tree::default(),
        buf: vec![0u8; 1 << 16],
    };
    let mut count = 0u64;
    for entry in ar.entries().map_err(corrupt)? {
        let mut e = entry.map_err(corrupt)?;
        count += 1;
        if count > a.max_entries {
            bail!("more than {} entries (--max-entries)", a.max_entries);
        }
        if matches!(e.header().entry_type(), tar::EntryType::XGlobalHeader) {
            continue;
        }
        if x.tree.seen.is_empty()
            && safe_path(&e.path_bytes()).ok() != Some(Path::new(RESERVED).join("release.json"))
        {
            bail!("not a wheelship release: `{RESERVED}/release.json` is not the first entry");
        }
        x.entry(&mut e)?;
    }
    if x.tree.seen.is_empty() {
        bail!("empty archive: not a wheelship release");
    }
    x.tree.check_links()?;
    let (sha256, junk) = drain(ar, &hash, &mut x.buf)?;
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
fn drain(
    ar: tar::Archive<Decoder>,
    hash: &Rc<std::cell::RefCell<sha2::Sha256>>,
    buf: &mut [u8],
) -> Result<(String, u64)> {
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
    let sha256 = {
        use sha2::Digest;
        wheelship::hash::hex(&hash.borrow_mut().clone().finalize())
    };
    Ok((sha256, junk))
}
