//! The first hour of a new user. What got in their way, as tests: a release that
//! locked other requirements than it packed, scripts that rebuilt on every call and had no
//! `--version`, terminal output that was raw JSON or Python's `None`, and wheelhouse messages
//! that hid the network or listed 350 versions.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};
use testsupport::{failed_with, hermetic_app, mkwheels, repo};

fn script(name: &str, args: &[&str], cwd: &Path) -> Output {
    testsupport::script(name).args(args).cwd(cwd).output()
}

/// Finding 1: `scripts/release` locks the requirements of the commit it packs. With a
/// dependency removed from requirements.txt but not committed, the lock still has it (as the
/// archive's requirements.txt does), and the uncommitted change is named; `--require-clean`
/// refuses.
#[test]
fn a_release_locks_what_it_packs() {
    let t = tempfile::tempdir().unwrap();
    let (app, wh) = hermetic_app(t.path());
    mkwheels(
        &wh,
        json!([{"name": "extra", "version": "1.0", "files": {"extra/__init__.py": ""}}]),
    );
    std::fs::write(app.join("requirements.txt"), "greeter==1.0\nextra==1.0\n").unwrap();
    testsupport::commit_all(&app, "extra");
    // Removed, not committed; and a code edit that is not committed either.
    std::fs::write(app.join("requirements.txt"), "greeter==1.0\n").unwrap();
    std::fs::write(app.join("app.py"), "print('uncommitted')\n").unwrap();
    let args = [
        "--offline",
        "--wheelhouse",
        wh.to_str().unwrap(),
        "--out",
        "dist",
        app.to_str().unwrap(),
    ];
    let out = script("release", &args, t.path());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let doc = testsupport::doc_of(&out);
    assert!(
        err.contains("warning: uncommitted changes are not released"),
        "{err}"
    );
    assert!(
        err.contains("requirements.txt") && err.contains("app.py"),
        "{err}"
    );
    let locked = testsupport::pinned(&doc["wheelhouse"]);
    assert!(locked.contains(&"extra==1.0".to_string()), "{locked:?}");
    // The document names the file where it is in the repository.
    let files = doc["requirements"]["files"].as_array().unwrap();
    assert_eq!(files[0], json!(app.join("requirements.txt")));
    // What the archive holds says the same.
    let archive = doc["bundle"]["path"].as_str().unwrap();
    let listing = testsupport::run("tar")
        .args(["--zstd", "-xOf", archive, "requirements.txt"])
        .ok_text();
    assert!(listing.contains("extra==1.0"), "{listing}");
    let mut strict = args.to_vec();
    strict.insert(0, "--require-clean");
    let err = failed_with(&script("release", &strict, t.path()), 1);
    assert!(err.contains("has uncommitted changes"), "{err}");
    // A requirements file the commit does not hold is refused, not read from the working tree.
    std::fs::write(app.join("new.txt"), "greeter==1.0\n").unwrap();
    let mut other = args.to_vec();
    other.splice(0..0, ["--requirements", "new.txt"]);
    let out = script("release", &other, &app);
    let err = failed_with(&out, 1);
    assert!(err.contains("'new.txt' is not committed"), "{err}");
}

/// Finding 5 and 7: every script says its version; the scripts find binaries that are up to
/// date without running cargo, and say so when they build.
#[test]
fn scripts_have_a_version_and_do_not_rebuild_what_is_built() {
    let version = env!("CARGO_PKG_VERSION");
    for s in ["release", "deploy", "rollback", "demo", "install"] {
        let out = script(s, &["--version"], &repo());
        assert!(out.status.success(), "{s} --version");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{s} (wheelship) {version}\n")
        );
    }
    // A checkout of its own (lib.sh finds the binaries relative to itself), with a `cargo` on
    // PATH that says it ran.
    let t = tempfile::tempdir().unwrap();
    let co = t.path().join("checkout");
    std::fs::create_dir_all(co.join("scripts")).unwrap();
    std::fs::create_dir_all(co.join("target/release")).unwrap();
    std::fs::create_dir_all(co.join("src")).unwrap();
    std::fs::copy(repo().join("scripts/lib.sh"), co.join("scripts/lib.sh")).unwrap();
    std::fs::write(co.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::write(co.join("src/a.rs"), "").unwrap();
    let fake = t.path().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(
        fake.join("cargo"),
        "#!/bin/sh\necho cargo-ran >> \"$LOG\"\n",
    )
    .unwrap();
    testsupport::run("chmod")
        .args(["+x"])
        .args([fake.join("cargo")])
        .ok_text();
    let stamp = |secs_ago: u64| {
        for tool in testsupport::TOOLS {
            let p = co.join("target/release").join(tool);
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs_ago))
                .unwrap();
        }
    };
    let log = t.path().join("cargo.log");
    let find = || {
        Command::new("bash")
            .args(["-c", ". scripts/lib.sh && wheelship_bin"])
            .current_dir(&co)
            .env("PATH", format!("{}:/usr/bin:/bin", fake.display()))
            .env("LOG", &log)
            .env_remove("WHEELSHIP_BIN")
            .output()
            .unwrap()
    };
    // Built after the last change: found, no cargo.
    for source in ["src/a.rs", "Cargo.toml"] {
        let old = std::fs::File::options()
            .write(true)
            .open(co.join(source))
            .unwrap();
        old.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(100))
            .unwrap();
    }
    stamp(10);
    let out = find();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        co.join("target/release").to_str().unwrap()
    );
    assert!(!log.exists(), "cargo ran for binaries that are up to date");
    assert!(out.stderr.is_empty());
    // A source newer than the binaries: built, and said.
    stamp(200);
    let out = find();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("building the wheelship binaries (sources changed since the last build)"));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "cargo-ran\n");
}

/// Finding 7: on a terminal, the scripts' summary has no Python-isms, and `switch list` is a
/// table (the document when piped, or with `--json`).
#[test]
fn a_terminal_gets_words_not_json() {
    let t = tempfile::tempdir().unwrap();
    let (app, wh) = hermetic_app(t.path());
    let args = [
        "--offline",
        "--wheelhouse",
        wh.to_str().unwrap(),
        "--out",
        "dist",
        app.to_str().unwrap(),
    ];
    let doc = testsupport::doc_of(&script("release", &args, t.path()));
    let archive = doc["bundle"]["path"].as_str().unwrap();
    let root = t.path().join("srv");
    // script(1) gives the command a terminal.
    let on_terminal = |cmd: String| {
        testsupport::run("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("WHEELSHIP_BIN", testsupport::bin_dir())
            .ok_text()
    };
    let screen = on_terminal(format!(
        "{} {archive} {}",
        repo().join("scripts/deploy").display(),
        root.display()
    ));
    assert!(screen.contains("(previous: none)"), "{screen}");
    assert!(
        !screen.contains("None") && !screen.contains("True"),
        "{screen}"
    );
    let switch = testsupport::bin("switch");
    let screen = on_terminal(format!(
        "{} --root {} list",
        switch.display(),
        root.display()
    ));
    assert!(
        screen.contains(&format!("* {}", doc["bundle"]["id"].as_str().unwrap())),
        "{screen}"
    );
    assert!(screen.contains("unsigned"), "{screen}");
    assert!(!screen.contains('{'), "{screen}");
    let screen = on_terminal(format!(
        "{} --root {} list --json",
        switch.display(),
        root.display()
    ));
    let listed: Value = serde_json::from_str(screen.trim()).unwrap();
    assert_eq!(listed["switch"]["current"], doc["bundle"]["id"]);
    // Every tool's --help says what it is and its exit statuses.
    for tool in testsupport::TOOLS {
        let help = testsupport::tool(tool).args(["--help"]).ok_text();
        assert!(help.contains("Exit status"), "{tool} --help:\n{help}");
        assert!(
            !help.starts_with("Usage"),
            "{tool} --help has no description"
        );
    }
}

/// Finding 4: an index that cannot be reached reads as the network, even when pip itself says
/// nothing of it (no retries); a pin nothing satisfies lists the versions near it and the
/// newest, with a count, and is quoted as written.
#[test]
fn wheelhouse_says_what_went_wrong() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    std::fs::create_dir_all(d.join("wh")).unwrap();
    std::fs::write(d.join("requirements.txt"), "flask==3.0.3\n").unwrap();
    let req = testsupport::tool("hashreq").cwd(d).ok_text();
    let out = testsupport::tool("wheelhouse")
        .args([
            "--dir",
            "wh",
            "--no-cache",
            "--python",
            testsupport::python3_path(),
        ])
        .cwd(d)
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("PIP_RETRIES", "0")
        .env_remove("PIP_FIND_LINKS")
        .stdin(req)
        .output();
    let err = failed_with(&out, 1);
    assert!(
        err.contains("cannot reach the package index (network)"),
        "{err}"
    );
    assert!(err.contains("127.0.0.1:9"), "{err}");
    // 30 versions of one project in the directory; a pin that is none of them.
    let spec: Vec<Value> = (0..30)
        .map(|i| json!({"name": "demo", "version": format!("0.{i}"), "files": {"demo/__init__.py": ""}}))
        .collect();
    mkwheels(&d.join("wh"), json!(spec));
    std::fs::write(d.join("requirements.txt"), "demo==0.999.0\n").unwrap();
    let req = testsupport::tool("hashreq").cwd(d).ok_text();
    let out = testsupport::tool("wheelhouse")
        .args([
            "--dir",
            "wh",
            "--offline",
            "--no-cache",
            "--python",
            testsupport::python3_path(),
        ])
        .cwd(d)
        .stdin(req)
        .output();
    let err = failed_with(&out, 1);
    assert!(
        err.contains("satisfies `demo==0.999.0` (requirements.txt:1)"),
        "{err}"
    );
    assert!(err.contains("0.28, 0.29; 30 in all"), "{err}");
    assert!(!err.contains("0.5,"), "the whole list: {err}");
}
