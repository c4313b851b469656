//! `bundle deb` takes only what the release's document proves, into fields that cannot grow a
//! line: the archive as the document describes it (name, size, sha256, through the one file
//! opened), the signature beside it and only if it is one, control fields of one line, and a
//! package name in the apps' own namespace.

use serde_json::{json, Value};
use testsupport::{failed_with, Fixture};

/// A release of a committed app, packed without wheels: its document.
fn release(t: &Fixture) -> Value {
    testsupport::committed_app(&t.join("app"));
    t.tool("bundle")
        .args([
            "pack",
            "--repo",
            "app",
            "--out",
            "dist",
            "--no-wheels",
            "--name",
            "zstd",
        ])
        .stdin("")
        .ok()
}

fn deb(t: &Fixture, doc: &Value, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    t.tool("bundle")
        .args(["deb", "--out", "debs"])
        .args(extra)
        .envs(env)
        .stdin(doc.to_string())
        .output()
}

#[test]
fn a_deb_takes_only_what_its_document_proves() {
    let t = Fixture::new();
    let doc = release(&t);
    // The app is named like a system package: its package is in the apps' namespace.
    let made: Value = serde_json::from_slice(&deb(&t, &doc, &[], &[]).stdout).unwrap();
    assert_eq!(made["deb"]["package"], "wsapp-zstd");
    // A signature path that names the signing key (or any file) is not packaged.
    std::fs::write(
        t.join("build.key"),
        "untrusted comment: minisign encrypted secret key\nRWRTY0Iy...\n",
    )
    .unwrap();
    let mut sig = doc.clone();
    sig["bundle"]["signature"] = json!(t.join("build.key"));
    let err = failed_with(&deb(&t, &sig, &[], &[]), 1);
    assert!(err.contains("is not the archive's signature"), "{err}");
    // Beside the archive, a file that is not a signature is refused too.
    let beside = format!("{}.minisig", doc["bundle"]["path"].as_str().unwrap());
    std::fs::copy(t.join("build.key"), &beside).unwrap();
    let err = failed_with(&deb(&t, &doc, &[], &[]), 1);
    assert!(err.contains("is not a minisign signature"), "{err}");
    std::fs::remove_file(&beside).unwrap();
    // `bundle.path` naming another file of the box, or the archive's name with other bytes.
    for path in [
        "/etc/passwd".to_string(),
        format!(
            "{}/x-{}.tar.zst",
            t.p().display(),
            doc["bundle"]["id"].as_str().unwrap()
        ),
    ] {
        if path.ends_with(".tar.zst") {
            std::fs::write(&path, "not the archive").unwrap();
        }
        let mut other = doc.clone();
        other["bundle"]["path"] = json!(path);
        let err = failed_with(&deb(&t, &other, &[], &[]), 1);
        assert!(err.contains("is not the archive"), "{err}");
    }
    // A newline in DEBEMAIL would add control fields: refused where it enters.
    let env = [
        ("DEBFULLNAME", "Eve"),
        ("DEBEMAIL", "e@x\nPre-Depends: evil\nReplaces: coreutils"),
    ];
    let err = failed_with(&deb(&t, &doc, &[], &env), 2);
    assert!(
        err.contains("DEBEMAIL holds the control character"),
        "{err}"
    );
    // A name longer than lintian's file-name limit allows.
    let err = failed_with(&deb(&t, &doc, &["--package", &"a".repeat(27)], &[]), 2);
    assert!(err.contains("longer than 26 characters"), "{err}");
    assert!(!t.join("debs").exists() || std::fs::read_dir(t.join("debs")).unwrap().count() == 1);
}
