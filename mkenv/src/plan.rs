//! An env as a plan, then built in parallel.
//!
//! Every path of the env is decided before anything is made: which wheel owns it (the last in
//! lock order, as if the wheels were installed one after another; a launcher after its wheel's
//! files), its directory, and what each RECORD says. Then the directories are made once each,
//! parents first; the files from the store are linked on every core, one directory pair at a
//! time; the files mkenv writes (scripts, launchers, INSTALLER, REQUESTED, RECORD) follow, in
//! lock order. The result does not depend on how the threads were scheduled.
//!
//! Paths are text here (a wheel's member names are UTF-8): the plan handles every path of the
//! env, and comparing `Path`s component by component was most of its time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use wheelship::beneath::{Dir, Kind};
use wheelship::cli::io_reason;

use crate::install::{rel_to, shipped_pyc_of, Build, LinkMode};
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
enum Make {
    /// Linked from the store: the wheel (index) and the path beneath its `files/`.
    Link(usize, String),
    /// The bytecode compiled in the store for a `.py` file, linked when it is there (a file
    /// that does not compile has none).
    Pyc(usize, String),
    /// Written: its bytes and mode.
    Write(Vec<u8>, u32),
}

/// (wheel, optional, store directory, env directory)
type GroupKey<'a> = (usize, bool, String, &'a str);

/// A directory pair: files of one wheel's store directory linked into one env directory.
struct Group {
    wheel: usize,
    /// Bytecode: what the store does not have is skipped.
    optional: bool,
    from: String,
    to: String,
    /// (name in the store, name in the env)
    names: Vec<(String, String)>,
}

pub struct Plan {
    /// Parents before children.
    dirs: BTreeSet<PathBuf>,
    groups: Vec<Group>,
    /// In lock order.
    writes: Vec<(String, Vec<u8>, u32)>,
    pub warnings: Vec<String>,
    /// Files the env gets (bytecode aside).
    pub files: usize,
}

/// Paths the layout made: no wheel may replace them.
const LAYOUT_FILES: [&str; 3] = ["pyvenv.cfg", "bin/activate", "bin/activate.fish"];

/// The plan's state while wheels are added in lock order.
struct Planner<'b, 'a> {
    b: &'b Build<'a>,
    /// Every path, what makes it and which wheel (its file name); the last writer wins.
    paths: HashMap<String, (Make, &'b str)>,
    /// Paths in the order first planned (the writes keep lock order).
    order: Vec<String>,
    warnings: Vec<String>,
}

impl Plan {
    /// The plan of the env: `sources` in lock order.
    pub fn new<'b>(b: &'b Build, sources: &'b [Source<'b>]) -> Result<Plan> {
        let mut p = Planner {
            b,
            paths: HashMap::new(),
            order: Vec::new(),
            warnings: Vec::new(),
        };
        for (i, s) in sources.iter().enumerate() {
            p.wheel(i, s)?;
        }
        p.finish()
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
        make_dirs(root, &self.dirs)?;
        let mode = link_all(root, sources, &self.groups, mode, threads)?;
        for (rel, data, m) in &self.writes {
            write_file(root, Path::new(rel), data, *m)?;
        }
        Ok(mode)
    }
}

impl<'b> Planner<'b, '_> {
    fn set(&mut self, dest: String, make: Make, by: &'b str, warn: bool) -> Result<()> {
        check_dest(&dest)?;
        if LAYOUT_FILES.contains(&dest.as_str()) || dest.starts_with("bin/python") {
            bail!("`{by}` would replace the env's own `{dest}`");
        }
        match self.paths.insert(dest.clone(), (make, by)) {
            Some((_, prev)) if warn => self
                .warnings
                .push(format!("`{by}` overwrites `{dest}` from `{prev}`")),
            Some(_) => {}
            None => self.order.push(dest),
        }
        Ok(())
    }

    /// One wheel: its files, its launchers, then its INSTALLER, REQUESTED and RECORD.
    fn wheel(&mut self, i: usize, s: &'b Source) -> Result<()> {
        let (b, info) = (self.b, s.info);
        let site = b.site_str();
        let members: HashSet<&str> = info.files.iter().map(|(m, _, _)| m.as_str()).collect();
        let mut record: Vec<(String, String, String)> = Vec::new();
        for (member, hash, size) in &info.files {
            let Some((dest, script)) = b.destination(info, member) else {
                continue;
            };
            // A `.pyc` the wheel ships for this interpreter (numpy < 2.3 does) gives way to
            // ours, compiled from its source by the interpreter itself: not linked, not in
            // RECORD.
            if b.compile && shipped_pyc_of(member, &b.interp.cache_tag, &members) {
                continue;
            }
            let row = rel_to(&dest, site);
            if script {
                let data = b.script(&s.files.read(member)?);
                let hash = record_hash(&Sha256::digest(&data));
                record.push((row, hash, data.len().to_string()));
                self.set(dest, Make::Write(data, 0o755), s.file_name, true)?;
                continue;
            }
            let in_site = dest.strip_prefix(site).is_some_and(|r| r.starts_with('/'));
            if b.compile && in_site && member.ends_with(".py") {
                self.set(
                    pycache(&dest, &b.interp.cache_tag),
                    Make::Pyc(i, pycache(member, &b.interp.cache_tag)),
                    s.file_name,
                    false,
                )?;
            }
            record.push((row, hash.clone(), size.to_string()));
            self.set(dest, Make::Link(i, member.clone()), s.file_name, true)?;
        }
        // On POSIX a gui script's launcher is the same as a console script's.
        for (name, target) in info.console_scripts.iter().chain(&info.gui_scripts) {
            let dest = format!("bin/{name}");
            let data = b.launcher(target);
            let hash = record_hash(&Sha256::digest(&data));
            record.push((rel_to(&dest, site), hash, data.len().to_string()));
            self.set(dest, Make::Write(data, 0o755), s.file_name, true)?;
        }
        let di = format!("{site}/{}", info.dist_info);
        let mut extra = vec![("INSTALLER", b"wheelship\n".to_vec())];
        if s.requested {
            extra.push(("REQUESTED", Vec::new()));
        }
        for (name, data) in extra {
            let dest = format!("{di}/{name}");
            let hash = record_hash(&Sha256::digest(&data));
            record.push((rel_to(&dest, site), hash, data.len().to_string()));
            self.set(dest, Make::Write(data, 0o644), s.file_name, false)?;
        }
        let dest = format!("{di}/RECORD");
        record.push((rel_to(&dest, site), String::new(), String::new()));
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
        self.set(dest, Make::Write(text, 0o644), s.file_name, false)
    }

    fn finish(mut self) -> Result<Plan> {
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut groups: BTreeMap<GroupKey, Vec<(String, String)>> = BTreeMap::new();
        let mut writes = Vec::new();
        let mut files = 0;
        for dest in &self.order {
            let (make, _) = self.paths.remove(dest).expect("every planned path");
            let (parent, name) = dest.rsplit_once('/').unwrap_or(("", dest));
            let mut d = parent;
            while !d.is_empty() && dirs.insert(d) {
                d = d.rsplit_once('/').map_or("", |(p, _)| p);
            }
            let (w, src, optional) = match make {
                Make::Write(data, mode) => {
                    files += 1;
                    writes.push((dest.clone(), data, mode));
                    continue;
                }
                Make::Link(w, src) => {
                    files += 1;
                    (w, src, false)
                }
                Make::Pyc(w, src) => (w, src, true),
            };
            let (from, src_name) = src.rsplit_once('/').unwrap_or(("", &src));
            groups
                .entry((w, optional, from.to_string(), parent))
                .or_default()
                .push((src_name.to_string(), name.to_string()));
        }
        let is_dir = |p: &str| dirs.contains(p);
        if let Some((d, _, _)) = writes.iter().find(|(p, _, _)| is_dir(p)) {
            bail!("`{d}` is both a file and a directory of the env");
        }
        let mut out = Vec::with_capacity(groups.len());
        for ((wheel, optional, from, to), names) in groups {
            if let Some((_, n)) = names.iter().find(|(_, n)| is_dir(&join(to, n))) {
                bail!(
                    "`{}` is both a file and a directory of the env",
                    join(to, n)
                );
            }
            out.push(Group {
                wheel,
                optional,
                from,
                to: to.to_string(),
                names,
            });
        }
        Ok(Plan {
            dirs: dirs.into_iter().map(PathBuf::from).collect(),
            groups: out,
            writes,
            warnings: self.warnings,
            files,
        })
    }
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

/// Every directory, parents first, each made once beneath the root. (Keeping them open for
/// the links was measured slower than opening each again: a large descriptor table costs
/// every later open and close.)
fn make_dirs(root: &Dir, dirs: &BTreeSet<PathBuf>) -> Result<()> {
    // Ordered by components, a directory comes after its parent, which is still on the stack.
    let mut stack: Vec<(&Path, Dir)> = Vec::new();
    for d in dirs {
        while stack.last().is_some_and(|(p, _)| !d.starts_with(p)) {
            stack.pop();
        }
        let parent = stack.last().map_or(root, |(_, h)| h);
        let name = d.file_name().expect("a directory of the plan has a name");
        let made = parent.create_dir_all(name)?;
        stack.push((d, made));
    }
    Ok(())
}

/// Links every group on `threads` threads; the first error stops them all.
fn link_all(
    root: &Dir,
    sources: &[Source],
    groups: &[Group],
    mode: LinkMode,
    threads: usize,
) -> Result<LinkMode> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let shared = AtomicU8::new(mode as u8);
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, groups.len().max(1)) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(g) = groups.get(i) else { break };
                    if let Err(e) = link_group(root, sources, g, &shared) {
                        failed.store(true, Ordering::Relaxed);
                        error.lock().expect("not poisoned").get_or_insert(e);
                    }
                }
            });
        }
    });
    match error.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(LinkMode::from_u8(shared.load(Ordering::Relaxed))),
    }
}

fn link_group(root: &Dir, sources: &[Source], g: &Group, shared: &AtomicU8) -> Result<()> {
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
    for (src, dest) in &g.names {
        if present
            .as_ref()
            .is_some_and(|p| !p.contains(std::ffi::OsStr::new(src)))
        {
            continue;
        }
        let mut mode = LinkMode::from_u8(shared.load(Ordering::Relaxed));
        crate::install::link(&mut mode, &from, Path::new(src), &to, dest.as_ref())?;
        shared.fetch_max(mode as u8, Ordering::Relaxed);
    }
    Ok(())
}

/// Writes a new file of the plan (its directory exists; nothing is there yet).
fn write_file(root: &Dir, rel: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = root.create_file(rel, mode)?;
    let fail = |e: std::io::Error| {
        anyhow!(
            "cannot write `{}`: {}",
            root.show(rel).display(),
            io_reason(&e)
        )
    };
    f.write_all(data).map_err(fail)?;
    // The umask must not decide what a script's mode is.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    Ok(())
}
