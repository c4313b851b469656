//! mkenv builds envs that pip could have built, reuses them, and shares work through its store.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;
use testsupport::{assert_same_env, pip_env, run_ok, site_packages};

#[test]
fn the_env_is_what_pip_would_build() {
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let doc = lock(&wheels, &["shop-app"]);
    let env = ok(t.path(), &["--envs", "envs"], &doc);
    assert_eq!(env["reused"], false);
    assert_eq!(env["wheels"], 2);
    let path = PathBuf::from(env["path"].as_str().unwrap());
    assert_eq!(
        path.parent().unwrap(),
        std::fs::canonicalize(t.path().join("envs")).unwrap()
    );
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        env["key"].as_str().unwrap()
    );

    // The reference: python -m venv + pip install --no-index --find-links.
    let reference = pip_env(
        &t.path().join("ref"),
        &t.path().join("wh"),
        &["shop-app"],
        t.path(),
    );
    assert_same_env(&path, &reference);
    let site = site_packages();
    let xy = site
        .trim_start_matches("lib/python")
        .trim_end_matches("/site-packages")
        .to_string();
    // Nothing beside the layout and what the wheels install (a stray `site-packages` at the
    // root once was).
    assert_eq!(
        testsupport::names(&path),
        [
            ".wheelship-env.json",
            "bin",
            "include",
            "lib",
            "lib64",
            "pyvenv.cfg",
            "share"
        ]
    );
    assert_eq!(
        testsupport::names(&path.join("lib")),
        [format!("python{xy}")]
    );
    assert_eq!(
        std::fs::read(path.join("share/shop/README")).unwrap(),
        std::fs::read(reference.join("share/shop/README")).unwrap()
    );
    assert!(path
        .join(format!("include/site/python{xy}/shop-app/shop.h"))
        .is_file());

    // The console script and the `.data` script run, with the env's python.
    assert_eq!(
        run_ok(Command::new(path.join("bin/shop")).arg("x")),
        "shop 1.2.0 x\n"
    );
    assert_eq!(
        run_ok(&mut Command::new(path.join("bin/shop-admin"))),
        "admin 1.2.0\n"
    );
    let first = std::fs::read_to_string(path.join("bin/shop-admin")).unwrap();
    assert_eq!(
        first.lines().next().unwrap(),
        format!("#!{}", path.join("bin/python").display())
    );
    assert_eq!(
        run_ok(Command::new(path.join("bin/python")).args([
            "-c",
            "import sys, shop_extra; print(sys.prefix == sys.base_prefix)"
        ])),
        "False\n"
    );

    // RECORD lists every installed file with its hash; REQUESTED only for what was asked for.
    let record =
        std::fs::read_to_string(path.join(&site).join("Shop_App-1.2.0.dist-info/RECORD")).unwrap();
    assert!(record.contains("shop_app/cli.py,sha256="), "{record}");
    assert!(record.contains("../../../bin/shop,sha256="), "{record}");
    assert!(
        record.contains("../../../bin/shop-admin,sha256="),
        "{record}"
    );
    assert!(
        record.contains("Shop_App-1.2.0.dist-info/RECORD,,"),
        "{record}"
    );
    assert!(path
        .join(&site)
        .join("Shop_App-1.2.0.dist-info/REQUESTED")
        .exists());
    assert!(!path
        .join(&site)
        .join("helper-1.0.dist-info/REQUESTED")
        .exists());
    assert_eq!(
        std::fs::read_to_string(path.join(&site).join("helper-1.0.dist-info/INSTALLER")).unwrap(),
        "wheelship\n"
    );

    // Bytecode is there, valid without its mtime, and linked from the store.
    let pyc: Vec<_> = std::fs::read_dir(path.join(&site).join("shop_app/__pycache__"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(pyc.len(), 2, "{pyc:?}");
    let out = run_ok(Command::new(path.join("bin/python")).args([
        "-c",
        "import shop_app.cli, importlib.util; print(shop_app.cli.__cached__)",
    ]));
    assert!(out.contains("__pycache__"), "{out}");
}

#[test]
fn reuse_and_sharing() {
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let doc = lock(&wheels, &["shop-app"]);
    let a = ok(t.path(), &["--envs", "envs"], &doc);
    let again = ok(t.path(), &["--envs", "envs"], &doc);
    assert_eq!(again["reused"], true);
    assert_eq!(again["key"], a["key"]);
    assert_eq!(again["path"], a["path"]);
    // The key does not depend on the requirements hash or the wheelhouse dir, only the lock.
    let mut moved = doc.clone();
    moved["requirements"]["hash"] = Value::String(format!("sha256:{}", "1".repeat(64)));
    assert_eq!(ok(t.path(), &["--envs", "envs"], &moved)["key"], a["key"]);
    // --no-compile is another env.
    let nc = ok(t.path(), &["--envs", "envs", "--no-compile"], &doc);
    assert_ne!(nc["key"], a["key"]);
    let nc_path = PathBuf::from(nc["path"].as_str().unwrap());
    // A new lock that shares a wheel: the shared files (and their .pyc) are the store's inodes.
    let more = mkwheels(
        &t.path().join("wh"),
        serde_json::json!({"name": "extra", "version": "1.0", "files": {"extra/__init__.py": ""}}),
    );
    let mut w2 = wheels.clone();
    w2.extend(more);
    let b = ok(
        t.path(),
        &["--envs", "envs"],
        &lock(&w2, &["shop-app", "extra"]),
    );
    assert_ne!(b["key"], a["key"]);
    let pa = PathBuf::from(a["path"].as_str().unwrap());
    let pb = PathBuf::from(b["path"].as_str().unwrap());
    let site = std::fs::read_dir(pa.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages");
    let rel = site.strip_prefix(&pa).unwrap();
    let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(pa.join(rel).join("helper/__init__.py")),
        ino(pb.join(rel).join("helper/__init__.py"))
    );
    let pyc = std::fs::read_dir(pa.join(rel).join("helper/__pycache__"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    assert_eq!(
        ino(pa.join(rel).join("helper/__pycache__").join(&pyc)),
        ino(pb.join(rel).join("helper/__pycache__").join(&pyc))
    );
    // Rewritten files and RECORD are real copies.
    assert_ne!(
        ino(pa.join(rel).join("helper-1.0.dist-info/RECORD")),
        ino(pb.join(rel).join("helper-1.0.dist-info/RECORD"))
    );
    assert!(!nc_path.join(rel).join("helper/__pycache__").exists());
}

#[test]
fn concurrent_runs_for_one_key_do_the_work_once() {
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let doc = lock(&wheels, &["shop-app"]);
    let bin = assert_cmd::cargo::cargo_bin("mkenv");
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut c = std::process::Command::new(&bin)
                .args(["--envs", "envs"])
                .current_dir(t.path())
                .env("WHEELSHIP_CACHE", t.path().join("cache"))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(doc.to_string().as_bytes())
                .unwrap();
            c
        })
        .collect();
    let outs: Vec<Value> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success());
            serde_json::from_slice::<Value>(&o.stdout).unwrap()["env"].clone()
        })
        .collect();
    assert_eq!(
        outs.iter().filter(|e| e["reused"] == false).count(),
        1,
        "{outs:?}"
    );
    let names: Vec<String> = std::fs::read_dir(t.path().join("envs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn a_crash_at_any_step_leaves_nothing_that_looks_complete() {
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let doc = lock(&wheels, &["shop-app"]);
    for point in [
        "mkenv-after-store",
        "mkenv-after-compile",
        "mkenv-after-link",
        "mkenv-before-rename",
    ] {
        let envs = format!("envs-{point}");
        let out = mkenv_env(
            t.path(),
            &["--envs", &envs],
            &doc,
            &[("WHEELSHIP_FAILPOINT", point)],
        );
        assert!(!out.status.success(), "{point} did not fire");
        let finals: Vec<String> = std::fs::read_dir(t.path().join(&envs))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(finals.is_empty(), "{point}: {finals:?}");
        let env = ok(t.path(), &["--envs", &envs], &doc);
        assert_eq!(env["reused"], false);
        let left: Vec<String> = std::fs::read_dir(t.path().join(&envs))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{point}: {left:?}");
        assert_eq!(
            run_ok(&mut Command::new(
                PathBuf::from(env["path"].as_str().unwrap()).join("bin/shop")
            )),
            "shop 1.2.0 \n"
        );
    }
}

#[test]
fn gc_removes_what_no_kept_env_uses() {
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let a = ok(t.path(), &["--envs", "envs"], &lock(&wheels, &["shop-app"]));
    let b = ok(
        t.path(),
        &["--envs", "envs"],
        &lock(&wheels[1..], &["helper"]),
    );
    let rel = t.path().join("releases/r1");
    std::fs::create_dir_all(&rel).unwrap();
    std::os::unix::fs::symlink(b["path"].as_str().unwrap(), rel.join("venv")).unwrap();
    let releases = t.path().join("releases");
    // `a` was just built and no release links it yet (a deploy between
    // its mkenv and its switch): within the grace period gc keeps it.
    let out = mkenv(
        t.path(),
        &[
            "--envs",
            "envs",
            "gc",
            "--releases",
            releases.to_str().unwrap(),
        ],
        &serde_json::json!({}),
    );
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["mkenv_gc"]["removed_envs"], serde_json::json!([]));
    assert!(Path::new(a["path"].as_str().unwrap())
        .join("pyvenv.cfg")
        .exists());
    let out = mkenv(
        t.path(),
        &[
            "--envs",
            "envs",
            "gc",
            "--grace",
            "0",
            "--releases",
            releases.to_str().unwrap(),
        ],
        &serde_json::json!({}),
    );
    let g = testsupport::doc_of(&out);
    assert_eq!(g["mkenv_gc"]["removed_envs"], serde_json::json!([a["key"]]));
    assert_eq!(g["mkenv_gc"]["removed_wheels"].as_array().unwrap().len(), 1);
    assert!(!Path::new(a["path"].as_str().unwrap()).exists());
    assert!(Path::new(b["path"].as_str().unwrap())
        .join("pyvenv.cfg")
        .exists());
    // b still works: its wheel is still in the store.
    assert!(
        ok(
            t.path(),
            &["--envs", "envs"],
            &lock(&wheels[1..], &["helper"])
        )["reused"]
            == true
    );
}

/// The example's real web stack (Flask and its dependencies, from PyPI): mkenv's env against
/// `python -m venv` + `pip install --no-index --find-links` of the same wheels. Skips, loudly,
/// when PyPI cannot be reached.
/// Numpy < 2.3 ships `.pyc` files for CPython 3.11 in its RECORD, and mkenv
/// failed with "File exists" when it linked its own. mkenv's own bytecode, compiled from the
/// source by the interpreter, wins; with `--no-compile` the wheel's file is installed.
#[test]
fn a_wheel_that_ships_its_own_pyc() {
    let t = tempfile::tempdir().unwrap();
    let probe = String::from_utf8(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import sys; print(sys.implementation.cache_tag, '%d.%d' % sys.version_info[:2])",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let (tag, xy) = probe.trim().split_once(' ').unwrap();
    let stale = format!("shipped/sub/__pycache__/conv.{tag}.pyc");
    let wheels = mkwheels(
        &t.path().join("wh"),
        serde_json::json!({"name": "shipped", "version": "1.0", "files": {
            "shipped/__init__.py": "",
            "shipped/sub/__init__.py": "",
            "shipped/sub/conv.py": "VALUE = 42\n",
            stale.clone(): "not bytecode, the wheel's own file",
        }}),
    );
    let doc = lock(&wheels, &["shipped"]);
    let env = ok(t.path(), &["--envs", "envs"], &doc);
    let root = Path::new(env["path"].as_str().unwrap());
    let site = root.join(format!("lib/python{xy}/site-packages"));
    let pyc = std::fs::read(site.join(&stale)).unwrap();
    assert_ne!(&pyc[..], b"not bytecode, the wheel's own file");
    let record = std::fs::read_to_string(site.join("shipped-1.0.dist-info/RECORD")).unwrap();
    assert!(!record.contains(".pyc"), "{record}");
    let out = std::process::Command::new(root.join("bin/python"))
        .args([
            "-c",
            "import shipped.sub.conv as c; print(c.VALUE, c.__cached__)",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split(' ').next(),
        Some("42")
    );
    // Without bytecode, the wheel's file is what pip would install.
    let env = ok(t.path(), &["--envs", "envs2", "--no-compile"], &doc);
    let root = Path::new(env["path"].as_str().unwrap());
    let site = root.join(format!("lib/python{xy}/site-packages"));
    assert_eq!(
        std::fs::read(site.join(&stale)).unwrap(),
        b"not bytecode, the wheel's own file"
    );
}

/// Long work shows progress on a terminal, and nothing extra elsewhere.
#[test]
fn progress_only_on_a_terminal() {
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let doc = lock(&wheels, &["shop-app"]);
    let out = mkenv(t.path(), &["--envs", "envs"], &doc);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "stderr is not a terminal, and no step lasted seconds"
    );
    // Off a terminal, a step that lasts (here: a pace of 0 s) gets plain lines: what it does
    // and how far it is.
    let out = mkenv_env(
        t.path(),
        &["--envs", "envs3"],
        &doc,
        &[("WHEELSHIP_PROGRESS_SECS", "0")],
    );
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Compiling (a python process and its pool) lasts long enough to be seen.
    assert!(
        err.lines()
            .any(|l| l.starts_with("mkenv: compiling bytecode") && l.ends_with("s)")),
        "{err}"
    );
    assert!(
        !err.contains('\r') && !err.contains('\u{1b}'),
        "plain lines, no terminal codes: {err}"
    );
    // On a terminal (script(1) gives it one): the phases are shown.
    let doc_file = t.path().join("lock.json");
    std::fs::write(&doc_file, doc.to_string()).unwrap();
    let exe = assert_cmd::cargo::cargo_bin("mkenv");
    let cmd = format!(
        "{} --envs {} < {} > /dev/null",
        exe.display(),
        t.path().join("envs2").display(),
        doc_file.display()
    );
    let screen = testsupport::run("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("WHEELSHIP_CACHE", t.path().join("cache"))
        .ok_text();
    assert!(screen.contains("mkenv: storing wheels"), "{screen}");
}

/// The env is planned, then linked on every core. One wheel's launcher and another's
/// `.data/scripts` file of the same name: the last in lock order wins, as installing them one
/// after the other would, whatever the threads did; and mkenv says so.
#[test]
fn a_launcher_and_a_script_of_one_name_follow_lock_order() {
    let t = tempfile::tempdir().unwrap();
    let wheels = mkwheels(
        &t.path().join("wh"),
        serde_json::json!([
            {"name": "aaa", "version": "1.0",
             "files": {"aaa/__init__.py": "def main():\n    print('launcher')\n"},
             "entry_points": {"console_scripts": {"tool": "aaa:main"}}},
            {"name": "zzz", "version": "1.0", "files": {"zzz/__init__.py": ""},
             "data": {"scripts/tool": "#!/bin/sh\necho script\n"}},
        ]),
    );
    for (order, expected, from) in [
        ([0, 1], "script", "zzz-1.0-py3-none-any.whl"),
        ([1, 0], "launcher", "aaa-1.0-py3-none-any.whl"),
    ] {
        let ws: Vec<PathBuf> = order.iter().map(|&i| wheels[i].clone()).collect();
        let envs = format!("envs-{expected}");
        let out = mkenv(
            t.path(),
            &["--envs", &envs, "--no-compile"],
            &lock(&ws, &[]),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("`{from}` overwrites `bin/tool`")),
            "{err}"
        );
        let env: Value = serde_json::from_slice(&out.stdout).unwrap();
        let path = PathBuf::from(env["env"]["path"].as_str().unwrap());
        let said = run_ok(&mut Command::new(path.join("bin/tool")));
        assert_eq!(said.trim(), expected);
    }
}

/// For every wheel of these tests' fixtures, the env holds the files pip
/// installs (site-packages, `bin/`, headers, data), including pip's rules for wheels that
/// setuptools built: its own launchers in `.data/scripts` (`tool`, `tool.exe`,
/// `tool-script.py`, `tool.pya` beside a `tool` entry point) are left out; `pip` and
/// `easy_install` entry points versioned for another Python (`pip3.8`, `easy_install-2.6`) are
/// made for this one; RECORD's signature files are installed.
#[test]
fn every_fixture_installs_the_files_pip_installs() {
    let t = tempfile::tempdir().unwrap();
    let wh = t.path().join("wh");
    let mut wheels = app_wheels(&wh);
    wheels.extend(mkwheels(
        &wh,
        serde_json::json!([
            {"name": "oldtool", "version": "2.0",
             "files": {"oldtool/__init__.py": "def main():\n    return 0\n"},
             "entry_points": {"console_scripts": {"tool": "oldtool:main"}, "gui_scripts": {"toolw": "oldtool:main"}},
             "data": {"scripts/tool": "#!python\nimport oldtool\n", "scripts/tool.EXE": "MZ",
                      "scripts/tool-script.py": "#!python\nimport oldtool\n", "scripts/tool-script.pyw": "x",
                      "scripts/TOOL-script.py": "#!python\nimport oldtool\n",
                      "scripts/tool.pya": "x", "scripts/toolw.exe": "MZ", "scripts/other-script.py": "#!python\nprint(1)\n"}},
            {"name": "fakepip", "version": "9.0",
             "files": {"fakepip/__init__.py": "def main():\n    return 0\n"},
             "entry_points": {"console_scripts": {"pip": "fakepip:main", "pip3.8": "fakepip:main", "pip3": "fakepip:main",
                                                  "easy_install": "fakepip:main", "easy_install-2.6": "fakepip:main",
                                                  "pipx-like": "fakepip:main"}}},
            {"name": "signed", "version": "1.0",
             "files": {"signed/__init__.py": "X = 1\n"},
             "members": [{"name": "signed-1.0.dist-info/RECORD.jws", "data": "{\"signatures\": []}", "in_record": "unhashed"},
                         {"name": "signed-1.0.dist-info/RECORD.p7s", "data": "p7s"}]},
        ]),
    ));
    let requested = ["shop-app", "oldtool", "fakepip", "signed"];
    let doc = lock(&wheels, &requested);
    let env = ok(t.path(), &["--envs", "envs"], &doc);
    let ours = PathBuf::from(env["path"].as_str().unwrap());
    // pip into an env without pip of its own, so that `bin/` holds only what the wheels put.
    let reference = t.path().join("ref");
    testsupport::run_ok(testsupport::clean_pip(
        Command::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&reference),
    ));
    testsupport::run_ok(
        testsupport::clean_pip(
            Command::new("python3")
                .args(["-m", "pip", "--python"])
                .arg(reference.join("bin/python"))
                .args(["install", "-q", "--no-index", "--find-links"])
                .arg(&wh)
                .args(requested),
        )
        .env_remove("ENSUREPIP_OPTIONS"),
    );
    // site-packages: the same files, byte for byte.
    let site = site_packages();
    assert_eq!(
        testsupport::tree(&ours.join(&site)),
        testsupport::tree(&reference.join(&site))
    );
    // bin/, include/, share/: the same names (launchers differ in their text, not their names).
    let venv_own = [
        "python",
        "python3",
        "activate",
        "activate.fish",
        "activate.csh",
        "Activate.ps1",
    ];
    for dir in ["bin", "include", "share"] {
        let names = |root: &Path| -> Vec<String> {
            testsupport::tree(&root.join(dir))
                .into_iter()
                .filter(|n| !venv_own.contains(&n.as_str()) && !n.starts_with("python3."))
                .collect()
        };
        assert_eq!(names(&ours), names(&reference), "{dir}/");
    }
    let bin = testsupport::names(&ours.join("bin"));
    // The entry point's name is matched as written (`TOOL-script.py` is not `tool`'s), the
    // suffix in any case; `-script.pyw` is not one of pip's.
    for want in [
        "tool",
        "toolw",
        "TOOL-script.py",
        "tool-script.pyw",
        "other-script.py",
        "pip",
        "pip3",
        "easy_install",
        "pipx-like",
    ] {
        assert!(bin.contains(&want.to_string()), "{want} in {bin:?}");
    }
    for gone in [
        "tool.EXE",
        "tool-script.py",
        "tool.pya",
        "toolw.exe",
        "pip3.8",
        "easy_install-2.6",
    ] {
        assert!(!bin.contains(&gone.to_string()), "{gone} in {bin:?}");
    }
    assert!(ours
        .join(&site)
        .join("signed-1.0.dist-info/RECORD.jws")
        .is_file());
}
