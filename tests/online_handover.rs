//! The handover (ROOT/bin/handover) with a real gunicorn serving examples/app: it signals only
//! a master it can prove (a stale or planted record, and a run directory others may write, are
//! refused), it brings the service back to one master running `current` after a killed swap,
//! and its check proves what the workers loaded. Uses PyPI for the app's wheels (once, into a
//! wheel directory of the test's own).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Stop;
use serde_json::Value;
use testsupport::{bin_dir, repo};

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn release(work: &Path, name: &str) -> PathBuf {
    let doc = sh(Command::new(repo().join("scripts/release"))
        .args(["--wheelhouse", "wheelhouse", "--out", "dist", "app"])
        .current_dir(work)
        .env("WHEELSHIP_BIN", bin_dir())
        .env("WHEELSHIP_CACHE", work.join("cache")));
    let path = work.join(format!("{name}.json"));
    std::fs::write(&path, doc).unwrap();
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The masters that recorded themselves and are alive.
fn masters(root: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root.join("run/masters"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let r: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        let pid = r["pid"].as_u64().unwrap() as u32;
        if Path::new(&format!("/proc/{pid}")).exists() {
            out.push(pid);
        }
    }
    out
}

// One scenario, from the first serve to the last handover, reads best as one function.
#[allow(clippy::too_many_lines)]
#[test]
#[cfg_attr(
    wheelship_offline,
    ignore = "uses PyPI: set WHEELSHIP_ONLINE=1 (.ci/run does)"
)]
fn online_the_handover_signals_only_what_it_proves_and_repairs() {
    testsupport::assert_pypi_reachable();
    let t = tempfile::tempdir().unwrap();
    let work = t.path();
    let app = work.join("app");
    sh(Command::new("cp")
        .arg("-R")
        .arg(repo().join("examples/app"))
        .arg(&app));
    testsupport::commit_all(&app, "v1");
    let v1 = release(work, "v1");
    let page = std::fs::read_to_string(app.join("app.py")).unwrap();
    std::fs::write(app.join("app.py"), page.replace("hello from", "v2 from")).unwrap();
    testsupport::commit_all(&app, "v2");
    let v2 = release(work, "v2");
    let root = work.join("srv");
    let deploy = |doc: &Path| {
        sh(Command::new(repo().join("scripts/deploy"))
            .arg(doc)
            .arg(&root)
            .env("WHEELSHIP_BIN", bin_dir())
            .env("WHEELSHIP_CACHE", work.join("cache")))
    };
    deploy(&v1);
    let handover = root.join("bin/handover");
    let port = free_port().to_string();
    let mut stop = Stop(root.clone(), Vec::new());
    sh(Command::new(&handover)
        .args(["serve"])
        .arg(&root)
        .arg(&port));
    let first = masters(&root);
    assert_eq!(first.len(), 1);

    // A stale record (a pid now recycled to another process) and an old-style pid file name
    // a process that is not the master: nothing signals it.
    let mut bystander = Command::new("sleep").arg("600").spawn().unwrap();
    stop.1.push(bystander.id());
    std::fs::write(
        root.join("run/masters/1.json"),
        format!(
            r#"{{"pid": {}, "start": 1, "cmdline": ["sleep", "600"]}}"#,
            bystander.id()
        ),
    )
    .unwrap();
    std::fs::write(root.join("run/master.pid"), bystander.id().to_string()).unwrap();
    let id = |doc: &Path| -> String {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(doc).unwrap()).unwrap();
        v["bundle"]["id"].as_str().unwrap().to_string()
    };
    let check = |release: &str| {
        Command::new(&handover)
            .args(["check"])
            .arg(&root)
            .arg(&port)
            .env("WHEELSHIP_RELEASE", release)
            .output()
            .unwrap()
    };
    let ok = check(&id(&v1));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was signalled"
    );

    // A run directory others may write names nothing the handover signals.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("run"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = check(&id(&v1));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("others may write it"));
    std::fs::set_permissions(root.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();

    // A swap killed between its USR2 and its TERM: two masters serve, the old release's and
    // the new one's. The next handover brings it back to one master running `current`.
    deploy(&v2);
    sh(Command::new("kill").args(["-USR2", &first[0].to_string()]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while masters(&root).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        masters(&root).len(),
        2,
        "the re-executed master recorded itself"
    );
    let healed = check(&id(&v2));
    let said = String::from_utf8_lossy(&healed.stderr);
    assert!(healed.status.success(), "{said}");
    assert!(said.contains("also serves: stopping it"), "{said}");
    let one = masters(&root);
    assert_eq!(one.len(), 1);
    assert!(!first.contains(&one[0]));
    // And the service hands over again (gunicorn no longer ignores USR2: no child is left).
    let back = Command::new(repo().join("scripts/rollback"))
        .arg(&root)
        .args([
            "--restart",
            &format!("{} swap {} {port}", handover.display(), root.display()),
        ])
        .args([
            "--check",
            &format!("{} check {} {port}", handover.display(), root.display()),
        ])
        .env("WHEELSHIP_BIN", bin_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert_eq!(masters(&root).len(), 1);
    let ok = check(&id(&v1));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(bystander.try_wait().unwrap().is_none());
    let _ = bystander.kill();
}

/// The ASGI recipe of examples/zero-downtime: an ASGI app served by gunicorn with uvicorn's
/// workers (`--app`, `--worker-class`), handed over to a new release by the flags
/// `handover flags` prints, with the check proving what the workers loaded.
#[test]
#[cfg_attr(
    wheelship_offline,
    ignore = "uses PyPI: set WHEELSHIP_ONLINE=1 (.ci/run does)"
)]
fn online_an_asgi_app_under_uvicorn_workers_is_handed_over() {
    testsupport::assert_pypi_reachable();
    let t = tempfile::tempdir().unwrap();
    let work = t.path();
    let app = work.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("requirements.txt"),
        "gunicorn==22.0.0\nuvicorn==0.30.6\n",
    )
    .unwrap();
    let code = |v: &str| {
        format!(
            "async def app(scope, receive, send):\n    \
             if scope['type'] != 'http':\n        return\n    \
             await send({{'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]}})\n    \
             await send({{'type': 'http.response.body', 'body': b'{v}'}})\n"
        )
    };
    std::fs::write(app.join("asgi_app.py"), code("v1")).unwrap();
    testsupport::commit_all(&app, "v1");
    let v1 = release(work, "v1");
    std::fs::write(app.join("asgi_app.py"), code("v2")).unwrap();
    testsupport::commit_all(&app, "v2");
    let v2 = release(work, "v2");
    let root = work.join("srv");
    let deploy = |doc: &Path, flags: &[String]| {
        sh(Command::new(repo().join("scripts/deploy"))
            .arg(doc)
            .arg(&root)
            .args(flags)
            .env("WHEELSHIP_BIN", bin_dir())
            .env("WHEELSHIP_CACHE", work.join("cache")))
    };
    deploy(&v1, &[]);
    let handover = root.join("bin/handover");
    let port = free_port().to_string();
    let asgi = [
        "--app",
        "asgi_app:app",
        "--worker-class",
        "uvicorn.workers.UvicornWorker",
    ];
    let _stop = Stop(root.clone(), Vec::new());
    sh(Command::new(&handover)
        .args(["serve"])
        .arg(&root)
        .arg(&port)
        .args(asgi));
    let get = || {
        sh(Command::new("python3").args([
            "-c",
            &format!(
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/health', timeout=10).read().decode())"
            ),
        ]))
        .trim()
        .to_string()
    };
    assert_eq!(get(), "v1");
    let flags: Vec<String> = sh(Command::new(&handover)
        .args(["flags"])
        .arg(&root)
        .arg(&port)
        .arg("deploy")
        .args(asgi))
    .lines()
    .map(str::to_string)
    .collect();
    assert!(
        flags.iter().any(|f| f.contains("UvicornWorker")),
        "{flags:?}"
    );
    let before = masters(&root);
    deploy(&v2, &flags);
    assert_eq!(get(), "v2");
    let after = masters(&root);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the master was handed over");
}
