//! A real service around a flip: restarted after it, checked, flipped back when the check
//! fails.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;
use testsupport::{git, hermetic_app};

/// A real HTTP server that reads its code once at start (so a missing restart is
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

/// After a failed check flips back, the previous release's check has its own deadline
/// (`--check-back-timeout`, 30 s by default), never longer than `--check-timeout`: a check that
/// never passes costs about twice the deadline the operator gave, not that plus 30 s.
#[test]
fn the_check_after_a_flip_back_is_never_longer_than_the_check() {
    let t = tempfile::tempdir().unwrap();
    let app = t.path().join("app");
    testsupport::committed_app(&app);
    let pack = || {
        testsupport::tool("bundle")
            .cwd(t.path())
            .args(["pack", "--repo", "app", "--out", "dist", "--no-wheels"])
            .ok()
    };
    let unpack = |doc: &Value| {
        testsupport::tool("bundle")
            .cwd(t.path())
            .args(["unpack", "--releases", "srv/releases"])
            .stdin(doc.to_string())
            .ok()
    };
    let v1 = unpack(&pack());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(app.join("app.py"), "print('v2')\n").unwrap();
    git(&app, &["commit", "-qam", "v2"]);
    let v2 = unpack(&pack());
    let switch = |doc: &Value, args: &[&str]| {
        testsupport::tool("switch")
            .cwd(t.path())
            .args(["--root", "srv"])
            .args(args)
            .stdin(doc.to_string())
            .output()
    };
    testsupport::doc_of(&switch(&v1, &[]));
    let started = std::time::Instant::now();
    let out = switch(
        &v2,
        &[
            "--restart",
            "true",
            "--check",
            "false",
            "--check-timeout",
            "2",
        ],
    );
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not pass the check either"), "{err}");
    assert!(
        took < std::time::Duration::from_secs(15),
        "{took:?}: the previous release's check outlived --check-timeout\n{err}"
    );
    assert_eq!(
        current(&t.path().join("srv")),
        v1["release"]["id"].as_str().unwrap()
    );
}
