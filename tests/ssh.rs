//! Deploys over real ssh (the host named by `WHEELSHIP_SSH_HOST`: `.ci/run` starts an sshd on
//! 127.0.0.1 with throwaway keys): the example app from PyPI, thin copies, signed releases.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;
use testsupport::{git, hermetic_app, python3_path, repo};

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
            // The service flags reach switch on the host: --before runs with the
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

/// A release signed on the build box (`release --sign`, a key from `bundle keygen`)
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
    // The binaries went stripped (117 MB of this debug build: 20 MB).
    let shipped: u64 = ["bundle", "mkenv", "switch"]
        .iter()
        .map(|b| std::fs::metadata(root.join("bin").join(b)).unwrap().len())
        .sum();
    let built: u64 = ["bundle", "mkenv", "switch"]
        .iter()
        .map(|b| std::fs::metadata(bin_dir().join(b)).unwrap().len())
        .sum();
    assert!(shipped * 3 < built, "{shipped} bytes shipped of {built}");

    // A code-only release goes as a thin copy; the host rebuilds the signed archive
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

/// A root that is a file is named as such, here and over ssh (where the host answered: it is
/// not "cannot reach the host"), and nothing is sent or made.
#[test]
#[cfg_attr(
    wheelship_no_ssh,
    ignore = "needs WHEELSHIP_SSH_HOST (the test sshd; .ci/run starts one)"
)]
fn a_root_that_is_a_file_is_named_as_such() {
    let host = ssh_host("a_root_that_is_a_file_is_named_as_such").unwrap();
    let t = tempfile::tempdir().unwrap();
    hermetic_app(t.path());
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let (_, f) = release_saved(t.path(), "v1", &[], &env);
    let file = t.path().join("srv");
    std::fs::write(&file, "not a directory\n").unwrap();
    for (target, says) in [
        (
            file.display().to_string(),
            "is a regular file, not a directory",
        ),
        (
            file.join("sub").display().to_string(),
            "(a directory the root",
        ),
        (
            format!("{host}:{}", file.display()),
            "is not a directory (a file is there)",
        ),
    ] {
        let out = script("deploy", &[f.to_str().unwrap(), &target], &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{target}: {err}");
        assert!(out.stdout.is_empty());
        assert!(err.contains(says), "{target}: {err}");
        assert!(!err.contains("cannot reach the host"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"not a directory\n");
    }
}
