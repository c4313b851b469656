//! `wheelhouse`: make sure a local directory holds a wheel for every project of the
//! requirements' closure (pip as builder and resolver), and write the lock: exactly the wheels
//! the requirements resolve to for the target, with their sha256.

mod pip;
mod pylock;
mod reqfile;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::json;
use wheelship::cli::io_reason;
use wheelship::doc::{doc_path, LockedWheel, Requirements, Target, Wheelhouse};
use wheelship::fsx;
use wheelship::names::{canonicalize_name, WheelFilename};
use wheelship::{Document, UsageError};

use crate::pip::Config;
use wheelship::io::At;

/// Version of the cached-lock format and of what the key covers.
const CACHE_FORM: &str = "wheelship-lock-cache-v1";

/// Fill the local wheel directory with pip and write the lock.
///
/// Reads the `requirements` section (from hashreq) or `-r FILE`, makes sure DIR holds a wheel
/// for every project of the closure (pip wheel, or pip download for another target; wheels
/// already in DIR are used, sdists are built here once), then resolves against DIR alone and
/// writes the `wheelhouse` section: `dir`, `wheels` (name, version, file, sha256, size, sorted
/// by name), `target`. An unchanged request against an unchanged DIR answers from a cached lock
/// without starting pip.
///
/// Exit status: 0 success; 1 the work failed (a requirement nothing satisfies, a sha256
/// mismatch, pip missing or too old, the network); 2 usage.
#[derive(Debug, Parser)]
#[command(name = "wheelhouse", version, max_term_width = 100)]
pub struct Args {
    /// The wheel directory [default: wheelhouse; with --check and --prune: the lock's `dir`]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// No index at all: resolve from DIR (and --find-links) only; pip's configuration
    /// (PIP_* variables, pip.conf) is ignored
    #[arg(long)]
    pub offline: bool,

    /// The target interpreter (its pip resolves; its markers and tags apply)
    #[arg(long, default_value = "python3", value_name = "PY")]
    pub python: String,

    /// More local directories of wheels to resolve from (repeatable); wheels used from them
    /// are copied into DIR
    #[arg(long, value_name = "DIR")]
    pub find_links: Vec<PathBuf>,

    /// Read requirements from FILE (given to pip as is) instead of the document
    #[arg(short = 'r', long = "requirement", value_name = "FILE")]
    pub requirement: Option<PathBuf>,

    /// Cross-target: a platform tag of the target (repeatable), e.g. manylinux_2_17_x86_64;
    /// implies binary wheels only
    #[arg(long, value_name = "TAG")]
    pub platform: Vec<String>,

    /// Cross-target: the target's Python version, e.g. 3.12
    #[arg(long, value_name = "X.Y")]
    pub python_version: Option<String>,

    /// Cross-target: the target's implementation, e.g. cp, pp
    #[arg(long, value_name = "IMPL")]
    pub implementation: Option<String>,

    /// Cross-target: an ABI tag of the target (repeatable), e.g. cp312
    #[arg(long, value_name = "ABI")]
    pub abi: Vec<String>,

    /// Verify offline, without pip, that every wheel of the document's lock is in DIR with its
    /// sha256 and size
    #[arg(long, conflicts_with_all = ["prune", "offline"])]
    pub check: bool,

    /// Delete the wheels in DIR that the document's lock (and every --keep-lock) does not need
    #[arg(long)]
    pub prune: bool,

    /// With --prune: another saved document whose lock must be kept too (repeatable)
    #[arg(long, value_name = "FILE", requires = "prune")]
    pub keep_lock: Vec<PathBuf>,

    /// Do not answer from (or write) the cached lock
    #[arg(long)]
    pub no_cache: bool,

    /// Also write the lock as a PEP 751 `pylock.toml` at FILE (wheels by path relative to
    /// FILE's directory, with sha256 and size): pip and uv install from it with no index
    #[arg(long, value_name = "FILE")]
    pub pylock: Option<PathBuf>,
}

/// The cross-target options, refused (exit 2) unless they have the shape of what they name:
/// pip would answer `--python-version abc` with its usage and `--platform foo_bar` with a
/// resolution failure.
fn check_target_options(args: &Args) -> Result<()> {
    let usage = |m: String| -> anyhow::Error { UsageError(m).into() };
    if let Some(v) = &args.python_version {
        let parts: Vec<&str> = v.split('.').collect();
        let digits =
            |p: &&str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
        if parts.is_empty() || parts.len() > 3 || !parts.iter().all(digits) {
            return Err(usage(format!(
                "--python-version `{v}` is not a Python version (like 3.12 or 312)"
            )));
        }
    }
    for p in &args.platform {
        if !is_platform_tag(p) {
            return Err(usage(format!(
                "--platform `{p}` is not a platform tag (like manylinux_2_17_x86_64, musllinux_1_2_aarch64, linux_x86_64, macosx_11_0_arm64, win_amd64, any)"
            )));
        }
    }
    if let Some(i) = &args.implementation {
        if !matches!(i.as_str(), "cp" | "pp" | "ip" | "jy" | "py" | "gp") {
            return Err(usage(format!(
                "--implementation `{i}` is not one of cp, pp, gp, ip, jy, py"
            )));
        }
    }
    for a in &args.abi {
        let ok = !a.is_empty()
            && a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(usage(format!(
                "--abi `{a}` is not an ABI tag (like cp312, abi3, none)"
            )));
        }
    }
    Ok(())
}

/// A platform tag as PEP 425/600/656 and pip spell them.
fn is_platform_tag(p: &str) -> bool {
    const ARCHES: [&str; 12] = [
        "x86_64",
        "i686",
        "aarch64",
        "armv7l",
        "ppc64le",
        "ppc64",
        "s390x",
        "riscv64",
        "loongarch64",
        "armv6l",
        "universal2",
        "arm64",
    ];
    let arch_ok = |rest: &str| ARCHES.contains(&rest);
    let versioned = |rest: &str| {
        // `<major>_<minor>_<arch>`
        let mut it = rest.splitn(3, '_');
        let (Some(a), Some(b), Some(arch)) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        [a, b]
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            && (arch_ok(arch) || matches!(arch, "x86_64" | "intel" | "universal"))
    };
    match p {
        "any" | "win32" | "win_amd64" | "win_arm64" => true,
        _ => {
            if let Some(r) = p
                .strip_prefix("manylinux_")
                .or_else(|| p.strip_prefix("musllinux_"))
                .or_else(|| p.strip_prefix("macosx_"))
            {
                versioned(r)
            } else if let Some(r) = p
                .strip_prefix("manylinux1_")
                .or_else(|| p.strip_prefix("manylinux2010_"))
                .or_else(|| p.strip_prefix("manylinux2014_"))
                .or_else(|| p.strip_prefix("linux_"))
            {
                arch_ok(r)
            } else {
                false
            }
        }
    }
}

/// The cross-target in words, for messages.
fn describe_target(args: &Args) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &args.python_version {
        parts.push(format!("Python {v}"));
    }
    if let Some(i) = &args.implementation {
        parts.push(i.clone());
    }
    parts.extend(args.abi.iter().cloned());
    parts.extend(args.platform.iter().cloned());
    parts.join(", ")
}

impl Args {
    fn cross(&self) -> bool {
        !self.platform.is_empty()
            || self.python_version.is_some()
            || self.implementation.is_some()
            || !self.abi.is_empty()
    }
}

pub fn run(args: Args) -> Result<()> {
    check_target_options(&args)?;
    let mut doc = Document::from_stdin()?;
    if args.check || args.prune {
        return check_or_prune(&args, doc);
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("wheelhouse"));
    if dir.exists() && !dir.is_dir() {
        return Err(UsageError(format!("--dir `{}` is not a directory", dir.display())).into());
    }
    fs::create_dir_all(&dir).at("create", &dir)?;
    let dir = std::fs::canonicalize(&dir).at("open", &dir)?;
    let find_links: Vec<PathBuf> = args
        .find_links
        .iter()
        .map(|f| fs::canonicalize(f).about("--find-links", f))
        .collect::<Result<_>>()?;
    let reqs: Option<Requirements> = doc.section("requirements")?;
    let source = match (&args.requirement, &reqs) {
        (Some(f), _) => Source::File(std::path::absolute(f)?),
        (None, Some(r)) => Source::Doc(Box::new(r.clone())),
        (None, None) => {
            return Err(UsageError(
                "no requirements: pipe the output of `hashreq` in, or give -r FILE".into(),
            )
            .into())
        }
    };
    let target = target(&args)?;
    if let Source::Doc(r) = &source {
        if r.is_pylock() {
            return lock_file(&args, &dir, r, &target, doc);
        }
    }
    let key = cache_key(&source, &target, &dir, &find_links)?;
    if !args.no_cache {
        if let Some(wheels) = cache_get(&key) {
            if let Some(f) = &args.pylock {
                pylock::write(f, &dir, &wheels)?;
            }
            doc.set("wheelhouse", &section(&dir, wheels, &target, true)?)?;
            return doc.write_stdout();
        }
    }
    let wheels = fill_and_lock(&args, &dir, &find_links, &source)?;
    if !args.no_cache {
        // Keyed by what DIR holds now, after the fill: the next identical run hits.
        let key = cache_key(&source, &target, &dir, &find_links)?;
        cache_put(&key, &wheels);
    }
    if let Some(f) = &args.pylock {
        pylock::write(f, &dir, &wheels)?;
    }
    doc.set("wheelhouse", &section(&dir, wheels, &target, false)?)?;
    doc.write_stdout()
}

/// Fills DIR with what the requirements need (unless offline), then resolves the lock against
/// DIR alone: under DIR's lock, one fill at a time.
fn fill_and_lock(
    args: &Args,
    dir: &Path,
    find_links: &[PathBuf],
    source: &Source,
) -> Result<Vec<LockedWheel>> {
    pip::check_version(&args.python)?;
    // One fill of DIR at a time; what a killed one left (Ctrl-C) is removed under the lock.
    let _lock = wheelship::lock::Lock::on_dir(
        dir,
        std::time::Duration::from_secs(600),
        "another wheelhouse filling this directory",
    )?;
    wheelship::staged::remove_leftovers(
        &wheelship::beneath::Dir::open(dir)?,
        &[".wheelhouse-tmp-", ".tmp-"],
    );
    let work = tempfile_dir(dir)?;
    let reqs = match source {
        Source::Doc(r) => Some(&**r),
        Source::File(_) => None,
    };
    let (req, cons) = write_files(source, work.path(), true)?;
    if !args.offline {
        let files = Files {
            work: work.path(),
            req: &req,
            cons: cons.as_deref(),
            reqs,
        };
        fill(args, dir, find_links, &files)?;
    }
    let (req, cons) = write_files(source, work.path(), false)?;
    let files = Files {
        work: work.path(),
        req: &req,
        cons: cons.as_deref(),
        reqs,
    };
    lock(args, dir, find_links, &files)
}

/// Requirements that are a lock file (`pylock.toml`, read by hashreq): exact, never resolved.
fn lock_file(
    args: &Args,
    dir: &Path,
    r: &Requirements,
    target: &Target,
    mut doc: Document,
) -> Result<()> {
    if args.cross() {
        return Err(UsageError(
            "a lock file (pylock.toml) is taken as exact for the interpreter it runs on: use --python with the target's interpreter, not the cross-target options".into(),
        )
        .into());
    }
    pip::check_version(&args.python)?;
    let _lock = wheelship::lock::Lock::on_dir(
        dir,
        std::time::Duration::from_secs(600),
        "another wheelhouse filling this directory",
    )?;
    wheelship::staged::remove_leftovers(
        &wheelship::beneath::Dir::open(dir)?,
        &[".wheelhouse-tmp-", ".tmp-"],
    );
    let work = tempfile_dir(dir)?;
    let wheels = pylock::lock_exact(&args.python, args.offline, dir, work.path(), r)?;
    drop(work);
    if let Some(f) = &args.pylock {
        pylock::write(f, dir, &wheels)?;
    }
    doc.set("wheelhouse", &section(dir, wheels, target, false)?)?;
    doc.write_stdout()
}

enum Source {
    Doc(Box<Requirements>),
    File(PathBuf),
}

/// pip's scratch directory inside DIR (on its filesystem: wheels are renamed out of it),
/// removed when dropped.
fn tempfile_dir(dir: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(".wheelhouse-tmp-")
        .tempdir_in(dir)
        .at("create a directory in", dir)
}

/// What pip reads: the scratch directory, the requirement (and constraint) files, and the
/// requirements they were written from (for messages that quote a line as written).
#[derive(Clone, Copy)]
struct Files<'a> {
    work: &'a Path,
    req: &'a Path,
    cons: Option<&'a Path>,
    reqs: Option<&'a Requirements>,
}

/// The requirement (and constraint) files pip reads.
fn write_files(source: &Source, work: &Path, fill: bool) -> Result<(PathBuf, Option<PathBuf>)> {
    match source {
        Source::File(f) => Ok((f.clone(), None)),
        Source::Doc(r) => {
            let (req, cons) = reqfile::render(r, fill);
            let tag = if fill { "fill" } else { "lock" };
            let rp = work.join(format!("{tag}-requirements.txt"));
            std::fs::write(&rp, req).at("write", &rp)?;
            if cons.is_empty() {
                return Ok((rp, None));
            }
            let cp = work.join(format!("{tag}-constraints.txt"));
            std::fs::write(&cp, cons).at("write", &cp)?;
            Ok((rp, Some(cp)))
        }
    }
}

fn cross_args(args: &Args) -> Vec<String> {
    let mut v = Vec::new();
    for p in &args.platform {
        v.push(format!("--platform={p}"));
    }
    if let Some(pv) = &args.python_version {
        v.push(format!("--python-version={pv}"));
    }
    if let Some(i) = &args.implementation {
        v.push(format!("--implementation={i}"));
    }
    for a in &args.abi {
        v.push(format!("--abi={a}"));
    }
    if args.cross() {
        v.push("--only-binary=:all:".into());
    }
    v
}

/// Fetch or build what is missing: `pip wheel` (native) or `pip download` (cross-target) into a
/// staging directory, then each new wheel renamed into DIR, so no partial file ever sits there.
fn fill(args: &Args, dir: &Path, find_links: &[PathBuf], files: &Files) -> Result<()> {
    let Files {
        work, req, cons, ..
    } = *files;
    let stage = work.join("stage");
    std::fs::create_dir(&stage).at("create", &stage)?;
    let log = work.join("pip-fill.log");
    let mut c = pip::command(&args.python, Config::User);
    c.arg("--log").arg(&log);
    if args.cross() {
        c.args(["download", "--dest"])
            .arg(&stage)
            .args(cross_args(args));
    } else {
        c.args(["wheel", "--wheel-dir"]).arg(&stage);
    }
    c.arg("--find-links").arg(dir);
    for f in find_links {
        c.arg("--find-links").arg(f);
    }
    c.arg("-r").arg(req);
    if let Some(cons) = cons {
        c.arg("-c").arg(cons);
    }
    let what = format!(
        "filling `{}` with pip {}",
        dir.display(),
        if args.cross() { "download" } else { "wheel" }
    );
    let arrived = || {
        let n = fs::read_dir(&stage).map_or(0, |r| r.count());
        format!("{n} new files")
    };
    let out = pip::run_watched(c, &what, &arrived)?;
    if !out.status.success() {
        let what = if args.cross() {
            "pip download"
        } else {
            "pip wheel"
        };
        let target = args.cross().then(|| describe_target(args));
        return Err(pip::failure(
            &out,
            &pip::Failed {
                what,
                dir,
                offline: false,
                target: target.as_deref(),
                log: Some(&log),
                reqs: files.reqs,
            },
        ));
    }
    for e in fs::read_dir(&stage)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".whl") {
            continue;
        }
        let dest = dir.join(&name);
        if !dest.exists() {
            fs::rename(e.path(), &dest).map_err(|err| {
                anyhow!(
                    "cannot move `{name}` into `{}`: {}",
                    dir.display(),
                    io_reason(&err)
                )
            })?;
        }
    }
    fsx::fsync_dir(dir)
}

/// Resolve against DIR (and --find-links) alone, with pip's configuration ignored, and lock
/// what pip would install.
fn lock(
    args: &Args,
    dir: &Path,
    find_links: &[PathBuf],
    files: &Files,
) -> Result<Vec<LockedWheel>> {
    let Files {
        work, req, cons, ..
    } = *files;
    let report = work.join("report.json");
    let mut c = pip::command(&args.python, Config::Isolated);
    c.args([
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--no-index",
        "--only-binary=:all:",
        "--report",
    ])
    .arg(&report)
    .arg("--find-links")
    .arg(dir);
    for f in find_links {
        c.arg("--find-links").arg(f);
    }
    if args.cross() {
        c.arg("--target")
            .arg(work.join("target"))
            .args(cross_args(args));
    }
    c.arg("-r").arg(req);
    if let Some(cons) = cons {
        c.arg("-c").arg(cons);
    }
    let out = pip::run_watched(
        c,
        &format!("resolving against `{}`", dir.display()),
        &String::new,
    )?;
    if !out.status.success() {
        let target = args.cross().then(|| describe_target(args));
        return Err(pip::failure(
            &out,
            &pip::Failed {
                what: "resolving against the wheelhouse",
                dir,
                offline: true,
                target: target.as_deref(),
                log: None,
                reqs: files.reqs,
            },
        ));
    }
    let report = pip::read_report(&report)?;
    let mut wheels = Vec::new();
    for item in report.install {
        let path = pip::file_url_path(&item.download_info.url)?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| anyhow!("pip resolved `{}`", item.download_info.url))?;
        WheelFilename::parse(&file).map_err(|e| anyhow!("pip resolved {e}"))?;
        let in_dir = dir.join(&file);
        if path.parent() != Some(dir) {
            // From --find-links: the lock names files inside DIR, so copy it in.
            fsx::copy_in(&path, dir, &file, None)?;
        }
        let (sha256, size) = fsx::sha256_file(&in_dir)?;
        wheels.push(LockedWheel {
            name: canonicalize_name(&item.metadata.name),
            version: item.metadata.version,
            file,
            sha256,
            size,
            extra: Default::default(),
        });
    }
    wheels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(wheels)
}

/// What the lock is for: the interpreter's identity, or the cross-target's tags.
fn target(args: &Args) -> Result<Target> {
    if args.cross() {
        return Ok(Target {
            native: false,
            python_version: args.python_version.clone(),
            implementation: args.implementation.clone(),
            abi: Some(args.abi.clone()),
            platforms: Some(args.platform.clone()),
            only_binary: Some(true),
            ..Target::default()
        });
    }
    let probe = r#"import json, platform, sys, sysconfig
print(json.dumps({"native": True, "python": platform.python_version(), "implementation": sys.implementation.name,
  "cache_tag": sys.implementation.cache_tag, "platform": sysconfig.get_platform(), "executable": sys.executable}))"#;
    let found = wheelship::python::probe(&args.python, probe)?;
    serde_json::from_value(found).context("the interpreter's probe answered in an unknown shape")
}

fn section(
    dir: &Path,
    wheels: Vec<LockedWheel>,
    target: &Target,
    cached: bool,
) -> Result<Wheelhouse> {
    Ok(Wheelhouse {
        dir: doc_path(dir)?,
        wheels,
        target: Some(target.clone()),
        cached: Some(cached),
        ..Wheelhouse::default()
    })
}

fn listing(dir: &Path) -> Result<Vec<(String, u64, i128)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).at("read", dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let m = e.metadata()?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        v.push((name, m.len(), mtime));
    }
    v.sort();
    Ok(v)
}

/// The cache key: the request (requirements hash, or the bytes of `-r FILE`), the target, and
/// what DIR and every --find-links directory hold (names, sizes, mtimes).
fn cache_key(
    source: &Source,
    target: &Target,
    dir: &Path,
    find_links: &[PathBuf],
) -> Result<String> {
    let request = match source {
        Source::Doc(r) => r.hash.clone(),
        Source::File(f) => {
            let (sha, _) = fsx::sha256_file(f)?;
            format!("file:{}:{sha}", f.display())
        }
    };
    let mut dirs = vec![json!([dir, listing(dir)?])];
    for f in find_links {
        dirs.push(json!([f, listing(f)?]));
    }
    let form = json!({"form": CACHE_FORM, "request": request, "target": target, "dirs": dirs});
    Ok(wheelship::hash::sha256_hex(form.to_string().as_bytes()))
}

fn cache_dir() -> Option<PathBuf> {
    wheelship::python::cache_dir().map(|d| d.join("locks"))
}

fn cache_get(key: &str) -> Option<Vec<LockedWheel>> {
    let text = fs::read_to_string(cache_dir()?.join(format!("{key}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Best effort: a cache that cannot be written only costs the next run a pip call.
fn cache_put(key: &str, wheels: &[LockedWheel]) {
    let Some(d) = cache_dir() else { return };
    if fs::create_dir_all(&d).is_ok() {
        if let Ok(text) = serde_json::to_vec(wheels) {
            let _ = fsx::write_atomic(&d.join(format!("{key}.json")), &text);
        }
    }
}

fn check_or_prune(args: &Args, mut doc: Document) -> Result<()> {
    let wh: Wheelhouse = doc.section("wheelhouse")?.ok_or_else(|| {
        UsageError(
            "--check and --prune need a document with a `wheelhouse` section (the lock)".into(),
        )
    })?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&wh.dir));
    if args.check {
        let mut bad = Vec::new();
        for w in &wh.wheels {
            let p = dir.join(&w.file);
            match fsx::sha256_file(&p) {
                Err(e) => bad.push(format!("`{}`: {e:#}", w.file)),
                Ok((sha, size)) if sha != w.sha256 || size != w.size => bad.push(format!(
                    "`{}`: sha256 {sha} ({size} bytes), the lock says {} ({} bytes)",
                    w.file, w.sha256, w.size
                )),
                Ok(_) => {}
            }
        }
        if !bad.is_empty() {
            bail!(
                "`{}` does not hold the locked wheels:\n  {}",
                dir.display(),
                bad.join("\n  ")
            );
        }
        return doc.write_stdout();
    }
    let mut keep: BTreeSet<String> = wh.wheels.iter().map(|w| w.file.clone()).collect();
    for f in &args.keep_lock {
        let text = fs::read_to_string(f).about("", f)?;
        let other = Document::parse(&text, &f.display().to_string())?;
        let w: Wheelhouse = other
            .section("wheelhouse")?
            .ok_or_else(|| anyhow!("`{}` has no `wheelhouse` section", f.display()))?;
        keep.extend(w.wheels.into_iter().map(|w| w.file));
    }
    let mut removed = Vec::new();
    for e in fs::read_dir(&dir).at("read", &dir)? {
        let name = e?.file_name().to_string_lossy().to_string();
        if name.ends_with(".whl") && !keep.contains(&name) {
            fs::remove_file(dir.join(&name)).at("remove", &name)?;
            removed.push(name);
        }
    }
    removed.sort();
    fsx::fsync_dir(&dir)?;
    let section = Wheelhouse {
        pruned: Some(removed),
        ..wh
    };
    doc.set("wheelhouse", &section)?;
    doc.write_stdout()
}
