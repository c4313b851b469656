//! bundle pack and unpack on a real git repository and real wheels files.

mod common;

use std::path::{Path, PathBuf};

use common::{bundle, run};
use serde_json::{json, Value};
use testsupport::sha256;

struct Repo {
    tmp: tempfile::TempDir,
}

impl Repo {
    /// A git repository `app/` with a committed tree, an uncommitted change and an untracked
    /// file, and a wheelhouse `wh/` with two wheels of which the lock names one.
    fn new() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        std::fs::create_dir_all(app.join("pkg/deep")).unwrap();
        std::fs::write(app.join("app.py"), "print('v1')\n").unwrap();
        std::fs::write(app.join("pkg/deep/mod.py"), "x = 1\n").unwrap();
        std::fs::write(app.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("app.py", app.join("main.py")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(app.join(".gitattributes"), "secret.txt export-ignore\n").unwrap();
        std::fs::write(app.join("secret.txt"), "not shipped\n").unwrap();
        testsupport::commit_all(&app, "v1");
        std::fs::write(app.join("app.py"), "print('uncommitted')\n").unwrap();
        std::fs::write(app.join("untracked.py"), "nope\n").unwrap();
        std::fs::create_dir_all(tmp.path().join("wh")).unwrap();
        std::fs::write(
            tmp.path().join("wh/demo-1.0-py3-none-any.whl"),
            b"PK fake wheel bytes 1",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("wh/other-2.0-py3-none-any.whl"),
            b"PK not in the lock",
        )
        .unwrap();
        Repo { tmp }
    }
    fn p(&self) -> &Path {
        self.tmp.path()
    }
    fn lock(&self) -> Value {
        let data = std::fs::read(self.p().join("wh/demo-1.0-py3-none-any.whl")).unwrap();
        json!({
            "requirements": {"hash": format!("sha256:{}", "0".repeat(64))},
            "wheelhouse": {"dir": self.p().join("wh"), "wheels": [
                {"name": "demo", "version": "1.0", "file": "demo-1.0-py3-none-any.whl", "sha256": sha256(&data), "size": data.len()}
            ]}
        })
    }
    fn pack(&self, cwd: &Path, extra: &[&str]) -> Value {
        let app = self.p().join("app");
        let out = self.p().join("dist");
        let mut args = vec![
            "pack",
            "--repo",
            app.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = bundle(cwd, &args, &self.lock().to_string());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

#[test]
fn pack_is_reproducible() {
    let r = Repo::new();
    let a = r.pack(r.p(), &[]);
    let b1 = &a["bundle"];
    assert!(b1["path"]
        .as_str()
        .unwrap()
        .starts_with(r.p().join("dist/app-").to_str().unwrap()));
    assert_eq!(
        b1["entries"],
        json!({"files": 4, "dirs": 2, "symlinks": 1, "wheels": 1})
    );
    let bytes = std::fs::read(b1["path"].as_str().unwrap()).unwrap();
    assert_eq!(b1["sha256"], sha256(&bytes));
    assert_eq!(b1["size"], bytes.len());
    // Other mtimes, another cwd, another umask-made copy of the wheel, one thread.
    std::fs::remove_dir_all(r.p().join("dist")).unwrap();
    let now = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for f in [
        "app/app.py",
        "app/pkg/deep/mod.py",
        "wh/demo-1.0-py3-none-any.whl",
    ] {
        std::fs::File::options()
            .write(true)
            .open(r.p().join(f))
            .unwrap()
            .set_modified(now)
            .unwrap();
    }
    let other_cwd = tempfile::tempdir().unwrap();
    let b = r.pack(other_cwd.path(), &["--threads", "1"]);
    assert_eq!(b["bundle"]["sha256"], b1["sha256"]);
    assert_eq!(b["bundle"]["id"], b1["id"]);
    let c = r.pack(r.p(), &["--threads", "2"]);
    assert_eq!(c["bundle"]["sha256"], b1["sha256"]);
    // A different level is different bytes, same id (same content).
    let d = r.pack(r.p(), &["--level", "3"]);
    assert_ne!(d["bundle"]["sha256"], b1["sha256"]);
    assert_eq!(d["bundle"]["id"], b1["id"]);
}

#[test]
fn contents_are_git_archive_plus_wheels_and_document() {
    let r = Repo::new();
    let doc = r.pack(r.p(), &[]);
    let path = doc["bundle"]["path"].as_str().unwrap();
    // GNU tar and the zstd command read it.
    run("zstd", &["-tq", path], r.p());
    let listed = run("tar", &["-I", "zstd", "-tf", path], r.p());
    let mut ours: Vec<&str> = listed.lines().map(|l| l.trim_end_matches('/')).collect();
    assert_eq!(ours[0], ".wheelship/release.json");
    ours.sort();
    let git = run(
        "git",
        &["archive", "--format=tar", "-o", "../git.tar", "HEAD"],
        &r.p().join("app"),
    );
    assert!(git.is_empty());
    let glisted = run("tar", &["-tf", "git.tar"], r.p());
    let mut expected: Vec<String> = glisted
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    for extra in [
        ".wheelship",
        ".wheelship/release.json",
        ".wheelship/document.json",
        // The SBOM.
        ".wheelship/sbom.cdx.json",
        ".wheelship/wheels",
        ".wheelship/wheels/demo-1.0-py3-none-any.whl",
    ] {
        expected.push(extra.to_string());
    }
    expected.sort();
    assert_eq!(ours, expected);
    assert!(
        !listed.contains("secret.txt")
            && !listed.contains("untracked")
            && !listed.contains("other-2.0")
    );
    // Extracted by GNU tar, the files are the committed ones, byte for byte.
    let x = r.p().join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(
        "tar",
        &["-I", "zstd", "-xf", path, "-C", x.to_str().unwrap()],
        r.p(),
    );
    assert_eq!(
        std::fs::read_to_string(x.join("app.py")).unwrap(),
        "print('v1')\n"
    );
    assert_eq!(
        std::fs::read_link(x.join("main.py")).unwrap(),
        PathBuf::from("app.py")
    );
    let verbose = run("tar", &["-I", "zstd", "-tvf", path], r.p());
    assert!(
        verbose
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x 0/0") && l.ends_with("run.sh")),
        "{verbose}"
    );
    assert!(verbose.lines().all(|l| l.contains(" 0/0 ")), "{verbose}");
    let embedded: Value =
        serde_json::from_str(&std::fs::read_to_string(x.join(".wheelship/document.json")).unwrap())
            .unwrap();
    // The lock as the archive carries it: the wheels are the release's own (unpack says
    // where), not the build box's directory.
    let mut lock = r.lock();
    lock["wheelhouse"]["dir"] = json!("/.wheelship/wheels");
    assert_eq!(embedded, lock);
}

#[test]
fn unpack_round_trip_and_reuse() {
    let r = Repo::new();
    let packed = r.pack(r.p(), &[]);
    let rel = r.p().join("srv/releases");
    let out = bundle(
        r.p(),
        &["unpack", "--releases", rel.to_str().unwrap()],
        &packed.to_string(),
    );
    let doc = testsupport::doc_of(&out);
    let id = packed["bundle"]["id"].as_str().unwrap();
    let dir = std::fs::canonicalize(&rel).unwrap().join(id);
    assert_eq!(doc["release"]["id"], id);
    assert_eq!(doc["release"]["dir"], dir.to_str().unwrap());
    assert_eq!(
        doc["wheelhouse"]["dir"],
        dir.join(".wheelship/wheels").to_str().unwrap()
    );
    assert_eq!(
        doc["wheelhouse"]["wheels"],
        r.lock()["wheelhouse"]["wheels"]
    );
    assert_eq!(doc["requirements"], r.lock()["requirements"]);
    assert_eq!(doc["bundle"]["sha256"], packed["bundle"]["sha256"]);
    assert_eq!(
        std::fs::read(dir.join(".wheelship/wheels/demo-1.0-py3-none-any.whl")).unwrap(),
        b"PK fake wheel bytes 1"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("pkg/deep/mod.py")).unwrap(),
        "x = 1\n"
    );
    // Again: the same release is reused, with the same output.
    let again = bundle(
        r.p(),
        &["unpack", "--releases", rel.to_str().unwrap()],
        &packed.to_string(),
    );
    assert!(again.status.success());
    assert_eq!(again.stdout, out.stdout);
    let names: Vec<String> = std::fs::read_dir(&rel)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| !n.starts_with('.')).count(),
        1,
        "{names:?}"
    );
    assert!(
        names.iter().all(|n| !n.starts_with(".staging-")),
        "{names:?}"
    );
}

#[test]
fn a_corrupted_byte_is_detected() {
    let r = Repo::new();
    let packed = r.pack(r.p(), &[]);
    let path = PathBuf::from(packed["bundle"]["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let rel = r.p().join("releases");
    // With the document: the sha256 does not match, before anything is extracted.
    let out = bundle(
        r.p(),
        &["unpack", "--releases", rel.to_str().unwrap()],
        &packed.to_string(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sha256 mismatch: the document says"), "{err}");
    // Without it: zstd's checksum (or the tar structure) catches it.
    let out = bundle(
        r.p(),
        &[
            "unpack",
            "--releases",
            rel.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
        "",
    );
    testsupport::failed_with(&out, 1);
    let left: Vec<_> = std::fs::read_dir(&rel)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".lock")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn pack_errors() {
    let r = Repo::new();
    let app = r.p().join("app");
    // A wheel that changed since it was locked.
    std::fs::write(r.p().join("wh/demo-1.0-py3-none-any.whl"), b"tampered").unwrap();
    let mut lock = r.lock();
    lock["wheelhouse"]["wheels"][0]["sha256"] = json!("0".repeat(64));
    let out = bundle(
        r.p(),
        &["pack", "--repo", app.to_str().unwrap()],
        &lock.to_string(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("demo-1.0-py3-none-any.whl` does not match the lock"),
        "{err}"
    );
    assert!(
        err.contains("\n\nhint: the wheelhouse changed since it was locked"),
        "{err}"
    );
    // No lock at all.
    let out = bundle(r.p(), &["pack", "--repo", app.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `wheelhouse` section"));
    let out = bundle(
        r.p(),
        &[
            "pack",
            "--repo",
            app.to_str().unwrap(),
            "--no-wheels",
            "--out",
            "d",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad rev, a missing repo, a bad level.
    let out = bundle(
        r.p(),
        &[
            "pack",
            "--repo",
            app.to_str().unwrap(),
            "--rev",
            "nope",
            "--no-wheels",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "bundle: `nope` is not a commit in `{}`\n",
            std::fs::canonicalize(&app).unwrap().display()
        )
    );
    let out = bundle(r.p(), &["pack", "--repo", "missing", "--no-wheels"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "bundle: repository `missing`: No such file or directory\n"
    );
    let out = bundle(r.p(), &["pack", "--level", "99"], "");
    assert_eq!(out.status.code(), Some(2));
    let out = bundle(r.p(), &["pack"], "not json");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("bundle: stdin: not a JSON document"));
    let out = bundle(r.p(), &["unpack"], "");
    assert_eq!(out.status.code(), Some(2));
}

/// A file whose name holds a newline and an escape: refused at pack (every host's unpack
/// would refuse it), named with the characters escaped.
#[test]
fn names_unpack_would_refuse_are_refused_at_pack() {
    let r = Repo::new();
    let app = r.p().join("app");
    std::fs::write(app.join("x\n\x1b[2J.py"), "").unwrap();
    testsupport::commit_all(&app, "an odd name");
    let out = bundle(
        r.p(),
        &["pack", "--repo", app.to_str().unwrap(), "--no-wheels"],
        "",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`x\\n\\u{1b}[2J.py` has a control character"),
        "{err}"
    );
    assert!(!err.contains('\x1b'));
}

/// Boundaries issue, finding 11: an origin URL with credentials and no path
/// (`https://ci:TOKEN@git.example.com`), or any other shape, reaches the provenance rebuilt
/// without its user-info.
#[test]
fn the_provenance_never_carries_credentials() {
    let r = Repo::new();
    let app = r.p().join("app");
    for (origin, want) in [
        (
            "https://ci:T0KEN@git.example.com",
            "https://git.example.com",
        ),
        (
            "https://ci:T0KEN@git.example.com/o/app.git",
            "https://git.example.com/o/app.git",
        ),
        (
            "deploy:T0KEN@git.example.com:o/app.git",
            "git.example.com:o/app.git",
        ),
    ] {
        let _ = std::process::Command::new("git")
            .args(["remote", "remove", "origin"])
            .current_dir(&app)
            .output();
        run("git", &["remote", "add", "origin", origin], &app);
        let doc = r.pack(r.p(), &[]);
        let prov = std::fs::read_to_string(doc["bundle"]["provenance"].as_str().unwrap()).unwrap();
        assert!(!prov.contains("T0KEN") && !prov.contains("ci:"), "{prov}");
        assert!(prov.contains(want), "{want}: {prov}");
    }
}

/// Two build boxes, two directories: the same commit, the same wheels and the same options
/// give the same release id and the same archive bytes, wherever the repository and the
/// wheelhouse are and whatever interpreter path and kernel the lock was made with.
#[test]
fn the_release_does_not_depend_on_where_it_was_built() {
    let a = Repo::new();
    let b = tempfile::tempdir().unwrap();
    run(
        "cp",
        &[
            "-a",
            a.p().join("app").to_str().unwrap(),
            a.p().join("wh").to_str().unwrap(),
            b.path().to_str().unwrap(),
        ],
        Path::new("/"),
    );
    let pack = |base: &Path, python: &str, kernel: &str| -> Value {
        let mut lock = a.lock();
        lock["wheelhouse"]["dir"] = json!(base.join("wh"));
        lock["wheelhouse"]["target"] = json!({"native": true, "python": "3.11.2",
            "executable": python, "markers": {"python_version": "3.11", "platform_release": kernel}});
        lock["requirements"]["files"] = json!([base.join("app/requirements.txt")]);
        let out = bundle(
            base,
            &[
                "pack",
                "--repo",
                base.join("app").to_str().unwrap(),
                "--out",
                base.join("dist").to_str().unwrap(),
            ],
            &lock.to_string(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let one = pack(a.p(), "/usr/bin/python3", "6.1.0");
    let two = pack(b.path(), "/opt/py/bin/python3", "6.18.4");
    assert_eq!(one["bundle"]["id"], two["bundle"]["id"]);
    assert_eq!(one["bundle"]["sha256"], two["bundle"]["sha256"]);
}
