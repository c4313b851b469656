//! Releases as Debian packages, with the real dpkg, apt and lintian (as root; the
//! test installs and purges its own packages: `wheelship` and `wsdeb-<pid>`). Install,
//! upgrade (the env reused: same lock), downgrade (a flip), a failing check during an upgrade
//! (the previous release stays live, dpkg says why), remove, purge, reinstall, and apt from a
//! local repository made by scripts/apt-repo.

// One scenario, from the first install to the last purge, reads best as one function.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use testsupport::{commit_all, hermetic_app, repo};

fn sh(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        // An operator's shell variable (a checkout's build) never reaches a package's deploy:
        // its programs are the tools package's.
        .env("WHEELSHIP_BIN", "/nonexistent/checkout/target/release")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = sh(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Purges what the test installed, whatever happened.
struct Installed {
    packages: Vec<String>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for p in &self.packages {
            let _ = sh("dpkg", &["--purge", p]);
            let _ = std::fs::remove_dir_all(format!("/var/lib/wheelship/{p}"));
        }
    }
}

fn installed(package: &str) -> bool {
    let out = sh("dpkg-query", &["-W", "-f=${Status}", package]);
    String::from_utf8_lossy(&out.stdout).contains("installed")
        && !String::from_utf8_lossy(&out.stdout).contains("not-installed")
        && !String::from_utf8_lossy(&out.stdout).contains("config-files")
}

fn current(root: &Path) -> String {
    std::fs::read_link(root.join("current"))
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string()
}

/// The envs in ROOT/envs (named by their 32-hex key; the store and the lock aside).
fn envs(root: &Path) -> usize {
    std::fs::read_dir(root.join("envs"))
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .to_string();
            n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .count()
}

/// `bundle deb` of a release document: the package's path and version.
fn deb(doc: &str, out: &Path, package: &str, root: &Path) -> (PathBuf, String) {
    let d = testsupport::tool("bundle")
        .args(["deb", "--out"])
        .args([out])
        .args(["--package", package, "--root"])
        .args([root])
        .stdin(doc)
        .ok();
    (
        PathBuf::from(d["deb"]["path"].as_str().unwrap()),
        d["deb"]["version"].as_str().unwrap().to_string(),
    )
}

fn release(app: &Path, wh: &Path, out: &Path, extra: &[&str]) -> String {
    testsupport::script("release")
        .args(["--offline", "--wheelhouse"])
        .args([wh])
        .args(["--out"])
        .args([out])
        .args(extra)
        .args([app])
        .ok_text()
}

/// What lintian (pedantic) says is an error or a warning: none is accepted.
fn lintian_errors(deb: &Path) -> Vec<String> {
    let out = sh(
        "lintian",
        &[
            "--pedantic",
            "--tag-display-limit",
            "0",
            deb.to_str().unwrap(),
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .map(str::to_string)
        .collect()
}

#[test]
#[cfg_attr(
    any(wheelship_not_root, wheelship_no_debian),
    ignore = "runs dpkg and apt as root, with dpkg-dev, apt-utils, binutils and lintian (.ci/run installs them)"
)]
fn debian_packages_install_upgrade_downgrade_purge_and_apt() {
    assert!(
        !installed("wheelship"),
        "a wheelship package is installed on this machine: the test installs and purges its own (dpkg --purge wheelship)"
    );
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let app_name = format!("wsdeb-{}", std::process::id());
    // App packages live in their own namespace.
    let package = format!("wsapp-{app_name}");
    let root = p.join("srv");
    let mut guard = Installed {
        packages: vec![package.clone()],
    };
    // The tools, as a package.
    let tools = testsupport::script("install")
        .args(["--deb"])
        .args([p.join("tools")])
        .ok_text();
    let tools = PathBuf::from(tools.trim());
    assert!(
        lintian_errors(&tools).is_empty(),
        "{:?}",
        lintian_errors(&tools)
    );
    guard.packages.push("wheelship".into());
    ok("dpkg", &["-i", tools.to_str().unwrap()]);
    assert!(Path::new("/usr/bin/wheelship-host").is_file());

    // Three releases: v1, v2 (code only: the same lock), v3 (a code change the check fails).
    let (app, wh) = hermetic_app(p);
    let dist = p.join("dist");
    let debs = p.join("debs");
    let v1 = release(&app, &wh, &dist, &["--deb"]);
    let d1: Value = serde_json::from_str(&v1).unwrap();
    // scripts/release --deb: the package beside the archive, named by the app.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/document.schema.json")).unwrap(),
    )
    .unwrap();
    assert!(
        jsonschema::validator_for(&schema).unwrap().is_valid(&d1),
        "{d1}"
    );
    let made = PathBuf::from(d1["deb"]["path"].as_str().unwrap());
    assert_eq!(made.parent().unwrap(), dist.canonicalize().unwrap());
    assert!(
        lintian_errors(&made).is_empty(),
        "{:?}",
        lintian_errors(&made)
    );
    let (deb1, ver1) = deb(&v1, &debs, &app_name, &root);
    // The same release gives the same bytes.
    let again = deb(&v1, &p.join("debs-again"), &app_name, &root).0;
    assert_eq!(
        std::fs::read(&deb1).unwrap(),
        std::fs::read(&again).unwrap()
    );
    assert!(
        lintian_errors(&deb1).is_empty(),
        "{:?}",
        lintian_errors(&deb1)
    );
    std::fs::write(
        app.join("app.py"),
        "import greeter\nprint(greeter.hello('v2'))\n",
    )
    .unwrap();
    commit_all(&app, "v2");
    let v2 = release(&app, &wh, &dist, &[]);
    let (deb2, ver2) = deb(&v2, &debs, &app_name, &root);
    assert!(sh("dpkg", &["--compare-versions", &ver2, "gt", &ver1])
        .status
        .success());
    let id = |doc: &str| -> String {
        let v: Value = serde_json::from_str(doc).unwrap();
        v["bundle"]["id"].as_str().unwrap().to_string()
    };

    // Install, upgrade (the env reused), downgrade (a flip).
    ok("dpkg", &["-i", deb1.to_str().unwrap()]);
    assert_eq!(current(&root), id(&v1));
    assert_eq!(envs(&root), 1);
    // The postinst again (as `dpkg --configure -a` would): the same release, nothing moves.
    let history = std::fs::read_to_string(root.join("history.jsonl")).unwrap();
    ok(
        &format!("/var/lib/dpkg/info/{package}.postinst"),
        &["configure", &ver1],
    );
    assert_eq!(current(&root), id(&v1));
    assert_eq!(
        std::fs::read_to_string(root.join("history.jsonl")).unwrap(),
        history
    );
    ok("dpkg", &["-i", deb2.to_str().unwrap()]);
    assert_eq!(current(&root), id(&v2));
    assert_eq!(envs(&root), 1, "the same lock: the env is shared");
    let down = sh("dpkg", &["-i", deb1.to_str().unwrap()]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(String::from_utf8_lossy(&down.stderr).contains("is a downgrade, as asked: allowed"));
    assert_eq!(current(&root), id(&v1));

    // A failing check during an upgrade: dpkg fails with switch's words, v1 stays live.
    let conf = format!("/etc/wheelship/{package}.conf");
    let settings = std::fs::read_to_string(&conf).unwrap();
    let failing =
        format!("{settings}check = test -e \"$WHEELSHIP_ROOT/shared/fixed\"\ncheck-timeout = 1\n");
    std::fs::write(&conf, failing).unwrap();
    let failed = sh("dpkg", &["-i", deb2.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        err.contains("health check") && err.contains("rolled back to"),
        "{err}"
    );
    assert!(
        err.contains("post-installation script subprocess returned error"),
        "{err}"
    );
    assert_eq!(current(&root), id(&v1));
    // The operator fixes the cause and configures again: the version that failed goes live
    // once its check passes (it converges; no new build needed).
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::fs::write(root.join("shared/fixed"), "").unwrap();
    let again = sh("dpkg", &["--configure", "-a"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("is configured again"));
    assert_eq!(current(&root), id(&v2));
    assert!(installed(&package));
    std::fs::remove_file(root.join("shared/fixed")).unwrap();
    std::fs::write(&conf, &settings).unwrap();
    ok("dpkg", &["-i", deb1.to_str().unwrap()]);
    assert_eq!(current(&root), id(&v1));

    // A second package given the same root refuses it: the root names its owner.
    let other = format!("{app_name}-other");
    guard.packages.push(format!("wsapp-{other}"));
    let (deb_other, _) = deb(&v1, &p.join("debs-other"), &other, &root);
    let refused = sh("dpkg", &["-i", deb_other.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains(&format!("belongs to package `{package}`")),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // Nor does its trigger rebuild that root (its settings name it; the root names the first).
    let trig = sh(
        "wheelship-host",
        &["package", "triggered", &format!("wsapp-{other}")],
    );
    assert!(!trig.status.success());
    assert!(
        String::from_utf8_lossy(&trig.stderr).contains("trigger does not rebuild it"),
        "{}",
        String::from_utf8_lossy(&trig.stderr)
    );
    ok("dpkg", &["--purge", &format!("wsapp-{other}")]);
    assert_eq!(
        current(&root),
        id(&v1),
        "the other package's purge touched nothing"
    );

    // The dpkg trigger on the system's python3: the package declares it, and `postinst
    // triggered` (run by dpkg once the trigger is activated, as an interpreter upgrade does)
    // rebuilds the envs for the interpreter now there; the same interpreter: nothing moves.
    let info = sh("dpkg-deb", &["-I", deb1.to_str().unwrap(), "triggers"]);
    let triggers = String::from_utf8_lossy(&info.stdout);
    assert!(
        triggers.contains("interest-noawait /usr/bin/python3\n"),
        "{triggers}"
    );
    let history = std::fs::read_to_string(root.join("history.jsonl")).unwrap();
    ok("dpkg-trigger", &["--no-await", "/usr/bin/python3"]);
    let ran = sh("dpkg", &["--triggers-only", "--pending"]);
    let said = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "{package}: the system's Python changed (dpkg trigger)"
        )),
        "{said}"
    );
    assert_eq!(current(&root), id(&v1));
    assert_eq!(
        std::fs::read_to_string(root.join("history.jsonl")).unwrap(),
        history,
        "the envs were for this interpreter already"
    );

    // Remove leaves the data; purge removes what the package made, keeps the app's data in
    // shared/ and says where; a reinstall after it works.
    ok("dpkg", &["-r", &package]);
    assert_eq!(current(&root), id(&v1));
    std::fs::write(root.join("shared/app.sqlite"), "data").unwrap();
    let purge = sh("dpkg", &["--purge", &package]);
    let said = String::from_utf8_lossy(&purge.stderr);
    assert!(said.contains("purging"), "{said}");
    assert!(
        said.contains(&format!("kept {}/shared", root.display())),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("shared/app.sqlite")).unwrap(),
        "data"
    );
    for gone in ["releases", "envs", "current", "history.jsonl", ".package"] {
        assert!(!root.join(gone).exists(), "{gone}");
    }
    assert!(!Path::new(&format!("/var/lib/wheelship/{package}")).exists());
    std::fs::remove_dir_all(&root).unwrap();
    ok("dpkg", &["-i", deb1.to_str().unwrap()]);
    assert_eq!(current(&root), id(&v1));
    ok("dpkg", &["--purge", &package]);
    assert!(!root.exists());

    // apt, from a directory made a repository: the newest, then an older version.
    let repo_dir = p.join("apt");
    std::fs::create_dir(&repo_dir).unwrap();
    for d in [&deb1, &deb2] {
        std::fs::copy(d, repo_dir.join(d.file_name().unwrap())).unwrap();
    }
    testsupport::script("apt-repo").args([&repo_dir]).ok_text();
    let list = p.join("sources.list");
    std::fs::write(
        &list,
        format!("deb [trusted=yes] file:{} ./\n", repo_dir.display()),
    )
    .unwrap();
    let lists = p.join("lists");
    std::fs::create_dir_all(lists.join("partial")).unwrap();
    let apt = |args: &[&str]| {
        let mut a: Vec<String> = vec![
            "-o".into(),
            format!("Dir::Etc::SourceList={}", list.display()),
            "-o".into(),
            "Dir::Etc::SourceParts=/nonexistent".into(),
            "-o".into(),
            format!("Dir::State::Lists={}", lists.display()),
            "-q".into(),
            "-y".into(),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        ok("apt-get", &refs)
    };
    apt(&["update"]);
    apt(&["install", &package]);
    assert_eq!(current(&root), id(&v2));
    apt(&[
        "install",
        "--allow-downgrades",
        &format!("{package}={ver1}"),
    ]);
    assert_eq!(current(&root), id(&v1));
    assert_eq!(envs(&root), 1);
    drop(guard);
    assert!(!installed(&package) && !installed("wheelship"));
    assert!(!root.exists());
}
