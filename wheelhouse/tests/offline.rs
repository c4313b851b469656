//! wheelhouse against wheels the tests build (tests/support/mkwheel.py): hermetic, `--offline`.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::{json, Value};
use testsupport::{mkwheels, pinned as names, Fixture};

fn setup() -> Fixture {
    let t = Fixture::new();
    mkwheels(
        &t.p().join("wh"),
        json!([
            {"name": "Alpha", "version": "1.0", "extras": ["fast"],
             "requires": ["beta>=2", "gamma; extra == 'fast'", "delta; python_version < '3'"]},
            {"name": "beta", "version": "2.0"},
            {"name": "beta", "version": "2.1"},
            {"name": "beta", "version": "1.0"},
            {"name": "gamma", "version": "1.0"},
            {"name": "delta", "version": "1.0"},
            {"name": "unrelated", "version": "1.0"},
        ]),
    );
    t
}
fn hashreq(t: &Fixture, text: &str) -> String {
    testsupport::hashreq_doc(t.p(), text)
}
fn wheelhouse(t: &Fixture, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::cargo_bin("wheelhouse").unwrap();
    c.current_dir(t.p()).args(args);
    // The interpreter itself, not a pyenv shim, unless the test names one: a shim rehashes
    // after pip, and two at once (these tests run in parallel) fail the second pip.
    if !args.contains(&"--python") {
        c.args(["--python", testsupport::python3_path()]);
    }
    // pip's resolver, whose answers these tests pin down (tests/wheelhouse_uv.rs has uv's).
    if !args.contains(&"--resolver") {
        c.args(["--resolver", "pip"]);
    }
    c.write_stdin(stdin)
        .env("WHEELSHIP_CACHE", t.p().join("cache"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}
fn lock(t: &Fixture, reqs: &str, args: &[&str]) -> Value {
    let doc = hashreq(t, reqs);
    let mut a = vec!["--dir", "wh", "--offline"];
    a.extend_from_slice(args);
    let out = wheelhouse(t, &a, &doc, &[]);
    let doc = testsupport::doc_of(&out);
    doc["wheelhouse"].clone()
}

#[test]
fn locks_exactly_the_closure_with_true_hashes() {
    let t = setup();
    let s = lock(&t, "alpha[fast]==1.0\n", &[]);
    // Extras followed, a false marker left out, the newest beta, no older version or unrelated
    // wheel.
    assert_eq!(names(&s), ["alpha==1.0", "beta==2.1", "gamma==1.0"]);
    let dir = std::fs::canonicalize(t.p().join("wh")).unwrap();
    assert_eq!(s["dir"], dir.to_str().unwrap());
    for w in s["wheels"].as_array().unwrap() {
        let data = std::fs::read(dir.join(w["file"].as_str().unwrap())).unwrap();
        assert_eq!(w["sha256"], testsupport::sha256(&data));
        assert_eq!(w["size"], data.len());
    }
    assert_eq!(s["target"]["native"], true);
    assert_eq!(s["cached"], false);
    // Pins and constraints are followed.
    assert_eq!(
        names(&lock(&t, "alpha==1.0\nbeta==2.0\n", &[])),
        ["alpha==1.0", "beta==2.0"]
    );
}

#[test]
fn an_unchanged_rerun_is_a_cache_hit_and_a_change_is_not() {
    let t = setup();
    let first = lock(&t, "alpha==1.0\n", &[]);
    let second = lock(&t, "alpha==1.0\n", &[]);
    assert_eq!(second["cached"], true);
    assert_eq!(second["wheels"], first["wheels"]);
    mkwheels(&t.p().join("wh"), json!({"name": "beta", "version": "2.2"}));
    let third = lock(&t, "alpha==1.0\n", &[]);
    assert_eq!(third["cached"], false);
    assert_eq!(names(&third), ["alpha==1.0", "beta==2.2"]);
    let fourth = lock(&t, "alpha==1.0\n", &["--no-cache"]);
    assert_eq!(fourth["cached"], false);
}

/// The cache answers only for the interpreter it was filled for: another one (a venv here, at
/// another path) gets its own lock, and one that does not exist is an error, not the cache's
/// answer for the last.
#[test]
fn the_lock_is_for_the_interpreter_asked_for_whatever_the_cache() {
    let t = setup();
    let doc = hashreq(&t, "Alpha==1.0\n");
    let first = testsupport::doc_of(&wheelhouse(&t, &["--dir", "wh", "--offline"], &doc, &[]));
    let again = testsupport::doc_of(&wheelhouse(&t, &["--dir", "wh", "--offline"], &doc, &[]));
    assert_eq!(again["wheelhouse"]["cached"], true);
    let venv = t.p().join("other");
    testsupport::run(testsupport::python3_path())
        .args(["-m", "venv", "--system-site-packages", "--without-pip"])
        .args([&venv])
        .ok_text();
    let python = venv.join("bin/python");
    let other = testsupport::doc_of(&wheelhouse(
        &t,
        &[
            "--dir",
            "wh",
            "--offline",
            "--python",
            python.to_str().unwrap(),
        ],
        &doc,
        &[],
    ));
    assert_eq!(other["wheelhouse"]["cached"], false, "{other}");
    assert_ne!(
        other["wheelhouse"]["target"]["executable"],
        first["wheelhouse"]["target"]["executable"]
    );
    let out = wheelhouse(
        &t,
        &[
            "--dir",
            "wh",
            "--offline",
            "--python",
            "/nonexistent/python3",
        ],
        &doc,
        &[],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/python3"));
}

#[test]
fn a_missing_requirement_is_refused_by_name() {
    let t = setup();
    let doc = hashreq(&t, "alpha==9.9\n");
    let out = wheelhouse(&t, &["--dir", "wh", "--offline"], &doc, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    let dir = std::fs::canonicalize(t.p().join("wh")).unwrap();
    assert_eq!(
        err,
        format!("wheelhouse: no wheel in `{}` satisfies `alpha==9.9` (requirements.txt:1) (versions found: 1.0)\n\nhint: run wheelhouse without --offline to fetch it, or add --find-links DIR\n", dir.display())
    );
    let doc = hashreq(&t, "nosuch\n");
    let out = wheelhouse(&t, &["--dir", "wh", "--offline"], &doc, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("satisfies `nosuch` (requirements.txt:1) (versions found: none)"),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(t.p().join("wh"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A project whose only wheels are for another interpreter is named as being there, for
/// another interpreter, with its files: not "versions found: none".
#[test]
fn a_wheel_for_another_interpreter_is_named_as_such() {
    let t = setup();
    mkwheels(
        &t.p().join("wh"),
        json!([{"name": "omega", "version": "1.0", "tag": "cp399-cp399-linux_x86_64"}]),
    );
    let doc = hashreq(&t, "omega==1.0\n");
    let out = wheelhouse(&t, &["--dir", "wh", "--offline"], &doc, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("satisfies `omega==1.0` (requirements.txt:1): it has 1 wheel of the project, for other interpreters or platforms"),
        "{err}"
    );
    assert!(
        err.contains("omega-1.0-cp399-cp399-linux_x86_64.whl"),
        "{err}"
    );
    assert!(!err.contains("versions found"), "{err}");
}

#[test]
fn pip_configuration_does_not_widen_offline() {
    let t = setup();
    mkwheels(
        &t.p().join("elsewhere"),
        json!({"name": "extra-thing", "version": "1.0"}),
    );
    let doc = hashreq(&t, "extra-thing==1.0\n");
    let elsewhere = t.p().join("elsewhere");
    let conf = t.p().join("pip.conf");
    std::fs::write(
        &conf,
        format!("[global]\nfind-links = {}\n", elsewhere.display()),
    )
    .unwrap();
    let out = wheelhouse(
        &t,
        &["--dir", "wh", "--offline"],
        &doc,
        &[
            ("PIP_FIND_LINKS", elsewhere.to_str().unwrap()),
            ("PIP_CONFIG_FILE", conf.to_str().unwrap()),
            ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("satisfies `extra-thing==1.0`"));
    // Given explicitly, the directory is used and its wheel copied into DIR.
    let out = wheelhouse(
        &t,
        &["--dir", "wh", "--offline", "--find-links", "elsewhere"],
        &doc,
        &[],
    );
    let s = testsupport::doc_of(&out);
    assert_eq!(names(&s["wheelhouse"]), ["extra-thing==1.0"]);
    assert!(t.p().join("wh/extra_thing-1.0-py3-none-any.whl").is_file());
}

#[test]
fn cross_target_locks_for_the_other_interpreter() {
    let t = setup();
    mkwheels(
        &t.p().join("wh"),
        json!([
            {"name": "native", "version": "1.0", "tag": "cp312-cp312-manylinux_2_17_x86_64", "purelib": false},
            {"name": "native", "version": "0.9", "tag": "py3-none-any"},
            {"name": "newpy", "version": "1.0", "requires": ["beta<2.1"]},
        ]),
    );
    let cross = [
        "--python-version",
        "3.12",
        "--platform",
        "manylinux_2_17_x86_64",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
    ];
    let s = lock(&t, "native\nnewpy==1.0\n", &cross);
    assert_eq!(names(&s), ["beta==2.0", "native==1.0", "newpy==1.0"]);
    assert_eq!(s["target"]["native"], false);
    assert_eq!(s["target"]["python_version"], "3.12");
    // For this machine's interpreter (3.11 here or whatever runs the tests) the platform wheel
    // is not compatible.
    let native = lock(&t, "native\n", &[]);
    assert_eq!(names(&native), ["native==0.9"]);
}

#[test]
fn check_and_prune() {
    let t = setup();
    let doc = hashreq(&t, "alpha==1.0\n");
    let out = wheelhouse(&t, &["--dir", "wh", "--offline"], &doc, &[]);
    let locked = String::from_utf8(out.stdout).unwrap();
    let out = wheelhouse(&t, &["--check"], &locked, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), locked);
    std::fs::write(t.p().join("wh/beta-2.1-py3-none-any.whl"), b"tampered").unwrap();
    let out = wheelhouse(&t, &["--check"], &locked, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not hold the locked wheels:\n  `beta-2.1-py3-none-any.whl`: sha256 "),
        "{err}"
    );
    std::fs::remove_file(t.p().join("wh/beta-2.1-py3-none-any.whl")).unwrap();
    let out = wheelhouse(&t, &["--check"], &locked, &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`beta-2.1-py3-none-any.whl`: cannot read")
    );
    // Prune keeps what the lock (and another lock) needs.
    let other = t.p().join("other.json");
    std::fs::write(&other, json!({"wheelhouse": {"dir": "x", "wheels": [{"name": "gamma", "version": "1.0", "file": "gamma-1.0-py3-none-any.whl", "sha256": "0".repeat(64), "size": 1}]}}).to_string()).unwrap();
    let out = wheelhouse(
        &t,
        &["--prune", "--keep-lock", other.to_str().unwrap()],
        &locked,
        &[],
    );
    let s = testsupport::doc_of(&out);
    assert_eq!(
        s["wheelhouse"]["pruned"],
        json!([
            "beta-1.0-py3-none-any.whl",
            "beta-2.0-py3-none-any.whl",
            "delta-1.0-py3-none-any.whl",
            "unrelated-1.0-py3-none-any.whl"
        ])
    );
    let mut left: Vec<String> = std::fs::read_dir(t.p().join("wh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["Alpha-1.0-py3-none-any.whl", "gamma-1.0-py3-none-any.whl"]
    );
}

#[test]
fn usage_stdin_and_pip_errors() {
    let t = setup();
    let out = wheelhouse(&t, &["--offline"], "", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("wheelhouse: no requirements: pipe the output of `hashreq` in"));
    let out = wheelhouse(&t, &["--offline"], "{oops", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("wheelhouse: stdin: not a JSON document")
    );
    let out = wheelhouse(&t, &["--bogus"], "", &[]);
    assert_eq!(out.status.code(), Some(2));
    // A pip that is too old, and no pip at all.
    let fake = t.p().join("oldpy");
    std::fs::write(&fake, "#!/bin/sh\ncase \"$*\" in *--version*) echo 'pip 21.0 from /x (python 3.11)';; *) exec python3 \"$@\";; esac\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let doc = hashreq(&t, "alpha==1.0\n");
    let out = wheelhouse(
        &t,
        &[
            "--dir",
            "wh",
            "--offline",
            "--no-cache",
            "--python",
            fake.to_str().unwrap(),
        ],
        &doc,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pip 21.0 for `") && err.contains("is too old: wheelhouse needs pip >= 22.2"),
        "{err}"
    );
    let out = wheelhouse(
        &t,
        &[
            "--dir",
            "wh",
            "--offline",
            "--python",
            "/nonexistent/python9",
        ],
        &doc,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/python9"));
}

/// A source distribution of `name` 1.0 whose build backend (in the tree, no requirements: no
/// index needed) fails with `message` on stderr, as a C extension without its headers does.
fn broken_sdist(dir: &Path, name: &str, message: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let py = format!(
        r#"import io, sys, tarfile
files = {{
    "pyproject.toml": "[build-system]\nrequires = []\nbuild-backend = 'backend'\nbackend-path = ['.']\n",
    "backend.py": "import sys\ndef get_requires_for_build_wheel(c=None):\n    return []\ndef prepare_metadata_for_build_wheel(d, c=None):\n    raise SystemExit(bfail())\ndef build_wheel(d, c=None, m=None):\n    raise SystemExit(bfail())\ndef bfail():\n    print('compiling _{name}.c', file=sys.stderr)\n    print('{message}', file=sys.stderr)\n    return 1\n",
    "PKG-INFO": "Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
}}
with tarfile.open(sys.argv[1], "w:gz") as t:
    for n, text in files.items():
        data = text.encode()
        info = tarfile.TarInfo("{name}-1.0/" + n)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#
    );
    let st = std::process::Command::new("python3")
        .args(["-c", &py])
        .arg(dir.join(format!("{name}-1.0.tar.gz")))
        .status()
        .unwrap();
    assert!(st.success());
}

/// A failed sdist build showed pip's last six lines ("See above for output")
/// and nothing of the build's own error. Now: the project, its error lines, and a log file.
#[test]
fn a_failed_build_shows_its_own_error() {
    let t = setup();
    broken_sdist(
        &t.p().join("sdists"),
        "mysqlish",
        "fatal error: mysql.h: No such file or directory",
    );
    let doc = hashreq(&t, "mysqlish==1.0\n");
    let out = wheelhouse(
        &t,
        &["--dir", "wh", "--find-links", "sdists"],
        &doc,
        &[("PIP_NO_INDEX", "1")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("building `mysqlish` from its sdist failed"),
        "{err}"
    );
    assert!(
        err.contains("fatal error: mysql.h: No such file or directory"),
        "{err}"
    );
    let log = err
        .lines()
        .find_map(|l| l.strip_prefix("the whole of pip's output: "))
        .unwrap_or_else(|| panic!("no log named in: {err}"));
    assert!(std::fs::read_to_string(log).unwrap().contains("mysql.h"));
}

/// With the index unreachable pip says "versions found: none" after its
/// connection errors; the cause is the network.
#[test]
fn an_unreachable_index_is_named_as_the_cause() {
    let t = setup();
    let doc = hashreq(&t, "nothere==1.0\n");
    let out = wheelhouse(
        &t,
        &["--dir", "wh"],
        &doc,
        &[
            ("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),
            ("PIP_RETRIES", "1"),
            ("PIP_TIMEOUT", "2"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the package index (network)"),
        "{err}"
    );
    assert!(err.contains("hint: check the network or the index URL, or lock from the wheelhouse alone with --offline"), "{err}");
    assert!(!err.contains("versions found"), "{err}");
}

/// An index that answers 404 for a project's page has no such project: a typo, named as one
/// (the line as written, where, the nearest names the wheelhouse holds), not a network failure.
#[test]
fn a_project_the_index_does_not_have_is_named_as_a_typo() {
    let t = setup();
    std::fs::create_dir_all(t.p().join("index/simple")).unwrap();
    std::fs::write(t.p().join("index/simple/index.html"), "<html></html>").unwrap();
    let mut server = std::process::Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
            "--directory",
        ])
        .arg(t.p().join("index"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port N (http://127.0.0.1:N/) ..."
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    let port: String = first
        .split(" port ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    std::fs::write(t.p().join("requirements.txt"), "# deps\nalpah==1.0\n").unwrap();
    let doc = testsupport::tool("hashreq")
        .args(["requirements.txt"])
        .cwd(t.p())
        .ok_text();
    let out = wheelhouse(
        &t,
        &["--dir", "wh"],
        &doc,
        &[
            ("PIP_INDEX_URL", &format!("http://127.0.0.1:{port}/simple")),
            ("PIP_RETRIES", "0"),
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the package index has no project `alpah`, which `alpah==1.0` (requirements.txt:2) asks for"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `alpha`?"), "{err}");
    assert!(!err.contains("network"), "{err}");
}

/// A cross-target lock of a project that has only an sdist.
#[test]
fn cross_target_with_only_an_sdist_says_so() {
    let t = setup();
    broken_sdist(&t.p().join("sdists"), "docoptish", "unused");
    let doc = hashreq(&t, "docoptish==1.0\n");
    let out = wheelhouse(
        &t,
        &[
            "--dir",
            "wh",
            "--find-links",
            "sdists",
            "--python-version",
            "3.12",
            "--platform",
            "manylinux_2_17_x86_64",
        ],
        &doc,
        &[("PIP_NO_INDEX", "1")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "no wheel of `docoptish==1` for the target (Python 3.12, manylinux_2_17_x86_64)"
        ),
        "{err}"
    );
    assert!(
        err.contains("an sdist-only project cannot be built for one"),
        "{err}"
    );
    assert!(err.contains("hint: build it on the target's own interpreter: `wheelhouse --python /path/to/python3.X`"), "{err}");
}

/// A fill killed with Ctrl-C left `.wheelhouse-tmp-*` in DIR for ever; the
/// next run removes it under DIR's lock.
#[test]
fn leftovers_of_a_killed_run_are_removed() {
    let t = setup();
    let wh = t.p().join("wh");
    std::fs::create_dir_all(wh.join(".wheelhouse-tmp-123-0-abc/stage")).unwrap();
    std::fs::write(wh.join(".wheelhouse-tmp-123-0-abc/stage/x.whl"), "half").unwrap();
    std::fs::write(wh.join(".tmp-456-1-def"), "half").unwrap();
    lock(&t, "beta==2.0\n", &["--no-cache"]);
    let mut left: Vec<String> = std::fs::read_dir(&wh)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    left.sort();
    assert!(left.is_empty(), "{left:?}");
}

/// Target options are checked (exit 2) instead of reaching pip.
#[test]
fn target_options_are_checked() {
    let t = setup();
    let doc = hashreq(&t, "beta==2.0\n");
    for (args, why) in [
        (
            &["--python-version", "abc"][..],
            "--python-version `abc` is not a Python version",
        ),
        (&["--python-version", "3.x"][..], "is not a Python version"),
        (
            &["--platform", "foo_bar"][..],
            "--platform `foo_bar` is not a platform tag",
        ),
        (
            &["--platform", "manylinux_2_17"][..],
            "is not a platform tag",
        ),
        (
            &["--implementation", "zz"][..],
            "--implementation `zz` is not one of",
        ),
        (&["--abi", "CP312"][..], "--abi `CP312` is not an ABI tag"),
    ] {
        let mut a = vec!["--dir", "wh", "--offline"];
        a.extend_from_slice(args);
        let out = wheelhouse(&t, &a, &doc, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("wheelhouse: "), "{err}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    for ok in [
        "manylinux_2_17_x86_64",
        "manylinux2014_aarch64",
        "musllinux_1_2_x86_64",
        "linux_x86_64",
        "macosx_11_0_arm64",
        "win_amd64",
        "any",
    ] {
        let out = wheelhouse(
            &t,
            &[
                "--dir",
                "wh",
                "--offline",
                "--python-version",
                "3.11",
                "--platform",
                ok,
            ],
            &doc,
            &[],
        );
        assert_ne!(
            out.status.code(),
            Some(2),
            "{ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // --dir naming a file: a usage error that says so, not "File exists".
    std::fs::write(t.p().join("afile"), "").unwrap();
    let out = wheelhouse(&t, &["--dir", "afile", "--offline"], &doc, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`afile` is not a directory"), "{err}");
}

/// A lock file is named as PEP 751 says (`pylock.toml`, `pylock.<name>.toml`): pip reads any
/// other name as a requirements file and uv refuses it, so wheelhouse refuses to write one,
/// with the rule, before any work.
#[test]
fn a_pylock_name_is_one_pip_and_uv_read_as_a_lock() {
    let t = setup();
    let doc = hashreq(&t, "alpha==1.0\n");
    for bad in [
        "wheelhouse.pylock.toml",
        "pylock..toml",
        "pylock.a.b.toml",
        "lock.toml",
    ] {
        let out = wheelhouse(
            &t,
            &["--dir", "wh", "--offline", "--pylock", bad],
            &doc,
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("`pylock.toml` or `pylock.<name>.toml`"),
            "{err}"
        );
        assert!(!t.p().join(bad).exists());
    }
    let out = wheelhouse(
        &t,
        &[
            "--dir",
            "wh",
            "--offline",
            "--pylock",
            "pylock.wheelhouse.toml",
        ],
        &doc,
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.p().join("pylock.wheelhouse.toml").is_file());
}
