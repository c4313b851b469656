//! What the workspace's tests share: the real binaries of the workspace, test wheels built by
//! `mkwheel.py` (real zip files, with RECORD and METADATA), locks that name them, git.
//!
//! Every helper panics with the command and its stderr when something it needs fails: a test
//! that uses it fails there, with the reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

/// The repository's top directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// The workspace's binaries, by name.
pub const TOOLS: [&str; 6] = [
    "hashreq",
    "wheelhouse",
    "mkenv",
    "bundle",
    "switch",
    "wheelship-host",
];

/// The directory of the workspace's binaries: the test executable lives in `target/<profile>/deps`.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// A workspace binary (`hashreq`, `wheelhouse`, `mkenv`, `bundle`, `switch`).
pub fn bin(tool: &str) -> PathBuf {
    let p = bin_dir().join(tool);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo test --workspace`",
        p.display()
    );
    p
}

/// A command whose stdin is given text (or nothing).
pub struct Run {
    cmd: Command,
    stdin: Vec<u8>,
    shown: String,
}

/// A workspace binary to run.
pub fn tool(name: &str) -> Run {
    run(bin(name))
}

/// One of the repository's scripts (`scripts/NAME`), with the workspace's binaries
/// (`WHEELSHIP_BIN`).
pub fn script(name: &str) -> Run {
    run(repo().join("scripts").join(name)).env("WHEELSHIP_BIN", bin_dir())
}

/// Any program to run.
pub fn run(program: impl AsRef<std::ffi::OsStr>) -> Run {
    let shown = program.as_ref().to_string_lossy().to_string();
    Run {
        cmd: Command::new(program),
        stdin: Vec::new(),
        shown,
    }
}

impl Run {
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        for a in args {
            self.shown.push(' ');
            self.shown.push_str(&a.as_ref().to_string_lossy());
            self.cmd.arg(a);
        }
        self
    }
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }
    pub fn env(mut self, k: impl AsRef<std::ffi::OsStr>, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        self.cmd.envs(vars.iter().copied());
        self
    }
    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }
    pub fn stdin(mut self, data: impl AsRef<[u8]>) -> Self {
        self.stdin = data.as_ref().to_vec();
        self
    }
    /// Runs it to the end; a closed stdin on the child's side is not an error.
    pub fn output(mut self) -> Output {
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", self.shown));
        let mut pipe = child.stdin.take().expect("piped stdin");
        let data = std::mem::take(&mut self.stdin);
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
        let out = child.wait_with_output().expect("the child's output");
        let _ = writer.join();
        out
    }
    /// Runs it, asserting success: its stdout.
    pub fn ok_text(self) -> String {
        let shown = self.shown.clone();
        let out = self.output();
        assert!(
            out.status.success(),
            "`{shown}` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 stdout")
    }
    /// Runs it, asserting success: its stdout, the document.
    pub fn ok(self) -> Value {
        let shown = self.shown.clone();
        let text = self.ok_text();
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("`{shown}`: stdout is not the document ({e}): {text}"))
    }
}

/// The exit code and stderr of a run that must have failed without writing to stdout.
pub fn fails(out: &Output) -> (i32, String) {
    assert!(!out.status.success(), "expected a failure");
    assert!(
        out.stdout.is_empty(),
        "a failure wrote to stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Builds real wheels in `dir` from a JSON spec (see `mkwheel.py`): their paths.
pub fn mkwheels(dir: &Path, spec: Value) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    run("python3")
        .args([repo().join("tests/support/mkwheel.py"), dir.to_path_buf()])
        .stdin(spec.to_string())
        .ok_text()
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A document whose lock (`wheelhouse`) names `wheels`, all in one directory.
pub fn lock(wheels: &[PathBuf]) -> Value {
    let locked: Vec<Value> = wheels
        .iter()
        .map(|w| {
            let data = std::fs::read(w).unwrap();
            let file = w.file_name().unwrap().to_str().unwrap();
            let name = file.split('-').next().unwrap().to_lowercase().replace('_', "-");
            let version = file.split('-').nth(1).unwrap();
            json!({"name": name, "version": version, "file": file, "sha256": sha256(&data), "size": data.len()})
        })
        .collect();
    json!({"wheelhouse": {"dir": wheels[0].parent().unwrap(), "wheels": locked}})
}

/// `lock`, with requirements that ask for `requested` (the projects installed as requested).
pub fn lock_requesting(wheels: &[PathBuf], requested: &[&str]) -> Value {
    let entries: Vec<Value> = requested
        .iter()
        .map(|n| json!({"name": n, "specifier": "", "extras": [], "marker": null, "hashes": [], "url": null, "file": "/r.txt", "line": 1}))
        .collect();
    let mut doc = lock(wheels);
    doc["requirements"] = json!({"hash": format!("sha256:{}", "0".repeat(64)), "files": ["/r.txt"], "entries": entries});
    doc
}

/// git in `dir`, with a fixed identity; asserts success.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .cwd(dir)
        .ok_text()
}

/// `git init`, add everything and commit in `dir`.
pub fn commit_all(dir: &Path, message: &str) {
    if !dir.join(".git").exists() {
        git(dir, &["init", "-q"]);
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", message]);
}

/// A git repository at `dir` with one committed file, `app.py`.
pub fn committed_app(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("app.py"), "print('v1')\n").unwrap();
    commit_all(dir, "v1");
}

/// The names in `dir`, sorted (none when it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The full path of the `python3` on PATH (the interpreter itself, not a launcher in front of
/// it), found once.
pub fn python3_path() -> &'static str {
    static FOUND: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        run("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .ok_text()
            .trim()
            .to_string()
    })
}

/// Runs `cmd`, asserting success: its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// pip with none of the machine's `PIP_*` settings (PIP_FIND_LINKS …) nor its config files:
/// a reference that depends only on the test.
pub fn clean_pip(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PIP_")) {
        cmd.env_remove(k);
    }
    cmd.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
}

/// The reference env: `python3 -m venv` + `pip install --no-index --find-links WHEELS ARGS`.
pub fn pip_env(reference: &Path, wheels: &Path, args: &[&str], cwd: &Path) -> PathBuf {
    run_ok(clean_pip(
        Command::new("python3").args(["-m", "venv"]).arg(reference),
    ));
    run_ok(clean_pip(
        Command::new(reference.join("bin/python"))
            .args(["-m", "pip", "install", "-q", "--no-index", "--find-links"])
            .arg(wheels)
            .args(args)
            .current_dir(cwd),
    ));
    reference.to_path_buf()
}

/// `lib/pythonX.Y/site-packages` of the `python3` on PATH.
pub fn site_packages() -> String {
    let xy = run_ok(Command::new("python3").args([
        "-c",
        "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
    ]));
    format!("lib/python{}/site-packages", xy.trim())
}

/// Files under `dir`, relative, skipping what pip and mkenv legitimately differ on.
pub fn tree(dir: &Path) -> std::collections::BTreeSet<String> {
    fn walk(base: &Path, d: &Path, out: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let name = e.file_name().to_string_lossy().to_string();
            if name == "__pycache__"
                || ["RECORD", "INSTALLER", "REQUESTED", "direct_url.json"].contains(&name.as_str())
            {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts that the env `ours` holds what pip put in `reference`: the same files with the same
/// bytes in site-packages (pip's own tools aside), the same distributions as `pip list` sees
/// them, and that `pip check` finds it consistent.
pub fn assert_same_env(ours: &Path, reference: &Path) {
    let site = site_packages();
    let pips_own = [
        "pip",
        "setuptools",
        "_distutils_hack",
        "distutils-precedence",
        "pkg_resources",
    ];
    let mine = tree(&ours.join(&site));
    let theirs: std::collections::BTreeSet<String> = tree(&reference.join(&site))
        .into_iter()
        .filter(|p| !pips_own.iter().any(|s| p.starts_with(s)))
        .collect();
    assert_eq!(mine, theirs);
    for f in &mine {
        assert_eq!(
            std::fs::read(ours.join(&site).join(f)).unwrap(),
            std::fs::read(reference.join(&site).join(f)).unwrap(),
            "{f}"
        );
    }
    let list = |py: &Path| -> Vec<(String, String)> {
        let out = run_ok(clean_pip(
            Command::new("python3")
                .args(["-m", "pip", "--python"])
                .arg(py)
                .args(["list", "--format=json"]),
        ));
        let mut v: Vec<(String, String)> = serde_json::from_str::<Vec<Value>>(&out)
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_lowercase(),
                    p["version"].as_str().unwrap().to_string(),
                )
            })
            .filter(|(n, _)| n != "pip" && n != "setuptools")
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        list(&ours.join("bin/python")),
        list(&reference.join("bin/python"))
    );
    run_ok(clean_pip(
        Command::new("python3")
            .args(["-m", "pip", "--python"])
            .arg(ours.join("bin/python"))
            .arg("check"),
    ));
}

/// Asserts that pypi.org answers on 443: an `online_*` test runs only where the network is
/// promised (`WHEELSHIP_ONLINE=1`), so an unreachable PyPI fails it rather than skipping it.
pub fn assert_pypi_reachable() {
    use std::net::ToSocketAddrs;
    let reachable = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(5)).is_ok()
        });
    assert!(
        reachable,
        "pypi.org:443 cannot be reached (WHEELSHIP_ONLINE=1 says it can)"
    );
}

/// `name==version` of every wheel a `wheelhouse` section locks.
pub fn pinned(section: &Value) -> Vec<String> {
    section["wheels"]
        .as_array()
        .expect("a lock's wheels")
        .iter()
        .map(|w| {
            format!(
                "{}=={}",
                w["name"].as_str().unwrap(),
                w["version"].as_str().unwrap()
            )
        })
        .collect()
}

/// Writes `dir/requirements.txt` and runs `hashreq` on it in `dir`: the document.
pub fn hashreq_doc(dir: &Path, requirements: &str) -> String {
    std::fs::write(dir.join("requirements.txt"), requirements).unwrap();
    tool("hashreq").cwd(dir).ok_text()
}

/// The document a run printed, asserting that it succeeded.
pub fn doc_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The stderr of a run that must have exited with `code` and written nothing to stdout.
pub fn failed_with(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "a failure wrote to stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// A hermetic app: its own git repository and a wheelhouse of test wheels.
pub fn hermetic_app(dir: &Path) -> (PathBuf, PathBuf) {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("requirements.txt"), "greeter==1.0\n").unwrap();
    std::fs::write(
        app.join("app.py"),
        "import greeter\nprint(greeter.hello('v1'))\n",
    )
    .unwrap();
    commit_all(&app, "v1");
    let wh = dir.join("wheelhouse");
    std::fs::create_dir_all(&wh).unwrap();
    // Some bulk that compresses badly, as a real wheel's members do: the wheels outweigh the
    // code, as they do in a real release (thin copies are worth sending then).
    let mut x: u32 = 2463534242;
    let bulk: String = (0..60_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let spec = json!([
        {"name": "greeter", "version": "1.0", "requires": ["colors>=1"],
         "files": {"greeter/__init__.py": "from colors import paint\ndef hello(x):\n    return paint('hello ' + x)\n",
                   "greeter/bulk.txt": bulk}},
        {"name": "colors", "version": "1.0", "files": {"colors/__init__.py": "def paint(s):\n    return '*' + s + '*'\n"}},
    ]);
    mkwheels(&wh, spec);
    (app, wh)
}

/// A test's own directory, removed when the test ends: the one fixture the tests share. A
/// file's own helpers take it (`fn release(t: &Fixture, …)`); commands run in it by default.
pub struct Fixture {
    tmp: tempfile::TempDir,
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture::new()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            tmp: tempfile::tempdir().expect("a temporary directory"),
        }
    }
    /// Its path.
    pub fn p(&self) -> &Path {
        self.tmp.path()
    }
    /// `rel` in it.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(rel)
    }
    /// A workspace binary, run in it.
    pub fn tool(&self, name: &str) -> Run {
        tool(name).cwd(self.p())
    }
    /// A script of `scripts/`, run in it.
    pub fn script(&self, name: &str) -> Run {
        script(name).cwd(self.p())
    }
}
