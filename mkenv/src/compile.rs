//! Bytecode for the store: the target interpreter compiles each stored wheel's `.py` files
//! into its entry as the wheel is stored, on every core, and says what it wrote (path, size,
//! inode, modification time, sha256), which mkenv records in the entry's marker
//! (`compiled.<cache tag>`, [`crate::stamp::Compiled`]).

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use wheelship::cli::io_reason;
use wheelship::fs::beneath::Dir;

use crate::stamp::{Compiled, Pyc, Stamp};
use wheelship::fs::io::At;

/// Compiles the `.py` paths it is sent (NUL-separated on stdin, as they arrive) on every core,
/// with the unchecked-hash invalidation mode: a `.pyc` linked into many envs stays valid
/// whatever the mtimes, and envs are immutable. Each `.pyc` is made read-only, and one line a
/// `.pyc` (NUL-separated fields) says what was written.
const COMPILE: &str = r#"import compileall, hashlib, importlib.util, marshal, os, py_compile, sys
from concurrent.futures import ProcessPoolExecutor
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
def many(paths):
    out = []
    for p in paths:
        if not compileall.compile_file(p, quiet=2, force=True, invalidation_mode=mode):
            continue
        c = importlib.util.cache_from_source(p)
        try:
            with open(c, "rb") as f:
                data = f.read()
            # CPython writes a .pyc with one write() and ignores a short count (a full disk):
            # a .pyc is named only once its code loads back whole (PEP 552: 16 bytes of header).
            marshal.loads(data[16:])
            os.chmod(c, 0o444)
            digest = hashlib.sha256(data).hexdigest()
            st = os.stat(c)
        except (OSError, EOFError, ValueError, TypeError):
            try:
                os.unlink(c)
            except OSError:
                pass
            out.append("!\0" + c)
            continue
        out.append("\0".join([c, str(st.st_size), str(st.st_ino), str(st.st_mtime_ns), digest]))
    return out
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
        for line in f.result():
            sys.stdout.write(line + "\n")
"#;

/// The compiler, started when the first wheel needs it.
pub struct Compiler {
    python: String,
    running: Option<Running>,
}

struct Running {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    /// What it wrote: a file, not a pipe, so that it never waits on us while we feed it.
    out: std::fs::File,
    exe: PathBuf,
}

impl Compiler {
    pub fn new(python: &str) -> Compiler {
        Compiler {
            python: python.to_string(),
            running: None,
        }
    }

    fn running(&mut self) -> Result<&mut Running> {
        if self.running.is_none() {
            self.running = Some(Running::spawn(&self.python)?);
        }
        Ok(self.running.as_mut().expect("just started"))
    }

    /// Sends `paths` (absolute `.py` files in the store) to be compiled.
    pub fn send(&mut self, paths: &[PathBuf]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        self.running()?.send(paths)
    }

    /// Waits for it to finish; what it compiled, by store entry (`<sha256>` → its `.pyc`s).
    pub fn finish(self, store: &Dir) -> Result<BTreeMap<String, Compiled>> {
        match self.running {
            Some(r) => r.finish(store),
            None => Ok(BTreeMap::new()),
        }
    }

    pub fn kill(self) {
        if let Some(mut r) = self.running {
            drop(r.stdin.take());
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

impl Running {
    fn spawn(python: &str) -> Result<Running> {
        let exe = wheelship::python::probe::resolve(python)?;
        let out = tempfile::tempfile().context("cannot make a temp file for the compiler")?;
        let mut child = Command::new(&exe)
            .args(["-I", "-c", COMPILE])
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run `{}` to compile bytecode", exe.display()))?;
        let stdin = child.stdin.take();
        Ok(Running {
            child,
            stdin,
            out,
            exe,
        })
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

    fn finish(mut self, store: &Dir) -> Result<BTreeMap<String, Compiled>> {
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
        let mut said = String::new();
        self.out.rewind()?;
        self.out
            .read_to_string(&mut said)
            .context("cannot read what the compiler wrote")?;
        parse_compiled(&said, store.path())
    }
}

/// The compiler's lines, by store entry: each `.pyc` path is under `<store>/<sha256>/files/`.
fn parse_compiled(said: &str, store: &Path) -> Result<BTreeMap<String, Compiled>> {
    let mut out: BTreeMap<String, Compiled> = BTreeMap::new();
    for line in said.lines() {
        let bad = || anyhow!("unexpected line from the bytecode compiler: `{line}`");
        let f: Vec<&str> = line.split('\0').collect();
        if let ["!", path] = f.as_slice() {
            let rel = Path::new(path).strip_prefix(store).map_err(|_| bad())?;
            let sha = rel.components().next().ok_or_else(bad)?.as_os_str();
            out.entry(sha.to_string_lossy().to_string())
                .or_default()
                .incomplete = true;
            continue;
        }
        let [path, size, ino, mtime, sha256] = f.as_slice() else {
            return Err(bad());
        };
        let rel = Path::new(path).strip_prefix(store).map_err(|_| bad())?;
        let mut parts = rel.components();
        let sha = parts.next().ok_or_else(bad)?.as_os_str().to_string_lossy();
        let files = parts.next().ok_or_else(bad)?;
        if files.as_os_str() != "files" {
            return Err(bad());
        }
        out.entry(sha.to_string()).or_default().pycs.push(Pyc {
            path: parts.as_path().to_string_lossy().to_string(),
            size: size.parse().map_err(|_| bad())?,
            stamp: Stamp {
                ino: ino.parse().map_err(|_| bad())?,
                mtime: mtime.parse().map_err(|_| bad())?,
            },
            sha256: sha256.to_string(),
        });
    }
    Ok(out)
}

/// Writes an entry's marker: the `.pyc`s compiled into it (read-only, like the rest).
pub fn write_marker(store: &Dir, sha256: &str, marker: &str, compiled: &Compiled) -> Result<()> {
    let path = Path::new(sha256).join(marker);
    let tmp = Path::new(sha256).join(wheelship::fs::temp::temp_name(wheelship::fs::owned::TMP));
    let mut f = store.create_file(&tmp, 0o444)?;
    let written = f
        .write_all(&serde_json::to_vec(compiled)?)
        .at("write", store.show(&tmp))
        .and_then(|()| store.rename(&tmp, store, &path));
    if written.is_err() {
        let _ = store.remove_file(&tmp);
    }
    written
}

/// The `.py` files of a stored wheel that go to site-packages (absolute: the compiler is
/// another process).
pub fn site_py_files(entry: &Path, info: &crate::wheel::Info) -> Vec<PathBuf> {
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
