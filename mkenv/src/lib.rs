//! `mkenv`: one virtualenv per lock and interpreter, named by a hash, built natively from the
//! locked wheels (no pip, no network), from a store of unpacked wheels shared by every env.
//!
//! ```text
//! ENVS/<key>/                 a complete env (it appears under this name only when whole)
//! ENVS/<key>/.wheelship-env.json   what it was built from
//! ENVS/.store/<sha256>/       a verified, unzipped wheel (files/, info.json) and its .pyc
//! ENVS/.lock                  serialises writers
//! ```

mod compile;
mod entry_points;
mod gc;
mod install;
#[doc(hidden)]
pub use wheelship::python::interp; // re-exported for the tests of its tags against packaging (tests/tags.rs)
mod pick;
mod plan;
mod record;
mod stamp;
pub mod store; // public for the fuzz targets (tests/fuzz)
mod unzip;
#[doc(hidden)]
pub mod wheel; // public for the fuzz targets (tests/fuzz)

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wheelship::cli::progress;
use wheelship::doc::{doc_path, Env, EnvPython, Requirements, Wheelhouse};
use wheelship::failpoint::point;
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::fs::owned::{OwnedDir, TMP, TRASH};
use wheelship::{
    python::names::{canonicalize_name, is_valid_name, WheelFilename},
    text::check_sha256,
};
use wheelship::{Document, Hint, UsageError};

use crate::interp::Interp;
use wheelship::fs::io::At;

/// The version of the env layout: part of every key, bumped when what mkenv builds changes.
pub const LAYOUT: &str = "mkenv-layout-1";

/// Build the env of a lock natively, named by its hash; reuse it when it exists.
///
/// Reads the document's `wheelhouse` lock (and `requirements`, for which projects were asked
/// for), from a pipe or a saved file (`mkenv < release.json`), and adds the `env` section:
/// `path`, `key`, `reused`, `python`, `wheels`, `files`, `seconds`.
///
/// Exit status: 0 success; 1 the work failed (a wheel that does not match the lock, is
/// incompatible or hostile); 2 usage.
#[derive(Debug, Parser)]
#[command(name = "mkenv", version, max_term_width = 100)]
pub struct Args {
    /// The env store
    #[arg(long, global = true, default_value = "envs", value_name = "DIR")]
    pub envs: PathBuf,

    /// The interpreter the env is for
    #[arg(long, default_value = "python3", value_name = "PY")]
    pub python: String,

    /// Do not compile `.pyc` files
    #[arg(long)]
    pub no_compile: bool,

    /// Rehash every stored wheel of the lock (its files against RECORD, its bytecode against
    /// what was recorded when it was compiled) instead of checking only their inodes, sizes
    /// and modification times; a changed one is stored again from its wheel, and an existing
    /// env that links it is built again and swapped in
    #[arg(long)]
    pub verify: bool,

    /// Seconds to wait for another mkenv on the same store
    #[arg(long, global = true, default_value_t = 600, value_name = "SECS")]
    pub lock_timeout: u64,

    /// Read the document the unpacked release in DIR carries (its lock, its own wheels)
    /// instead of stdin: `mkenv --verify --envs ROOT/envs --release ROOT/releases/ID`
    #[arg(long, value_name = "DIR")]
    pub release: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Remove the envs and stored wheels that none of the given keys (or releases) still use
    Gc {
        /// An env key to keep (repeatable)
        #[arg(long, value_name = "KEY")]
        keep: Vec<String>,
        /// A releases directory whose `<release>/venv` links name envs to keep (repeatable)
        #[arg(long, value_name = "DIR")]
        releases: Vec<PathBuf>,
        /// Keep every env built or reused in the last SECS seconds: a deploy between its
        /// mkenv and its switch has not linked it yet
        #[arg(long, default_value_t = 900, value_name = "SECS")]
        grace: u64,
        /// Print what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
        /// First rehash every stored wheel; one that was changed after it was stored is
        /// removed, and the envs that link it are named (exit 1)
        #[arg(long)]
        verify: bool,
    },
}

pub fn run(args: Args) -> Result<()> {
    let mut doc = match &args.release {
        Some(dir) => {
            let real = std::fs::canonicalize(dir).about("release", dir)?;
            wheelship::host::carried::read(&real)?
        }
        None => Document::from_stdin()?,
    };
    if let Some(Cmd::Gc {
        keep,
        releases,
        grace,
        dry_run,
        verify,
    }) = &args.command
    {
        let job = gc::Gc {
            keep,
            releases,
            grace: *grace,
            dry_run: *dry_run,
            verify: *verify,
            lock_timeout: args.lock_timeout,
        };
        let section = gc::gc(&args.envs, &job)?;
        doc.set("mkenv_gc", &section)?;
        return doc.write_stdout();
    }
    let started = Instant::now();
    let wh: Wheelhouse = doc.section("wheelhouse")?.ok_or_else(|| {
        UsageError("no `wheelhouse` section (the lock): run `hashreq | wheelhouse --offline | mkenv`, or `mkenv < release.json`".into())
    })?;
    check_lock(&wh)?;
    let reqs: Option<Requirements> = doc.section("requirements")?;
    let interp = Interp::probe(&args.python)?;
    let wh = pick::lock_for(wh, &interp)?;
    let job = Job {
        python: &args.python,
        compile: !args.no_compile,
        verify: args.verify,
        lock_timeout: Duration::from_secs(args.lock_timeout),
    };
    let key = env_key(&wh, &interp, job.compile);
    let envs = OwnedDir::create(&args.envs, "env store")?;
    let (reused, files) = ensure_env(&envs, &key, &wh, reqs.as_ref(), &interp, &job)?;
    // Built or reused just now: gc and prune leave it alone for their grace period, so the
    // deploy that asked for it can link it. An env this user may not touch is still usable.
    if let Err(e) = envs.dir().touch(&key) {
        wheelship::cli::warn(format_args!(
            "{e:#} (gc and prune will not see it as in use)"
        ));
    }
    let section = Env {
        path: doc_path(envs.join(&key))?,
        key,
        reused,
        python: EnvPython {
            version: interp.version.clone(),
            implementation: interp.implementation.clone(),
            tag: interp.tag(),
            executable: Some(doc_path(&interp.base_executable)?),
            extra: Default::default(),
        },
        wheels: if reused { 0 } else { wh.wheels.len() },
        files,
        compiled: job.compile,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        extra: Default::default(),
    };
    doc.set("env", &section)?;
    doc.write_stdout()
}

/// Removes what a crash left in the env store, its lock held: temp and trash names in envs/ and
/// in .store/, and temp files inside the store's entries (a compiled marker cut off by a full
/// disk). The store, opened.
pub(crate) fn clean_store(envs: &OwnedDir) -> Result<OwnedDir> {
    envs.clean(&[TMP, TRASH]);
    let store = envs.sub(".store", "env store", true)?;
    store.clean(&[TMP, TRASH]);
    for (name, kind) in store.dir().entries()? {
        if kind == wheelship::fs::beneath::Kind::Dir && !name.to_string_lossy().starts_with('.') {
            if let Ok(entry) = store.dir().open_dir(&name) {
                wheelship::fs::staged::remove_leftovers(&entry, &[TMP]);
            }
        }
    }
    Ok(store)
}

/// What a build is asked for, from the command line.
struct Job<'a> {
    python: &'a str,
    compile: bool,
    /// Rehash the lock's stored wheels, and rebuild an env that links changed ones.
    verify: bool,
    lock_timeout: Duration,
}

/// The env of `key`, reused or built: (reused, files installed).
fn ensure_env(
    envs: &OwnedDir,
    key: &str,
    wh: &Wheelhouse,
    reqs: Option<&Requirements>,
    interp: &Interp,
    job: &Job,
) -> Result<(bool, usize)> {
    if !job.verify && reusable(envs, key)? {
        // Reused: what a crash left in the store goes too, when no other run holds it.
        if let Ok(_lock) = envs.lock(Duration::ZERO, "another mkenv on this store") {
            clean_store(envs)?;
        }
        return Ok((true, 0));
    }
    let _lock = envs.lock(job.lock_timeout, "another mkenv on this store")?;
    let store = clean_store(envs)?;
    // Another mkenv may have built it while we waited: the work is done once.
    let exists = reusable(envs, key)?;
    if exists && !job.verify {
        return Ok((true, 0));
    }
    let started = Instant::now();
    let stored = fill_store(store.dir(), wh, interp, job)?;
    timing("compile", &started);
    if exists {
        if !stored.iter().any(|s| s.fresh) {
            return Ok((true, 0));
        }
        eprintln!(
            "mkenv: `{}` linked stored wheels that were changed: building it again",
            envs.join(key).display()
        );
    }
    let what = EnvBuild {
        key,
        wh,
        reqs,
        interp,
        job,
        store: store.dir(),
        stored: &stored,
    };
    let files = build_env(envs.dir(), &what, exists)?;
    Ok((false, files))
}

/// Whether `ENVS/<key>` is a whole env mkenv made for this key: `false` when nothing is
/// there; an error when something else is (another user's directory, a planted one, a link).
fn reusable(envs: &OwnedDir, key: &str) -> Result<bool> {
    let d = envs.dir();
    match d.kind(key)? {
        None => return Ok(false),
        Some(Kind::Dir) => {}
        Some(_) => bail!(
            "`{}` is not a directory: refusing it",
            envs.join(key).display()
        ),
    }
    let env = d.open_dir(key)?;
    wheelship::fs::owned::check_owned(&env, "env")?;
    let meta: Option<EnvMeta> = env
        .read(".wheelship-env.json")
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match meta {
        Some(m) if m.key == key && env.kind("pyvenv.cfg")? == Some(Kind::File) => Ok(true),
        _ => Err(Hint::new(
            format!(
                "`{}` is not an env mkenv made for this lock (its `.wheelship-env.json` does not name key {key}): refusing to reuse it",
                envs.join(key).display()
            ),
            "remove it: mkenv then builds the env again",
        )
        .into()),
    }
}

/// What `env.key` hashes, in this field order (a struct's, whatever serde_json's features).
#[derive(Serialize)]
struct KeyForm<'a> {
    layout: &'a str,
    wheels: Vec<(String, String, String)>,
    python: Identity<'a>,
    tags: String,
    compile: bool,
}

/// The interpreter's identity in an env's key, by name; written as the array the key has
/// always hashed, so that keys (and envs) stay what they were.
struct Identity<'a> {
    implementation: &'a str,
    version: &'a str,
    cache_tag: &'a str,
    abiflags: &'a str,
    soabi: &'a str,
    platform: &'a str,
    machine: &'a str,
    libc: &'a (String, String),
    base_executable: &'a str,
    gil_disabled: bool,
}

impl Serialize for Identity<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (
            self.implementation,
            self.version,
            self.cache_tag,
            self.abiflags,
            self.soabi,
            self.platform,
            self.machine,
            self.libc,
            self.base_executable,
            self.gil_disabled,
        )
            .serialize(s)
    }
}

/// `ENVS/<key>/.wheelship-env.json`: what the env was built from (gc reads its wheels).
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct EnvMeta {
    key: String,
    layout: String,
    #[serde(default)]
    python: Value,
    wheels: Vec<wheelship::doc::LockedWheel>,
}

/// `env.key`: the lock (each wheel's name, version, sha256), the interpreter's identity
/// (implementation, full version, ABI, platform, libc, base executable, its tags), whether
/// bytecode is compiled, and the layout's version.
fn env_key(wh: &Wheelhouse, i: &Interp, compile: bool) -> String {
    let mut wheels: Vec<(String, String, String)> = wh
        .wheels
        .iter()
        .map(|w| (w.name.clone(), w.version.clone(), w.sha256.clone()))
        .collect();
    wheels.sort();
    wheels.dedup();
    let python = Identity {
        implementation: &i.implementation,
        version: &i.version,
        cache_tag: &i.cache_tag,
        abiflags: &i.abiflags,
        soabi: &i.soabi,
        platform: &i.platform,
        machine: &i.machine,
        libc: &i.libc,
        base_executable: &i.base_executable,
        gil_disabled: i.gil_disabled,
    };
    let form = KeyForm {
        layout: LAYOUT,
        wheels,
        python,
        tags: wheelship::hash::sha256_hex(i.tags.join("\n").as_bytes()),
        compile,
    };
    let text = serde_json::to_string(&form).expect("the key's form serialises");
    wheelship::hash::sha256_hex(text.as_bytes())[..32].to_string()
}

/// Every value of the lock is checked where it enters: the sha256 names a store entry and the
/// file a path in the wheel directory, so neither may be anything but what it says.
fn check_lock(wh: &Wheelhouse) -> Result<()> {
    let each = wh.locks.iter().flatten().enumerate().flat_map(|(l, lock)| {
        lock.wheels
            .iter()
            .enumerate()
            .map(move |(i, w)| (format!("locks[{l}].wheels[{i}]"), w))
    });
    let all = wh
        .wheels
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("wheels[{i}]"), w))
        .chain(each);
    for (i, w) in all {
        let at = |why: String| anyhow!("stdin: `wheelhouse.{i}`: {why}");
        check_sha256(&w.sha256).map_err(&at)?;
        if !is_valid_name(&w.name) || canonicalize_name(&w.name) != w.name {
            return Err(at(format!("`{}` is not a canonical project name", w.name)));
        }
        let fname = WheelFilename::parse(&w.file).map_err(|e| at(e.to_string()))?;
        if w.file.contains('/') || canonicalize_name(&fname.name) != w.name {
            return Err(at(format!(
                "`{}` is not a wheel file name of `{}`",
                w.file, w.name
            )));
        }
    }
    Ok(())
}

/// Every locked wheel checked and stored, and its bytecode compiled (when asked for) by the
/// target python as soon as the wheel is stored.
fn fill_store<'w>(
    store: &Dir,
    wh: &'w Wheelhouse,
    interp: &Interp,
    job: &Job,
) -> Result<Vec<store::Stored<'w>>> {
    let started = Instant::now();
    check_tags(job.python, wh, interp)?;
    let marker = format!("compiled.{}", interp.cache_tag);
    let mut compiler = job.compile.then(|| compile::Compiler::new(job.python));
    let fill = store::Fill {
        marker: &marker,
        rehash: job.verify,
    };
    let bar = progress::bar("mkenv", "storing wheels", wh.wheels.len() as u64);
    let stored = store::store_all(store, wh, &fill, compiler.as_mut(), &bar);
    bar.finish_and_clear();
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            if let Some(c) = compiler {
                c.kill();
            }
            return Err(e);
        }
    };
    timing("store", &started);
    point("mkenv-after-store");
    if let Some(c) = compiler {
        let spin = progress::spinner("mkenv", "compiling bytecode");
        let done = c.finish(store);
        spin.finish_and_clear();
        let mut compiled = done?;
        for s in &stored {
            let sha = Path::new(&s.wheel.sha256);
            if stamp::Compiled::read(store, sha, &marker).is_none() {
                let pycs = compiled.remove(&s.wheel.sha256).unwrap_or_default();
                if pycs.incomplete {
                    wheelship::cli::warn(format_args!(
                        "a `.pyc` of `{}` did not come out whole (a full disk?): removed; it is compiled again next time",
                        s.wheel.file
                    ));
                    continue;
                }
                compile::write_marker(store, &s.wheel.sha256, &marker, &pycs)?;
            }
        }
    }
    point("mkenv-after-compile");
    Ok(stored)
}

/// The env, built under a temp name and renamed into place when whole; `replace` swaps it for
/// the one there (in one step: a live env is never missing), which then goes.
#[allow(clippy::too_many_arguments)]
/// What an env is built from: its key, the lock and the requirements, the interpreter, the
/// job, and the store with the lock's wheels in it.
struct EnvBuild<'a> {
    key: &'a str,
    wh: &'a Wheelhouse,
    reqs: Option<&'a Requirements>,
    interp: &'a Interp,
    job: &'a Job<'a>,
    store: &'a Dir,
    stored: &'a [store::Stored<'a>],
}

fn build_env(envs: &Dir, e: &EnvBuild, replace: bool) -> Result<usize> {
    let started = Instant::now();
    let tmp = wheelship::fs::staged::Staged::new(envs, TMP)?;
    let files = link_env(e, envs.show(e.key), tmp.open()?)?;
    let key = e.key;
    timing("env", &started);
    point("mkenv-before-rename");
    if replace {
        envs.exchange(tmp.name(), key)?;
        envs.sync()?;
        // `tmp` now holds the old env: dropping it removes it.
        drop(tmp);
    } else {
        tmp.commit(key)?;
        envs.sync()?;
    }
    Ok(files)
}

/// Links every stored wheel into the env being built in `dir` (whose final path is `path`),
/// writes what it was built from, and makes it durable: the number of files installed.
fn link_env(e: &EnvBuild, path: PathBuf, dir: Dir) -> Result<usize> {
    let EnvBuild {
        key,
        wh,
        reqs,
        interp,
        job,
        store,
        stored,
    } = *e;
    let mut b = install::Build::new(interp, path, dir);
    b.compile = job.compile;
    b.layout(key)?;
    let requested: HashSet<String> = reqs
        .map(|r| {
            r.entries
                .iter()
                .filter(|e| !e.constraint)
                .filter_map(|e| e.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let files: Vec<Dir> = stored
        .iter()
        .map(|s| store.open_dir(Path::new(&s.wheel.sha256).join("files")))
        .collect::<Result<_>>()?;
    let sources: Vec<plan::Source> = stored
        .iter()
        .zip(&files)
        .map(|(s, files)| plan::Source {
            files,
            info: &s.info,
            file_name: &s.wheel.file,
            requested: requested.contains(&s.wheel.name),
        })
        .collect();
    let started = Instant::now();
    let threads = wheelship::work::cores();
    let plan = plan::Plan::new(&b, &sources, threads)?;
    timing("plan", &started);
    for warning in &plan.warnings {
        wheelship::cli::warn(format_args!("{warning}"));
    }
    let spin = progress::spinner("mkenv", "linking the env");
    b.mode = plan.build(b.dirs.root(), &sources, b.mode, threads)?;
    spin.finish_and_clear();
    timing("link", &started);
    point("mkenv-after-link");
    let meta = EnvMeta {
        key: key.to_string(),
        layout: LAYOUT.into(),
        python: serde_json::to_value(interp)?,
        wheels: wh.wheels.clone(),
    };
    let root = b.dirs.root();
    let mut f = root.create_file(".wheelship-env.json", 0o644)?;
    f.write_all(&serde_json::to_vec_pretty(&meta)?)
        .at("write", root.show(".wheelship-env.json"))?;
    // Nothing gets its final name before its bytes are durable.
    root.sync_fs()?;
    timing("sync", &started);
    Ok(plan.files)
}

/// Every wheel's tags against the interpreter, before any work.
fn check_tags(python: &str, wh: &Wheelhouse, interp: &Interp) -> Result<()> {
    let supported: HashSet<&str> = interp.tags.iter().map(String::as_str).collect();
    for w in &wh.wheels {
        let fname = WheelFilename::parse(&w.file).map_err(|e| anyhow!("the lock names {e}"))?;
        if !fname.tags().iter().any(|t| supported.contains(t.as_str())) {
            return Err(Hint::new(
                format!(
                    "cannot install `{}`: it is not compatible with `{}` (Python {}, {}); its tags: {}",
                    w.file,
                    python,
                    interp.version,
                    interp.platform,
                    fname.tags().join(", ")
                ),
                "lock for this interpreter: `wheelhouse --python` with the same Python",
            )
            .into());
        }
    }
    Ok(())
}

fn timing(phase: &str, since: &Instant) {
    wheelship::cli::progress::timing("mkenv", phase, since);
}
