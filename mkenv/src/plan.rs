//! An env as a plan, then built in parallel.
//!
//! Every path of the env is decided before anything is made: each wheel's paths and RECORD
//! (on every core: a wheel's plan needs no other), then which wheel owns each path (the last
//! in lock order, as if the wheels were installed one after another; a launcher after its
//! wheel's files). Then the directories are made once each, parents first, a subtree per
//! thread on every core, and each is filled from the store as soon as it is made, through the
//! handle it was made with; the files mkenv writes (scripts, launchers, INSTALLER, REQUESTED,
//! RECORD) follow, in lock order. The result does not depend on how the threads were
//! scheduled.
//!
//! Paths are text here (a wheel's member names are UTF-8), hashed with a fast hasher, and
//! borrowed from the wheels' infos wherever they can be: the plan handles every path of the
//! env, tens of thousands for a data stack.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{anyhow, bail, Result};
use sha2::{Digest, Sha256};
use wheelship::fs::beneath::Dir;

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
    site: String,
    /// Every directory, in component order: each before its children, and its subtree
    /// right after it.
    dirs: Vec<String>,
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
        let wheels = wheelship::work::map(sources.len(), threads, |i| plan_wheel(b, &sources[i]))?;
        let (live, owner, warnings) = owners(&wheels, sources)?;
        let (dirs, groups, writes, files) = finish(&wheels, &live, &owner)?;
        drop(owner);
        Ok(Plan {
            wheels,
            site: b.site_str().to_string(),
            dirs,
            groups,
            writes,
            warnings,
            files,
        })
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
        let shared = AtomicU8::new(mode as u8);
        let mut into: HashMap<&str, Vec<&Group>, FxBuild> = HashMap::default();
        for g in &self.groups {
            into.entry(g.to.as_str()).or_default().push(g);
        }
        // Each directory's files are linked as soon as it is made, through the handle it was
        // made with.
        let fill = |dir: &str, handle: &Dir| -> Result<()> {
            for g in into.get(dir).into_iter().flatten() {
                link_group(handle, sources, &self.wheels, g, &shared)?;
            }
            Ok(())
        };
        make_dirs(root, &self.dirs, &self.site, threads, &fill)?;
        for &(w, i) in &self.writes {
            let e = &self.wheels[w][i];
            if let Make::Write(data, m) = &e.make {
                write_file(root, Path::new(&e.dest), data, *m)?;
            }
        }
        Ok(LinkMode::from_u8(shared.load(Ordering::Relaxed)))
    }
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
        // setuptools' own launchers for an entry point (`EP`, `EP.exe`, `EP-script.py`,
        // `EP.pya`): pip leaves them out, its launcher is what `bin/EP` gets.
        if script && crate::entry_points::is_entrypoint_wrapper(&dest, info) {
            continue;
        }
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
    let console = crate::entry_points::console_scripts(&info.console_scripts, &b.interp.xy());
    for (name, target) in console.iter().chain(&info.gui_scripts) {
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

/// Which entry of which wheel makes each path.
type Owners<'w> = HashMap<&'w str, (usize, usize), FxBuild>;

/// Which entry of which wheel makes each path: the last in lock order. Returns, per wheel,
/// whether each entry is the one that makes its path; the owner of each path; the warnings
/// for the replaced.
fn owners<'w>(
    wheels: &'w [Vec<Entry>],
    sources: &[Source],
) -> Result<(Vec<Vec<bool>>, Owners<'w>, Vec<String>)> {
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
    Ok((live, owner, warnings))
}

/// What [`finish`] gives: the directories (in component order), the link groups, the writes
/// and the number of files.
type Finished = (Vec<String>, Vec<Group>, Vec<(usize, usize)>, usize);

/// The last directory [`finish`] saw, and the last group: (from, to, its index).
type Seen<'p> = (&'p str, Option<(&'p str, &'p str, usize)>);

/// The directories, the link groups and the writes of the live entries. A wheel's entries
/// come directory by directory (a file's bytecode beside it), so the last directory and group
/// of each kind are remembered: most entries need no hashing.
fn finish(wheels: &[Vec<Entry>], live: &[Vec<bool>], owner: &Owners) -> Result<Finished> {
    let mut dirs: HashSet<&str, FxBuild> = HashSet::default();
    let mut index: HashMap<(usize, bool, &str, &str), usize, FxBuild> = HashMap::default();
    let mut groups: Vec<Group> = Vec::new();
    let mut writes = Vec::new();
    let mut files = 0;
    for (w, entries) in wheels.iter().enumerate() {
        // The last directory seen, and the last group, of files and of bytecode.
        let mut seen: [Seen; 2] = [("", None); 2];
        for (i, e) in entries.iter().enumerate().filter(|(i, _)| live[w][*i]) {
            let (src, optional) = match &e.make {
                Make::Write(..) => ("", false),
                Make::Link(src) => (*src, false),
                Make::Pyc(src) => (src.as_str(), true),
            };
            let dir = parent(&e.dest);
            let last = &mut seen[usize::from(optional)];
            if last.0 != dir {
                let mut d = dir;
                while !d.is_empty() && dirs.insert(d) {
                    d = parent(d);
                }
                last.0 = dir;
            }
            if matches!(e.make, Make::Write(..)) {
                files += 1;
                writes.push((w, i));
                continue;
            }
            files += usize::from(!optional);
            let from = parent(src);
            let g = match last.1 {
                Some((f, t, g)) if f == from && t == dir => g,
                _ => {
                    let g = *index.entry((w, optional, from, dir)).or_insert_with(|| {
                        groups.push(Group {
                            wheel: w,
                            optional,
                            from: from.to_string(),
                            to: dir.to_string(),
                            entries: Vec::new(),
                        });
                        groups.len() - 1
                    });
                    last.1 = Some((from, dir, g));
                    g
                }
            };
            groups[g].entries.push(i);
        }
    }
    if let Some(d) = dirs.iter().find(|d| owner.contains_key(*d)) {
        bail!("`{d}` is both a file and a directory of the env");
    }
    let mut dirs: Vec<String> = dirs.into_iter().map(str::to_string).collect();
    dirs.sort_unstable_by(|a, b| by_components(a, b));
    Ok((dirs, groups, writes, files))
}

/// Paths in component order (`a`, `a/b`, `a-b`: a directory's subtree right after it), as
/// bytes with the separator lowest.
fn by_components(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> impl Iterator<Item = u8> + '_ {
        s.bytes().map(|c| if c == b'/' { 0 } else { c })
    }
    key(a).cmp(key(b))
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

/// What is done in each directory once it is made (its path, its handle).
type Fill<'f> = &'f (dyn Fn(&str, &Dir) -> Result<()> + Sync);

/// Whether `path` is `dir` or beneath it.
fn within(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The parent of a `/`-separated path (`""` for a top-level one).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Every directory, parents first, each made once beneath the root and filled as soon as it
/// is made: site-packages and its parents here (the root's own files after them), then each
/// subtree below them on the next free thread, the largest first (a package's directories
/// are many, and making a directory allocates an inode and a block). A directory is filled
/// through the handle it was made with, which is closed when its subtree is done: a large
/// descriptor table would cost every later open and close.
fn make_dirs(root: &Dir, dirs: &[String], site: &str, threads: usize, fill: Fill) -> Result<()> {
    let shallow: Vec<&str> = dirs
        .iter()
        .map(String::as_str)
        .filter(|d| within(site, d))
        .collect();
    // A subtree: a directory whose parent is the root or shallow, and what is beneath it (in
    // component order, right after it).
    let mut units: Vec<(&str, Vec<&str>)> = Vec::new();
    for d in dirs.iter().map(String::as_str).filter(|d| !within(site, d)) {
        let top = parent(d);
        if top.is_empty() || within(site, top) {
            units.push((top, vec![d]));
        } else {
            units.last_mut().expect("a unit").1.push(d);
        }
    }
    make_tree(root, "", &shallow, fill)?;
    fill("", root)?;
    units.sort_by_key(|(_, members)| std::cmp::Reverse(members.len()));
    wheelship::work::map(units.len(), threads, |i| {
        let (base, members) = &units[i];
        let handle = match *base {
            "" => None,
            p => Some(root.open_dir(p)?),
        };
        make_tree(handle.as_ref().unwrap_or(root), base, members, fill)
    })?;
    Ok(())
}

/// Makes `dirs` (in component order, the first one's parent being `base`, which `at` is)
/// depth first, each from its parent's handle, and fills each.
fn make_tree(at: &Dir, base: &str, dirs: &[&str], fill: Fill) -> Result<()> {
    // In component order, a directory comes after its parent, which is still on the stack.
    let mut stack: Vec<(&str, Dir)> = Vec::new();
    for &d in dirs {
        while stack.last().is_some_and(|(p, _)| !within(d, p)) {
            stack.pop();
        }
        let (above, handle) = stack.last().map_or((base, at), |(p, h)| (*p, h));
        if parent(d) != above {
            bail!("`{d}` is not made in `{above}`: the plan's directories are out of order");
        }
        let made = handle.create_dir_all(leaf(d))?;
        fill(d, &made)?;
        stack.push((d, made));
    }
    Ok(())
}

/// Links one group's files from the store into `to`. Bytecode the store lacks (a file that
/// does not compile has none) is skipped.
fn link_group(
    to: &Dir,
    sources: &[Source],
    wheels: &[Vec<Entry>],
    g: &Group,
    shared: &AtomicU8,
) -> Result<()> {
    let files = sources[g.wheel].files;
    let from = match files.open_dir(&g.from) {
        Ok(from) => from,
        Err(_) if g.optional && files.kind(&g.from)?.is_none() => return Ok(()),
        Err(e) => return Err(e),
    };
    for &i in &g.entries {
        let e = &wheels[g.wheel][i];
        let src = match &e.make {
            Make::Link(s) => leaf(s),
            Make::Pyc(s) => leaf(s),
            Make::Write(..) => continue,
        };
        let mut mode = LinkMode::from_u8(shared.load(Ordering::Relaxed));
        crate::install::link(
            &mut mode,
            &from,
            Path::new(src),
            to,
            OsStr::new(leaf(&e.dest)),
            g.optional,
        )?;
        shared.fetch_max(mode as u8, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{by_components, within};

    /// A directory's subtree comes right after it, before a sibling whose name extends its
    /// own (`-` and `.` sort below `/` as bytes).
    #[test]
    fn directories_sort_by_component() {
        let mut dirs = vec!["a-b", "a/c", "a", "a.d/e", "a.d", "a/c/d", "b"];
        dirs.sort_unstable_by(|x, y| by_components(x, y));
        assert_eq!(dirs, ["a", "a/c", "a/c/d", "a-b", "a.d", "a.d/e", "b"]);
        assert!(within("a/c", "a") && within("a", "a") && within("a", ""));
        assert!(!within("a-b", "a") && !within("a", "a/c"));
    }
}
