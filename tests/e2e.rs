//! End to end: scripts/release, scripts/deploy, scripts/rollback with the real binaries of the
//! workspace (target/debug), on a local root and over real ssh.
//!
//! The ssh tests need the host named by `WHEELSHIP_SSH_HOST` (`.ci/run` starts an sshd on
//! 127.0.0.1 with throwaway keys and names it `wheelship-test` in ~/.ssh/config); the example
//! app's tests need PyPI for its wheels (`WHEELSHIP_ONLINE=1`). Without them the tests are
//! ignored, and counted so in cargo's summary.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use testsupport::{git, hermetic_app, python3_path, repo};

/// The workspace's binaries, next to this test's own directory.
fn bin_dir() -> PathBuf {
    for tool in ["hashreq", "wheelhouse", "mkenv", "bundle", "switch"] {
        testsupport::bin(tool);
    }
    testsupport::bin_dir()
}

fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    testsupport::script(name).args(args).envs(env).output()
}

fn ok(name: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = script(name, args, env);
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: stdout is not the document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `scripts/release --offline` of the hermetic app of `dir` (`dir/app`, `dir/wheelhouse`,
/// out to `dir/dist`) with `extra` flags: the document.
fn release_offline(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let (app, wh, dist) = (dir.join("app"), dir.join("wheelhouse"), dir.join("dist"));
    let mut args = vec![
        "--offline",
        "--wheelhouse",
        wh.to_str().unwrap(),
        "--out",
        dist.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(app.to_str().unwrap());
    ok("release", &args, env)
}

/// `release_offline`, with the document saved as `dir/<name>.json` for `deploy`.
fn release_saved(dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> (Value, PathBuf) {
    let doc = release_offline(dir, extra, env);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, doc.to_string()).unwrap();
    (doc, file)
}

/// A deploy with no route to any index: the shipped wheels are all it may use.
const NO_INDEX: (&str, &str) = ("PIP_INDEX_URL", "http://127.0.0.1:9/simple");

fn current(root: &Path) -> String {
    std::fs::read_link(root.join("current"))
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn release_deploy_rollback_locally() {
    let t = tempfile::tempdir().unwrap();
    let (app, _) = hermetic_app(t.path());
    let cache = t.path().join("cache").display().to_string();
    let env = [("WHEELSHIP_CACHE", cache.as_str()), NO_INDEX];
    let (v1, v1_file) = release_saved(t.path(), "v1", &[], &env);
    let root = t.path().join("srv");
    let check = "venv/bin/python app.py | grep -q hello";
    let d1 = ok(
        "deploy",
        &[
            v1_file.to_str().unwrap(),
            root.to_str().unwrap(),
            "--check",
            check,
        ],
        &env,
    );
    assert_eq!(d1["switch"]["current"], v1["bundle"]["id"]);
    assert_eq!(d1["env"]["reused"], false);
    let run_app = || {
        let out = Command::new(root.join("current/venv/bin/python"))
            .arg("app.py")
            .current_dir(root.join("current"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run_app(), "*hello v1*\n");

    // v2: code only. The env is reused.
    std::fs::write(
        app.join("app.py"),
        "import greeter\nprint(greeter.hello('v2'))\n",
    )
    .unwrap();
    git(&app, &["commit", "-qam", "v2"]);
    let (_, v2_file) = release_saved(t.path(), "v2", &[], &env);
    let d2 = ok(
        "deploy",
        &[
            v2_file.to_str().unwrap(),
            root.to_str().unwrap(),
            "--check",
            check,
            "--keep",
            "5",
        ],
        &env,
    );
    assert_eq!(d2["env"]["reused"], true);
    assert_eq!(d2["env"]["key"], d1["env"]["key"]);
    assert_eq!(run_app(), "*hello v2*\n");

    // The same release again: the release and the env are reused.
    let again = ok(
        "deploy",
        &[v2_file.to_str().unwrap(), root.to_str().unwrap()],
        &env,
    );
    assert_eq!(again["env"]["reused"], true);
    assert_eq!(again["release"]["dir"], d2["release"]["dir"]);

    // Rollback, then a failing health check that rolls back by itself.
    let r = ok("rollback", &[root.to_str().unwrap()], &env);
    assert_eq!(r["switch"]["current"], v1["bundle"]["id"]);
    assert_eq!(run_app(), "*hello v1*\n");
    let out = script(
        "deploy",
        &[
            v2_file.to_str().unwrap(),
            root.to_str().unwrap(),
            "--check",
            "echo unhealthy; false",
            "--check-timeout",
            "1",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unhealthy")
            && err.contains("marked bad")
            && err.contains("deploy: step 'switch' failed"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(current(&root), v1["bundle"]["id"].as_str().unwrap());
    // A bare archive deploys too.
    let archive = v1["bundle"]["path"].as_str().unwrap();
    let d = ok("deploy", &[archive, root.to_str().unwrap()], &env);
    assert_eq!(d["switch"]["current"], v1["bundle"]["id"]);
}

#[test]
fn scripts_help_and_usage() {
    for s in ["release", "deploy", "rollback", "demo", "install"] {
        let out = script(s, &["--help"], &[]);
        assert!(out.status.success(), "{s} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("Usage: "),
            "{s}"
        );
        let out = script(s, &["--bogus"], &[]);
        assert_eq!(out.status.code(), Some(2), "{s} --bogus");
        assert!(out.stdout.is_empty());
    }
    let out = script("deploy", &["/nonexistent.json", "/tmp/x"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "deploy: '/nonexistent.json' does not exist\n"
    );
}

fn ssh_host(test: &str) -> Option<String> {
    let host = std::env::var("WHEELSHIP_SSH_HOST").ok();
    let reachable = host.as_ref().is_some_and(|h| {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", h, "true"])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        reachable,
        "{test}: no ssh host (WHEELSHIP_SSH_HOST={host:?}); .ci/run starts one"
    );
    host
}

/// The example app (Flask, from PyPI) over real ssh: two releases, a rollback, a failing
/// health check that rolls back by itself, a second deploy of the same release that reuses the
/// env and the release, and deploys with no route to any index.
#[test]
#[cfg_attr(
    any(wheelship_no_ssh, wheelship_offline),
    ignore = "needs WHEELSHIP_SSH_HOST (the test sshd) and WHEELSHIP_ONLINE=1 (.ci/run sets both)"
)]
fn online_example_over_ssh() {
    let Some(host) = ssh_host("online_example_over_ssh") else {
        return;
    };
    // The example's wheels come from PyPI.
    testsupport::assert_pypi_reachable();
    let t = tempfile::tempdir().unwrap();
    let app = t.path().join("app");
    let cp = Command::new("cp")
        .arg("-R")
        .arg(repo().join("examples/app"))
        .arg(&app)
        .status()
        .unwrap();
    assert!(cp.success());
    testsupport::commit_all(&app, "v1");
    let cache = t.path().join("cache");
    let wh = t.path().join("wheelhouse");
    let dist = t.path().join("dist");
    let base = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let v1 = ok(
        "release",
        &[
            "--wheelhouse",
            wh.to_str().unwrap(),
            "--out",
            dist.to_str().unwrap(),
            app.to_str().unwrap(),
        ],
        &base,
    );
    assert!(v1["wheelhouse"]["wheels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["name"] == "flask"));
    let v1_file = t.path().join("v1.json");
    std::fs::write(&v1_file, v1.to_string()).unwrap();

    // The remote root; the host is this machine, so the same Python serves.
    let root = t.path().join("srv");
    let target = format!("{host}:{}", root.display());
    let python = python3_path();
    // No route to any index during the deploys: the shipped wheels are all it needs.
    let env = [
        ("WHEELSHIP_CACHE", cache.to_str().unwrap()),
        NO_INDEX,
        ("PIP_NO_INDEX", "1"),
    ];
    let check = "venv/bin/python -c 'from app import app; assert app.test_client().get(\"/\").status_code == 200'";
    let d1 = ok(
        "deploy",
        &[
            v1_file.to_str().unwrap(),
            &target,
            "--python",
            python,
            "--check",
            check,
            // The service flags reach switch on the host (issue 13): --before runs with the
            // release's env, --restart after the flip.
            "--before",
            "venv/bin/python -c 'import flask' && touch before-ran",
            "--restart",
            "touch \"$WHEELSHIP_ROOT/restarted-$WHEELSHIP_RELEASE\"",
            "--check-timeout",
            "30",
        ],
        &env,
    );
    assert_eq!(d1["switch"]["current"], v1["bundle"]["id"]);
    let v1_id = v1["bundle"]["id"].as_str().unwrap();
    assert!(root
        .join("releases")
        .join(v1_id)
        .join("before-ran")
        .is_file());
    assert!(root.join(format!("restarted-{v1_id}")).is_file());
    assert!(
        root.join("bin/switch").is_file(),
        "the binaries were copied to the host"
    );
    let page = |root: &Path| {
        let out = Command::new(root.join("current/venv/bin/python"))
            .args(["-c", "from app import app; print(app.test_client().get('/').get_data(as_text=True).strip())"])
            .current_dir(root.join("current"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(page(&root).starts_with("hello from"), "{}", page(&root));

    std::fs::write(
        app.join("app.py"),
        std::fs::read_to_string(app.join("app.py"))
            .unwrap()
            .replace("hello from", "greetings from"),
    )
    .unwrap();
    git(&app, &["commit", "-qam", "v2"]);
    let (_, v2_file) = release_saved(t.path(), "v2", &[], &base);
    let d2 = ok(
        "deploy",
        &[
            v2_file.to_str().unwrap(),
            &target,
            "--python",
            python,
            "--check",
            check,
            "--keep",
            "3",
        ],
        &env,
    );
    assert_eq!(d2["env"]["reused"], true, "same lock, same env");
    assert!(page(&root).starts_with("greetings from"));
    let again = ok(
        "deploy",
        &[v2_file.to_str().unwrap(), &target, "--python", python],
        &env,
    );
    assert_eq!(again["env"]["reused"], true);
    assert_eq!(again["release"]["dir"], d2["release"]["dir"]);

    let r = ok("rollback", &[&target], &env);
    assert_eq!(r["switch"]["current"], v1["bundle"]["id"]);
    assert!(page(&root).starts_with("hello from"));

    let out = script(
        "deploy",
        &[
            v2_file.to_str().unwrap(),
            &target,
            "--python",
            python,
            "--check",
            "exit 3",
            "--check-timeout",
            "1",
        ],
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        current(&root),
        v1["bundle"]["id"].as_str().unwrap(),
        "the failed check rolled back"
    );
}

/// Issue 11, finding 7: among 8 concurrent `deploy --keep 1`, another deploy's prune removed
/// a release this one had just reused, and `mkenv gc` removed envs no release linked yet.
/// Now every deploy succeeds, five rounds in a row, with gc racing them.
#[test]
fn eight_concurrent_deploys_with_keep_1_all_succeed() {
    let t = tempfile::tempdir().unwrap();
    let (app, _) = hermetic_app(t.path());
    let cache = t.path().join("cache").display().to_string();
    let env = [("WHEELSHIP_CACHE", cache.as_str()), NO_INDEX];
    // Four releases over two locks (two env keys).
    let mut docs = Vec::new();
    for (i, reqs) in [
        "greeter==1.0\n",
        "colors==1.0\n",
        "greeter==1.0\n",
        "colors==1.0\n",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(app.join("requirements.txt"), reqs).unwrap();
        std::fs::write(app.join("app.py"), format!("print({i})\n")).unwrap();
        git(&app, &["commit", "-qam", &format!("v{i}")]);
        let doc = release_offline(t.path(), &[], &env);
        let f = t.path().join(format!("v{i}.json"));
        std::fs::write(&f, doc.to_string()).unwrap();
        docs.push(f);
    }
    let root = t.path().join("srv");
    let root_s = root.to_str().unwrap().to_string();
    for round in 0..5 {
        let failures: Vec<String> = std::thread::scope(|s| {
            let deploys: Vec<_> = (0..8)
                .map(|i| {
                    let (doc, root_s) = (&docs[(i + round) % 4], &root_s);
                    s.spawn(move || {
                        let out = script(
                            "deploy",
                            &[doc.to_str().unwrap(), root_s, "--keep", "1"],
                            &env,
                        );
                        (!out.status.success())
                            .then(|| String::from_utf8_lossy(&out.stderr).to_string())
                    })
                })
                .collect();
            let gc = s.spawn(|| {
                for _ in 0..3 {
                    // gc may find no envs/ yet in the first round; it must never break a deploy.
                    let _ = Command::new(bin_dir().join("mkenv"))
                        .args(["--envs", &format!("{root_s}/envs"), "gc", "--releases"])
                        .arg(root.join("releases"))
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                }
            });
            gc.join().unwrap();
            deploys
                .into_iter()
                .filter_map(|d| d.join().unwrap())
                .collect()
        });
        assert!(failures.is_empty(), "round {round}: {failures:#?}");
        let live = root.join("current/venv/bin/python");
        let out = Command::new(&live)
            .arg("app.py")
            .current_dir(root.join("current"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: the live release does not run"
        );
    }
}

/// Issue 12, item 12: under `WHEELSHIP_REQUIRE_ALL=1` (CI) no test may have been compiled as
/// ignored for a missing prerequisite: each one runs, and fails if its prerequisite is absent.
#[test]
fn with_require_all_nothing_is_ignored() {
    let ignored: Vec<&str> = [
        (
            cfg!(wheelship_no_pip26),
            "built without WHEELSHIP_PIP_PYTHON",
        ),
        (cfg!(wheelship_no_ssh), "built without WHEELSHIP_SSH_HOST"),
        (cfg!(wheelship_offline), "built without WHEELSHIP_ONLINE=1"),
        (cfg!(wheelship_not_root), "built as another user than root"),
        (
            cfg!(wheelship_no_minisign),
            "built without the minisign tool",
        ),
    ]
    .into_iter()
    .filter_map(|(on, why)| on.then_some(why))
    .collect();
    if std::env::var_os("WHEELSHIP_REQUIRE_ALL").is_some_and(|v| v == "1") {
        assert!(ignored.is_empty(), "{ignored:?}");
    }
}

/// Issue 12, items 8 and 9: a failed step is the last word (no `switch: nothing to activate`
/// after mkenv's error), and release checks the repository before the slow work.
#[test]
fn a_failed_step_is_the_last_word() {
    let t = tempfile::tempdir().unwrap();
    let plain = t.path().join("not-a-repo");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("requirements.txt"), "greeter==1.0\n").unwrap();
    let out = script("release", &["--offline", plain.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(
        err,
        format!(
            "release: '{}' is not a git repository: a release is cut from a commit (git init, git commit)\n",
            plain.display()
        )
    );

    hermetic_app(t.path());
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let v1 = release_offline(t.path(), &[], &env);
    let f = t.path().join("v1.json");
    std::fs::write(&f, v1.to_string()).unwrap();
    let root = t.path().join("srv");
    let out = script(
        "deploy",
        &[
            f.to_str().unwrap(),
            root.to_str().unwrap(),
            "--python",
            "python9",
        ],
        &env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.contains("mkenv: "), "{err}");
    assert!(!err.contains("switch:"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("deploy: step 'mkenv' failed on "), "{err}");
    assert!(!root.join("current").exists());
}

/// Issue 12, item 14: on a terminal deploy prints a summary, not a multi-KB JSON line (the
/// document goes to a pipe or a file); examples/Makefile without the tools on PATH stops
/// before making anything; doc comments cite specs by URL, not files outside the repository.
#[test]
fn small_ones() {
    let t = tempfile::tempdir().unwrap();
    let (app, _) = hermetic_app(t.path());
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let v1 = release_offline(t.path(), &[], &env);
    let f = t.path().join("v1.json");
    std::fs::write(&f, v1.to_string()).unwrap();
    let cmd = format!(
        "{} {} {} 2>/dev/null",
        repo().join("scripts/deploy").display(),
        f.display(),
        t.path().join("srv").display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("WHEELSHIP_BIN", bin_dir())
        .env("WHEELSHIP_CACHE", &cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains(&format!("live: {}", v1["bundle"]["id"].as_str().unwrap())),
        "{screen}"
    );
    assert!(
        !screen.contains("{\""),
        "a JSON document on the terminal: {screen}"
    );

    let mk = t.path().join("mk");
    std::fs::create_dir_all(&mk).unwrap();
    let out = Command::new("make")
        .args(["-f", repo().join("examples/Makefile").to_str().unwrap()])
        .arg(format!("APP={}", app.display()))
        .current_dir(&mk)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hashreq is not on PATH"));
    assert_eq!(
        std::fs::read_dir(&mk).unwrap().count(),
        0,
        "make left files"
    );

    let mut cited = Vec::new();
    for crate_dir in [
        "wheelship",
        "hashreq",
        "wheelhouse",
        "mkenv",
        "bundle",
        "switch",
        "tests",
    ] {
        let mut stack = vec![repo().join(crate_dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() && !p.ends_with("target") {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (n, l) in text.lines().enumerate() {
                        let marker = ["REFERENCE", "DESIGN"].map(|w| format!("{w}.md"));
                        if l.trim_start().starts_with("//")
                            && marker.iter().any(|m| l.contains(m.as_str()))
                        {
                            cited.push(format!("{}:{}", p.display(), n + 1));
                        }
                    }
                }
            }
        }
    }
    assert!(
        cited.is_empty(),
        "comments citing files outside the repository: {cited:?}"
    );
}

/// Issue 13: a real HTTP server that reads its code once at start (so a missing restart is
/// caught), restarted by `--restart`, checked by `--check` with a deadline.
#[test]
fn a_real_service_is_restarted_and_checked() {
    let t = tempfile::tempdir().unwrap();
    let (app, _) = hermetic_app(t.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        app.join("server.py"),
        r#"import http.server, os, sys, time
VERSION = open("VERSION").read().strip()
BROKEN = os.path.exists("BROKEN")
time.sleep(float(open("DELAY").read()) if os.path.exists("DELAY") else 0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code, body = (500, b"broken") if BROKEN and self.path == "/health" else (200, VERSION.encode())
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#,
    )
    .unwrap();
    let run = t.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    // What systemd would do: stop the old process, start the new one from ROOT/current.
    let restart = t.path().join("restart.sh");
    std::fs::write(
        &restart,
        format!(
            "pid=$(cat {run}/pid 2>/dev/null) && kill $pid 2>/dev/null && while kill -0 $pid 2>/dev/null; do sleep 0.05; done\n\
             cd \"$WHEELSHIP_ROOT/current\" && nohup venv/bin/python server.py {port} >{run}/log 2>&1 &\n\
             echo $! > {run}/pid\n",
            run = run.display()
        ),
    )
    .unwrap();
    let restart_cmd = format!("sh {}", restart.display());
    let check = format!(
        "python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=2)\""
    );
    let served = || {
        let out = Command::new("python3")
            .args([
                "-c",
                &format!("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=5).read().decode())"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let root = t.path().join("srv");
    let release = |version: &str, extra: &[(&str, &str)]| -> PathBuf {
        std::fs::write(app.join("VERSION"), version).unwrap();
        for f in ["BROKEN", "DELAY"] {
            let _ = std::fs::remove_file(app.join(f));
        }
        for (f, text) in extra {
            std::fs::write(app.join(f), text).unwrap();
        }
        git(&app, &["add", "-A"]);
        git(&app, &["commit", "-qm", version]);
        let doc = release_offline(t.path(), &[], &env);
        let f = t.path().join(format!("{version}.json"));
        std::fs::write(&f, doc.to_string()).unwrap();
        f
    };
    let deploy = |doc: &Path, extra: &[&str]| {
        let mut args = vec![
            doc.to_str().unwrap(),
            root.to_str().unwrap(),
            "--restart",
            &restart_cmd,
            "--check",
            &check,
            "--check-timeout",
            "20",
        ];
        args.extend_from_slice(extra);
        script("deploy", &args, &env)
    };
    let id = |doc: &Path| {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(doc).unwrap()).unwrap();
        v["bundle"]["id"].as_str().unwrap().to_string()
    };
    let stop = || {
        if let Ok(pid) = std::fs::read_to_string(run.join("pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    };

    let v1 = release("v1", &[]);
    let v2 = release("v2", &[]);
    let v3 = release("v3", &[("BROKEN", "")]);
    let v4 = release("v4-slow", &[("DELAY", "3")]);
    let v5 = release("v5", &[]);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(deploy(&v1, &[]).status.success());
        assert_eq!(served(), "v1");
        assert!(deploy(&v2, &[]).status.success());
        assert_eq!(served(), "v2", "the restart put the new release in service");
        // A broken v3: its check fails, switch flips back and restarts v2.
        let out = deploy(&v3, &["--check-timeout", "2"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("did not pass within 2s"), "{err}");
        assert!(
            err.contains(&format!("restarted on `{}`", id(&v2))),
            "{err}"
        );
        assert_eq!(served(), "v2");
        assert_eq!(current(&root), id(&v2));
        // Revert (restart and check too): v1 serves.
        let r = ok(
            "rollback",
            &[
                root.to_str().unwrap(),
                "--restart",
                &restart_cmd,
                "--check",
                &check,
            ],
            &env,
        );
        assert_eq!(r["switch"]["current"], id(&v1));
        assert_eq!(served(), "v1");
        // A service that comes up after 3 s passes within its deadline.
        assert!(deploy(&v4, &[]).status.success());
        assert_eq!(served(), "v4-slow");
        // --before fails: nothing flips, v5 is marked bad, v4 still serves.
        let out = deploy(&v5, &["--before", "echo migrating; exit 4"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("migrating") && err.contains("nothing flipped"),
            "{err}"
        );
        assert_eq!(current(&root), id(&v4));
        assert_eq!(served(), "v4-slow");
        // kill -9 between the flip and the restart: `current` is v2, the old process (v4)
        // still serves, and `.restart-pending` says a restart is owed; the next run with
        // --restart restarts first.
        let out = script(
            "deploy",
            &[
                v2.to_str().unwrap(),
                root.to_str().unwrap(),
                "--restart",
                &restart_cmd,
            ],
            &[("WHEELSHIP_FAILPOINT", "switch-before-restart"), env[0]],
        );
        assert!(!out.status.success());
        assert_eq!(current(&root), id(&v2));
        assert_eq!(served(), "v4-slow");
        assert!(root.join(".restart-pending").exists());
        let out = Command::new(bin_dir().join("switch"))
            .args([
                "--root",
                root.to_str().unwrap(),
                "--release",
                &id(&v2),
                "--restart",
                &restart_cmd,
                "--check",
                &check,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("restarting on"), "{err}");
        assert_eq!(served(), "v2");
        assert!(!root.join(".restart-pending").exists());
    }));
    stop();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Issue 27: `release --level N` packs at that zstd level (a fleet that ships thin copies
/// pays the level again on every host that rebuilds the archive); what is not a level is a
/// usage error before any work.
#[test]
fn release_takes_a_zstd_level() {
    let t = tempfile::tempdir().unwrap();
    hermetic_app(t.path());
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let doc = release_offline(t.path(), &["--level", "3"], &env);
    assert_eq!(doc["bundle"]["level"], 3, "{doc}");
    let out = script(
        "release",
        &["--level", "23", t.path().join("app").to_str().unwrap()],
        &env,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--level needs a zstd level (1-22), not '23'"),
        "{err}"
    );
}

/// Issue 18: a release signed on the build box (`release --sign`, a key from `bundle keygen`)
/// deploys over ssh to a host that trusts its key; a host that trusts another key refuses it
/// and nothing changes there.
#[test]
#[cfg_attr(
    wheelship_no_ssh,
    ignore = "needs WHEELSHIP_SSH_HOST (the test sshd; .ci/run starts one)"
)]
fn a_signed_release_deploys_over_ssh_with_trust() {
    let host = ssh_host("a_signed_release_deploys_over_ssh_with_trust").unwrap();
    let t = tempfile::tempdir().unwrap();
    hermetic_app(t.path());
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let keygen = |name: &str| -> (String, String) {
        let keys = t.path().join("keys");
        let v = testsupport::tool("bundle")
            .args(["keygen", "--unencrypted", "--name", name, "--dir"])
            .args([&keys])
            .ok();
        (
            v["keygen"]["public"].as_str().unwrap().to_string(),
            v["keygen"]["secret"].as_str().unwrap().to_string(),
        )
    };
    let (public, secret) = keygen("build");
    let (other_public, _) = keygen("other");
    let doc = release_offline(t.path(), &["--sign", &secret], &env);
    assert!(doc["bundle"]["signature"]
        .as_str()
        .unwrap()
        .ends_with(".minisig"));
    let f = t.path().join("v1.json");
    std::fs::write(&f, doc.to_string()).unwrap();
    let root = t.path().join("srv");
    let target = format!("{host}:{}", root.display());
    // A host that trusts another key: refused before anything is extracted.
    let out = script(
        "deploy",
        &[f.to_str().unwrap(), &target, "--trust", &other_public],
        &env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("which is not trusted here"), "{err}");
    let extracted: Vec<_> = std::fs::read_dir(root.join("releases"))
        .map(|r| {
            r.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .into_iter()
        .collect();
    assert!(extracted.iter().all(|n| *n == 0), "{extracted:?}");
    assert!(!root.join("current").exists());
    // The build box's key: live.
    let d = ok(
        "deploy",
        &[f.to_str().unwrap(), &target, "--trust", &public],
        &env,
    );
    assert_eq!(d["switch"]["current"], doc["bundle"]["id"]);
    assert_eq!(d["bundle"]["verified_by"], doc["bundle"]["key_id"]);
    // Issue 30, finding 6: the binaries went stripped (117 MB of this debug build: 20 MB).
    let shipped: u64 = ["bundle", "mkenv", "switch"]
        .iter()
        .map(|b| std::fs::metadata(root.join("bin").join(b)).unwrap().len())
        .sum();
    let built: u64 = ["bundle", "mkenv", "switch"]
        .iter()
        .map(|b| std::fs::metadata(bin_dir().join(b)).unwrap().len())
        .sum();
    assert!(shipped * 3 < built, "{shipped} bytes shipped of {built}");

    // Issue 16: a code-only release goes as a thin copy; the host rebuilds the signed archive
    // byte for byte, and it is verified as the whole one would be.
    let app = t.path().join("app");
    let next = |v: &str| {
        let code = format!("import greeter\nprint(greeter.hello('{v}'))\n");
        std::fs::write(app.join("app.py"), code).unwrap();
        git(&app, &["commit", "-qam", v]);
        release_saved(t.path(), v, &["--sign", &secret], &env)
    };
    let deploy = |f: &Path, extra: &[&str]| {
        let mut args = vec![f.to_str().unwrap(), target.as_str(), "--trust", &public];
        args.extend_from_slice(extra);
        let out = script("deploy", &args, &env);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        (serde_json::from_slice::<Value>(&out.stdout).unwrap(), err)
    };
    let (v2, f2) = next("v2");
    let (d, err) = deploy(&f2, &[]);
    assert!(err.contains("copying a thin copy of"), "{err}");
    assert!(err.contains("the host has 2 of its wheels"), "{err}");
    assert_eq!(d["switch"]["current"], v2["bundle"]["id"]);
    assert_eq!(d["bundle"]["verified_by"], doc["bundle"]["key_id"]);
    // The host's copies of a wheel went bad: it cannot rebuild, says so, and the whole
    // archive goes.
    for r in std::fs::read_dir(root.join("releases")).unwrap() {
        let w = r
            .unwrap()
            .path()
            .join(".wheelship/wheels/colors-1.0-py3-none-any.whl");
        if w.exists() {
            let mut bytes = std::fs::read(&w).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            std::fs::write(&w, bytes).unwrap();
        }
    }
    let (v3, f3) = next("v3");
    let (d, err) = deploy(&f3, &[]);
    assert!(err.contains("this host's copy has sha256"), "{err}");
    assert!(err.contains("sending it whole"), "{err}");
    assert_eq!(d["switch"]["current"], v3["bundle"]["id"]);
    // --full never tries.
    let (v4, f4) = next("v4");
    let (d, err) = deploy(&f4, &["--full"]);
    assert!(!err.contains("thin copy"), "{err}");
    assert_eq!(d["switch"]["current"], v4["bundle"]["id"]);
}

/// ansible-playbook with the collection's documented settings (ansible/ansible.cfg), its ssh
/// connections shared under `masters` (closed by [`SshMasters`] when the test ends).
fn ansible(playbook: &str, inv: &Path, book: &str, tmp: &Path, masters: &Path) -> Command {
    let collections = tmp.join("collections");
    if !collections.exists() {
        install_collection(playbook, &collections);
    }
    let mut c = Command::new(playbook);
    c.arg("-i")
        .arg(inv)
        .arg(format!(
            "wheelship.deploy.{}",
            book.trim_end_matches(".yml")
        ))
        .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
        .env("ANSIBLE_COLLECTIONS_PATH", &collections)
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", masters)
        .env("WHEELSHIP_BIN", bin_dir())
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("ansible-tmp"))
        .env("XDG_CACHE_HOME", tmp.join("cache-home"));
    c
}

/// The collection as a user gets it: `ansible-galaxy collection build` of `ansible/`, then
/// `install` of the tarball into `into`.
fn install_collection(playbook: &str, into: &Path) {
    let galaxy = Path::new(playbook).with_file_name("ansible-galaxy");
    let built = into.with_extension("built");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&galaxy).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ansible-galaxy {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ansible_dir = repo().join("ansible");
    run(&[
        "collection".as_ref(),
        "build".as_ref(),
        ansible_dir.as_os_str(),
        "--output-path".as_ref(),
        built.as_os_str(),
    ]);
    let tarball = built.join(format!(
        "wheelship-deploy-{}.tar.gz",
        galaxy_version(&ansible_dir)
    ));
    run(&[
        "collection".as_ref(),
        "install".as_ref(),
        tarball.as_os_str(),
        "-p".as_ref(),
        into.as_os_str(),
    ]);
}

fn galaxy_version(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("galaxy.yml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap()
        .trim()
        .to_string()
}

/// The ssh connections ansible.cfg's ControlPersist keeps open: closed when the test ends,
/// passed or not.
struct SshMasters(PathBuf);

impl Drop for SshMasters {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", e.path().display()))
                .args(["-O", "exit", "wheelship-master"])
                .stdin(Stdio::null())
                .output();
        }
    }
}

/// Issue 14: the playbooks against three inventory hosts that are the loopback sshd, each with
/// its own root: all live after a deploy; a rerun changes nothing; check mode changes nothing;
/// a failing check on the second host stops the roll (first on the new release, second back
/// on the old, third never touched); rollback of the first returns it.
#[test]
#[cfg_attr(
    any(wheelship_no_ssh, wheelship_no_ansible),
    ignore = "needs WHEELSHIP_SSH_HOST (the test sshd) and WHEELSHIP_ANSIBLE_PLAYBOOK (.ci/run provides both)"
)]
fn a_fleet_rolls_with_ansible() {
    let host = ssh_host("a_fleet_rolls_with_ansible").unwrap();
    let playbook = std::env::var("WHEELSHIP_ANSIBLE_PLAYBOOK")
        .expect("WHEELSHIP_ANSIBLE_PLAYBOOK: ansible-playbook from a venv (.ci/run makes one)");
    let t = tempfile::tempdir().unwrap();
    let (app, _) = hermetic_app(t.path());
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let release = |v: &str| -> (PathBuf, String) {
        std::fs::write(
            app.join("app.py"),
            format!("import greeter\nprint(greeter.hello('fleet {v}'))\n"),
        )
        .unwrap();
        git(&app, &["commit", "-qam", v]);
        let doc = release_offline(t.path(), &[], &env);
        let f = t.path().join(format!("{v}.json"));
        std::fs::write(&f, doc.to_string()).unwrap();
        (f, doc["bundle"]["id"].as_str().unwrap().to_string())
    };
    let (v1, id1) = release("v1");
    let (v2, id2) = release("v2");
    let python = python3_path();
    let roots: Vec<PathBuf> = (1..=3).map(|i| t.path().join(format!("web{i}"))).collect();
    let inventory = t.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[web]\nweb1 wheelship_root={}\nweb2 wheelship_root={} wheelship_check='exit 1'\nweb3 wheelship_root={}\n\
             [web:vars]\nansible_host={host}\nansible_python_interpreter={}\nwheelship_check='venv/bin/python app.py | grep -q hello'\nwheelship_check_timeout=1\n",
            roots[0].display(),
            roots[1].display(),
            roots[2].display(),
            python
        ),
    )
    .unwrap();
    // web2's failing check applies only to the second roll; the first one deploys everywhere.
    let masters = SshMasters(t.path().join("cp"));
    let play = |book: &str, extra: &[&str], inv: &Path| -> (bool, String) {
        let out = ansible(&playbook, inv, book, t.path(), &masters.0)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let changed = |text: &str, h: &str| -> Option<u32> {
        text.lines()
            .find(|l| l.starts_with(h) && l.contains("changed="))
            .and_then(|l| l.split("changed=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let first = t.path().join("first.ini");
    std::fs::write(
        &first,
        std::fs::read_to_string(&inventory)
            .unwrap()
            .replace(" wheelship_check='exit 1'", ""),
    )
    .unwrap();
    let rel = format!("wheelship_release={}", v1.display());
    let (ok1, text) = play("deploy.yml", &["-e", &rel], &first);
    assert!(ok1, "{text}");
    for r in &roots {
        assert_eq!(current(r), id1, "{text}");
    }
    // A rerun: nothing moves, nothing is copied again.
    let (ok2, text) = play("deploy.yml", &["-e", &rel], &first);
    assert!(ok2, "{text}");
    for h in ["web1", "web2", "web3"] {
        assert_eq!(changed(&text, h), Some(0), "{h}: {text}");
    }
    // Check mode (with diff): says what would change, changes nothing.
    let rel2 = format!("wheelship_release={}", v2.display());
    let (ok3, text) = play("deploy.yml", &["-e", &rel2, "--check", "--diff"], &first);
    assert!(ok3, "{text}");
    assert!(text.contains(&format!("+current: {id2}")), "{text}");
    for r in &roots {
        assert_eq!(current(r), id1);
        assert!(!r.join("releases").join(&id2).exists());
    }
    // v2 with web2's check failing: web1 moves, web2 is flipped back, web3 is never flipped.
    // (The archive is small: wheelship_thin_min=0 makes the thin copy anyway.)
    let (ok4, text) = play(
        "deploy.yml",
        &["-e", &rel2, "-e", "wheelship_thin_min=0", "-v"],
        &inventory,
    );
    assert!(!ok4, "{text}");
    // Issue 16: the hosts held v1's wheels, so only a thin copy went (made once, on the
    // controller) and each rebuilt the archive; the binaries, unchanged, did not go again.
    let thin_sent = format!(r#""sent": ["{id2}.tar.zst.thin""#);
    for h in ["web1", "web2", "web3"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("changed: [{h}]")) && l.contains(&thin_sent)),
            "{h}: {text}"
        );
    }
    assert_eq!(current(&roots[0]), id2, "{text}");
    assert_eq!(current(&roots[1]), id1, "{text}");
    // Issue 27: staged everywhere first, flipped in batches: web3 holds v2, never flipped.
    assert_eq!(current(&roots[2]), id1, "{text}");
    assert!(roots[2].join("releases").join(&id2).is_dir(), "{text}");
    // Roll web1 back.
    let (ok5, text) = play("rollback.yml", &["--limit", "web1"], &inventory);
    assert!(ok5, "{text}");
    assert_eq!(current(&roots[0]), id1, "{text}");
    assert_eq!(changed(&text, "web1"), Some(1), "{text}");
    // Issue 27: two deploys at once: one takes the fleet's lock, the other stops before it
    // touches a host and names the holder; every host ends on one release.
    let (v3, id3) = release("v3");
    let (v4, id4) = release("v4");
    let spawn = |doc: &Path| {
        ansible(&playbook, &first, "deploy.yml", t.path(), &masters.0)
            .args(["-e", &format!("wheelship_release={}", doc.display())])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&v3), spawn(&v4));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (winner, loser, lost_id) = match (a.status.success(), b.status.success()) {
        (true, false) => (&id3, &b, &id4),
        (false, true) => (&id4, &a, &id3),
        _ => panic!(
            "one deploy must win and one lose:\n{}\n{}",
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout)
        ),
    };
    let lost = String::from_utf8_lossy(&loser.stdout);
    assert!(
        lost.contains("the fleet is being deployed") && lost.contains("is held by"),
        "{lost}"
    );
    for r in &roots {
        assert_eq!(&current(r), winner);
        assert!(
            !r.join("releases").join(lost_id).exists(),
            "the loser touched {}",
            r.display()
        );
    }
    assert!(
        !roots[0].join(".fleet-lock").exists(),
        "the lock was not given back"
    );
    // A dead controller's lock: named and kept until unlock.yml gives it back.
    std::fs::create_dir(roots[0].join(".fleet-lock")).unwrap();
    std::fs::write(
        roots[0].join(".fleet-lock/holder"),
        "ghost@gone deploying x since 2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    let (v5, id5) = release("v5");
    let rel5 = format!("wheelship_release={}", v5.display());
    let (ok6, text) = play("deploy.yml", &["-e", &rel5], &first);
    assert!(!ok6, "{text}");
    assert!(text.contains("is held by ghost@gone deploying x"), "{text}");
    for r in &roots {
        assert_eq!(&current(r), winner, "{text}");
    }
    let (ok7, text) = play("unlock.yml", &[], &first);
    assert!(ok7, "{text}");
    assert!(!roots[0].join(".fleet-lock").exists(), "{text}");
    // A canary, then the rest: two batches of the flip.
    let canary = r#"{"wheelship_serial": [1, "100%"]}"#;
    let (ok8, text) = play("deploy.yml", &["-e", &rel5, "-e", canary], &first);
    assert!(ok8, "{text}");
    assert_eq!(
        text.matches("PLAY [Flipped in batches]").count(),
        2,
        "{text}"
    );
    for r in &roots {
        assert_eq!(current(r), id5, "{text}");
    }
    // A host whose staging fails (no such interpreter for its env) is not flipped, and is
    // named; the others are.
    let (v6, id6) = release("v6");
    let broken = t.path().join("broken.ini");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&first).unwrap().replacen(
            &format!("web3 wheelship_root={}", roots[2].display()),
            &format!(
                "web3 wheelship_root={} wheelship_python=/nonexistent/python3",
                roots[2].display()
            ),
            1,
        ),
    )
    .unwrap();
    let rel6 = format!("wheelship_release={}", v6.display());
    let (ok9, text) = play("deploy.yml", &["-e", &rel6], &broken);
    assert!(!ok9, "{text}");
    assert!(text.contains("web3 was not flipped"), "{text}");
    assert_eq!(current(&roots[0]), id6, "{text}");
    assert_eq!(current(&roots[1]), id6, "{text}");
    assert_eq!(current(&roots[2]), id5, "{text}");
    assert!(!roots[0].join(".fleet-lock").exists(), "{text}");
}
