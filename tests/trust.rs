//! Trust that fails closed. Each finding of the attack on what had landed, as a test:
//! a policy with no key is an error, switch checks provenance, old signed releases are not
//! replayed, modes are ours, a planted env is never reused. Keys are made by `bundle keygen`
//! (no outside tool).

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testsupport::{failed_with, git, mkwheels, tool, Fixture};

/// A root, an app with commits at times of our choosing, and a key.
fn setup() -> Fixture {
    let t = Fixture::new();
    std::fs::create_dir_all(t.p().join("app")).unwrap();
    git(&t.p().join("app"), &["init", "-q"]);
    tool("bundle")
        .args(["keygen", "--dir", "keys", "--unencrypted"])
        .cwd(t.p())
        .ok();
    tool("bundle")
        .args([
            "keygen",
            "--dir",
            "keys",
            "--name",
            "other",
            "--unencrypted",
        ])
        .cwd(t.p())
        .ok();
    tool("switch")
        .args(["--root", "srv", "--init", "list"])
        .cwd(t.p())
        .ok();
    t
}
fn root(t: &Fixture) -> PathBuf {
    t.p().join("srv")
}
/// The base64 line of a public key.
fn key(t: &Fixture, name: &str) -> String {
    let text = std::fs::read_to_string(t.p().join(format!("keys/{name}.pub"))).unwrap();
    text.lines().nth(1).unwrap().to_string()
}
/// A commit of the app at `time` (Unix seconds), packed; signed with `key` if given.
fn release(t: &Fixture, time: i64, key: Option<&str>) -> Value {
    let app = t.p().join("app");
    std::fs::write(app.join("app.py"), format!("print({time})\n")).unwrap();
    git(&app, &["add", "-A"]);
    let date = format!("@{time} +0000");
    testsupport::run("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["commit", "-qm", "v"])
        .env("GIT_COMMITTER_DATE", &date)
        .env("GIT_AUTHOR_DATE", &date)
        .cwd(&app)
        .ok_text();
    let mut args = vec!["pack", "--repo", "app", "--out", "dist", "--no-wheels"];
    let secret;
    if let Some(k) = key {
        secret = format!("keys/{k}.key");
        args.extend(["--sign", &secret]);
    }
    tool("bundle").args(&args).cwd(t.p()).stdin("").ok()
}
/// `bundle unpack` of a release's document into the root, with `extra` flags.
fn unpack(t: &Fixture, doc: &Value, extra: &[&str]) -> std::process::Output {
    tool("bundle")
        .args(["unpack", "--releases", "srv/releases"])
        .args(extra)
        .cwd(t.p())
        .stdin(doc.to_string())
        .output()
}
fn switch(t: &Fixture, args: &[&str], stdin: &str) -> std::process::Output {
    tool("switch")
        .args(["--root", "srv"])
        .args(args)
        .cwd(t.p())
        .stdin(stdin)
        .output()
}
fn releases(t: &Fixture) -> Vec<String> {
    testsupport::names(&root(t).join("releases"))
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}
fn current(t: &Fixture) -> Option<String> {
    std::fs::read_link(root(t).join("current"))
        .ok()
        .map(|t| t.file_name().unwrap().to_string_lossy().to_string())
}

/// Finding 1: `ROOT/trusted` that yields no key (empty, comments only, a directory, a link, a
/// file others may write) is an error naming it, never "no policy"; and the policy is found
/// from the root's canonical path however RELEASES is spelled.
#[test]
fn a_policy_that_yields_no_key_fails_closed() {
    let t = setup();
    let unsigned = release(&t, 1_700_000_000, None);
    let trusted = root(&t).join("trusted");
    type Make<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "is empty",
            Box::new(|| std::fs::write(&trusted, "").unwrap()),
        ),
        (
            "holds no key (comments only)",
            Box::new(|| std::fs::write(&trusted, "# none yet\n\n").unwrap()),
        ),
        (
            "is a directory",
            Box::new(|| std::fs::create_dir(&trusted).unwrap()),
        ),
        (
            "is a symlink",
            Box::new(|| std::os::unix::fs::symlink("/nonexistent", &trusted).unwrap()),
        ),
        (
            "is writable by other users",
            Box::new(|| {
                std::fs::write(&trusted, format!("{}\n", key(&t, "wheelship"))).unwrap();
                std::fs::set_permissions(&trusted, PermissionsExt::from_mode(0o666)).unwrap();
            }),
        ),
    ];
    for (why, make) in cases {
        make();
        let err = failed_with(&unpack(&t, &unsigned, &[]), 1);
        assert!(err.contains(why), "{why}: {err}");
        assert!(err.contains(&trusted.display().to_string()), "{err}");
        assert!(releases(&t).is_empty(), "{why}: {:?}", releases(&t));
        let _ = std::fs::remove_file(&trusted);
        let _ = std::fs::remove_dir(&trusted);
    }
    // A key there: the unsigned archive is refused whatever way RELEASES is spelled.
    std::fs::write(&trusted, format!("{}\n", key(&t, "wheelship"))).unwrap();
    std::fs::create_dir(root(&t).join("releases/x")).unwrap();
    std::os::unix::fs::symlink(root(&t).join("releases"), t.p().join("link")).unwrap();
    for spelled in ["srv/releases/x/..", "link", "./srv//releases"] {
        let out = tool("bundle")
            .args(["unpack", "--releases", spelled])
            .cwd(t.p())
            .stdin(unsigned.to_string())
            .output();
        let err = failed_with(&out, 1);
        assert!(err.contains("is not signed"), "{spelled}: {err}");
    }
    assert_eq!(releases(&t), ["x"]);
    // And a signed one goes in, recording who verified it.
    let signed = release(&t, 1_700_000_100, Some("wheelship"));
    let doc = testsupport::doc_of(&unpack(&t, &signed, &[]));
    let id = doc["release"]["id"].as_str().unwrap();
    let record: Value = serde_json::from_slice(
        &std::fs::read(root(&t).join(format!("releases/{id}/.wheelship/verified.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(record["verified_by"], doc["bundle"]["verified_by"]);
    assert_eq!(record["sha256"], signed["bundle"]["sha256"]);
}

/// Finding 2: switch checks provenance. A release unpacked before trust was switched on, one
/// put into releases/ by other means, and one whose record was copied from another release are
/// refused under the policy (deploy and revert); `--insecure-allow-unverified` overrides, with
/// a warning.
#[test]
fn switch_activates_only_what_the_policy_verified() {
    let t = setup();
    // Before trust: an unsigned release, unpacked and live.
    let v1 = release(&t, 1_700_000_000, None);
    let d1 = testsupport::doc_of(&unpack(&t, &v1, &[]));
    testsupport::doc_of(&switch(&t, &[], &d1.to_string()));
    let id1 = d1["release"]["id"].as_str().unwrap().to_string();
    // Trust switched on; a signed release goes live.
    std::fs::write(
        root(&t).join("trusted"),
        format!("{}\n", key(&t, "wheelship")),
    )
    .unwrap();
    let v2 = release(&t, 1_700_000_100, Some("wheelship"));
    let d2 = testsupport::doc_of(&unpack(&t, &v2, &[]));
    testsupport::doc_of(&switch(&t, &[], &d2.to_string()));
    let id2 = d2["release"]["id"].as_str().unwrap().to_string();
    assert_eq!(current(&t).as_deref(), Some(id2.as_str()));
    // The old unsigned release: not by revert, not by --release.
    for args in [
        vec!["revert"],
        vec!["revert", "--to", &id1],
        vec!["--release", &id1],
    ] {
        let err = failed_with(&switch(&t, &args, ""), 1);
        assert!(err.contains("does not satisfy the trust policy"), "{err}");
        assert!(err.contains("not verified when it was unpacked"), "{err}");
    }
    assert_eq!(current(&t).as_deref(), Some(id2.as_str()));
    // A release copied in by hand (no record), and one carrying another release's record.
    let fake = "20990101T000000Z-aaaaaaaaaaaa-bbbbbbbbbbbb";
    let releases = root(&t).join("releases");
    testsupport::run("cp")
        .args(["-a"])
        .args([releases.join(&id1), releases.join(fake)])
        .ok_text();
    let err = failed_with(&switch(&t, &["--release", fake], ""), 1);
    assert!(err.contains("does not satisfy the trust policy"), "{err}");
    std::fs::copy(
        releases.join(&id2).join(".wheelship/verified.json"),
        releases.join(fake).join(".wheelship/verified.json"),
    )
    .unwrap();
    let err = failed_with(&switch(&t, &["--release", fake], ""), 1);
    assert!(err.contains("of another release"), "{err}");
    // Signed by a key that is not trusted (any more).
    std::fs::write(root(&t).join("trusted"), format!("{}\n", key(&t, "other"))).unwrap();
    let err = failed_with(&switch(&t, &["revert", "--to", &id2], ""), 1);
    assert!(err.contains("which is not trusted here"), "{err}");
    // The override says what it does.
    let out = switch(
        &t,
        &["revert", "--to", &id1, "--insecure-allow-unverified"],
        "",
    );
    testsupport::doc_of(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("activating it anyway"));
    assert_eq!(current(&t).as_deref(), Some(id1.as_str()));
    // `switch list` says who verified each release.
    let list = testsupport::doc_of(&switch(&t, &["list"], ""));
    let by = |id: &str| {
        list["switch"]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["verified_by"]
            .clone()
    };
    assert_eq!(by(&id2), d2["bundle"]["verified_by"]);
    assert_eq!(by(&id1), Value::Null);
}

/// Finding 3: replay. An older signed release is not unpacked or deployed over a newer one
/// without `--allow-downgrade`; `switch revert` stays the way back.
#[test]
fn an_older_signed_release_is_not_replayed() {
    let t = setup();
    std::fs::write(
        root(&t).join("trusted"),
        format!("{}\n", key(&t, "wheelship")),
    )
    .unwrap();
    let old = release(&t, 1_700_000_000, Some("wheelship"));
    let kept = release(&t, 1_700_000_100, Some("wheelship"));
    let new = release(&t, 1_700_000_200, Some("wheelship"));
    for v in [&kept, &new] {
        let d = testsupport::doc_of(&unpack(&t, v, &[]));
        testsupport::doc_of(&switch(&t, &[], &d.to_string()));
    }
    let new_id = new["bundle"]["id"].as_str().unwrap().to_string();
    let kept_id = kept["bundle"]["id"].as_str().unwrap().to_string();
    // Never on this root before (pruned long ago, or never here): refused at unpack.
    let err = failed_with(&unpack(&t, &old, &[]), 1);
    assert!(err.contains("older than"), "{err}");
    assert!(err.contains(&new_id), "{err}");
    assert!(err.contains("--allow-downgrade"), "{err}");
    assert_eq!(releases(&t).len(), 2);
    // A kept older one: not by a deploy...
    let err = failed_with(&switch(&t, &["--release", &kept_id], ""), 1);
    assert!(err.contains("refusing a downgrade"), "{err}");
    assert_eq!(current(&t).as_deref(), Some(new_id.as_str()));
    // ...but by revert, the way back.
    testsupport::doc_of(&switch(&t, &["revert"], ""));
    assert_eq!(current(&t).as_deref(), Some(kept_id.as_str()));
    // The operator's explicit choice passes.
    let d = testsupport::doc_of(&unpack(&t, &old, &["--allow-downgrade"]));
    testsupport::doc_of(&switch(&t, &["--allow-downgrade"], &d.to_string()));
    assert_eq!(
        current(&t).as_deref(),
        old["bundle"]["id"].as_str(),
        "the downgrade went live"
    );
}

/// Finding 7: under umask 000 what the tools create is still 0755/0644; a root others may
/// write, or an env another user owns or someone planted under the next lock's key, is refused.
#[test]
fn modes_are_ours_and_a_planted_env_is_never_reused() {
    let t = tempfile::tempdir().unwrap();
    let wheels = mkwheels(
        &t.path().join("wh"),
        json!([{"name": "demo", "version": "1.0", "files": {"demo/__init__.py": "X = 1\n"}}]),
    );
    let lock = testsupport::lock(&wheels).to_string();
    let sh = |cmd: &str| {
        testsupport::run("sh")
            .args(["-c", &format!("umask 000 && {cmd}")])
            .cwd(t.path())
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", testsupport::bin_dir().display()),
            )
            .stdin(lock.clone())
            .output()
    };
    let out = sh(
        "switch --root srv --init list </dev/null >/dev/null && mkenv --envs srv/envs --no-compile",
    );
    let doc = testsupport::doc_of(&out);
    let key = doc["env"]["key"].as_str().unwrap().to_string();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    for d in [
        "srv",
        "srv/releases",
        "srv/envs",
        "srv/envs/.store",
        &format!("srv/envs/{key}"),
    ] {
        assert_eq!(mode(&t.path().join(d)), 0o755, "{d}");
    }
    assert_eq!(
        mode(&t.path().join(format!("srv/envs/{key}/pyvenv.cfg"))),
        0o644
    );
    // Stored files are read-only.
    let stored = t
        .path()
        .join("srv/envs/.store")
        .join(testsupport::sha256(&std::fs::read(&wheels[0]).unwrap()));
    assert_eq!(mode(&stored.join("files/demo/__init__.py")), 0o444);
    // A root others may write.
    std::fs::set_permissions(t.path().join("srv/envs"), PermissionsExt::from_mode(0o777)).unwrap();
    let err = failed_with(&sh("mkenv --envs srv/envs --no-compile"), 1);
    assert!(
        err.contains("is writable by other users (mode 0777)"),
        "{err}"
    );
    std::fs::set_permissions(t.path().join("srv/envs"), PermissionsExt::from_mode(0o755)).unwrap();
    // An env planted under the key mkenv would use: refused, and not reused.
    let planted = t.path().join("other/envs").join(&key);
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("pyvenv.cfg"), "home = /tmp\n").unwrap();
    let err = failed_with(&sh("mkenv --envs other/envs --no-compile"), 1);
    assert!(err.contains("is not an env mkenv made"), "{err}");
    // Another user's env (root can give it away, as CI runs).
    if rustix_euid() == 0 {
        let env = t.path().join(format!("srv/envs/{key}"));
        std::os::unix::fs::chown(&env, Some(65534), None).unwrap();
        let err = failed_with(&sh("mkenv --envs srv/envs --no-compile"), 1);
        assert!(err.contains("is owned by uid 65534"), "{err}");
    }
}

fn rustix_euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// `scripts/deploy` with `args`, the workspace's binaries, in `cwd`.
fn deploy(cwd: &Path, args: &[&str]) -> std::process::Output {
    testsupport::script("deploy").args(args).cwd(cwd).output()
}

/// Finding 9: a file name never reaches a shell, and a document cannot make the script copy
/// another file of this box: the archive's name must be safe, and the document's `bundle.path`
/// must be the archive it describes (its name ends in the id, its bytes have the sha256) before
/// anything is copied anywhere.
#[test]
fn a_file_name_never_reaches_a_shell() {
    let t = setup();
    let v = release(&t, 1_700_000_000, None);
    let archive = PathBuf::from(v["bundle"]["path"].as_str().unwrap());
    let host = format!("{}:/nonexistent/root", "nohost.invalid");
    // A hostile name (with the legacy scp protocol `$(cmd)` ran on the host).
    let hostile = t.p().join("app-$(touch pwned).tar.zst");
    std::fs::copy(&archive, &hostile).unwrap();
    let err = failed_with(&deploy(t.p(), &[hostile.to_str().unwrap(), &host]), 1);
    assert!(err.contains("is not a safe archive name"), "{err}");
    assert!(!t.p().join("pwned").exists());
    // A document whose archive is another file.
    let write = |name: &str, doc: &Value| {
        let p = t.p().join(name);
        std::fs::write(&p, doc.to_string()).unwrap();
        p
    };
    let mut other = v.clone();
    other["bundle"]["path"] = json!("/etc/hostname");
    let err = failed_with(
        &deploy(
            t.p(),
            &[write("other.json", &other).to_str().unwrap(), &host],
        ),
        1,
    );
    assert!(err.contains("is not the archive of release"), "{err}");
    let mut swapped = v.clone();
    let copy = t
        .p()
        .join(format!("x-{}.tar.zst", v["bundle"]["id"].as_str().unwrap()));
    std::fs::write(&copy, b"not the archive").unwrap();
    swapped["bundle"]["path"] = json!(copy);
    let err = failed_with(
        &deploy(
            t.p(),
            &[write("swapped.json", &swapped).to_str().unwrap(), &host],
        ),
        1,
    );
    assert!(err.contains("is not the archive"), "{err}");
    assert!(err.contains("sha256"), "{err}");
    let mut unsafe_id = v.clone();
    unsafe_id["bundle"]["id"] = json!("$(touch pwned)");
    let err = failed_with(
        &deploy(
            t.p(),
            &[write("id.json", &unsafe_id).to_str().unwrap(), &host],
        ),
        1,
    );
    assert!(err.contains("is not a safe release id"), "{err}");
    assert!(!t.p().join("pwned").exists());
}

/// Boundaries issue, finding 7: a commit dated in the future (past a 15-minute skew) is not
/// packed: such a release would make every later real release look like a downgrade.
#[test]
fn a_release_from_the_future_is_not_packed() {
    let t = setup();
    let app = t.p().join("app");
    std::fs::write(app.join("app.py"), "print(2099)\n").unwrap();
    git(&app, &["add", "-A"]);
    testsupport::run("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["commit", "-qm", "v"])
        .env("GIT_COMMITTER_DATE", "@4070908800 +0000")
        .env("GIT_AUTHOR_DATE", "@4070908800 +0000")
        .cwd(&app)
        .ok_text();
    let out = tool("bundle")
        .args(["pack", "--repo", "app", "--out", "dist", "--no-wheels"])
        .cwd(t.p())
        .stdin("")
        .output();
    let err = failed_with(&out, 1);
    assert!(err.contains("refusing a release from the future"), "{err}");
    assert!(err.contains("this build box"), "{err}");
    assert!(
        !t.p().join("dist").exists() || std::fs::read_dir(t.p().join("dist")).unwrap().count() == 0
    );
}
