//! Hostile or broken wheels are refused before anything becomes final, with a message that
//! names the wheel and the member; nothing is written outside the env store.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn refused(spec: Value, why: &str) {
    let t = tempfile::tempdir().unwrap();
    let mut spec = spec;
    spec["name"] = json!("bad");
    spec["version"] = json!("1.0");
    if spec.get("files").is_none() {
        spec["files"] = json!({"bad/__init__.py": "X = 1\n"});
    }
    let wheels = mkwheels(&t.path().join("wh"), spec);
    let doc = lock(&wheels, &["bad"]);
    let out = mkenv(t.path(), &["--envs", "envs"], &doc);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "accepted, expected `{why}`: {err}"
    );
    assert!(out.stdout.is_empty());
    let file = wheels[0].file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(&format!("cannot install `{file}`")) || err.contains(file),
        "{err}"
    );
    assert!(err.contains(why), "expected `{why}` in: {err}");
    // No env under a final name, no temp left, nothing outside.
    let names: Vec<String> = std::fs::read_dir(t.path().join("envs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n.starts_with('.')), "{names:?}");
    let store: Vec<String> = std::fs::read_dir(t.path().join("envs/.store"))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert!(store.is_empty(), "half-made store entries: {store:?}");
    assert!(!t.path().join("evil").exists() && !Path::new("/tmp/mkenv-evil").exists());
}

#[test]
fn traversal_absolute_and_links() {
    refused(
        json!({"members": [{"name": "../evil", "data": "x"}]}),
        "member `../evil`: `..` or a root in the name",
    );
    refused(
        json!({"members": [{"name": "a/../../evil", "data": "x"}]}),
        "`..` or a root in the name",
    );
    refused(
        json!({"members": [{"name": "/tmp/mkenv-evil", "data": "x"}]}),
        "member `/tmp/mkenv-evil`: absolute path",
    );
    refused(
        json!({"members": [{"name": "C:\\evil", "data": "x"}]}),
        "absolute path",
    );
    refused(
        json!({"members": [{"name": "bad/link", "data": "/etc/passwd", "mode": 0o120777}]}),
        "member `bad/link` is a symlink",
    );
    refused(
        json!({"members": [{"name": "bad/x\ny.py", "data": ""}]}),
        "control character",
    );
}

#[test]
fn duplicates_and_compression() {
    refused(
        json!({"members": [{"name": "bad/__init__.py", "data": "other"}]}),
        "duplicate members: the central directory lists",
    );
    refused(
        json!({"members": [{"name": "bad/__init__.py", "data": "X = 1\n", "in_record": false}]}),
        "duplicate members",
    );
    refused(
        json!({"members": [{"name": "bad/b.py", "data": "x", "compress": "bzip2"}]}),
        "member `bad/b.py` uses unsupported compression",
    );
    refused(json!({"not_zip": true}), "not a valid zip file");
}

#[test]
fn record_must_be_true() {
    refused(
        json!({"tamper": {"bad/__init__.py": "import os; os.system('evil')\n"}}),
        "RECORD hash mismatch for `bad/__init__.py`",
    );
    refused(
        json!({"members": [{"name": "bad/hidden.py", "data": "x", "in_record": false}]}),
        "`bad/hidden.py` is not in RECORD",
    );
}

/// A member's bytes must be what its central directory entry says: its size and its CRC-32,
/// deflated or stored, and never encrypted.
#[test]
fn members_are_what_the_central_directory_says() {
    let corrupt = |how: Value| json!({"corrupt": how});
    let member = "member `bad/__init__.py` is corrupt: ";
    refused(
        corrupt(json!({"name": "bad/__init__.py", "size": 2})),
        &format!("{member}it is larger than it says"),
    );
    refused(
        corrupt(json!({"name": "bad/__init__.py", "size": 100})),
        &format!("{member}6 bytes, the central directory says 100"),
    );
    refused(
        corrupt(json!({"name": "bad/__init__.py", "crc": 0})),
        &format!("{member}its CRC-32 does not match"),
    );
    refused(
        corrupt(json!({"name": "bad/__init__.py", "bad_data": true})),
        &format!("{member}invalid deflate data"),
    );
    refused(
        corrupt(json!({"name": "bad/__init__.py", "encrypted": true})),
        "member `bad/__init__.py` is encrypted",
    );
    let stored =
        json!({"members": [{"name": "bad/s.py", "data": "Y = 2\n", "compress": "stored"}]});
    let mut short = stored.clone();
    short["corrupt"] = json!({"name": "bad/s.py", "size": 3});
    refused(
        short,
        "member `bad/s.py` is corrupt: 6 bytes, the central directory says 3",
    );
}

#[test]
fn metadata_layout() {
    refused(
        json!({"dist_info": "other-9.9"}),
        "`other-9.9.dist-info` does not match the file name",
    );
    refused(
        json!({"members": [{"name": "extra-1.0.dist-info/METADATA", "data": "Name: extra\n"}]}),
        "more than one `.dist-info` directory",
    );
    refused(
        json!({"data": {"weird/x": "x"}}),
        "unknown `.data` key `weird`",
    );
}

#[test]
fn script_names() {
    refused(
        json!({"entry_points": {"console_scripts": {"../../evil": "bad:main"}}}),
        "entry point `../../evil`: the name leaves `bin/`",
    );
    refused(
        json!({"entry_points": {"console_scripts": {"python3": "bad:main"}}}),
        "entry point `python3`: the name is reserved",
    );
    refused(
        json!({"entry_points": {"gui_scripts": {"python3.11": "bad:main"}}}),
        "the name is reserved",
    );
    refused(
        json!({"data": {"scripts/python": "#!python\n"}}),
        "script `bad-1.0.data/scripts/python`: the name is reserved",
    );
}

#[test]
fn lock_mismatch_and_incompatible_tags() {
    let t = tempfile::tempdir().unwrap();
    let wheels = mkwheels(
        &t.path().join("wh"),
        json!([
            {"name": "ok", "version": "1.0"},
            {"name": "native", "version": "1.0", "tag": "cp27-cp27mu-manylinux1_x86_64", "purelib": false},
        ]),
    );
    let mut doc = lock(&wheels[..1], &["ok"]);
    doc["wheelhouse"]["wheels"][0]["sha256"] = json!("0".repeat(64));
    let out = mkenv(t.path(), &["--envs", "envs"], &doc);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ok-1.0-py3-none-any.whl`: sha256 ")
            && err.contains("does not match the lock's 0000"),
        "{err}"
    );
    let out = mkenv(
        t.path(),
        &["--envs", "envs"],
        &lock(&wheels[1..], &["native"]),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot install `native-1.0-cp27-cp27mu-manylinux1_x86_64.whl`: it is not compatible with `python3`"), "{err}");
    assert!(err.contains("\n\nhint: lock for this interpreter"), "{err}");
}

#[test]
fn usage_and_input_errors() {
    let t = tempfile::tempdir().unwrap();
    let out = mkenv(t.path(), &["--envs", "envs"], &json!({}));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("mkenv: no `wheelhouse` section"));
    let out = assert_cmd::Command::cargo_bin("mkenv")
        .unwrap()
        .current_dir(t.path())
        .write_stdin("{bad")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("mkenv: stdin: not a JSON document"));
    let out = assert_cmd::Command::cargo_bin("mkenv")
        .unwrap()
        .arg("--frob")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc = json!({"wheelhouse": {"dir": t.path().join("nowhere"), "wheels": [{"name": "a", "version": "1", "file": "a-1-py3-none-any.whl", "sha256": "0".repeat(64), "size": 1}]}});
    let out = mkenv(t.path(), &["--envs", "envs"], &doc);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("a-1-py3-none-any.whl`: No such file or directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lock's sha256 named the store entry, and an entry's `info.json`
/// was trusted whole: `sha256: ../../releases/<id>/fake` with a `fake/info.json` whose console
/// script had an absolute name overwrote a file outside the store.
#[test]
fn the_lock_and_the_store_are_checked_where_they_enter() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let wheels = mkwheels(
        &t.path().join("wh"),
        json!({"name": "good", "version": "1.0", "files": {"good/__init__.py": ""}}),
    );
    let doc = lock(&wheels, &["good"]);
    let real_sha = doc["wheelhouse"]["wheels"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let info = json!({
        "name": "good", "version": "1.0", "dist_info": "good-1.0.dist-info",
        "data_dir": "good-1.0.data", "purelib": true, "files": [],
        "console_scripts": [[victim.to_str().unwrap(), "os:getcwd"]], "gui_scripts": [],
    });
    // A fake entry outside the store, named by a path in the lock.
    std::fs::create_dir_all(t.path().join("fake/files")).unwrap();
    std::fs::write(t.path().join("fake/info.json"), info.to_string()).unwrap();
    for (field, value, why) in [
        ("sha256", "../../fake", "`../../fake` is not a sha256"),
        ("sha256", &real_sha.to_uppercase(), "is not a sha256"),
        (
            "name",
            "../good",
            "`../good` is not a canonical project name",
        ),
        (
            "file",
            "../wh/good-1.0-py3-none-any.whl",
            "is not a valid wheel file name",
        ),
        (
            "file",
            "other-1.0-py3-none-any.whl",
            "is not a wheel file name of `good`",
        ),
    ] {
        let mut d = doc.clone();
        d["wheelhouse"]["wheels"][0][field] = json!(value);
        let out = mkenv(t.path(), &["--envs", "envs"], &d);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{field}={value}: {err}");
        assert!(err.contains("stdin: `wheelhouse.wheels[0]`"), "{err}");
        assert!(err.contains(why), "{err}");
        assert!(out.stdout.is_empty());
    }
    // The same info.json planted in the store under the wheel's own sha256 is checked again.
    let entry = t.path().join("envs/.store").join(&real_sha);
    std::fs::create_dir_all(entry.join("files")).unwrap();
    std::fs::write(entry.join("info.json"), info.to_string()).unwrap();
    let out = mkenv(t.path(), &["--envs", "envs", "--no-compile"], &doc);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the store entry is not one mkenv made"),
        "{err}"
    );
    assert!(err.contains("the name leaves `bin/`"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // Once the planted entry is gone, the real wheel installs.
    std::fs::remove_dir_all(&entry).unwrap();
    let env = ok(t.path(), &["--envs", "envs", "--no-compile"], &doc);
    assert_eq!(env["reused"], false);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// When the bytecode compiler died, writing to it failed with a broken
/// pipe, and mkenv took that for a closed stdout: exit 0, no output, no message.
#[test]
fn a_dead_compiler_is_an_error_not_a_closed_stdout() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let py = t.path().join("python-that-cannot-compile");
    std::fs::write(
        &py,
        "#!/bin/sh\ncase \"$*\" in *compileall*) echo 'no compiler here' >&2; exit 3;; esac\nexec python3 \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = mkenv(
        t.path(),
        &["--envs", "envs", "--python", py.to_str().unwrap()],
        &lock(&wheels, &["app"]),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.starts_with("mkenv: compiling bytecode failed: "),
        "{err}"
    );
    assert!(err.contains("no compiler here"), "{err}");
    let names: Vec<String> = std::fs::read_dir(t.path().join("envs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n.starts_with('.')), "{names:?}");
}

/// The store cannot be changed under the envs. Stored files are
/// read-only; a stored file changed after a first build (as the app's own user could, through
/// an env's hard link) is found before it is linked into another env, and the entry is stored
/// again from its wheel; a change that sets the modification time back is found by
/// `mkenv --verify` (which rebuilds the env that links it and swaps it in) and by
/// `mkenv gc --verify`. The `.pyc` files compiled into the store are held to the same.
#[test]
#[allow(clippy::too_many_lines)] // one story, start to end
fn a_changed_store_file_is_never_linked_again() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let wheels = app_wheels(&t.path().join("wh"));
    let doc = lock(&wheels, &["shop-app"]);
    let env = ok(t.path(), &["--envs", "envs"], &doc);
    let env_path = std::path::PathBuf::from(env["path"].as_str().unwrap());
    let site = testsupport::site_packages();
    let module = env_path.join(&site).join("helper/__init__.py");
    let pyc = env_path.join(&site).join("helper/__pycache__");
    let pyc = std::fs::read_dir(&pyc)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read(&module).unwrap();
    assert_eq!(
        std::fs::metadata(&module).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(
        std::fs::metadata(&pyc).unwrap().permissions().mode() & 0o777,
        0o444
    );
    // Changed in place, through the env's hard link.
    let tamper = |p: &std::path::Path, keep_mtime: bool| {
        let before = std::fs::metadata(p).unwrap().modified().unwrap();
        std::fs::set_permissions(p, PermissionsExt::from_mode(0o644)).unwrap();
        let mut data = std::fs::read(p).unwrap();
        data.extend_from_slice(b"\nimport os  # planted\n");
        std::fs::write(p, &data).unwrap();
        if keep_mtime {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(before)
                .unwrap();
        }
    };
    tamper(&module, false);
    // The env is deleted and built again: the changed entry is stored again, not linked.
    std::fs::remove_dir_all(&env_path).unwrap();
    let out = mkenv(t.path(), &["--envs", "envs"], &doc);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(err.contains("was changed after it was stored"), "{err}");
    assert!(err.contains("helper/__init__.py"), "{err}");
    assert_eq!(std::fs::read(&module).unwrap(), original);
    // The same for compiled bytecode.
    let pyc = std::fs::read_dir(env_path.join(&site).join("helper/__pycache__"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pyc_original = std::fs::read(&pyc).unwrap();
    tamper(&pyc, false);
    std::fs::remove_dir_all(&env_path).unwrap();
    let out = mkenv(t.path(), &["--envs", "envs"], &doc);
    assert!(String::from_utf8_lossy(&out.stderr).contains("was changed after it was stored"));
    assert_eq!(std::fs::read(&pyc).unwrap(), pyc_original);
    // A change that puts the mtime back: only a rehash sees it.
    tamper(&module, true);
    let quiet = ok(t.path(), &["--envs", "envs"], &doc);
    assert_eq!(quiet["reused"], true);
    let out = mkenv(
        t.path(),
        &["--envs", "envs", "gc", "--verify", "--dry-run"],
        &serde_json::json!({}),
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("were changed after they were stored"), "{err}");
    assert!(
        err.contains(env["key"].as_str().unwrap()),
        "names the env: {err}"
    );
    let verified = ok(t.path(), &["--envs", "envs", "--verify"], &doc);
    assert_eq!(verified["reused"], false, "rebuilt");
    assert_eq!(std::fs::read(&module).unwrap(), original);
    let gc = mkenv(
        t.path(),
        &["--envs", "envs", "gc", "--verify"],
        &serde_json::json!({}),
    );
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(gc["mkenv_gc"]["verified"], 2);
}
