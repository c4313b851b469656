//! Thin copies: a host that holds a release's wheels gets the archive without them
//! and rebuilds it byte for byte; a wheel it does not hold, or holds corrupted, makes the
//! rebuild fail with nothing written, and the full archive is what goes then.

mod common;

use std::path::PathBuf;

use serde_json::{json, Value};
use testsupport::{doc_of, failed_with, sha256, tool, Fixture};

/// An app with two commits' worth of releases over two wheels (random bytes: incompressible,
/// as real wheels are), and a host whose releases directory holds the first.
fn setup() -> Fixture {
    let t = Fixture::new();
    testsupport::committed_app(&t.p().join("app"));
    std::fs::create_dir_all(t.p().join("wh")).unwrap();
    for (name, n) in [("alpha", 300_000u32), ("beta", 200_000)] {
        // xorshift: bytes zstd cannot shrink, as a real wheel's deflated members.
        let mut x = n | 1;
        let data: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(wheel(&t, name), data).unwrap();
    }
    std::fs::create_dir_all(t.p().join("host/incoming")).unwrap();
    t
}
/// v1 packed and on the host, then v2: the same wheels, the code changed.
fn two_releases(t: &Fixture) -> (Value, Value) {
    let v1 = pack(t, &["alpha", "beta"]);
    unpack_on_host(t, &v1);
    std::fs::write(t.p().join("app/app.py"), "print('v2')\n").unwrap();
    testsupport::git(&t.p().join("app"), &["commit", "-qam", "v2"]);
    (v1, pack(t, &["alpha", "beta"]))
}
fn wheel(t: &Fixture, name: &str) -> PathBuf {
    t.p().join(format!("wh/{name}-1.0-py3-none-any.whl"))
}
fn lock(t: &Fixture, names: &[&str]) -> Value {
    let wheels: Vec<Value> = names
        .iter()
        .map(|n| {
            let data = std::fs::read(wheel(t, n)).unwrap();
            json!({"name": n, "version": "1.0", "file": format!("{n}-1.0-py3-none-any.whl"),
                   "sha256": sha256(&data), "size": data.len()})
        })
        .collect();
    json!({"wheelhouse": {"dir": t.p().join("wh"), "wheels": wheels}})
}
/// Packs the app as it is, with `names` locked: the document.
fn pack(t: &Fixture, names: &[&str]) -> Value {
    tool("bundle")
        .args(["pack", "--repo", "app", "--out", "dist"])
        .cwd(t.p())
        .stdin(lock(t, names).to_string())
        .ok()
}
fn unpack_on_host(t: &Fixture, doc: &Value) {
    tool("bundle")
        .args(["unpack", "--releases", "host/releases"])
        .cwd(t.p())
        .stdin(doc.to_string())
        .ok();
}
/// `bundle have` on the host, then `bundle thin` here: the `thin` section.
fn make_thin(t: &Fixture, doc: &Value) -> Value {
    let have = tool("bundle")
        .args(["have", "--releases", "host/releases"])
        .cwd(t.p())
        .ok();
    std::fs::write(t.p().join("have.json"), have.to_string()).unwrap();
    let archive = doc["bundle"]["path"].as_str().unwrap();
    let out = tool("bundle")
        .args([
            "thin",
            "--have",
            "have.json",
            "--out",
            "release.thin",
            archive,
        ])
        .cwd(t.p())
        .stdin(doc.to_string())
        .ok();
    out["thin"].clone()
}
/// `bundle thick` of `release.thin`, told by `doc` (the release's document) what to make.
fn thick(t: &Fixture, doc: &Value) -> std::process::Output {
    tool("bundle")
        .args([
            "thick",
            "--releases",
            "host/releases",
            "--out",
            "host/incoming",
            "release.thin",
        ])
        .cwd(t.p())
        .stdin(doc.to_string())
        .output()
}

#[test]
fn a_thin_copy_rebuilds_the_archive_byte_for_byte() {
    let t = setup();
    // A code-only change: the host has every wheel, so only the code travels.
    let (_, v2) = two_releases(&t);
    let thin = make_thin(&t, &v2);
    assert_eq!(thin["wheels_cut"], 2);
    let full = v2["bundle"]["size"].as_u64().unwrap();
    assert!(
        thin["size"].as_u64().unwrap() * 50 < full,
        "{thin} of {full}"
    );
    let rebuilt = doc_of(&thick(&t, &v2));
    let path = PathBuf::from(rebuilt["bundle"]["path"].as_str().unwrap());
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        format!("{}.tar.zst", v2["bundle"]["id"].as_str().unwrap())
    );
    assert_eq!(
        path.parent().unwrap(),
        t.p().join("host/incoming").canonicalize().unwrap()
    );
    let original = std::fs::read(v2["bundle"]["path"].as_str().unwrap()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), original);
    assert_eq!(rebuilt["bundle"]["sha256"], v2["bundle"]["sha256"]);
    // And it unpacks as any archive: the document it prints is v2's.
    let out = tool("bundle")
        .args(["unpack", "--releases", "host/releases"])
        .cwd(t.p())
        .stdin(rebuilt.to_string())
        .ok();
    assert_eq!(out["release"]["id"], v2["bundle"]["id"]);

    // A new dependency: only that wheel travels (with the code).
    std::fs::write(wheel(&t, "gamma"), vec![7u8; 50_000]).unwrap();
    let v3 = pack(&t, &["alpha", "beta", "gamma"]);
    let thin = make_thin(&t, &v3);
    assert_eq!(thin["wheels_cut"], 2);
    let rebuilt = doc_of(&thick(&t, &v3));
    assert_eq!(rebuilt["bundle"]["sha256"], v3["bundle"]["sha256"]);
}

#[test]
fn a_host_without_the_wheel_or_with_a_bad_copy_rebuilds_nothing() {
    let t = setup();
    let (v1, v2) = two_releases(&t);
    make_thin(&t, &v2);
    let id = v1["bundle"]["id"].as_str().unwrap();
    let held = t.p().join(format!(
        "host/releases/{id}/.wheelship/wheels/alpha-1.0-py3-none-any.whl"
    ));
    // The host's copy changed since: its bytes are refused, not shipped on.
    let good = std::fs::read(&held).unwrap();
    let mut bad = good.clone();
    bad[1000] ^= 1;
    std::fs::write(&held, &bad).unwrap();
    let err = failed_with(&thick(&t, &v2), 1);
    assert!(err.contains("this host's copy has sha256"), "{err}");
    assert_eq!(testsupport::names(&t.p().join("host/incoming")), [".lock"]);
    // Gone: said by name.
    std::fs::remove_file(&held).unwrap();
    let err = failed_with(&thick(&t, &v2), 1);
    assert!(err.contains("`alpha-1.0-py3-none-any.whl`"), "{err}");
    assert!(err.contains("not on this host"), "{err}");
    assert_eq!(testsupport::names(&t.p().join("host/incoming")), [".lock"]);
    // A thin copy that is not one.
    std::fs::write(t.p().join("release.thin"), b"not zstd").unwrap();
    let err = failed_with(&thick(&t, &v2), 1);
    assert!(err.contains("release.thin"), "{err}");
}

/// A thin copy's header, rewritten by `edit`, with its stream as it was.
fn forge(t: &Fixture, edit: impl Fn(&mut Value)) {
    let raw = zstd::decode_all(&std::fs::read(t.p().join("release.thin")).unwrap()[..]).unwrap();
    let nl = raw.iter().position(|&b| b == b'\n').unwrap();
    let mut header: Value = serde_json::from_slice(&raw[..nl]).unwrap();
    edit(&mut header);
    let mut out = serde_json::to_vec(&header).unwrap();
    out.extend_from_slice(&raw[nl..]);
    std::fs::write(
        t.p().join("release.thin"),
        zstd::encode_all(&out[..], 3).unwrap(),
    )
    .unwrap();
}

/// Nothing a thin copy says is trusted before it is checked against the
/// release's document. Repeated cuts of one wheel, another sha256, size or level than the
/// document's, a stream past --max-bytes: refused before anything is written, and no message
/// repeats what the header claims. The output is named by the release id, and what a killed
/// run left in the output directory goes.
#[test]
#[allow(clippy::too_many_lines)] // one story, start to end
fn a_thin_copy_is_held_to_the_document() {
    let t = setup();
    let (_, v2) = two_releases(&t);
    let incoming = t.p().join("host/incoming");
    let stale = incoming.join(".tmp-killed-run");
    std::fs::write(&stale, vec![0u8; 1000]).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = incoming.join(".tmp-another-deploy-uploading");
    std::fs::write(&fresh, b"x").unwrap();
    let nothing_new = || {
        let mut names = testsupport::names(&incoming);
        names.retain(|n| {
            n != ".lock" && n != ".tmp-killed-run" && n != ".tmp-another-deploy-uploading"
        });
        assert!(names.is_empty(), "{names:?}");
    };
    let fake = "f".repeat(64);
    type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "the same wheel cut out twice",
            Box::new(|h: &mut Value| {
                let cut = h["cuts"][0].clone();
                let cuts = h["cuts"].as_array_mut().unwrap();
                for _ in 0..200 {
                    cuts.push(cut.clone());
                }
            }),
        ),
        (
            "not a thin copy of release",
            Box::new(|h: &mut Value| h["sha256"] = json!(fake)),
        ),
        (
            "not a thin copy of release",
            Box::new(|h: &mut Value| h["size"] = json!(1u64 << 40)),
        ),
        (
            "not a thin copy of release",
            Box::new(|h: &mut Value| h["level"] = json!(22)),
        ),
        (
            "not a thin copy of release",
            Box::new(|h: &mut Value| h["id"] = json!("other")),
        ),
        (
            "a cut that is not a wheel file",
            Box::new(|h: &mut Value| h["cuts"][0]["file"] = json!("../../x.minisig")),
        ),
    ];
    for (why, edit) in cases {
        make_thin(&t, &v2);
        forge(&t, edit);
        let err = failed_with(&thick(&t, &v2), 1);
        assert!(err.contains(why), "{why}: {err}");
        assert!(
            !err.contains(&fake) && !err.contains("1099511627776"),
            "{err}"
        );
        nothing_new();
    }
    // A document is required: it, not the copy, says what to make.
    make_thin(&t, &v2);
    let err = failed_with(&thick(&t, &json!({})), 2);
    assert!(err.contains("needs the release's document"), "{err}");
    let out = tool("bundle")
        .args([
            "thick",
            "--releases",
            "host/releases",
            "--out",
            "host/incoming",
            "--max-bytes",
            "1000",
            "release.thin",
        ])
        .cwd(t.p())
        .stdin(v2.to_string())
        .output();
    let err = failed_with(&out, 1);
    assert!(err.contains("--max-bytes"), "{err}");
    // The good copy: named by the id; a killed run's leftover is gone, a fresh upload stays.
    let rebuilt = doc_of(&thick(&t, &v2));
    assert!(rebuilt["bundle"]["path"]
        .as_str()
        .unwrap()
        .ends_with(&format!(
            "/{}.tar.zst",
            v2["bundle"]["id"].as_str().unwrap()
        )));
    assert!(!stale.exists() && fresh.exists());
}
