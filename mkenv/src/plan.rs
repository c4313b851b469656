//! An env as a plan, then built in parallel.
//!
//! Every path of the env is decided before anything is made: which wheel owns it (the last in
//! lock order, as if the wheels were installed one after another; a launcher after its wheel's
//! files), its directory, and what each RECORD says. Then the directories are made once each,
//! parents first; the files from the store are linked on every core, one directory pair at a
//! time; the files mkenv writes (scripts, launchers, INSTALLER, REQUESTED, RECORD) follow, in
//! lock order. The result does not depend on how the threads were scheduled.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use wheelship::beneath::{Dir, Kind};
use wheelship::cli::io_reason;

use crate::install::{rel_to, Build, LinkMode};
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
    Link(usize, PathBuf),
    /// Written: its bytes and mode.
    Write(Vec<u8>, u32),
}

/// A directory pair: files of one wheel's store directory linked into one env directory.
struct Group {
    wheel: usize,
    from: PathBuf,
    to: PathBuf,
    names: Vec<(OsString, OsString)>,
}

pub struct Plan {
    dirs: BTreeSet<PathBuf>,
    groups: Vec<Group>,
    /// In lock order.
    writes: Vec<(PathBuf, Vec<u8>, u32)>,
    pub warnings: Vec<String>,
    /// Files the env gets (bytecode aside).
    pub files: usize,
}

/// Paths the layout made: no wheel may replace them.
const LAYOUT_FILES: [&str; 4] = [
    "pyvenv.cfg",
    "bin/activate",
    "bin/activate.fish",
    "bin/python",
];

/// The plan's state while wheels are added in lock order.
struct Planner<'b, 'a> {
    b: &'b Build<'a>,
    /// Every path and what makes it; the last writer wins.
    paths: BTreeMap<PathBuf, Make>,
    warnings: Vec<String>,
    /// Which wheel made each path (messages).
    owner: HashMap<PathBuf, String>,
    /// The `.pyc` files compiled in the store, per (wheel, `__pycache__` directory).
    pycache: HashMap<(usize, PathBuf), HashSet<OsString>>,
}

impl Plan {
    /// The plan of the env: `sources` in lock order.
    pub fn new(b: &Build, sources: &[Source]) -> Result<Plan> {
        let mut p = Planner {
            b,
            paths: BTreeMap::new(),
            warnings: Vec::new(),
            owner: HashMap::new(),
            pycache: HashMap::new(),
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
            write_file(root, rel, data, *m)?;
        }
        Ok(mode)
    }
}

impl Planner<'_, '_> {
    fn set(&mut self, dest: PathBuf, make: Make, by: &str, warn: bool) -> Result<()> {
        check_dest(&dest)?;
        if LAYOUT_FILES.contains(&dest.to_str().unwrap_or_default())
            || dest.starts_with("bin/python")
        {
            bail!("`{by}` would replace the env's own `{}`", dest.display());
        }
        if let Some(prev) = self.owner.insert(dest.clone(), by.to_string()) {
            if warn {
                self.warnings.push(format!(
                    "`{by}` overwrites `{}` from `{prev}`",
                    dest.display()
                ));
            }
        }
        self.paths.insert(dest, make);
        Ok(())
    }

    /// One wheel: its files, its launchers, then its INSTALLER, REQUESTED and RECORD.
    fn wheel(&mut self, i: usize, s: &Source) -> Result<()> {
        let (b, info) = (self.b, s.info);
        let site = b.site();
        let members: HashSet<&str> = info.files.iter().map(|(m, _, _)| m.as_str()).collect();
        let mut record: Vec<(String, String, String)> = Vec::new();
        for (member, hash, size) in &info.files {
            let Some((dest, script)) = b.destination(info, member) else {
                continue;
            };
            // A `.pyc` the wheel ships for this interpreter (numpy < 2.3 does) gives way to
            // ours, compiled from its source by the interpreter itself: not linked, not in
            // RECORD.
            if b.compile && crate::install::shipped_pyc_of(member, &b.interp.cache_tag, &members) {
                continue;
            }
            let (h, n) = if script {
                let data = b.script(&s.files.read(member)?);
                let row = (record_hash(&Sha256::digest(&data)), data.len().to_string());
                self.set(dest.clone(), Make::Write(data, 0o755), s.file_name, true)?;
                row
            } else {
                if b.compile && dest.starts_with(&site) && member.ends_with(".py") {
                    self.pyc(i, s, Path::new(member), &dest)?;
                }
                self.set(
                    dest.clone(),
                    Make::Link(i, PathBuf::from(member)),
                    s.file_name,
                    true,
                )?;
                (hash.clone(), size.to_string())
            };
            record.push((rel_to(&dest, &site), h, n));
        }
        // On POSIX a gui script's launcher is the same as a console script's.
        for (name, target) in info.console_scripts.iter().chain(&info.gui_scripts) {
            let dest = PathBuf::from("bin").join(name);
            let data = b.launcher(target);
            record.push((
                rel_to(&dest, &site),
                record_hash(&Sha256::digest(&data)),
                data.len().to_string(),
            ));
            self.set(dest, Make::Write(data, 0o755), s.file_name, true)?;
        }
        let di = site.join(&info.dist_info);
        let mut extra = vec![("INSTALLER", b"wheelship\n".to_vec())];
        if s.requested {
            extra.push(("REQUESTED", Vec::new()));
        }
        for (name, data) in extra {
            record.push((
                rel_to(&di.join(name), &site),
                record_hash(&Sha256::digest(&data)),
                data.len().to_string(),
            ));
            self.set(di.join(name), Make::Write(data, 0o644), s.file_name, false)?;
        }
        record.push((
            rel_to(&di.join("RECORD"), &site),
            String::new(),
            String::new(),
        ));
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
        self.set(
            di.join("RECORD"),
            Make::Write(text, 0o644),
            s.file_name,
            false,
        )
    }

    /// The bytecode compiled in the store for `src` (a `.py` file), when there is one, comes
    /// along to `dest`'s `__pycache__`.
    fn pyc(&mut self, i: usize, s: &Source, src: &Path, dest: &Path) -> Result<()> {
        let cache = src.parent().unwrap_or(Path::new("")).join("__pycache__");
        let stem = src.file_stem().unwrap_or_default().to_string_lossy();
        let pyc = OsString::from(format!("{stem}.{}.pyc", self.b.interp.cache_tag));
        let listed = match self.pycache.entry((i, cache.clone())) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(pyc_names(s.files, &cache)?),
        };
        if listed.contains(&pyc) {
            let to = dest
                .parent()
                .unwrap_or(Path::new(""))
                .join("__pycache__")
                .join(&pyc);
            self.set(to, Make::Link(i, cache.join(&pyc)), s.file_name, false)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Plan> {
        let mut dirs = BTreeSet::new();
        let mut groups: BTreeMap<(usize, PathBuf, PathBuf), Vec<(OsString, OsString)>> =
            BTreeMap::new();
        let mut writes = Vec::new();
        let mut files = 0;
        for (dest, make) in self.paths {
            let parent = dest.parent().unwrap_or(Path::new("")).to_path_buf();
            for a in parent.ancestors().filter(|a| !a.as_os_str().is_empty()) {
                if !dirs.insert(a.to_path_buf()) {
                    break;
                }
            }
            let name = dest.file_name().expect("checked").to_os_string();
            if !dest.to_string_lossy().contains("/__pycache__/") {
                files += 1;
            }
            match make {
                Make::Link(w, src) => {
                    let from = src.parent().unwrap_or(Path::new("")).to_path_buf();
                    let src_name = src
                        .file_name()
                        .expect("a member names a file")
                        .to_os_string();
                    groups
                        .entry((w, from, parent))
                        .or_default()
                        .push((src_name, name));
                }
                Make::Write(data, mode) => writes.push((dest, data, mode)),
            }
        }
        if let Some(d) = writes.iter().map(|w| &w.0).find(|p| dirs.contains(*p)) {
            bail!(
                "`{}` is both a file and a directory of the env",
                d.display()
            );
        }
        let groups: Vec<Group> = groups
            .into_iter()
            .map(|((wheel, from, to), names)| Group {
                wheel,
                from,
                to,
                names,
            })
            .collect();
        for g in &groups {
            if let Some((_, n)) = g.names.iter().find(|(_, n)| dirs.contains(&g.to.join(n))) {
                bail!(
                    "`{}` is both a file and a directory of the env",
                    g.to.join(n).display()
                );
            }
        }
        Ok(Plan {
            dirs,
            groups,
            writes,
            warnings: self.warnings,
            files,
        })
    }
}

/// A destination must be a plain relative path: what the wheel's checks already ensure,
/// checked again where the plan takes it.
fn check_dest(dest: &Path) -> Result<()> {
    if dest.as_os_str().is_empty() || !dest.components().all(|c| matches!(c, Component::Normal(_)))
    {
        bail!("`{}` is not a path inside the env", dest.display());
    }
    Ok(())
}

/// The names in a store `__pycache__` directory (none when it is missing).
fn pyc_names(files: &Dir, cache: &Path) -> Result<HashSet<OsString>> {
    match files.kind(cache)? {
        Some(Kind::Dir) => Ok(files
            .open_dir(cache)?
            .entries()?
            .into_iter()
            .filter(|(_, k)| *k == Kind::File)
            .map(|(n, _)| n)
            .collect()),
        _ => Ok(HashSet::new()),
    }
}

/// Every directory, parents first, each made once beneath the root.
fn make_dirs(root: &Dir, dirs: &BTreeSet<PathBuf>) -> Result<()> {
    // Sorted by components, a directory comes after its parent: the parent is opened last or
    // still on the stack.
    let mut stack: Vec<(PathBuf, Dir)> = Vec::new();
    for d in dirs {
        while stack.last().is_some_and(|(p, _)| !d.starts_with(p)) {
            stack.pop();
        }
        let parent = stack.last().map_or(root, |(_, h)| h);
        let name = d.file_name().expect("a directory of the plan has a name");
        let made = parent.create_dir_all(name)?;
        stack.push((d.clone(), made));
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
    let from = sources[g.wheel].files.open_dir(&g.from)?;
    let to = root.open_dir(&g.to)?;
    for (src, dest) in &g.names {
        let mut mode = LinkMode::from_u8(shared.load(Ordering::Relaxed));
        crate::install::link(&mut mode, &from, Path::new(src), &to, dest)?;
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
