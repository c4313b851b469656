//! Signed releases: keys made by Debian's `minisign` tool and by `bundle keygen`, archives
//! signed by `bundle pack --sign` and by `minisign -S`, and every way a signature can be
//! wrong, each refused with nothing extracted. A signature by a trusted key over the archive's
//! bytes admits it when its trusted comment names the release (minisign's own names the
//! archive's file), and, when that comment is wheelship's, names its sha256 too.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::Command;
use testsupport::Fixture;

use serde_json::Value;

const NEEDS: &str = "needs the minisign tool (Debian's minisign; .ci/run installs it)";

fn setup() -> Fixture {
    let t = Fixture::new();
    testsupport::committed_app(&t.p().join("app"));
    std::fs::create_dir_all(t.p().join("srv/releases")).unwrap();
    t
}
/// `bundle pack`, signed with `key` if given; the archive's path.
fn pack(t: &Fixture, key: Option<&Path>, env: &[(&str, &str)]) -> (PathBuf, Value) {
    let mut args = vec!["pack", "--repo", "app", "--out", "dist", "--no-wheels"];
    if let Some(k) = key {
        args.extend(["--sign", k.to_str().unwrap()]);
    }
    let out = testsupport::tool("bundle")
        .cwd(t.p())
        .args(&args)
        .envs(env)
        .output();
    let doc = testsupport::doc_of(&out);
    (PathBuf::from(doc["bundle"]["path"].as_str().unwrap()), doc)
}
/// `bundle unpack` of `archive` with `--trust` keys; (exit code, stderr).
fn unpack(t: &Fixture, archive: &Path, trust: &[&Path]) -> (i32, String) {
    let mut args = vec!["unpack", "--releases", "srv/releases"];
    for k in trust {
        args.extend(["--trust", k.to_str().unwrap()]);
    }
    args.push(archive.to_str().unwrap());
    let out = bundle(t.p(), &args);
    if !out.status.success() {
        assert!(out.stdout.is_empty());
    }
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
fn releases(t: &Fixture) -> Vec<String> {
    std::fs::read_dir(t.p().join("srv/releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock")
        .collect()
}
/// A key pair made by Debian's minisign, without a password.
fn minisign_keys(t: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let (p, s) = (
        t.p().join(format!("{name}.pub")),
        t.p().join(format!("{name}.key")),
    );
    testsupport::run("minisign")
        .args(["-G", "-W", "-p"])
        .args([&p])
        .args(["-s"])
        .args([&s])
        .ok_text();
    (p, s)
}
/// A key pair made by `bundle keygen`.
fn our_keys(t: &Fixture, name: &str, password: Option<&str>) -> (PathBuf, PathBuf) {
    let c = testsupport::tool("bundle")
        .cwd(t.p())
        .args(["keygen", "--dir", "keys", "--name", name]);
    let c = match password {
        Some(pw) => c.env("WHEELSHIP_SIGN_PASSWORD", pw),
        None => c.args(["--unencrypted"]),
    };
    let out = c.output();
    let doc = testsupport::doc_of(&out);
    let k = &doc["keygen"];
    assert_eq!(k["encrypted"], password.is_some());
    (
        PathBuf::from(k["public"].as_str().unwrap()),
        PathBuf::from(k["secret"].as_str().unwrap()),
    )
}

#[test]
#[cfg_attr(
    wheelship_no_minisign,
    ignore = "needs the minisign tool (Debian's minisign; .ci/run installs it)"
)]
fn signed_by_pack_verified_by_minisign_and_unpack() {
    let _ = NEEDS;
    let t = setup();
    let (public, secret) = our_keys(&t, "build", None);
    let (archive, doc) = pack(&t, Some(&secret), &[]);
    let sig = PathBuf::from(doc["bundle"]["signature"].as_str().unwrap());
    assert_eq!(sig, PathBuf::from(format!("{}.minisig", archive.display())));
    assert_eq!(doc["bundle"]["key_id"].as_str().unwrap().len(), 16);
    // Debian's minisign verifies what we signed, and shows what the signature is of.
    let out = Command::new("minisign")
        .args(["-V", "-p"])
        .arg(&public)
        .arg("-m")
        .arg(&archive)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = doc["bundle"]["id"].as_str().unwrap();
    let sha = doc["bundle"]["sha256"].as_str().unwrap();
    assert!(
        said.contains(&format!("wheelship release {id} sha256 {sha}")),
        "{said}"
    );
    let (code, err) = unpack(&t, &archive, &[&public]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(releases(&t), [id]);
    // The host's policy can live in ROOT/trusted instead of on every command line.
    let key_line = std::fs::read_to_string(&public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    std::fs::write(
        t.p().join("srv/trusted"),
        format!("# the build box\n{key_line}\n"),
    )
    .unwrap();
    std::fs::remove_dir_all(t.p().join("srv/releases").join(id)).unwrap();
    let (code, err) = unpack(&t, &archive, &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
#[cfg_attr(
    wheelship_no_minisign,
    ignore = "needs the minisign tool (Debian's minisign; .ci/run installs it)"
)]
fn signed_by_minisign_unpacks_with_trust() {
    let t = setup();
    let (public, secret) = minisign_keys(&t, "debian");
    let (archive, doc) = pack(&t, None, &[]);
    let sign = |comment: Option<&str>| {
        let mut c = testsupport::run("minisign")
            .args(["-S", "-s"])
            .args([&secret])
            .args(["-m"])
            .args([&archive]);
        if let Some(comment) = comment {
            c = c.args(["-t", comment]);
        }
        c.ok_text();
    };
    // minisign's own trusted comment (a timestamp): the signature covers the archive's exact
    // bytes, and the release id and dates are the verified archive's own. It is admitted.
    sign(None);
    let (id, sha) = (
        doc["bundle"]["id"].as_str().unwrap(),
        doc["bundle"]["sha256"].as_str().unwrap(),
    );
    let out = bundle(
        t.p(),
        &[
            "unpack",
            "--releases",
            "srv/releases",
            "--trust",
            public.to_str().unwrap(),
            archive.to_str().unwrap(),
        ],
    );
    let unpacked = testsupport::doc_of(&out);
    assert_eq!(unpacked["release"]["id"], id);
    assert_eq!(releases(&t), [id]);
    // switch checks the recorded signature again under the same policy: over the BLAKE2b-512
    // of the archive unpack recorded. A record whose digest was changed is refused.
    let switch = |args: &[&str]| {
        testsupport::tool("switch")
            .cwd(t.p())
            .args(["--root", "srv", "--trust", public.to_str().unwrap()])
            .args(args)
            .stdin("")
            .output()
    };
    let record = t
        .p()
        .join(format!("srv/releases/{id}/.wheelship/verified.json"));
    let good = std::fs::read_to_string(&record).unwrap();
    let mut r: Value = serde_json::from_str(&good).unwrap();
    let prehash = r["prehash"].as_str().unwrap().to_string();
    assert_eq!(prehash.len(), 128);
    let last = if prehash.ends_with('0') { '1' } else { '0' };
    r["prehash"] = Value::from(format!("{}{last}", &prehash[..127]));
    std::fs::write(&record, r.to_string()).unwrap();
    let refused = switch(&["--release", id]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is not of the archive it was unpacked from"),
        "{err}"
    );
    std::fs::write(&record, &good).unwrap();
    let live = testsupport::doc_of(&switch(&["--release", id]));
    assert_eq!(live["switch"]["current"], id);
    // A release copied in by hand, carrying this record with its id and sha256 made its own:
    // the signed comment names this release, not that one.
    let fake = "20250101T000000Z-aaaaaaaaaaaa-bbbbbbbbbbbb";
    let dir = t.p().join("srv/releases");
    testsupport::run("cp")
        .args(["-a"])
        .args([dir.join(id), dir.join(fake)])
        .ok_text();
    let mut forged: Value = serde_json::from_str(&good).unwrap();
    forged["id"] = Value::from(fake);
    std::fs::write(
        dir.join(fake).join(".wheelship/verified.json"),
        forged.to_string(),
    )
    .unwrap();
    let refused = switch(&["--release", fake]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("names another release"), "{err}");
    std::fs::remove_dir_all(dir.join(fake)).unwrap();
    // A trusted comment of the signer's own words that does not name the release: the
    // signature could then be any archive's; refused, with how to sign.
    std::fs::remove_dir_all(dir.join(id)).unwrap();
    std::fs::remove_file(t.p().join("srv/current")).unwrap();
    sign(Some("signed on the offline box"));
    let (code, err) = unpack(&t, &archive, &[&public]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("does not name release `{id}`")),
        "{err}"
    );
    assert!(releases(&t).is_empty());
    sign(Some(&format!("release {id}, approved")));
    let (code, err) = unpack(&t, &archive, &[&public]);
    assert_eq!(code, 0, "{err}");
    // A trusted comment in wheelship's words must agree with the archive it signs.
    std::fs::remove_dir_all(t.p().join("srv/releases").join(id)).unwrap();
    let other =
        format!("wheelship release 20250101T000000Z-aaaaaaaaaaaa-bbbbbbbbbbbb sha256 {sha}");
    sign(Some(&other));
    let (code, err) = unpack(&t, &archive, &[&public]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("as release `20250101T000000Z"), "{err}");
    assert!(releases(&t).is_empty());
    let comment = format!("wheelship release {id} sha256 {sha}");
    sign(Some(&comment));
    let (code, err) = unpack(&t, &archive, &[&public]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(releases(&t).len(), 1);
    // The base64 line alone is a key too.
    let line = std::fs::read_to_string(&public)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let out = bundle(
        t.p(),
        &[
            "unpack",
            "--releases",
            "srv/releases",
            "--trust",
            &line,
            archive.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(
    wheelship_no_minisign,
    ignore = "needs the minisign tool (Debian's minisign; .ci/run installs it)"
)]
fn every_wrong_signature_is_refused_with_nothing_extracted() {
    let t = setup();
    let (public, secret) = our_keys(&t, "build", Some("correct horse"));
    let (other_public, other_secret) = minisign_keys(&t, "other");
    // An encrypted key signs with its password, which appears nowhere.
    let (a, doc) = pack(
        &t,
        Some(&secret),
        &[("WHEELSHIP_SIGN_PASSWORD", "correct horse")],
    );
    assert!(!doc.to_string().contains("correct horse"));
    // A second release (another commit), signed too.
    std::fs::write(t.p().join("app/app.py"), "print('v2')\n").unwrap();
    testsupport::git(&t.p().join("app"), &["commit", "-qam", "v2"]);
    let (b, _) = pack(
        &t,
        Some(&secret),
        &[("WHEELSHIP_SIGN_PASSWORD", "correct horse")],
    );
    let sig = |p: &Path| PathBuf::from(format!("{}.minisig", p.display()));
    let good_a = std::fs::read(&a).unwrap();
    let good_sig_a = std::fs::read(sig(&a)).unwrap();
    let restore = || {
        std::fs::write(&a, &good_a).unwrap();
        std::fs::write(sig(&a), &good_sig_a).unwrap();
    };

    // A flipped byte.
    let mut bad = good_a.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&a, &bad).unwrap();
    let (code, err) = unpack(&t, &a, &[&public]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match the archive's bytes"), "{err}");
    restore();
    // No signature.
    std::fs::remove_file(sig(&a)).unwrap();
    let (code, err) = unpack(&t, &a, &[&public]);
    assert_eq!(code, 1);
    assert!(err.contains("is not signed"), "{err}");
    restore();
    // Malformed.
    std::fs::write(sig(&a), "untrusted comment: x\nnot base64\n").unwrap();
    let (code, err) = unpack(&t, &a, &[&public]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a minisign signature"), "{err}");
    restore();
    // Signed by a key this host does not trust.
    let out = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(&other_secret)
        .arg("-m")
        .arg(&a)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (code, err) = unpack(&t, &a, &[&public]);
    assert_eq!(code, 1);
    assert!(err.contains("which is not trusted here"), "{err}");
    restore();
    // The signature file of another release.
    std::fs::copy(sig(&b), sig(&a)).unwrap();
    let (code, err) = unpack(&t, &a, &[&public, &other_public]);
    assert_eq!(code, 1);
    assert!(err.contains("does not match the archive's bytes"), "{err}");
    restore();
    assert!(releases(&t).is_empty(), "{:?}", releases(&t));
    // A wrong password says so, and shows no key material.
    let out = testsupport::tool("bundle")
        .cwd(t.p())
        .args([
            "pack",
            "--repo",
            "app",
            "--out",
            "dist2",
            "--no-wheels",
            "--sign",
        ])
        .args([&secret])
        .env("WHEELSHIP_SIGN_PASSWORD", "wrong")
        .output();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot decrypt the secret key"), "{err}");
    let key_text = std::fs::read_to_string(&secret).unwrap();
    assert!(!err.contains(key_text.lines().nth(1).unwrap()));
    // And the good one unpacks.
    let (code, err) = unpack(&t, &a, &[&public]);
    assert_eq!(code, 0, "{err}");
}

/// Keys made by the minisign tool itself sign, with a password and
/// without one (`minisign -G -W`, as CI signing keys usually are: minisign 0.11 leaves such a
/// key's checksum zero, which the minisign crate took for an encrypted key); what they sign
/// verifies with the minisign tool and unpacks with trust.
#[test]
#[cfg_attr(
    wheelship_no_minisign,
    ignore = "needs the minisign tool (Debian's minisign; .ci/run installs it)"
)]
fn keys_made_by_the_minisign_tool_sign() {
    let t = setup();
    let (public, secret) = minisign_keys(&t, "plain");
    let (archive, doc) = pack(&t, Some(&secret), &[]);
    assert!(doc["bundle"]["key_id"].is_string(), "{doc}");
    let verified = |public: &Path, archive: &Path| {
        let out = Command::new("minisign")
            .arg("-V")
            .arg("-p")
            .arg(public)
            .arg("-m")
            .arg(archive)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    verified(&public, &archive);
    let (code, err) = unpack(&t, &archive, &[&public]);
    assert_eq!(code, 0, "{err}");
    // With a password (minisign reads it from stdin when there is no terminal).
    let (p, s) = (t.p().join("pw.pub"), t.p().join("pw.key"));
    testsupport::run("minisign")
        .args(["-G", "-p"])
        .args([&p])
        .args(["-s"])
        .args([&s])
        .stdin("s3cret\ns3cret\n")
        .ok_text();
    std::fs::write(t.p().join("app/app.py"), "print('v2')\n").unwrap();
    testsupport::git(&t.p().join("app"), &["commit", "-qam", "v2"]);
    let (archive, _) = pack(&t, Some(&s), &[("WHEELSHIP_SIGN_PASSWORD", "s3cret")]);
    verified(&p, &archive);
}

/// `bundle ARGS` in `cwd`.
fn bundle(cwd: &Path, args: &[&str]) -> std::process::Output {
    testsupport::tool("bundle").cwd(cwd).args(args).output()
}
