//! A system Python upgrade under a deployed app: a "system" python3 (CPython 3.11, its own
//! tree) moves to 3.12 and the 3.11 tree goes, as `apt full-upgrade` to a new Debian does.
//! Nothing makes a dead env live, every place that shows envs says which cannot run, and
//! `wheelship-host rebuild` brings the kept releases onto 3.12 from their own locks and wheels,
//! offline; a release locked for 3.11 alone is named and left.
//!
//! The interpreters are pyenv's 3.11 and 3.12 (`.ci/run` requires them); each "system" one is
//! its binary copied beside a link to its library, so that removing it is removing the copy.

// One upgrade, from the first deploy to the last rollback, reads best as one function.
#![allow(clippy::too_many_lines)]

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testsupport::{commit_all, fails, mkwheels, script, tool};

/// The newest pyenv CPython `X.Y.*`.
fn pyenv(minor: &str) -> PathBuf {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".pyenv"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{minor}.")))
        })
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no CPython {minor} under {}/versions (pyenv install {minor})",
            root.display()
        )
    })
}

/// A "system" CPython X.Y at `dir`: its binary copied, its library linked.
fn system_python(minor: &str, dir: &Path) -> PathBuf {
    let from = pyenv(minor);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let exe = dir.join(format!("bin/python{minor}"));
    std::fs::copy(from.join(format!("bin/python{minor}")), &exe).unwrap();
    std::os::unix::fs::symlink(from.join("lib"), dir.join("lib")).unwrap();
    exe
}

/// A host whose `python3` (first on PATH, `DIR/usr/bin/python3`) is a "system" CPython 3.11
/// until [`Host::upgrade`] points it at a 3.12 and removes the 3.11 tree.
struct Host {
    dir: PathBuf,
    path: String,
    cache: String,
}

impl Host {
    fn new(dir: &Path) -> Host {
        let usr = dir.join("usr/bin");
        std::fs::create_dir_all(&usr).unwrap();
        let py311 = system_python("3.11", &dir.join("py311"));
        std::os::unix::fs::symlink(&py311, usr.join("python3")).unwrap();
        Host {
            dir: dir.to_path_buf(),
            path: format!("{}:{}", usr.display(), std::env::var("PATH").unwrap()),
            cache: dir.join("cache").display().to_string(),
        }
    }

    /// What the tools run with on this host: its PATH, a cache of the test's own.
    fn env(&self) -> [(&str, &str); 2] {
        [("PATH", &self.path), ("WHEELSHIP_CACHE", &self.cache)]
    }

    /// The distribution upgrade: `python3` is 3.12, and the 3.11 tree is gone.
    fn upgrade(&self) {
        let py312 = system_python("3.12", &self.dir.join("py312"));
        let link = self.dir.join("usr/bin/python3");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&py312, &link).unwrap();
        std::fs::remove_dir_all(self.dir.join("py311")).unwrap();
    }
}

#[test]
#[cfg_attr(
    wheelship_no_pythons,
    ignore = "needs pyenv's CPython 3.11 and 3.12 (.ci/run requires them)"
)]
fn a_system_python_upgrade_is_survived() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let host = Host::new(p);
    let env = host.env();
    // An app and its wheels (pure Python: they install on either interpreter).
    let wh = p.join("wheelhouse");
    mkwheels(
        &wh,
        json!([
            {"name": "greeter", "version": "1.0", "requires": ["colors>=1"],
             "files": {"greeter/__init__.py": "from colors import paint\nV = 1\n"}},
            {"name": "greeter", "version": "2.0", "requires": ["colors>=1"],
             "files": {"greeter/__init__.py": "from colors import paint\nV = 2\n"}},
            {"name": "colors", "version": "1.0", "files": {"colors/__init__.py": "def paint(s):\n    return s\n"}},
        ]),
    );
    let app = p.join("app");
    std::fs::create_dir_all(&app).unwrap();
    let release = |name: &str, version: &str, targets: &[&str]| -> PathBuf {
        std::fs::write(
            app.join("requirements.txt"),
            format!("greeter=={version}\n"),
        )
        .unwrap();
        std::fs::write(app.join("app.py"), format!("print('{version}')\n")).unwrap();
        commit_all(&app, name);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mut args = vec![
            "--offline".to_string(),
            "--wheelhouse".into(),
            wh.display().to_string(),
            "--out".into(),
            p.join("dist").display().to_string(),
        ];
        for t in targets {
            args.extend(["--target".to_string(), t.to_string()]);
        }
        args.push(app.display().to_string());
        let doc = script("release").args(&args).envs(&env).ok();
        let f = p.join(format!("{name}.json"));
        std::fs::write(&f, doc.to_string()).unwrap();
        f
    };
    // A release locked for 3.11 alone, then two for 3.11 and 3.12 (`--target py3.12`: that
    // Python on this platform, one flag).
    let old = release("old", "1.0", &[]);
    let v1 = release("v1", "2.0", &["native", "py3.12"]);
    std::fs::write(app.join("extra.txt"), "v2\n").unwrap();
    let v2 = release("v2", "2.0", &["native", "py3.12"]);
    let root = p.join("srv");
    let deploy = |doc: &Path| {
        script("deploy")
            .args([doc, root.as_path()])
            .envs(&env)
            .output()
    };
    for d in [&old, &v1, &v2] {
        let out = deploy(d);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let id = |doc: &Path| -> String {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(doc).unwrap()).unwrap();
        v["bundle"]["id"].as_str().unwrap().to_string()
    };
    let runs = |release: &str| -> String {
        let py = root.join("releases").join(release).join("venv/bin/python");
        testsupport::run(&py)
            .args([
                "-c",
                "import sys, greeter; print('%d.%d' % sys.version_info[:2])",
            ])
            .ok_text()
            .trim()
            .to_string()
    };
    assert_eq!(runs(&id(&v2)), "3.11");

    // The upgrade: python3 is 3.12 now, and the 3.11 tree is gone.
    host.upgrade();

    // Every place that shows envs says which cannot run.
    let list = tool("switch")
        .args(["--root", root.to_str().unwrap(), "list", "--json"])
        .envs(&env)
        .ok();
    let releases = list["switch"]["releases"].as_array().unwrap();
    assert_eq!(
        releases.len(),
        3,
        "{list}\n{}",
        std::fs::read_to_string(root.join("history.jsonl")).unwrap()
    );
    for r in releases {
        let why = r["cannot_run"].as_str().unwrap_or_default();
        assert!(why.contains("Python 3.11") && why.contains("gone"), "{r}");
    }
    let gc = tool("mkenv")
        .args(["gc", "--verify", "--envs"])
        .args([root.join("envs")])
        .args(["--releases"])
        .args([root.join("releases")])
        .envs(&env)
        .output();
    assert!(gc.status.success());
    let said = String::from_utf8_lossy(&gc.stderr);
    assert!(
        said.contains("is gone from this host") && said.contains("wheelship-host rebuild"),
        "{said}"
    );
    let gc: Value = serde_json::from_slice(&gc.stdout).unwrap();
    // Two envs: v1 and v2 share one (the same lock).
    assert_eq!(
        gc["mkenv_gc"]["cannot_run"].as_array().map(Vec::len),
        Some(2),
        "{gc}"
    );

    // A revert never makes a dead env live: it names both interpreters.
    let (code, err) = fails(
        &script("rollback")
            .args([root.as_path()])
            .envs(&env)
            .output(),
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("built for Python 3.11"), "{err}");
    assert!(err.contains("Python 3.12"), "{err}");
    assert!(err.contains("wheelship-host rebuild"), "{err}");
    assert_eq!(common::current(&root), id(&v2));

    // A release whose reserved directory is a link (made by hand: unpack never makes one) is
    // not read through it.
    let reserved = root.join("releases").join(id(&old)).join(".wheelship");
    let moved = p.join("moved-wheelship");
    std::fs::rename(&reserved, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &reserved).unwrap();
    // The rebuild: offline, from each release's own lock and wheels, the live one first.
    let out = tool("wheelship-host")
        .args(["rebuild"])
        .args([root.as_path()])
        .envs(&env)
        .env("PIP_NO_INDEX", "1")
        .output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let done = doc["rebuild"]["releases"].as_array().unwrap();
    assert_eq!(done[0]["id"], id(&v2).as_str(), "{doc}");
    assert_eq!(done[0]["live"], true);
    let by = |rel: &str| done.iter().find(|r| r["id"] == rel).unwrap().clone();
    assert_eq!(by(&id(&v2))["rebuilt"], true, "{doc}");
    assert_eq!(by(&id(&v1))["rebuilt"], true, "{doc}");
    assert_eq!(by(&id(&old))["runs_here"], false, "{doc}");
    assert!(
        err.contains(&format!("release `{}` stays on its env", id(&old))),
        "{err}"
    );
    assert!(
        err.contains("is not a directory of the release (a link"),
        "{err}"
    );
    // mkenv --release reads no release through such a link either.
    let (_, err) = fails(
        &tool("mkenv")
            .args(["--envs"])
            .args([root.join("envs")])
            .args(["--release"])
            .args([root.join("releases").join(id(&old))])
            .envs(&env)
            .output(),
    );
    assert!(
        err.contains("is not a directory of the release (a link"),
        "{err}"
    );
    std::fs::remove_file(&reserved).unwrap();
    std::fs::rename(&moved, &reserved).unwrap();
    assert_eq!(runs(&id(&v2)), "3.12");
    assert_eq!(runs(&id(&v1)), "3.12");
    assert_eq!(common::current(&root), id(&v2));
    // mkenv reads a kept release's own document too (`--release`): the env is there.
    let again = tool("mkenv")
        .args(["--envs"])
        .args([root.join("envs")])
        .args(["--release"])
        .args([root.join("releases").join(id(&v1))])
        .envs(&env)
        .ok();
    assert_eq!(again["env"]["reused"], true, "{again}");
    assert_eq!(again["release"]["id"], id(&v1).as_str());
    // The history says so; nothing counts it as a deploy.
    let history = std::fs::read_to_string(root.join("history.jsonl")).unwrap();
    assert_eq!(history.matches("\"rebuild\"").count(), 2, "{history}");
    // A rollback afterwards lands on 3.12 too; the release locked for 3.11 alone is refused,
    // naming 3.12.
    let back = script("rollback").args([root.as_path()]).envs(&env).ok();
    assert_eq!(back["switch"]["current"], id(&v1).as_str());
    let (_, err) = fails(
        &script("rollback")
            .args([root.to_str().unwrap(), "--to", &id(&old)])
            .envs(&env)
            .output(),
    );
    assert!(err.contains("Python 3.12"), "{err}");
    assert_eq!(common::current(&root), id(&v1));
    // Deploying the 3.11-only release anew is refused by mkenv, naming both.
    let (_, err) = fails(&deploy(&old));
    assert!(
        err.contains("lock is for native (Python 3.11")
            && err.contains("not for this interpreter (Python 3.12"),
        "{err}"
    );
    // `switch list` now says nothing of v1 and v2.
    let list = tool("switch")
        .args(["--root", root.to_str().unwrap(), "list", "--json"])
        .envs(&env)
        .ok();
    for r in list["switch"]["releases"].as_array().unwrap() {
        assert_eq!(
            r["cannot_run"].is_null(),
            r["id"] != id(&old).as_str(),
            "{r}"
        );
    }
}

/// The example app (Flask under gunicorn, from PyPI) served with the zero-downtime handover on
/// the "system" 3.11 under constant load; the system moves to 3.12; `wheelship-host rebuild`
/// with the handover's flags hands the service to 3.12 through the same socket: not one
/// request fails, and the master that serves runs 3.12.
#[test]
#[cfg_attr(
    any(wheelship_no_pythons, wheelship_offline),
    ignore = "needs pyenv's CPython 3.11 and 3.12 and PyPI (.ci/run provides both)"
)]
fn online_the_service_moves_to_the_new_interpreter_without_a_failed_request() {
    testsupport::assert_pypi_reachable();
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let host = Host::new(p);
    let env = host.env();
    let app = p.join("app");
    testsupport::run("cp")
        .args(["-R"])
        .args([testsupport::repo().join("examples/app"), app.clone()])
        .ok_text();
    commit_all(&app, "v1");
    let doc = script("release")
        .args([
            "--wheelhouse",
            "wheelhouse",
            "--out",
            "dist",
            "--target",
            "native",
            "--target",
            "py3.12",
            "app",
        ])
        .cwd(p)
        .envs(&env)
        .ok();
    let f = p.join("v1.json");
    std::fs::write(&f, doc.to_string()).unwrap();
    let root = p.join("srv");
    script("deploy")
        .args([f.as_path(), root.as_path()])
        .envs(&env)
        .ok();
    let handover = root.join("bin/handover");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let _stop = common::Stop(root.clone(), Vec::new());
    testsupport::run(&handover)
        .args(["serve", root.to_str().unwrap(), &port])
        .envs(&env)
        .ok_text();
    let flags: Vec<String> = testsupport::run(&handover)
        .args(["flags", root.to_str().unwrap(), &port, "deploy"])
        .ok_text()
        .lines()
        .map(str::to_string)
        .collect();
    let load = Load::start(port.parse().unwrap(), 4);
    std::thread::sleep(std::time::Duration::from_millis(500));

    // The upgrade, under load: python3 is 3.12 and the 3.11 tree is gone.
    host.upgrade();
    let out = tool("wheelship-host")
        .args(["rebuild"])
        .args([root.as_path()])
        .args(&flags)
        .envs(&env)
        .output();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (served, failed) = load.stop();
    eprintln!(
        "{served} requests across the interpreter upgrade, {} failed",
        failed.len()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(served > 50, "{served} requests");
    assert_eq!(failed, Vec::<String>::new(), "of {served} requests");
    // One master serves, and it runs the new interpreter.
    let masters: Vec<String> = std::fs::read_dir(root.join("run/masters"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let r: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            let pid = r["pid"].as_u64()?;
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|x| x.display().to_string())
        })
        .collect();
    assert_eq!(masters.len(), 1, "{masters:?}");
    assert!(masters[0].contains("py312"), "{masters:?}");
}

/// Clients sending GET / on a new connection each, until stopped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

impl Load {
    fn start(port: u16, clients: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut n, mut failed) = (0, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        if let Err(e) = get(port) {
                            failed.push(e);
                        }
                    }
                    (n, failed)
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = (0, Vec::new());
        for t in self.threads {
            let (n, f) = t.join().unwrap();
            all.0 += n;
            all.1.extend(f);
        }
        all
    }
}

/// One GET / that must answer 200.
fn get(port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    if body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(body.lines().next().unwrap_or("no answer").to_string())
    }
}
