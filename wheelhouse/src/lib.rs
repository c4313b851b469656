//! `wheelhouse`: make sure a local directory holds a wheel for every project of the
//! requirements' closure, for every target, and write the lock of each: exactly the wheels the
//! requirements resolve to, with their sha256. uv resolves when it is there (pip when it is
//! not, or cannot say the request); only what DIR lacks is fetched.

mod cache;
mod check;
mod fetch;
mod pip;
mod pipfill;
mod plan;
mod pylock;
mod reqfile;
mod resolve;
mod select;
mod target;
mod uv;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, ValueEnum};
use wheelship::doc::{doc_path, LockedWheel, Requirements, TargetLock, Wheelhouse};
use wheelship::fs::io::At;
use wheelship::fs::owned::OwnedDir;
use wheelship::{Document, UsageError};

use crate::plan::{doc_target, jobs, native_target, targets, uv_job, Job};
use crate::target::{PipCross, Spec};

/// Fill the local wheel directory and write the lock, for one target or several.
///
/// Reads the `requirements` section (from hashreq) or `-r FILE`, makes sure DIR holds a wheel
/// for every project of the closure, and writes the `wheelhouse` section: `dir`, `wheels`
/// (name, version, file, sha256, size, sorted by name), `target`; with several --target, one
/// lock per target in `locks` and their union in `wheels`.
///
/// Resolving: uv (`--uv`, else `uv` on PATH) resolves against DIR alone first, and only when
/// DIR does not satisfy the requirements (the message says which) with the index; then only
/// the files DIR lacks are downloaded, in parallel, each checked against the sha256 uv
/// reported before it gets its name in DIR; sdists are built here once (cached). pip resolves
/// when there is no uv, with --resolver pip, with pip's cross-target options, and for
/// requirements uv is not given (URLs, paths, editables, -r FILE). An unchanged request
/// against an unchanged DIR answers from a cached lock without either.
///
/// Exit status: 0 success; 1 the work failed (a requirement nothing satisfies, a sha256
/// mismatch, pip missing or too old, the network); 2 usage.
#[derive(Debug, Parser)]
#[command(name = "wheelhouse", version, max_term_width = 100)]
pub struct Args {
    /// The wheel directory [default: wheelhouse; with --check and --prune: the lock's `dir`]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// No index at all: resolve from DIR (and --find-links) only; pip's and uv's configuration
    /// (PIP_*/UV_* variables, pip.conf, uv.toml) is ignored
    #[arg(long)]
    pub offline: bool,

    /// The build box's interpreter: the `native` target, and the one that downloads and
    /// builds sdists
    #[arg(long, default_value = "python3", value_name = "PY")]
    pub python: String,

    /// A target to lock for (repeatable; all are filled at once): `native` (the --python
    /// interpreter, the default), py<X.Y[.Z]> (that Python on this host's platform: the
    /// interpreter the next distribution release brings), or py<X.Y[.Z]>-<platform tag>, e.g.
    /// py3.12-manylinux_2_28_x86_64, py3.11-musllinux_1_2_aarch64 (binary wheels only)
    #[arg(long, value_name = "TARGET")]
    pub target: Vec<String>,

    /// Read more --target values from FILE, one per line (`#` comments)
    #[arg(long, value_name = "FILE")]
    pub targets_from: Option<PathBuf>,

    /// Which resolver: auto (uv when it is there and can say the request, else pip), uv, pip
    #[arg(long, value_enum, default_value_t = Resolver::Auto)]
    pub resolver: Resolver,

    /// The uv binary [default: `uv` on PATH]
    #[arg(long, value_name = "PATH")]
    pub uv: Option<PathBuf>,

    /// More local directories of wheels to resolve from (repeatable); wheels used from them
    /// are copied into DIR
    #[arg(long, value_name = "DIR")]
    pub find_links: Vec<PathBuf>,

    /// Read requirements from FILE (given to pip as is) instead of the document
    #[arg(short = 'r', long = "requirement", value_name = "FILE")]
    pub requirement: Option<PathBuf>,

    /// pip's cross-target: a platform tag of the target (repeatable), e.g.
    /// manylinux_2_17_x86_64; implies binary wheels only, and pip resolves (see --target)
    #[arg(long, value_name = "TAG")]
    pub platform: Vec<String>,

    /// pip's cross-target: the target's Python version, e.g. 3.12
    #[arg(long, value_name = "X.Y")]
    pub python_version: Option<String>,

    /// pip's cross-target: the target's implementation, e.g. cp, pp
    #[arg(long, value_name = "IMPL")]
    pub implementation: Option<String>,

    /// pip's cross-target: an ABI tag of the target (repeatable), e.g. cp312
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
    /// FILE's directory, with sha256 and size): pip and uv install from it with no index. One
    /// target only
    #[arg(long, value_name = "FILE")]
    pub pylock: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Resolver {
    Auto,
    Uv,
    Pip,
}

/// The request: the document's requirements, or a file given to pip as is.
pub enum Source {
    Doc(Box<Requirements>),
    File(PathBuf),
}

impl Source {
    pub fn reqs(&self) -> Option<&Requirements> {
        match self {
            Source::Doc(r) => Some(r),
            Source::File(_) => None,
        }
    }

    /// Why uv is not given this request (it has what wheelhouse leaves to pip), if so.
    fn not_for_uv(&self) -> Option<String> {
        let r = match self {
            Source::File(f) => return Some(format!("-r `{}` is given to pip as is", f.display())),
            Source::Doc(r) => r,
        };
        if !r.options.use_features.is_empty() {
            return Some("the requirements set --use-feature".into());
        }
        r.entries.iter().find_map(|e| {
            let what = if e.editable {
                "an editable requirement"
            } else if e.url.is_some() {
                "a URL or path requirement"
            } else if !e.config_settings.is_empty() {
                "--config-settings"
            } else {
                return None;
            };
            Some(format!("{}:{} is {what}", e.file, e.line))
        })
    }
}

/// What every fill of a run shares.
pub struct Fill<'a> {
    pub python: &'a str,
    /// DIR, open; `dir` is its path.
    pub root: &'a OwnedDir,
    pub dir: &'a Path,
    pub find_links: &'a [PathBuf],
    pub offline: bool,
    pub source: &'a Source,
}

pub fn run(args: Args) -> Result<()> {
    timing("start");
    let cross = PipCross {
        platforms: args.platform.clone(),
        python_version: args.python_version.clone(),
        implementation: args.implementation.clone(),
        abi: args.abi.clone(),
    };
    cross.check()?;
    let specs = targets(
        &args.target,
        args.targets_from.as_deref(),
        cross,
        &args.python,
    )?;
    let mut doc = Document::from_stdin()?;
    if args.check || args.prune {
        let job = check::Job {
            dir: args.dir.as_deref(),
            check: args.check,
            keep_locks: &args.keep_lock,
        };
        return check::run(&job, doc);
    }
    if let Some(p) = &args.pylock {
        if !wheelship::python::names::is_pylock_name(p) {
            return Err(UsageError(format!(
                "--pylock `{}`: a lock file is named {}; pip and uv read no other name as a lock",
                p.display(),
                wheelship::python::names::PYLOCK_NAMES
            ))
            .into());
        }
    }
    if args.pylock.is_some() && specs.len() > 1 {
        return Err(
            UsageError("--pylock writes the lock of one target: give one --target".into()).into(),
        );
    }
    let root = open_dir(args.dir.as_deref())?;
    let dir = root.path().to_path_buf();
    let find_links: Vec<PathBuf> = args
        .find_links
        .iter()
        .map(|f| fs::canonicalize(f).about("--find-links", f))
        .collect::<Result<_>>()?;
    let source = source(args.requirement.as_deref(), &doc)?;
    let f = Fill {
        python: &args.python,
        root: &root,
        dir: &dir,
        find_links: &find_links,
        offline: args.offline,
        source: &source,
    };
    if let Source::Doc(r) = &source {
        if r.is_pylock() {
            return lock_file(&f, args.pylock.as_deref(), &specs, r, doc);
        }
    }
    let uv = match args.resolver {
        Resolver::Pip => None,
        _ => uv::find(args.uv.as_deref())?,
    };
    let jobs = jobs(&specs, args.resolver, uv.is_some(), &source)?;
    let (locks, was_cached) = cached_or_filled(&f, &jobs, uv.as_deref(), !args.no_cache)?;
    if let (Some(p), [only]) = (&args.pylock, locks.as_slice()) {
        pylock::write(p, &dir, &only.wheels)?;
    }
    doc.set("wheelhouse", &section(&dir, locks, was_cached)?)?;
    doc.write_stdout()
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// `WHEELSHIP_TIMING=1`: a phase's end on stderr, for benchmarks.
pub(crate) fn timing(phase: &str) {
    wheelship::cli::progress::timing(
        "wheelhouse",
        phase,
        START.get_or_init(std::time::Instant::now),
    );
}

/// The locks from the cache when nothing changed, else filled (and cached, keyed by what DIR
/// holds after the fill: the next identical run hits).
fn cached_or_filled(
    f: &Fill,
    jobs: &[Job],
    uv: Option<&Path>,
    use_cache: bool,
) -> Result<(Vec<TargetLock>, bool)> {
    // A native target is the interpreter `--python` names, as it is now (a missing one is an
    // error, never an answer from the cache): its version, implementation, platform and path.
    let native = if jobs.iter().any(|j| matches!(j.spec, Spec::Native)) {
        let t = native_target(f.python)?;
        serde_json::json!([
            t.python,
            t.implementation,
            t.cache_tag,
            t.platform,
            t.executable
        ])
    } else {
        serde_json::Value::Null
    };
    let key = || {
        let targets: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| serde_json::json!([j.spec.name(), j.uv]))
            .chain(std::iter::once(native.clone()))
            .collect();
        cache::key(f.source, &targets.into(), f.dir, f.find_links)
    };
    if use_cache {
        if let Some(l) = cache::get(&key()?).filter(|l| l.len() == jobs.len()) {
            return Ok((l, true));
        }
    }
    let locks = fill(f, jobs, uv)?;
    if use_cache {
        cache::put(&key()?, &locks);
    }
    Ok((locks, false))
}

/// DIR created if need be, as an absolute path.
fn open_dir(dir: Option<&Path>) -> Result<OwnedDir> {
    let dir = dir.unwrap_or(Path::new("wheelhouse"));
    if dir.exists() && !dir.is_dir() {
        return Err(UsageError(format!("--dir `{}` is not a directory", dir.display())).into());
    }
    OwnedDir::create_shared(dir, "wheel directory")
}

fn source(requirement: Option<&Path>, doc: &Document) -> Result<Source> {
    let reqs: Option<Requirements> = doc.section("requirements")?;
    Ok(match (requirement, reqs) {
        (Some(f), _) => Source::File(std::path::absolute(f)?),
        (None, Some(r)) => Source::Doc(Box::new(r)),
        (None, None) => {
            return Err(UsageError(
                "no requirements: pipe the output of `hashreq` in, or give -r FILE".into(),
            )
            .into())
        }
    })
}

/// Every target filled and locked, under DIR's lock (one fill of DIR at a time; what a killed
/// one left is removed first): uv's targets together, pip's each on a thread of its own.
fn fill(f: &Fill, jobs: &[Job], uv: Option<&Path>) -> Result<Vec<TargetLock>> {
    if jobs.iter().any(|j| !j.uv) {
        pip::check_version(f.python)?;
    }
    let (_lock, work) = take(f.root)?;
    let native = native_target(f.python)?;
    let exe = match &native.executable {
        Some(e) => e.clone(),
        None => f.python.to_string(),
    };
    let uv_jobs: Vec<(usize, resolve::Job)> = jobs
        .iter()
        .enumerate()
        .filter(|(_, j)| j.uv)
        .map(|(i, j)| Ok((i, uv_job(&j.spec, &exe)?)))
        .collect::<Result<_>>()?;
    let mut out: Vec<Option<Vec<LockedWheel>>> = jobs.iter().map(|_| None).collect();
    if let (Some(uv), false) = (uv, uv_jobs.is_empty()) {
        let only: Vec<resolve::Job> = uv_jobs.iter().map(|(_, j)| j.clone()).collect();
        let sub = pipfill::sub(work.path(), 0)?;
        for ((i, _), outcome) in uv_jobs.iter().zip(resolve::run(f, uv, &exe, &only, &sub)?) {
            if let resolve::Outcome::Locked(w) = outcome {
                out[*i] = Some(w);
            }
        }
    }
    // pip: its own targets, and those uv found nothing for offline (pip's answer or its
    // diagnosis stands).
    let pending: Vec<usize> = (0..jobs.len()).filter(|i| out[*i].is_none()).collect();
    if !pending.is_empty() {
        pip::check_version(f.python)?;
    }
    let pip_locks = wheelship::work::map(pending.len(), pending.len(), |k| {
        let i = pending[k];
        let cross = match &jobs[i].spec {
            Spec::Native => None,
            Spec::Named(n) => Some(n.pip_cross()),
            Spec::PipCross(x) => Some(x.clone()),
        };
        let sub = pipfill::sub(work.path(), i + 1)?;
        pipfill::fill_and_lock(f, cross.as_ref(), &sub)
    })?;
    for (i, w) in pending.iter().zip(pip_locks) {
        out[*i] = Some(w);
    }
    Ok(jobs
        .iter()
        .zip(out)
        .enumerate()
        .map(|(i, (j, wheels))| TargetLock {
            target: doc_target(&j.spec, Some(&native), uv_jobs.iter().any(|(k, _)| *k == i)),
            wheels: wheels.unwrap_or_default(),
            extra: Default::default(),
        })
        .collect())
}

/// Requirements that are a lock file (`pylock.toml`, read by hashreq): exact, never resolved.
fn lock_file(
    f: &Fill,
    pylock_out: Option<&Path>,
    specs: &[Spec],
    r: &Requirements,
    mut doc: Document,
) -> Result<()> {
    if !matches!(specs, [Spec::Native]) {
        return Err(UsageError(
            "a lock file (pylock.toml) is taken as exact for the interpreter it runs on: use --python with the target's interpreter, not --target or the cross-target options".into(),
        )
        .into());
    }
    pip::check_version(f.python)?;
    let (_lock, work) = take(f.root)?;
    let wheels = pylock::lock_exact(f.python, f.offline, f.dir, work.path(), r)?;
    drop(work);
    if let Some(p) = pylock_out {
        pylock::write(p, f.dir, &wheels)?;
    }
    let mut target = native_target(f.python)?;
    target.resolver = Some("pip".into());
    let lock = TargetLock {
        target,
        wheels,
        extra: Default::default(),
    };
    doc.set("wheelhouse", &section(f.dir, vec![lock], false)?)?;
    doc.write_stdout()
}

/// DIR's lock (one fill at a time; what a killed one left is removed under it) and a scratch
/// directory in it.
fn take(dir: &OwnedDir) -> Result<(wheelship::fs::lock::Lock, tempfile::TempDir)> {
    let lock = dir.lock_itself(
        std::time::Duration::from_secs(600),
        "another wheelhouse filling this directory",
    )?;
    dir.clean(&[".wheelhouse-tmp-", wheelship::fs::temp::TMP]);
    Ok((lock, pipfill::scratch(dir.path())?))
}

/// The requirement (and constraint) files pip and uv read. With `fill`, the options of the
/// files and the hashes are included (for fetching); without, only what the resolution
/// against the wheelhouse needs (hashes of sdists would not match the wheels built from them).
pub fn write_files(source: &Source, work: &Path, fill: bool) -> Result<(PathBuf, Option<PathBuf>)> {
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

/// The section: one target's lock as `wheels` and `target`; several as `locks`, with their
/// union (each file once) in `wheels`.
fn section(dir: &Path, mut locks: Vec<TargetLock>, cached: bool) -> Result<Wheelhouse> {
    let dir = doc_path(dir)?;
    // A wheel built here from an sdist names it (`built_from`: file, sha256, url).
    for w in locks.iter_mut().flat_map(|l| l.wheels.iter_mut()) {
        if let Some(b) = fetch::built_from(&w.sha256) {
            w.extra.insert("built_from".into(), b);
        }
    }
    if locks.len() == 1 {
        let only = locks.pop().expect("one");
        return Ok(Wheelhouse {
            dir,
            wheels: only.wheels,
            target: Some(only.target),
            cached: Some(cached),
            ..Wheelhouse::default()
        });
    }
    let mut union: Vec<LockedWheel> = Vec::new();
    for w in locks.iter().flat_map(|l| &l.wheels) {
        if !union.iter().any(|u| u.file == w.file) {
            union.push(w.clone());
        }
    }
    union.sort_by(|a, b| (&a.name, &a.file).cmp(&(&b.name, &b.file)));
    Ok(Wheelhouse {
        dir,
        wheels: union,
        target: None,
        locks: Some(locks),
        cached: Some(cached),
        ..Wheelhouse::default()
    })
}
