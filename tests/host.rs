//! The host's door, `wheelship-host`, which `scripts/deploy` (here and over ssh),
//! `scripts/rollback`, the Ansible plugin and a package's maintainer scripts run. Its commands,
//! one after another on a local root: stage then flip is a deploy, revert goes back, list says
//! what is live, a failing step is named, a bad thin copy tells the caller to send the archive
//! whole.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use testsupport::{failed_with, hermetic_app, repo};

fn host(args: &[&str], stdin: &str, cwd: &Path) -> Output {
    testsupport::script("wheelship-host")
        .args(args)
        .cwd(cwd)
        .stdin(stdin)
        .output()
}

fn release(dir: &Path, app: &Path, wh: &Path) -> Value {
    testsupport::run(repo().join("scripts/release"))
        .args([
            "--offline",
            "--wheelhouse",
            wh.to_str().unwrap(),
            "--out",
            "dist",
        ])
        .args([app])
        .cwd(dir)
        .env("WHEELSHIP_BIN", testsupport::bin_dir())
        .ok()
}

#[test]
fn the_host_door_stages_flips_reverts_and_names_what_failed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (app, wh) = hermetic_app(d);
    let v1 = release(d, &app, &wh);
    let root = d.join("srv");
    let root_s = root.to_str().unwrap();
    let archive = v1["bundle"]["path"].as_str().unwrap();
    // deploy = stage, then flip.
    let staged = testsupport::doc_of(&host(&["stage", root_s, archive], &v1.to_string(), d));
    assert!(staged.get("switch").is_none(), "staging flips nothing");
    assert!(!root.join("current").exists());
    assert!(staged["env"]["path"].is_string());
    let live = testsupport::doc_of(&host(
        &["flip", root_s, "--keep", "3"],
        &staged.to_string(),
        d,
    ));
    assert_eq!(live["switch"]["current"], v1["bundle"]["id"]);
    // A second release through deploy; revert goes back; list says what is live.
    std::fs::write(app.join("app.py"), "print('v2')\n").unwrap();
    testsupport::git(&app, &["commit", "-qam", "v2"]);
    let v2 = release(d, &app, &wh);
    let out = host(
        &["deploy", root_s, v2["bundle"]["path"].as_str().unwrap()],
        &v2.to_string(),
        d,
    );
    assert_eq!(
        testsupport::doc_of(&out)["switch"]["current"],
        v2["bundle"]["id"]
    );
    let back = testsupport::doc_of(&host(&["revert", root_s], "", d));
    assert_eq!(back["switch"]["current"], v1["bundle"]["id"]);
    let list = testsupport::doc_of(&host(&["list", root_s], "", d));
    assert_eq!(list["switch"]["current"], v1["bundle"]["id"]);
    assert_eq!(list["switch"]["releases"].as_array().unwrap().len(), 2);
    // A failing step is named, and is the last word.
    let err = failed_with(&host(&["deploy", root_s, "/nonexistent.tar.zst"], "", d), 1);
    let last = format!("wheelship-host: step 'bundle unpack' failed on {root_s} (see above)\n");
    assert!(err.ends_with(&last), "{err}");
    // A thin copy that is not one: the `thick` step fails by name, and the door's exit status
    // (75) tells the caller to send the archive whole; the uploads are gone either way.
    let up = d.join("uploads");
    std::fs::create_dir(&up).unwrap();
    std::fs::write(up.join("x.tar.zst.thin"), b"not a thin copy").unwrap();
    let out = host(
        &["deploy", root_s, "--uploads", up.to_str().unwrap()],
        &v2.to_string(),
        d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("step 'bundle thick' failed"), "{err}");
    assert!(err.contains("send it whole"), "{err}");
    assert!(!up.exists());
    // Usage: exit 2, nothing done.
    for bad in [
        &["deploy"][..],
        &["nonsense", root_s],
        &["deploy", root_s, archive, "--keep", "x"],
    ] {
        let out = host(bad, "", d);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
    let out = host(&["--version"], "", d);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wheelship-host (wheelship) "));
}
