//! `mkenv`: one virtualenv per lock and interpreter, named by a hash, built natively from the
//! locked wheels (no pip, no network), from a store of unpacked wheels shared by every env.
//!
//! ```text
//! ENVS/<key>/                 a complete env (it appears under this name only when whole)
//! ENVS/<key>/.wheelship-env.json   what it was built from
//! ENVS/.store/<sha256>/       a verified, unzipped wheel (files/, info.json) and its .pyc
//! ENVS/.lock                  serialises writers
//! ```

mod install;
mod interp;
mod plan;
#[doc(hidden)]
pub mod wheel; // public for the fuzz targets (tests/fuzz)

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use wheelship::beneath::{Dir, Kind};
use wheelship::cli::io_reason;
use wheelship::doc::{doc_path, Env, EnvGc, EnvPython, Requirements, Wheelhouse};
use wheelship::fsx::{self, point, Lock};
use wheelship::names::{canonicalize_name, check_sha256, is_valid_name, WheelFilename};
use wheelship::progress;
use wheelship::{Document, Hint, UsageError};

use crate::interp::Interp;

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

    /// Seconds to wait for another mkenv on the same store
    #[arg(long, global = true, default_value_t = 600, value_name = "SECS")]
    pub lock_timeout: u64,

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
    },
}

pub fn run(args: Args) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    if let Some(Cmd::Gc {
        keep,
        releases,
        grace,
        dry_run,
    }) = &args.command
    {
        let section = gc(&args, keep, releases, *grace, *dry_run)?;
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
    let key = env_key(&wh, &interp, !args.no_compile);
    fs::create_dir_all(&args.envs)
        .map_err(|e| anyhow!("cannot create `{}`: {}", args.envs.display(), io_reason(&e)))?;
    let envs = fs_err::canonicalize(&args.envs)?;
    let envs_dir = Dir::open(&envs)?;
    let final_path = envs.join(&key);
    let complete = || {
        envs_dir
            .kind(Path::new(&key).join("pyvenv.cfg"))
            .ok()
            .flatten()
            == Some(Kind::File)
    };

    let mut reused = complete();
    let mut stats = (wh.wheels.len(), 0usize);
    if !reused {
        let _lock = Lock::acquire(
            &envs.join(".lock"),
            Duration::from_secs(args.lock_timeout),
            "another mkenv on this store",
        )?;
        fsx::remove_leftovers(&envs_dir, &[".tmp-", ".trash-"]);
        if let Ok(store) = envs_dir.open_dir(".store") {
            fsx::remove_leftovers(&store, &[".tmp-", ".trash-"]);
        }
        // Another mkenv may have built it while we waited: the work is done once.
        reused = complete();
        if !reused {
            stats = build(&args, &envs_dir, &key, &wh, reqs.as_ref(), &interp)?;
        }
    }
    // Built or reused just now: gc and prune leave it alone for their grace period, so the
    // deploy that asked for it can link it. An env this user may not touch is still usable.
    if let Err(e) = envs_dir.touch(&key) {
        eprintln!("mkenv: warning: {e:#} (gc and prune will not see it as in use)");
    }
    let section = Env {
        path: doc_path(final_path)?,
        key,
        reused,
        python: EnvPython {
            version: interp.version.clone(),
            implementation: interp.implementation.clone(),
            tag: interp.tag(),
            executable: Some(doc_path(&interp.base_executable)?),
            extra: Default::default(),
        },
        wheels: stats.0,
        files: stats.1,
        compiled: !args.no_compile,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        extra: Default::default(),
    };
    doc.set("env", &section)?;
    doc.write_stdout()
}

/// What `env.key` hashes, in this field order (a struct's, whatever serde_json's features).
#[derive(Serialize)]
struct KeyForm<'a> {
    layout: &'a str,
    wheels: Vec<(String, String, String)>,
    #[allow(clippy::type_complexity)]
    python: (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a (String, String),
        &'a str,
        bool,
    ),
    tags: String,
    compile: bool,
}

/// `ENVS/<key>/.wheelship-env.json`: what the env was built from (gc reads its wheels).
#[derive(Serialize, Deserialize, Default)]
struct EnvMeta {
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
    let python = (
        i.implementation.as_str(),
        i.version.as_str(),
        i.cache_tag.as_str(),
        i.abiflags.as_str(),
        i.soabi.as_str(),
        i.platform.as_str(),
        i.machine.as_str(),
        &i.libc,
        i.base_executable.as_str(),
        i.gil_disabled,
    );
    let form = KeyForm {
        layout: LAYOUT,
        wheels,
        python,
        tags: wheelship::names::sha256_hex(i.tags.join("\n").as_bytes()),
        compile,
    };
    let text = serde_json::to_string(&form).expect("the key's form serialises");
    wheelship::names::sha256_hex(text.as_bytes())[..32].to_string()
}

/// Every value of the lock is checked where it enters: the sha256 names a store entry and the
/// file a path in the wheel directory, so neither may be anything but what it says.
fn check_lock(wh: &Wheelhouse) -> Result<()> {
    for (i, w) in wh.wheels.iter().enumerate() {
        let at = |why: String| anyhow!("stdin: `wheelhouse.wheels[{i}]`: {why}");
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

fn build(
    args: &Args,
    envs: &Dir,
    key: &str,
    wh: &Wheelhouse,
    reqs: Option<&Requirements>,
    interp: &Interp,
) -> Result<(usize, usize)> {
    let started = Instant::now();
    let store = envs.create_dir_all(".store")?;
    check_tags(args, wh, interp)?;
    // Each wheel checked against the lock's sha256 and verified into the store (once per
    // wheel, shared by every env), on every core; the bytecode of each stored wheel is
    // compiled by the target python as soon as the wheel is stored.
    let marker = format!("compiled.{}", interp.cache_tag);
    let compiled = |w: &wheelship::doc::LockedWheel| {
        store
            .kind(Path::new(&w.sha256).join(&marker))
            .ok()
            .flatten()
            .is_some()
    };
    let needs_compile = !args.no_compile && !wh.wheels.iter().all(compiled);
    let mut compiler = if needs_compile {
        Some(Compiler::spawn(&args.python)?)
    } else {
        None
    };
    let bar = progress::bar("mkenv", "storing wheels", wh.wheels.len() as u64);
    let stored = store_all(&store, wh, &marker, compiler.as_mut(), &bar);
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
        let done = c.finish();
        spin.finish_and_clear();
        done?;
        for (w, _) in &stored {
            if !compiled(w) {
                store.create_file(Path::new(&w.sha256).join(&marker), 0o644)?;
            }
        }
    }
    timing("compile", &started);
    point("mkenv-after-compile");
    // The env, under a temp name, then renamed into place when whole.
    let tmp = fsx::Staged::new(envs, ".tmp-")?;
    let files = link_env(
        args,
        interp,
        envs.show(key),
        tmp.open()?,
        key,
        wh,
        reqs,
        &store,
        &stored,
    )?;
    timing("env", &started);
    point("mkenv-before-rename");
    tmp.commit(key)?;
    envs.sync()?;
    Ok((wh.wheels.len(), files))
}

/// The envs `keep` names and those a release under one of `releases` links as its `venv`.
fn linked_envs(envs: &Path, keep: &[String], releases: &[PathBuf]) -> Result<BTreeSet<String>> {
    let mut kept: BTreeSet<String> = keep.iter().cloned().collect();
    for r in releases {
        for e in fs::read_dir(r)
            .map_err(|e| anyhow!("cannot list `{}`: {}", r.display(), io_reason(&e)))?
            .flatten()
        {
            if let Ok(target) = fs::read_link(e.path().join("venv")) {
                let abs = e.path().join(target);
                let real = fs::canonicalize(&abs).unwrap_or(abs);
                if real.parent() == Some(envs) {
                    kept.insert(
                        real.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .to_string(),
                    );
                }
            }
        }
    }
    Ok(kept)
}

/// Links every stored wheel into the env being built in `dir` (whose final path is `path`),
/// writes what it was built from, and makes it durable: the number of files installed.
#[allow(clippy::too_many_arguments)]
fn link_env(
    args: &Args,
    interp: &Interp,
    path: PathBuf,
    dir: Dir,
    key: &str,
    wh: &Wheelhouse,
    reqs: Option<&Requirements>,
    store: &Dir,
    stored: &[(&wheelship::doc::LockedWheel, wheel::Info)],
) -> Result<usize> {
    let mut b = install::Build::new(interp, path, dir);
    b.compile = !args.no_compile;
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
        .map(|(w, _)| store.open_dir(Path::new(&w.sha256).join("files")))
        .collect::<Result<_>>()?;
    let sources: Vec<plan::Source> = stored
        .iter()
        .zip(&files)
        .map(|((w, info), files)| plan::Source {
            files,
            info,
            file_name: &w.file,
            requested: requested.contains(&w.name),
        })
        .collect();
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan = plan::Plan::new(&b, &sources, threads)?;
    timing("plan", &started);
    for warning in &plan.warnings {
        eprintln!("mkenv: warning: {warning}");
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
        .map_err(|e| {
            anyhow!(
                "cannot write `{}`: {}",
                root.show(".wheelship-env.json").display(),
                io_reason(&e)
            )
        })?;
    // Nothing gets its final name before its bytes are durable.
    root.sync_fs()?;
    timing("sync", &started);
    Ok(plan.files)
}

/// Every wheel's tags against the interpreter, before any work.
fn check_tags(args: &Args, wh: &Wheelhouse, interp: &Interp) -> Result<()> {
    let supported: HashSet<&str> = interp.tags.iter().map(String::as_str).collect();
    for w in &wh.wheels {
        let fname = WheelFilename::parse(&w.file).map_err(|e| anyhow!("the lock names {e}"))?;
        if !fname.tags().iter().any(|t| supported.contains(t.as_str())) {
            return Err(Hint::new(
                format!(
                    "cannot install `{}`: it is not compatible with `{}` (Python {}, {}); its tags: {}",
                    w.file,
                    args.python,
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

/// `WHEELSHIP_TIMING=1`: the time of each phase on stderr, for benchmarks.
fn timing(phase: &str, since: &Instant) {
    if std::env::var_os("WHEELSHIP_TIMING").is_some() {
        eprintln!(
            "mkenv: timing: {phase} done at {:.3}s",
            since.elapsed().as_secs_f64()
        );
    }
}

/// Compiles the `.py` paths it is sent (NUL-separated on stdin, as they arrive) on every core,
/// with the unchecked-hash invalidation mode: a `.pyc` linked into many envs stays valid
/// whatever the mtimes, and envs are immutable.
const COMPILE: &str = r#"import compileall, os, py_compile, sys
from concurrent.futures import ProcessPoolExecutor
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
def many(paths):
    for p in paths:
        compileall.compile_file(p, quiet=2, force=True, invalidation_mode=mode)
def batches():
    buf, batch = b"", []
    while True:
        chunk = sys.stdin.buffer.read1(65536)
        if not chunk:
            break
        *items, buf = (buf + chunk).split(b"\0")
        for it in items:
            if it:
                batch.append(os.fsdecode(it))
            if len(batch) >= 24:
                yield batch
                batch = []
    if buf:
        batch.append(os.fsdecode(buf))
    if batch:
        yield batch
with ProcessPoolExecutor(os.cpu_count() or 1) as ex:
    for f in [ex.submit(many, b) for b in batches()]:
        f.result()
"#;

struct Compiler {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    exe: PathBuf,
}

impl Compiler {
    fn spawn(python: &str) -> Result<Compiler> {
        let exe = wheelship::python::resolve(python)?;
        let mut child = Command::new(&exe)
            .args(["-I", "-c", COMPILE])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{}` to compile bytecode", exe.display()))?;
        let stdin = child.stdin.take();
        Ok(Compiler { child, stdin, exe })
    }

    fn send(&mut self, paths: &[PathBuf]) -> Result<()> {
        let mut input = Vec::new();
        for f in paths {
            input.extend_from_slice(f.as_os_str().as_encoded_bytes());
            input.push(0);
        }
        let Some(s) = self.stdin.as_mut() else {
            return Ok(());
        };
        if let Err(e) = s.write_all(&input) {
            // The compiler died: its own words say why (a broken pipe here is its failure,
            // never a reason to end quietly).
            drop(self.stdin.take());
            let mut said = String::new();
            if let Some(mut err) = self.child.stderr.take() {
                use std::io::Read;
                let _ = err.read_to_string(&mut said);
            }
            let status = self
                .child
                .wait()
                .map_or_else(|_| "unknown status".into(), |s| s.to_string());
            let why = match said.trim() {
                "" => io_reason(&e),
                s => s.to_string(),
            };
            bail!(
                "compiling bytecode failed: `{}` stopped ({status}): {why}",
                self.exe.display()
            );
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let out = self.child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "compiling bytecode failed: `{}` stopped ({}): {}",
                self.exe.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn kill(mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `.py` files of a stored wheel that go to site-packages (absolute: the compiler is
/// another process).
fn site_py_files(entry: &Path, info: &wheel::Info) -> Vec<PathBuf> {
    let data = format!("{}/", info.data_dir);
    info.files
        .iter()
        .map(|(m, _, _)| m)
        .filter(|m| m.ends_with(".py"))
        .filter(|m| {
            !m.starts_with(&data)
                || m.starts_with(&format!("{data}purelib/"))
                || m.starts_with(&format!("{data}platlib/"))
        })
        .map(|m| entry.join("files").join(m))
        .collect()
}

/// Stores every locked wheel on every core, feeding the compiler as each one is ready.
fn store_all<'w>(
    store: &Dir,
    wh: &'w Wheelhouse,
    marker: &str,
    mut compiler: Option<&mut Compiler>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<(&'w wheelship::doc::LockedWheel, wheel::Info)>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    // Two threads per core: a thread waits while its large files go straight to the device
    // (`fsx::write_new`), and the other keeps the core busy meanwhile. At most 16: each holds
    // a wheel and its largest member in memory (up to 256 MiB each).
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get() * 2)
        .min(16)
        .min(wh.wheels.len().max(1));
    let mut results: Vec<Option<wheel::Info>> = vec![None; wh.wheels.len()];
    // Biggest first: a big wheel started last would leave the other threads idle.
    let mut order: Vec<usize> = (0..wh.wheels.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(wh.wheels[i].size));
    let mut stored_bytes = 0u64;
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<wheel::Info>)>();
        for _ in 0..threads {
            let (tx, next, order) = (tx.clone(), &next, &order);
            scope.spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(n) else { break };
                let w = &wh.wheels[i];
                if tx.send((i, store_one(store, wh, w))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for (i, res) in rx {
            let info = match res {
                Ok(info) => info,
                Err(e) => {
                    // Stop the others at the next wheel.
                    next.store(usize::MAX / 2, Ordering::Relaxed);
                    return Err(e);
                }
            };
            let sha = Path::new(&wh.wheels[i].sha256);
            if let Some(c) = compiler.as_deref_mut() {
                if store.kind(sha.join(marker))?.is_none() {
                    c.send(&site_py_files(&store.show(sha), &info))?;
                }
            }
            results[i] = Some(info);
            stored_bytes += wh.wheels[i].size;
            bar.inc(1);
            bar.set_message(progress::bytes(stored_bytes));
        }
        Ok(())
    })?;
    Ok(wh
        .wheels
        .iter()
        .zip(results)
        .map(|(w, i)| (w, i.expect("every wheel was stored")))
        .collect())
}

fn store_one(store: &Dir, wh: &Wheelhouse, w: &wheelship::doc::LockedWheel) -> Result<wheel::Info> {
    let path = Path::new(&wh.dir).join(&w.file);
    // Read once: hashed, then unpacked from memory (a large wheel is hashed, then read again).
    let checked = || -> Result<wheel::WheelData> {
        let data = wheel::WheelData::read(&path)?;
        let (sha, size) = match &data {
            wheel::WheelData::Bytes(b) => (fsx::hex(&sha2::Sha256::digest(b)), b.len() as u64),
            wheel::WheelData::File(_) => fsx::sha256_file(&path)?,
        };
        if sha != w.sha256 || size != w.size {
            bail!(
                "cannot install `{}`: sha256 {sha} ({size} bytes) does not match the lock's {} ({} bytes)",
                path.display(),
                w.sha256,
                w.size
            );
        }
        Ok(data)
    };
    let info = wheel::ensure_stored_with(store, &path, &w.sha256, checked)?;
    if info.name != w.name {
        bail!(
            "cannot install `{}`: it holds `{}`, the lock says `{}`",
            w.file,
            info.name,
            w.name
        );
    }
    Ok(info)
}

/// Removes envs not kept (by key, by a release's venv link, or by being built or reused in the
/// last `grace` seconds: a deploy in flight that has not linked it yet) and stored wheels no
/// remaining env uses. Each goes to a trash name first, then is deleted, through the store's
/// handle.
fn gc(
    args: &Args,
    keep: &[String],
    releases: &[PathBuf],
    grace: u64,
    dry_run: bool,
) -> Result<EnvGc> {
    let envs = fs::canonicalize(&args.envs)
        .map_err(|e| anyhow!("`{}`: {}", args.envs.display(), io_reason(&e)))?;
    let envs_dir = Dir::open(&envs)?;
    let _lock = if dry_run {
        None
    } else {
        Some(Lock::acquire(
            &envs.join(".lock"),
            Duration::from_secs(args.lock_timeout),
            "another mkenv on this store",
        )?)
    };
    let mut kept = linked_envs(&envs, keep, releases)?;
    let mut removed_envs = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    for (name, kind) in envs_dir.entries()? {
        let Some(name) = name.to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || kind != Kind::Dir {
            continue;
        }
        let young = envs_dir.age(&name)?.is_some_and(|age| age < grace);
        if kept.contains(&name) || young {
            if young {
                kept.insert(name.clone());
            }
            let meta = envs_dir
                .read(Path::new(&name).join(".wheelship-env.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<EnvMeta>(&b).ok())
                .unwrap_or_default();
            used.extend(meta.wheels.into_iter().map(|w| w.sha256));
        } else {
            removed_envs.push(name);
        }
    }
    let store = match envs_dir.kind(".store")? {
        Some(Kind::Dir) => Some(envs_dir.open_dir(".store")?),
        _ => None,
    };
    let mut removed_wheels = Vec::new();
    for (name, _) in store
        .as_ref()
        .map(|s| s.entries())
        .transpose()?
        .unwrap_or_default()
    {
        let name = name.to_string_lossy().to_string();
        if !name.starts_with('.') && !used.contains(&name) {
            removed_wheels.push(name);
        }
    }
    removed_envs.sort();
    removed_wheels.sort();
    if !dry_run {
        for n in &removed_envs {
            fsx::trash(&envs_dir, n)?;
        }
        if let Some(store) = &store {
            for n in &removed_wheels {
                fsx::trash(store, n)?;
            }
        }
    }
    Ok(EnvGc {
        envs: doc_path(envs)?,
        kept: kept.into_iter().collect(),
        removed_envs,
        removed_wheels,
        dry_run,
        extra: Default::default(),
    })
}
