//! An env as a plan, then built in parallel.
//!
//! Every path of the env is decided before anything is made: each wheel's paths and RECORD
//! (on every core: a wheel's plan needs no other), then which wheel owns each path (the last
//! in lock order, as if the wheels were installed one after another; a launcher after its
//! wheel's files). Then the directories are made once each, parents first; the files from the
//! store are linked on every core, one directory pair at a time; the files mkenv writes
//! (scripts, launchers, INSTALLER, REQUESTED, RECORD) follow, in lock order. The result does
//! not depend on how the threads were scheduled.
//!
//! Paths are text here (a wheel's member names are UTF-8), hashed with a fast hasher, and
//! borrowed from the wheels' infos wherever they can be: the plan handles every path of the
//! env, tens of thousands for a data stack.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use wheelship::beneath::{Dir, Kind};

use crate::install::{rel_to, shipped_pyc_of, write_file, Build, LinkMode};
use crate::wheel::{record_hash, Info};

/// One stored wheel, as the plan sees it.
pub struct Source<'a> {
    /// `<store>/<sha256>/files`, by handle.
    pub files: &'a Dir,
    pub info: &'a Info,
    /// The wheel's file name (messages).
    pub file_name: &'a str,
    /// Installed as a requirement (REQUESTED), not only as a dependency.
    pub requested: bool,
}

/// What makes one path of the env.
enum Make<'a> {
    /// Linked from the store: the path beneath the wheel's `files/`.
    Link(&'a str),
    /// The bytecode compiled in the store for a `.py` file, linked when it is there (a file
    /// that does not compile has none).
    Pyc(String),
    /// Written: its bytes and mode.
    Write(Vec<u8>, u32),
}

/// One path of a wheel's plan.
struct Entry<'a> {
    dest: String,
    make: Make<'a>,
    /// Say so when it replaces another wheel's (a file or launcher; not bytecode or metadata).
    warn: bool,
}

/// A directory pair: files of one wheel's store directory linked into one env directory.
struct Group {
    wheel: usize,
    /// Bytecode: what the store does not have is skipped.
    optional: bool,
    from: String,
    to: String,
    /// Entries of the wheel's plan.
    entries: Vec<usize>,
}

pub struct Plan<'a> {
    wheels: Vec<Vec<Entry<'a>>>,
    /// site-packages, relative to the env.
    site: PathBuf,
    /// Parents before children.
    dirs: BTreeSet<PathBuf>,
    groups: Vec<Group>,
    /// (wheel, entry), in lock order.
    writes: Vec<(usize, usize)>,
    pub warnings: Vec<String>,
    /// Files the env gets (bytecode aside).
    pub files: usize,
}

/// Paths the layout made: no wheel may replace them.
const LAYOUT_FILES: [&str; 3] = ["pyvenv.cfg", "bin/activate", "bin/activate.fish"];

/// FxHash (rustc's): the plan's keys are paths from verified wheels, and SipHash was a tenth of
/// its time.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = BuildHasherDefault<Fx>;

impl<'a> Plan<'a> {
    /// The plan of the env: `sources` in lock order.
    pub fn new(b: &Build, sources: &'a [Source<'a>], threads: usize) -> Result<Plan<'a>> {
        let wheels = on_threads(sources.len(), threads, |i| plan_wheel(b, &sources[i]))?;
        let (live, warnings) = owners(&wheels, sources)?;
        finish(wheels, &live, warnings, b.site())
    }

    /// Makes the env beneath `root` (the layout already there): directories, links on
    /// `threads` threads, then the written files. Returns the link mode it ended with.
    pub fn build(
        &self,
        root: &Dir,
        sources: &[Source],
        mode: LinkMode,
        threads: usize,
    ) -> Result<LinkMode> {
        make_dirs(root, &self.dirs, &self.site, threads)?;
        let shared = AtomicU8::new(mode as u8);
        on_threads(self.groups.len(), threads, |i| {
            link_group(root, sources, &self.wheels, &self.groups[i], &shared)
        })?;
        for &(w, i) in &self.writes {
            let e = &self.wheels[w][i];
            if let Make::Write(data, m) = &e.make {
                write_file(root, Path::new(&e.dest), data, *m)?;
            }
        }
        Ok(LinkMode::from_u8(shared.load(Ordering::Relaxed)))
    }
}

/// `f(0..n)` on up to `threads` threads, results in order; the first error stops the others.
fn on_threads<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    match f(i) {
                        Ok(t) => results.lock().expect("not poisoned")[i] = Some(t),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            error.lock().expect("not poisoned").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .map(|r| r.expect("every index ran"))
        .collect())
}

/// One wheel: its files (and their bytecode), its launchers, then its INSTALLER, REQUESTED and
/// RECORD.
fn plan_wheel<'a>(b: &Build, s: &Source<'a>) -> Result<Vec<Entry<'a>>> {
    let info: &'a Info = s.info;
    let site = b.site_str();
    let tag = &b.interp.cache_tag;
    let members: HashSet<&str, FxBuild> = info.files.iter().map(|(m, _, _)| m.as_str()).collect();
    let mut out = Vec::with_capacity(info.files.len() * 2);
    // The store's files for RECORD: (entry, hash, size).
    let mut rows: Vec<(usize, &'a str, u64)> = Vec::with_capacity(info.files.len());
    for (member, hash, size) in &info.files {
        let Some((dest, script)) = b.destination(info, member) else {
            continue;
        };
        check_dest(&dest)?;
        // A `.pyc` the wheel ships for this interpreter (numpy < 2.3 does) gives way to ours,
        // compiled from its source by the interpreter itself: not linked, not in RECORD.
        if b.compile && shipped_pyc_of(member, tag, &members) {
            continue;
        }
        if script {
            let data = b.script(&s.files.read(member)?);
            out.push(Entry {
                dest,
                make: Make::Write(data, 0o755),
                warn: true,
            });
            continue;
        }
        let in_site = dest.strip_prefix(site).is_some_and(|r| r.starts_with('/'));
        if b.compile && in_site && member.ends_with(".py") {
            out.push(Entry {
                dest: pycache(&dest, tag),
                make: Make::Pyc(pycache(member, tag)),
                warn: false,
            });
        }
        rows.push((out.len(), hash, *size));
        out.push(Entry {
            dest,
            make: Make::Link(member),
            warn: true,
        });
    }
    // On POSIX a gui script's launcher is the same as a console script's.
    for (name, target) in info.console_scripts.iter().chain(&info.gui_scripts) {
        out.push(Entry {
            dest: format!("bin/{name}"),
            make: Make::Write(b.launcher(target), 0o755),
            warn: true,
        });
    }
    let di = format!("{site}/{}", info.dist_info);
    out.push(Entry {
        dest: format!("{di}/INSTALLER"),
        make: Make::Write(b"wheelship\n".to_vec(), 0o644),
        warn: false,
    });
    if s.requested {
        out.push(Entry {
            dest: format!("{di}/REQUESTED"),
            make: Make::Write(Vec::new(), 0o644),
            warn: false,
        });
    }
    let record = record(&out, &rows, site, &di)?;
    out.push(record);
    Ok(out)
}

/// The wheel's RECORD: every file with its hash and size (the store's, or those of what mkenv
/// writes), and itself.
fn record<'a>(
    out: &[Entry<'a>],
    rows: &[(usize, &'a str, u64)],
    site: &str,
    di: &str,
) -> Result<Entry<'a>> {
    let mut record: Vec<(Cow<str>, Cow<str>, Option<usize>)> = Vec::with_capacity(out.len());
    for &(i, hash, size) in rows {
        record.push((rel(&out[i].dest, site), hash.into(), Some(size as usize)));
    }
    for e in out {
        if let Make::Write(data, _) = &e.make {
            let hash = record_hash(&Sha256::digest(data));
            record.push((rel(&e.dest, site), hash.into(), Some(data.len())));
        }
    }
    let dest = format!("{di}/RECORD");
    record.push((rel(&dest, site), "".into(), None));
    record.sort();
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    for row in &record {
        csv.serialize(row)?;
    }
    let text = csv
        .into_inner()
        .map_err(|e| anyhow!("RECORD: {}", e.error()))?;
    Ok(Entry {
        dest,
        make: Make::Write(text, 0o644),
        warn: false,
    })
}

/// A path in RECORD, borrowed when it is under site-packages.
fn rel<'d>(dest: &'d str, site: &str) -> Cow<'d, str> {
    match dest.strip_prefix(site).and_then(|r| r.strip_prefix('/')) {
        Some(r) => Cow::Borrowed(r),
        None => Cow::Owned(rel_to(dest, site)),
    }
}

/// Which entry of which wheel makes each path: the last in lock order. Returns, per wheel,
/// whether each entry is the one that makes its path, and the warnings for the replaced.
fn owners(wheels: &[Vec<Entry>], sources: &[Source]) -> Result<(Vec<Vec<bool>>, Vec<String>)> {
    let total = wheels.iter().map(Vec::len).sum();
    let mut owner: HashMap<&str, (usize, usize), FxBuild> =
        HashMap::with_capacity_and_hasher(total, FxBuild::default());
    let mut live: Vec<Vec<bool>> = wheels.iter().map(|w| vec![true; w.len()]).collect();
    let mut warnings = Vec::new();
    for (w, entries) in wheels.iter().enumerate() {
        let by = sources[w].file_name;
        for (i, e) in entries.iter().enumerate() {
            if LAYOUT_FILES.contains(&e.dest.as_str()) || e.dest.starts_with("bin/python") {
                bail!("`{by}` would replace the env's own `{}`", e.dest);
            }
            if let Some((pw, pi)) = owner.insert(&e.dest, (w, i)) {
                live[pw][pi] = false;
                if e.warn {
                    let prev = sources[pw].file_name;
                    warnings.push(format!("`{by}` overwrites `{}` from `{prev}`", e.dest));
                }
            }
        }
    }
    Ok((live, warnings))
}

/// The directories, the link groups and the writes of the live entries.
fn finish<'a>(
    wheels: Vec<Vec<Entry<'a>>>,
    live: &[Vec<bool>],
    warnings: Vec<String>,
    site: PathBuf,
) -> Result<Plan<'a>> {
    let mut dirs: HashSet<&str, FxBuild> = HashSet::default();
    let mut groups: HashMap<(usize, bool, &str, &str), Vec<usize>, FxBuild> = HashMap::default();
    let mut writes = Vec::new();
    let mut files = 0;
    for (w, entries) in wheels.iter().enumerate() {
        for (i, e) in entries.iter().enumerate().filter(|(i, _)| live[w][*i]) {
            let parent = e.dest.rsplit_once('/').map_or("", |(p, _)| p);
            let mut d = parent;
            while !d.is_empty() && dirs.insert(d) {
                d = d.rsplit_once('/').map_or("", |(p, _)| p);
            }
            let (src, optional) = match &e.make {
                Make::Write(..) => {
                    files += 1;
                    writes.push((w, i));
                    continue;
                }
                Make::Link(src) => {
                    files += 1;
                    (*src, false)
                }
                Make::Pyc(src) => (src.as_str(), true),
            };
            let from = src.rsplit_once('/').map_or("", |(p, _)| p);
            groups
                .entry((w, optional, from, parent))
                .or_default()
                .push(i);
        }
    }
    let is_dir = |p: &str| dirs.contains(p);
    let clash = wheels
        .iter()
        .zip(live)
        .flat_map(|(es, l)| es.iter().zip(l).filter(|(_, l)| **l))
        .find(|(e, _)| is_dir(&e.dest));
    if let Some((e, _)) = clash {
        bail!("`{}` is both a file and a directory of the env", e.dest);
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|((wheel, optional, from, to), entries)| Group {
            wheel,
            optional,
            from: from.to_string(),
            to: to.to_string(),
            entries,
        })
        .collect();
    // Biggest first, so that no thread is left with a big one at the end.
    groups.sort_by(|a, b| {
        (b.entries.len(), a.wheel, &a.from, &a.to).cmp(&(a.entries.len(), b.wheel, &b.from, &b.to))
    });
    let dirs = dirs.into_iter().map(PathBuf::from).collect();
    Ok(Plan {
        wheels,
        site,
        dirs,
        groups,
        writes,
        warnings,
        files,
    })
}

/// The last component of a `/`-separated path.
fn leaf(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// `a/b/c.py` → `a/b/__pycache__/c.<cache_tag>.pyc`.
fn pycache(py: &str, cache_tag: &str) -> String {
    let (dir, file) = py.rsplit_once('/').unwrap_or(("", py));
    let stem = file.strip_suffix(".py").unwrap_or(file);
    join(
        &join(dir, "__pycache__"),
        &format!("{stem}.{cache_tag}.pyc"),
    )
}

/// A destination must be a plain relative path: what the wheel's checks already ensure,
/// checked again where the plan takes it.
fn check_dest(dest: &str) -> Result<()> {
    if dest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        bail!("`{dest}` is not a path inside the env");
    }
    Ok(())
}

/// Every directory, parents first, each made once beneath the root: the shallow ones here,
/// then each subtree on the next free thread (a package's directories are many, and making a
/// directory allocates an inode and a block). (Keeping them open for the links was measured
/// slower than opening each again: a large descriptor table costs every later open and
/// close.)
fn make_dirs(root: &Dir, dirs: &BTreeSet<PathBuf>, site: &Path, threads: usize) -> Result<()> {
    // A subtree: a directory below site-packages, or a top-level one outside it.
    let unit_depth = |d: &Path| {
        if d.starts_with(site) {
            site.components().count() + 1
        } else {
            1
        }
    };
    let mut shallow = Vec::new();
    let mut units: Vec<(&Path, Vec<&Path>)> = Vec::new();
    for d in dirs {
        let depth = d.components().count();
        let top = unit_depth(d);
        if depth < top {
            shallow.push(d.as_path());
        } else if depth == top || units.last().is_none_or(|(u, _)| !d.starts_with(u)) {
            units.push((d, vec![d]));
        } else {
            units.last_mut().expect("a unit").1.push(d);
        }
    }
    make_tree(root, Path::new(""), &shallow)?;
    on_threads(units.len(), threads, |i| {
        let (unit, members) = &units[i];
        let parent = unit.parent().unwrap_or(Path::new(""));
        let handle = if parent.as_os_str().is_empty() {
            None
        } else {
            Some(root.open_dir(parent)?)
        };
        make_tree(handle.as_ref().unwrap_or(root), parent, members)
    })?;
    Ok(())
}

/// Makes `dirs` (sorted, each under `base`, which `at` is) depth first, each from its parent's
/// handle.
fn make_tree(at: &Dir, base: &Path, dirs: &[&Path]) -> Result<()> {
    // Ordered by components, a directory comes after its parent, which is still on the stack.
    let mut stack: Vec<(&Path, Dir)> = Vec::new();
    for d in dirs {
        while stack.last().is_some_and(|(p, _)| !d.starts_with(p)) {
            stack.pop();
        }
        let parent = stack.last().map_or(at, |(_, h)| h);
        let name = d.file_name().expect("a directory of the plan has a name");
        debug_assert!(d.starts_with(base));
        let made = parent.create_dir_all(name)?;
        stack.push((d, made));
    }
    Ok(())
}

fn link_group(
    root: &Dir,
    sources: &[Source],
    wheels: &[Vec<Entry>],
    g: &Group,
    shared: &AtomicU8,
) -> Result<()> {
    let files = sources[g.wheel].files;
    if g.optional && files.kind(&g.from)? != Some(Kind::Dir) {
        return Ok(());
    }
    let from = files.open_dir(&g.from)?;
    // Bytecode the store has: one listing of its `__pycache__`, not a lookup per file.
    let present: Option<HashSet<OsString>> = g
        .optional
        .then(|| {
            from.entries()
                .map(|e| e.into_iter().map(|(n, _)| n).collect())
        })
        .transpose()?;
    let to = root.open_dir(&g.to)?;
    for &i in &g.entries {
        let e = &wheels[g.wheel][i];
        let src = match &e.make {
            Make::Link(s) => leaf(s),
            Make::Pyc(s) => leaf(s),
            Make::Write(..) => continue,
        };
        if present
            .as_ref()
            .is_some_and(|p| !p.contains(OsStr::new(src)))
        {
            continue;
        }
        let mut mode = LinkMode::from_u8(shared.load(Ordering::Relaxed));
        crate::install::link(
            &mut mode,
            &from,
            Path::new(src),
            &to,
            OsStr::new(leaf(&e.dest)),
        )?;
        shared.fetch_max(mode as u8, Ordering::Relaxed);
    }
    Ok(())
}
