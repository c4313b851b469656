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
mod wheel;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use wheelship::cli::io_reason;
use wheelship::doc::{Requirements, Wheelhouse};
use wheelship::fsx::{self, point, Lock};
use wheelship::names::WheelFilename;
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
        dry_run,
    }) = &args.command
    {
        let section = gc(&args, keep, releases, *dry_run)?;
        doc.set("mkenv_gc", &section)?;
        return doc.write_stdout();
    }
    let started = Instant::now();
    let wh: Wheelhouse = doc.section("wheelhouse")?.ok_or_else(|| {
        UsageError("no `wheelhouse` section (the lock): run `hashreq | wheelhouse --offline | mkenv`, or `mkenv < release.json`".into())
    })?;
    let reqs: Option<Requirements> = doc.section("requirements")?;
    let interp = Interp::probe(&args.python)?;
    let key = env_key(&wh, &interp, !args.no_compile);
    fs::create_dir_all(&args.envs)
        .map_err(|e| anyhow!("cannot create `{}`: {}", args.envs.display(), io_reason(&e)))?;
    let envs = fs::canonicalize(&args.envs)?;
    let final_path = envs.join(&key);

    let mut reused = final_path.join("pyvenv.cfg").is_file();
    let mut stats = (wh.wheels.len(), 0usize);
    if !reused {
        let _lock = Lock::acquire(
            &envs.join(".lock"),
            Duration::from_secs(args.lock_timeout),
            "another mkenv on this store",
        )?;
        clean_leftovers(&envs);
        // Another mkenv may have built it while we waited: the work is done once.
        reused = final_path.join("pyvenv.cfg").is_file();
        if !reused {
            stats = build(&args, &envs, &final_path, &key, &wh, reqs.as_ref(), &interp)?;
        }
    }
    let section = json!({
        "path": final_path,
        "key": key,
        "reused": reused,
        "python": {"version": interp.version, "implementation": interp.implementation, "tag": interp.tag(),
                    "executable": interp.base_executable},
        "wheels": stats.0,
        "files": stats.1,
        "compiled": !args.no_compile,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    doc.set("env", &section)?;
    doc.write_stdout()
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
    let form = json!({
        "layout": LAYOUT,
        "wheels": wheels,
        "python": [i.implementation, i.version, i.cache_tag, i.abiflags, i.soabi, i.platform, i.machine, i.libc, i.base_executable, i.gil_disabled],
        "tags": wheelship::names::sha256_hex(i.tags.join("\n").as_bytes()),
        "compile": compile,
    });
    wheelship::names::sha256_hex(form.to_string().as_bytes())[..32].to_string()
}

/// What a crash left: temp envs and temp store entries. Called with the lock held.
fn clean_leftovers(envs: &Path) {
    for d in [envs.to_path_buf(), envs.join(".store")] {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with(".tmp-") || n.starts_with(".trash-") {
                    let _ = fs::remove_dir_all(e.path());
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    args: &Args,
    envs: &Path,
    final_path: &Path,
    key: &str,
    wh: &Wheelhouse,
    reqs: Option<&Requirements>,
    interp: &Interp,
) -> Result<(usize, usize)> {
    let store = envs.join(".store");
    fs::create_dir_all(&store)?;
    // 1. Every wheel: its sha256 against the lock, its tags against the interpreter, then
    //    verified into the store (once per wheel, shared by every env).
    let supported: HashSet<&str> = interp.tags.iter().map(String::as_str).collect();
    let mut stored = Vec::new();
    for w in &wh.wheels {
        let path = Path::new(&wh.dir).join(&w.file);
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
        let entry = store.join(&w.sha256);
        if !entry.join("info.json").is_file() {
            let (sha, size) = fsx::sha256_file(&path)?;
            if sha != w.sha256 || size != w.size {
                bail!(
                    "cannot install `{}`: sha256 {sha} ({size} bytes) does not match the lock's {} ({} bytes)",
                    path.display(),
                    w.sha256,
                    w.size
                );
            }
        }
        let info = wheel::ensure_stored(&store, &path, &w.sha256)?;
        if info.name != w.name {
            bail!(
                "cannot install `{}`: it holds `{}`, the lock says `{}`",
                w.file,
                info.name,
                w.name
            );
        }
        stored.push((w, info));
    }
    point("mkenv-after-store");
    // 2. Bytecode, once per stored wheel and interpreter, in parallel in the target python.
    if !args.no_compile {
        compile(
            args,
            &store,
            &stored
                .iter()
                .map(|(w, i)| (w.sha256.as_str(), i))
                .collect::<Vec<_>>(),
            interp,
        )?;
    }
    point("mkenv-after-compile");
    // 3. The env, under a temp name, then renamed into place when whole.
    let tmp = envs.join(fsx::temp_name(".tmp-"));
    let res = (|| -> Result<usize> {
        fs::create_dir(&tmp)?;
        let mut b = install::Build::new(interp, final_path.to_path_buf(), tmp.clone());
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
        for (w, info) in &stored {
            b.install(
                &store.join(&w.sha256).join("files"),
                info,
                &w.file,
                requested.contains(&w.name),
            )?;
            point("mkenv-after-wheel");
        }
        for warning in &b.warnings {
            eprintln!("mkenv: warning: {warning}");
        }
        let meta = json!({
            "key": key,
            "layout": LAYOUT,
            "python": interp,
            "wheels": wh.wheels,
        });
        fs::write(
            tmp.join(".wheelship-env.json"),
            serde_json::to_vec_pretty(&meta)?,
        )?;
        // CPython caches directory listings by mtime: a fresh mtime on site-packages.
        let d = fs::File::open(&tmp)?;
        rustix::fs::syncfs(&d).map_err(|e| anyhow!("cannot sync `{}`: {e}", tmp.display()))?;
        Ok(b.files)
    })();
    let files = match res {
        Ok(f) => f,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    point("mkenv-before-rename");
    fs::rename(&tmp, final_path).map_err(|e| {
        anyhow!(
            "cannot rename into `{}`: {}",
            final_path.display(),
            io_reason(&e)
        )
    })?;
    fsx::fsync_dir(envs)?;
    Ok((wh.wheels.len(), files))
}

const COMPILE: &str = r#"import compileall, os, py_compile, sys
files = [f for f in sys.stdin.read().split("\0") if f]
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
def one(path):
    compileall.compile_file(path, quiet=2, force=True, invalidation_mode=mode)
workers = min(os.cpu_count() or 1, max(1, len(files) // 100))
if workers > 1:
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(one, files, chunksize=32))
else:
    for f in files:
        one(f)
"#;

/// Compiles the `.py` files that go to site-packages of every stored wheel not yet compiled
/// for this interpreter, with the unchecked-hash invalidation mode: a `.pyc` linked into many
/// envs stays valid whatever the mtimes, and envs are immutable.
fn compile(
    args: &Args,
    store: &Path,
    stored: &[(&str, &wheel::Info)],
    interp: &Interp,
) -> Result<()> {
    let marker = format!("compiled.{}", interp.cache_tag);
    let mut files = Vec::new();
    let mut todo = Vec::new();
    for (sha, info) in stored {
        let entry = store.join(sha);
        if entry.join(&marker).exists() {
            continue;
        }
        todo.push(entry.clone());
        for (member, _, _) in &info.files {
            let goes_to_site = !member.starts_with(&format!("{}/", info.data_dir))
                || member.starts_with(&format!("{}/purelib/", info.data_dir))
                || member.starts_with(&format!("{}/platlib/", info.data_dir));
            if goes_to_site && member.ends_with(".py") {
                files.push(entry.join("files").join(member));
            }
        }
    }
    if !files.is_empty() {
        let exe = wheelship::python::resolve(&args.python)?;
        let mut child = Command::new(&exe)
            .args(["-I", "-c", COMPILE])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{}` to compile bytecode", exe.display()))?;
        let mut input = Vec::new();
        for f in &files {
            input.extend_from_slice(f.as_os_str().as_encoded_bytes());
            input.push(0);
        }
        child.stdin.take().unwrap().write_all(&input)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "compiling bytecode failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    for entry in todo {
        fs::write(entry.join(&marker), b"")?;
    }
    Ok(())
}

/// Removes envs not kept (by key or by a release's venv link) and stored wheels no remaining
/// env uses. Each goes to a trash name first, then is deleted.
fn gc(args: &Args, keep: &[String], releases: &[PathBuf], dry_run: bool) -> Result<Value> {
    let envs = fs::canonicalize(&args.envs)
        .map_err(|e| anyhow!("`{}`: {}", args.envs.display(), io_reason(&e)))?;
    let _lock = if dry_run {
        None
    } else {
        Some(Lock::acquire(
            &envs.join(".lock"),
            Duration::from_secs(args.lock_timeout),
            "another mkenv on this store",
        )?)
    };
    let mut kept: BTreeSet<String> = keep.iter().cloned().collect();
    for r in releases {
        for e in fs::read_dir(r)
            .map_err(|e| anyhow!("`{}`: {}", r.display(), io_reason(&e)))?
            .flatten()
        {
            if let Ok(target) = fs::read_link(e.path().join("venv")) {
                let abs = e.path().join(target);
                let real = fs::canonicalize(&abs).unwrap_or(abs);
                if real.parent() == Some(&envs) {
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
    let mut removed_envs = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    for e in fs::read_dir(&envs)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !e.path().is_dir() {
            continue;
        }
        if kept.contains(&name) {
            if let Ok(text) = fs::read_to_string(e.path().join(".wheelship-env.json")) {
                let meta: Value = serde_json::from_str(&text).unwrap_or_default();
                for w in meta["wheels"].as_array().into_iter().flatten() {
                    if let Some(s) = w["sha256"].as_str() {
                        used.insert(s.to_string());
                    }
                }
            }
        } else {
            removed_envs.push(name);
        }
    }
    let mut removed_wheels = Vec::new();
    if let Ok(rd) = fs::read_dir(envs.join(".store")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') && !used.contains(&name) {
                removed_wheels.push(name);
            }
        }
    }
    removed_envs.sort();
    removed_wheels.sort();
    if !dry_run {
        for n in &removed_envs {
            trash(&envs, &envs.join(n))?;
        }
        for n in &removed_wheels {
            trash(&envs.join(".store"), &envs.join(".store").join(n))?;
        }
    }
    Ok(
        json!({"envs": envs, "kept": kept, "removed_envs": removed_envs, "removed_wheels": removed_wheels, "dry_run": dry_run}),
    )
}

fn trash(parent: &Path, p: &Path) -> Result<()> {
    let t = parent.join(fsx::temp_name(".trash-"));
    fs::rename(p, &t).map_err(|e| anyhow!("cannot remove `{}`: {}", p.display(), io_reason(&e)))?;
    fs::remove_dir_all(&t)
        .map_err(|e| anyhow!("cannot remove `{}`: {}", t.display(), io_reason(&e)))
}
