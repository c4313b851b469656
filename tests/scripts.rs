//! End to end on a local root: scripts/release, scripts/deploy and scripts/rollback with the
//! workspace's binaries (target/debug): deploys, reverts, checks, concurrent deploys, usage and
//! the words of a failure.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

mod common;

use std::process::{Command, Stdio};

use common::*;
use testsupport::{git, hermetic_app, repo};

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

/// Among 8 concurrent `deploy --keep 1`, another deploy's prune removed
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

/// Under `WHEELSHIP_REQUIRE_ALL=1` (CI) no test may have been compiled as
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

/// A failed step is the last word (no `switch: nothing to activate`
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

/// On a terminal deploy prints a summary, not a multi-KB JSON line (the
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

/// `release --level N` packs at that zstd level (a fleet that ships thin copies
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
