//! switch, run for real on a temp root per test.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

struct Root {
    _tmp: TempDir,
    dir: PathBuf,
}

impl Root {
    /// A root with releases `ids` unpacked and one complete env per release (`envs/k-<id>`).
    fn new(ids: &[&str]) -> Root {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap().join("srv");
        for id in ids {
            std::fs::create_dir_all(dir.join("releases").join(id)).unwrap();
            std::fs::write(dir.join("releases").join(id).join("app.py"), id).unwrap();
            let env = dir.join("envs").join(format!("k-{id}"));
            std::fs::create_dir_all(&env).unwrap();
            std::fs::write(env.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        }
        std::fs::create_dir_all(dir.join("releases")).unwrap();
        Root { _tmp: tmp, dir }
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_env(args, stdin, &[])
    }

    fn run_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut c = Command::cargo_bin("switch").unwrap();
        c.arg("--root").arg(&self.dir).args(args).write_stdin(stdin);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args, "");
        assert!(
            out.status.success(),
            "switch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["switch"].clone()
    }

    fn deploy(&self, id: &str) -> Value {
        let env = self.dir.join("envs").join(format!("k-{id}"));
        self.ok(&["--release", id, "--env", env.to_str().unwrap()])
    }

    fn current(&self) -> Option<String> {
        std::fs::read_link(self.dir.join("current")).ok().map(|p| {
            p.strip_prefix("releases")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
    }

    fn history(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("history.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn fails(out: &Output) -> (i32, String) {
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout on failure");
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn activate_from_the_document() {
    let r = Root::new(&["r1"]);
    let doc = serde_json::json!({
        "release": {"id": "r1", "dir": r.dir.join("releases/r1")},
        "env": {"path": r.dir.join("envs/k-r1"), "key": "k-r1", "reused": false,
                "python": {"version": "3.11.7", "implementation": "cpython", "tag": "cp311"}},
        "bundle": {"path": "/x.tar.zst", "id": "r1", "sha256": "0".repeat(64), "size": 1, "rev": "abc123"},
        "other": {"kept": true}
    });
    // No --root: it is derived from release.dir.
    let got = testsupport::tool("switch").stdin(doc.to_string()).ok();
    assert_eq!(got["other"], doc["other"]);
    assert_eq!(got["switch"]["root"], r.dir.to_str().unwrap());
    assert_eq!(got["switch"]["current"], "r1");
    assert_eq!(got["switch"]["previous"], Value::Null);
    assert_eq!(
        std::fs::read_link(r.dir.join("current")).unwrap(),
        Path::new("releases/r1")
    );
    assert_eq!(
        std::fs::read_link(r.dir.join("releases/r1/venv")).unwrap(),
        Path::new("../../envs/k-r1")
    );
    let h = r.history();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["action"], "deploy");
    assert_eq!(h[0]["to"], "r1");
    assert_eq!(h[0]["rev"], "abc123");
    assert_eq!(h[0]["env"], "k-r1");
}

#[test]
fn revert_follows_history_not_names() {
    // Deployed in the order b, a, c: by name the one before c would be b; by history it is a.
    let r = Root::new(&["a", "b", "c"]);
    r.deploy("b");
    r.deploy("a");
    r.deploy("c");
    let s = r.ok(&["revert"]);
    assert_eq!(
        (s["current"].as_str(), s["previous"].as_str()),
        (Some("a"), Some("c"))
    );
    assert_eq!(r.current().as_deref(), Some("a"));
    // A second revert undoes the first.
    r.ok(&["revert"]);
    assert_eq!(r.current().as_deref(), Some("c"));
    r.ok(&["revert", "--to", "b"]);
    assert_eq!(r.current().as_deref(), Some("b"));
    let actions: Vec<String> = r
        .history()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["deploy", "deploy", "deploy", "revert", "revert", "revert"]
    );
}

#[test]
fn health_check_rolls_back_and_marks_bad() {
    let r = Root::new(&["good", "broken"]);
    r.deploy("good");
    let env = r.dir.join("envs/k-broken");
    let out = r.run(
        &[
            "--release",
            "broken",
            "--env",
            env.to_str().unwrap(),
            "--check",
            "test \"$WHEELSHIP_RELEASE\" = good || { echo not healthy: $(cat app.py); exit 7; }",
            "--check-timeout",
            "0.5",
            "--check-interval",
            "0.1",
        ],
        "",
    );
    let (code, err) = fails(&out);
    assert_eq!(code, 1);
    // A check with no restart tests the process already serving: said first.
    assert!(
        err.starts_with(
            "switch: warning: --check without --restart tests the process already serving"
        ),
        "{err}"
    );
    assert!(err.contains("\nnot healthy: broken\n"), "{err}");
    assert!(err.contains("switch: health check `"), "{err}");
    // After the flip back the previous release is checked again before the command returns.
    assert!(
        err.contains(
            "rolled back to `good`, `good` passes the check; release `broken` is marked bad"
        ),
        "{err}"
    );
    assert_eq!(r.current().as_deref(), Some("good"));
    let list = r.ok(&["list"]);
    let broken = list["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(broken["bad"], true);
    // A bad release is not a revert target.
    let (code, err) = fails(&r.run(&["revert"], ""));
    assert_eq!(code, 1);
    assert!(err.contains("no release to revert to"), "{err}");
}

#[test]
fn a_bad_release_needs_allow_bad_and_seconds_are_checked() {
    let r = Root::new(&["good", "broken"]);
    r.deploy("good");
    let env = r.dir.join("envs/k-broken");
    let failing = [
        "--release",
        "broken",
        "--env",
        env.to_str().unwrap(),
        "--restart",
        "true",
        "--check",
        "false",
        "--check-timeout",
        "0.2",
    ];
    assert_eq!(fails(&r.run(&failing, "")).0, 1);
    // A release marked bad is not deployed again without --allow-bad, which is said.
    let (code, err) = fails(&r.run(&["--release", "broken"], ""));
    assert_eq!(code, 1);
    assert!(
        err.contains("release `broken` was marked bad at ") && err.contains("--allow-bad"),
        "{err}"
    );
    assert_eq!(r.current().as_deref(), Some("good"));
    let out = r.run(
        &[
            "--release",
            "broken",
            "--allow-bad",
            "--check",
            "true",
            "--restart",
            "true",
        ],
        "",
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("activating it anyway (--allow-bad)"));
    assert_eq!(r.current().as_deref(), Some("broken"));
    // A success clears the mark.
    let list = r.ok(&["list"]);
    let broken = list["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(broken["bad"], false);
    // Seconds that are not seconds are usage errors.
    for bad in ["abc", "-1", "inf", "nan"] {
        let arg = format!("--check-timeout={bad}");
        let (code, err) = fails(&r.run(&["--release", "good", &arg], ""));
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("is not a number of seconds"), "{err}");
    }
}

#[test]
fn list_shape() {
    let r = Root::new(&["r1", "r2", "r3"]);
    r.deploy("r1");
    r.deploy("r2");
    let l = r.ok(&["list"]);
    assert_eq!(l["current"], "r2");
    assert_eq!(l["previous"], "r1");
    let rel = l["releases"].as_array().unwrap();
    let ids: Vec<&str> = rel.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r2", "r1", "r3"]);
    assert_eq!(rel[0]["current"], true);
    assert_eq!(rel[0]["env"], r.dir.join("envs/k-r2").to_str().unwrap());
    assert!(rel[0]["last_activated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rel[2]["last_activated"], Value::Null);
    assert_eq!(rel[2]["bad"], false);
}

#[test]
fn prune_never_removes_current_or_previous() {
    let r = Root::new(&["r1", "r2", "r3", "r4", "r5", "fresh"]);
    for id in ["r1", "r2", "r3", "r4", "r5"] {
        r.deploy(id);
    }
    // Go back to r2: current r2, previous r5; r3 and r4 were live after r2 was, but before.
    r.ok(&["revert", "--to", "r2"]);
    // What deploys left in incoming/: the archives of r1 (as the playbook and as bundle pack
    // name them, with a signature) go with r1; r2's, r11's and anything else stay.
    let incoming = r.dir.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let left_there = ["r2.tar.zst", "app-r11.tar.zst", "r1.tar.zst.bak", "notes"];
    for f in ["r1.tar.zst", "app-r1.tar.zst", "app-r1.tar.zst.minisig"]
        .iter()
        .chain(&left_there)
    {
        std::fs::write(incoming.join(f), "x").unwrap();
    }
    // With the default grace, a release that never went live but was unpacked just now (a
    // deploy in flight) stays, and prune says why it freed less.
    let out = r.run(&["prune", "--keep", "1", "--dry-run"], "");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("kept 1 release(s) younger than the grace of 900s"),
        "{said}"
    );
    let dry = r.ok(&["prune", "--keep", "1", "--grace", "0", "--dry-run"]);
    assert_eq!(
        dry["pruned"]["releases"],
        serde_json::json!(["r4", "r3", "r1", "fresh"])
    );
    assert!(
        r.dir.join("releases/r1").exists(),
        "dry run changed nothing"
    );
    let p = r.ok(&["prune", "--keep", "1", "--grace", "0"]);
    assert_eq!(
        p["pruned"]["releases"],
        serde_json::json!(["r4", "r3", "r1", "fresh"])
    );
    let left: Vec<String> = std::fs::read_dir(r.dir.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        left,
        ["r2", "r5"],
        "current and previous stay; one that never went live goes like the others"
    );
    // Envs only the pruned releases used are gone; the others stay.
    assert!(!r.dir.join("envs/k-r1").exists());
    assert!(r.dir.join("envs/k-r2").exists());
    assert!(r.dir.join("envs/k-r5").exists());
    assert!(
        r.dir.join("envs/k-fresh").exists(),
        "an env no release links is mkenv gc's to judge, not prune's"
    );
    let mut archives: Vec<String> = std::fs::read_dir(&incoming)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    archives.sort_unstable();
    let mut want = left_there.map(String::from).to_vec();
    want.sort_unstable();
    assert_eq!(archives, want, "only the pruned releases' archives go");
    assert_eq!(r.current().as_deref(), Some("r2"));
    assert_eq!(r.ok(&["revert"])["current"], "r5");
}

#[test]
fn shared_paths_are_linked_before_the_flip() {
    let r = Root::new(&["r1", "r2"]);
    std::fs::write(
        r.dir.join("releases/r1/.wheelship-shared"),
        "# outlive releases\nlog/\n",
    )
    .unwrap();
    std::fs::create_dir_all(r.dir.join("releases/r2/log")).unwrap();
    std::fs::write(r.dir.join("releases/r2/log/shipped.txt"), "x").unwrap();
    std::fs::write(r.dir.join("releases/r2/.wheelship-shared"), "log/\n").unwrap();
    std::fs::create_dir_all(r.dir.join("shared/conf")).unwrap();
    std::fs::write(r.dir.join("shared/conf/app.env"), "A=1").unwrap();
    r.deploy("r1");
    std::fs::write(r.dir.join("current/log/app.log"), "first\n").unwrap();
    let env = r.dir.join("envs/k-r2");
    r.ok(&[
        "--release",
        "r2",
        "--env",
        env.to_str().unwrap(),
        "--shared",
        "conf/app.env",
    ]);
    assert_eq!(
        std::fs::read_to_string(r.dir.join("current/log/app.log")).unwrap(),
        "first\n"
    );
    assert_eq!(
        std::fs::read_link(r.dir.join("releases/r2/log")).unwrap(),
        Path::new("../../shared/log")
    );
    assert_eq!(
        std::fs::read_link(r.dir.join("releases/r2/conf/app.env")).unwrap(),
        Path::new("../../../shared/conf/app.env")
    );
    assert_eq!(
        std::fs::read_to_string(r.dir.join("current/conf/app.env")).unwrap(),
        "A=1"
    );
    let (code, err) = fails(&r.run(&["--release", "r1", "--shared", "missing.env"], ""));
    assert_eq!(code, 1);
    assert!(
        err.contains("shared file `") && err.contains("does not exist"),
        "{err}"
    );
    let (_, err) = fails(&r.run(&["--release", "r1", "--shared", "../escape/"], ""));
    assert!(
        err.contains("must be relative, inside the release"),
        "{err}"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let r = Root::new(&["r1", "r2"]);
    r.deploy("r1");
    let before = r.history().len();
    let s = r.ok(&["--release", "r2", "--dry-run"]);
    assert_eq!(s["dry_run"], true);
    assert_eq!(s["would"]["activate"], "r2");
    // A dry run reports what is live, and what would be in `would`.
    assert_eq!(s["current"], "r1");
    let s = r.ok(&["revert", "--to", "r2", "--dry-run"]);
    assert_eq!(s["would"]["revert"], "r2");
    assert_eq!(s["current"], "r1");
    assert_eq!(r.current().as_deref(), Some("r1"));
    assert_eq!(r.history().len(), before);
}

/// `switch --root NEW --init` with nothing to activate failed but still
/// made the root; `list >/dev/full` said only the OS error.
#[test]
fn a_refused_request_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s1");
    let out = Command::cargo_bin("switch")
        .unwrap()
        .args(["--root", root.to_str().unwrap(), "--init"])
        .write_stdin("")
        .output()
        .unwrap();
    let (code, err) = fails(&out);
    assert_eq!(code, 2);
    assert!(err.starts_with("switch: nothing to activate"), "{err}");
    assert!(!root.exists());
    let r = Root::new(&["r1"]);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("switch"))
        .args(["--root", r.dir.to_str().unwrap(), "list"])
        .stdin(std::process::Stdio::null())
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "switch: cannot write the output to stdout: No space left on device\n"
    );
}

#[test]
fn refusals() {
    let r = Root::new(&["r1"]);
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("evil")).unwrap();
    for (args, msg) in [
        (vec!["--release", "../r1"], "No such file or directory"),
        (vec!["--release", ".."], "is not a valid release id"),
        (vec!["revert", "--to", "a/b"], "is not a valid release id"),
        (
            vec!["--release", other.path().join("evil").to_str().unwrap()],
            "refusing a release outside",
        ),
        (vec!["--release", "nope"], "release `nope` not found"),
    ] {
        let (code, err) = fails(&r.run(&args, ""));
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
    // An env that is not complete.
    std::fs::create_dir_all(r.dir.join("envs/half")).unwrap();
    let (_, err) = fails(&r.run(
        &[
            "--release",
            "r1",
            "--env",
            r.dir.join("envs/half").to_str().unwrap(),
        ],
        "",
    ));
    assert!(err.contains("is not complete (no `pyvenv.cfg`)"), "{err}");
    // A `current` that is a real directory.
    std::fs::create_dir_all(r.dir.join("current")).unwrap();
    let (_, err) = fails(&r.run(&["--release", "r1"], ""));
    assert!(
        err.contains("is not a symlink: refusing to replace it"),
        "{err}"
    );
    // A root that does not exist, unless --init.
    let missing = r.dir.join("nowhere");
    let out = Command::cargo_bin("switch")
        .unwrap()
        .args(["--root", missing.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    let (code, err) = fails(&out);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not exist\n\nhint: create it with `switch --init`"),
        "{err}"
    );
    let out = Command::cargo_bin("switch")
        .unwrap()
        .args(["--root", missing.to_str().unwrap(), "--init", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(missing.join("releases").is_dir() && missing.join("shared").is_dir());
}

#[test]
fn usage_and_bad_stdin() {
    let r = Root::new(&["r1"]);
    let (code, err) = fails(&r.run(&["--bogus"], ""));
    assert_eq!(code, 2);
    assert!(
        err.starts_with("switch: unexpected argument '--bogus'"),
        "{err}"
    );
    let (code, _) = fails(&r.run(&[], ""));
    assert_eq!(code, 2, "nothing to activate is a usage error");
    let (code, err) = fails(&r.run(&["list"], "{nope"));
    assert_eq!(code, 1);
    assert!(
        err.starts_with("switch: stdin: not a JSON document"),
        "{err}"
    );
}

#[test]
fn a_reader_never_sees_current_missing_during_1000_flips() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let r = Root::new(&["a", "b"]);
    r.deploy("a");
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads, cur) = (stop.clone(), reads.clone(), r.dir.join("current"));
        std::thread::spawn(move || {
            let mut missing = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match std::fs::read_link(&cur) {
                    Ok(_) => {}
                    Err(_) => missing += 1,
                }
                if std::fs::metadata(cur.join("app.py")).is_err() {
                    missing += 1;
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            missing
        })
    };
    let bin = assert_cmd::cargo::cargo_bin("switch");
    for i in 0..1000 {
        let id = if i % 2 == 0 { "b" } else { "a" };
        let st = std::process::Command::new(&bin)
            .args(["--root", r.dir.to_str().unwrap(), "--release", id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
    }
    stop.store(true, Ordering::Relaxed);
    let missing = reader.join().unwrap();
    assert_eq!(
        missing,
        0,
        "current was missing {missing} times in {} reads",
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 1000);
    assert_eq!(r.history().len(), 1001);
}

#[test]
fn concurrent_switches_serialise() {
    let r = Root::new(&["a", "b", "c"]);
    r.deploy("a");
    let bin = assert_cmd::cargo::cargo_bin("switch");
    let children: Vec<_> = (0..12)
        .map(|i| {
            let id = ["a", "b", "c"][i % 3];
            std::process::Command::new(&bin)
                .args(["--root", r.dir.to_str().unwrap(), "--release", id])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    // Serialised: every event starts where the one before it ended.
    let h = r.history();
    for w in h.windows(2) {
        assert_eq!(w[1]["from"], w[0]["to"], "interleaved: {w:?}");
    }
    assert_eq!(h.last().unwrap()["to"].as_str(), r.current().as_deref());
}

#[test]
fn lock_timeout_is_a_clear_error() {
    let r = Root::new(&["a"]);
    r.deploy("a");
    let f = std::fs::File::open(r.dir.join(".lock")).unwrap();
    f.lock().unwrap();
    let (code, err) = fails(&r.run(&["--release", "a", "--lock-timeout", "0"], ""));
    assert_eq!(code, 1);
    assert!(
        err.contains("another process holds `") && err.contains("gave up after 0s"),
        "{err}"
    );
    drop(f);
    r.ok(&["--release", "a"]);
}

/// kill -9 (an abort, which runs no cleanup) at every step of a deploy, a revert and a prune
/// leaves `current` whole, pointing at the old or the new release, and the next run cleans up
/// and succeeds.
#[test]
fn a_crash_at_any_step_leaves_current_whole() {
    let r = Root::new(&["a"]);
    r.deploy("a");
    let out = r.run_env(&["--release", "a"], "", &[("WHEELSHIP_FAILPOINT", "list")]);
    let points: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("failpoint: ").map(str::to_string))
        .collect();
    assert!(points.len() >= 6, "{points:?}");
    for (n, p) in points.iter().enumerate() {
        let r = Root::new(&["a", "b"]);
        r.deploy("a");
        let env = r.dir.join("envs/k-b");
        let out = r.run_env(
            &["--release", "b", "--env", env.to_str().unwrap()],
            "",
            &[("WHEELSHIP_FAILPOINT", p)],
        );
        assert!(!out.status.success(), "failpoint {p} (#{n}) did not fire");
        assert!(out.stdout.is_empty());
        let cur = r.current().expect("current always exists");
        assert!(cur == "a" || cur == "b", "{p}: {cur}");
        assert!(
            r.dir.join("current/app.py").is_file(),
            "{p}: current is whole"
        );
        // The next run cleans up and succeeds.
        r.deploy("b");
        assert_eq!(r.current().as_deref(), Some("b"));
        let leftovers: Vec<String> = std::fs::read_dir(&r.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{p}: {leftovers:?}");
        r.ok(&["revert"]);
        assert_eq!(r.current().as_deref(), Some("a"), "{p}: history intact");
    }
    // A crash in the middle of a prune leaves whole releases and a trash the next run removes.
    let r = Root::new(&["a", "b", "c", "d"]);
    for id in ["a", "b", "c", "d"] {
        r.deploy(id);
    }
    let out = r.run_env(
        &["prune", "--keep", "1", "--grace", "0"],
        "",
        &[("WHEELSHIP_FAILPOINT", "switch-prune-after-first-trash")],
    );
    assert!(!out.status.success());
    r.ok(&["prune", "--keep", "1", "--grace", "0"]);
    let names: Vec<String> = std::fs::read_dir(r.dir.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".trash-")), "{names:?}");
    assert_eq!(names.len(), 2);
}

/// A directory outside the root that must come through every attack untouched.
fn outside(r: &Root) -> PathBuf {
    let o = r.dir.parent().unwrap().join("outside");
    std::fs::create_dir_all(o.join("some/dir")).unwrap();
    std::fs::write(o.join("some/dir/keep"), "keep").unwrap();
    o
}

fn assert_untouched(o: &Path) {
    assert_eq!(
        std::fs::read_to_string(o.join("some/dir/keep")).unwrap(),
        "keep"
    );
    assert!(!std::fs::symlink_metadata(o.join("some/dir"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// A shared path that passes through a link in the release (`x -> /`)
/// would have made switch delete `/some/dir` and put a link there.
#[test]
fn a_shared_path_never_passes_through_a_link() {
    let r = Root::new(&["r1", "r2"]);
    let o = outside(&r);
    let rel = r.dir.join("releases/r1");
    std::os::unix::fs::symlink(&o, rel.join("x")).unwrap();
    std::os::unix::fs::symlink("../r2", rel.join("sib")).unwrap();
    for listed in ["x/some/dir/", "x/some/file", "sib/app.py"] {
        std::fs::write(rel.join(".wheelship-shared"), format!("{listed}\n")).unwrap();
        // Shared files must exist in ROOT/shared: they do, so only the link can stop this.
        std::fs::create_dir_all(r.dir.join("shared/x/some")).unwrap();
        std::fs::create_dir_all(r.dir.join("shared/sib")).unwrap();
        std::fs::write(r.dir.join("shared/x/some/file"), "").unwrap();
        std::fs::write(r.dir.join("shared/sib/app.py"), "").unwrap();
        let (code, err) = fails(&r.run(&["--release", "r1"], ""));
        assert_eq!(code, 1);
        assert!(err.contains("passes through a symlink"), "{listed}: {err}");
        assert_untouched(&o);
        assert_eq!(
            std::fs::read_to_string(r.dir.join("releases/r2/app.py")).unwrap(),
            "r2"
        );
        assert_eq!(r.current(), None);
    }
}

/// `venv/bin/` as a shared path would have replaced the env's `bin`
/// (shared with the live release) by a link.
#[test]
fn a_shared_path_never_lies_under_venv() {
    let r = Root::new(&["r1"]);
    r.deploy("r1");
    for listed in [
        "venv/bin/",
        "venv",
        "venv/lib/x",
        ".wheelship/document.json",
    ] {
        std::fs::write(
            r.dir.join("releases/r1/.wheelship-shared"),
            format!("{listed}\n"),
        )
        .unwrap();
        let (code, err) = fails(&r.run(&["--release", "r1"], ""));
        assert_eq!(code, 1);
        assert!(
            err.contains(&format!("shared path `{listed}` lies under")),
            "{err}"
        );
        assert!(err.contains(".wheelship-shared:1:"), "{err}");
    }
    assert!(r.dir.join("envs/k-r1/pyvenv.cfg").is_file());
    assert!(!r.dir.join("shared/bin").exists());
}

/// `releases/ID` that is a link to a directory elsewhere is not a
/// release.
#[test]
fn a_release_that_is_a_link_is_refused() {
    let r = Root::new(&["r1"]);
    let o = outside(&r);
    std::os::unix::fs::symlink(&o, r.dir.join("releases/evil")).unwrap();
    let (code, err) = fails(&r.run(&["--release", "evil"], ""));
    assert_eq!(code, 1);
    assert!(
        err.contains("is a symlink, not a release directory"),
        "{err}"
    );
    assert_eq!(r.current(), None);
    assert!(!o.join("venv").exists());
    r.deploy("r1");
    let (_, err) = fails(&r.run(&["revert", "--to", "evil"], ""));
    assert!(
        err.contains("is a symlink, not a release directory"),
        "{err}"
    );
    let list = r.ok(&["list"]);
    let ids: Vec<&str> = list["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r1"]);
    // prune lists and removes only real release directories: the link and its target stay.
    r.ok(&["prune", "--keep", "0", "--grace", "0"]);
    assert_untouched(&o);
}

/// A release unpacked (or reused) in the last minutes is a deploy in
/// flight; prune keeps it, and the env it will link, until the grace has passed.
#[test]
fn prune_keeps_what_a_deploy_in_flight_uses() {
    let r = Root::new(&["r1", "r2", "r3"]);
    for id in ["r1", "r2", "r3"] {
        r.deploy(id);
    }
    // r1 was just reused by an unpack (it touches `.wheelship`), its env by mkenv.
    std::fs::create_dir_all(r.dir.join("releases/r1/.wheelship")).unwrap();
    let p = r.ok(&["prune", "--keep", "1", "--dry-run"]);
    assert_eq!(p["pruned"]["releases"], serde_json::json!([]));
    let p = r.ok(&["prune", "--keep", "1", "--grace", "0"]);
    assert_eq!(p["pruned"]["releases"], serde_json::json!(["r1"]));
    assert!(!r.dir.join("releases/r1").exists());
}

/// A failing check on the release that was already live: nothing to go back to, and taking
/// it down would not help: it stays, and switch says so.
#[test]
fn a_failing_check_on_the_live_release_leaves_it() {
    let r = Root::new(&["good"]);
    r.deploy("good");
    let (code, err) = fails(&r.run(
        &[
            "--release",
            "good",
            "--check",
            "false",
            "--check-timeout",
            "0.2",
        ],
        "",
    ));
    assert_eq!(code, 1);
    assert!(
        err.contains("`good` was already live and stays so"),
        "{err}"
    );
    assert_eq!(r.current().as_deref(), Some("good"));
}
