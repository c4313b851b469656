//! wheelhouse with uv resolving: DIR first and no index when it satisfies the
//! request, only the missing files fetched from an index (a local one the test serves, with
//! the sha256 of each file) and checked before they get their name, several targets in one
//! run, and mkenv picking the lock of its interpreter.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};
use testsupport::{doc_of, failed_with, hashreq_doc, mkwheels, pinned, repo, tool, Fixture};

fn uv() -> String {
    std::env::var("WHEELSHIP_UV").expect("WHEELSHIP_UV")
}

/// A package index over `root/files` (tests/support/index.py), stopped when dropped.
struct Index {
    child: Child,
    url: String,
    root: PathBuf,
}

impl Index {
    fn start(root: &Path) -> Index {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/support/index.py"))
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the index's port");
        Index {
            child,
            url: format!("http://127.0.0.1:{port}/simple"),
            root: root.to_path_buf(),
        }
    }
    /// The files fetched from it (not its pages).
    fn fetched(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("/files/"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup() -> Fixture {
    let t = Fixture::new();
    mkwheels(
        &t.p().join("wh"),
        json!([
            {"name": "Alpha", "version": "1.0", "extras": ["fast"],
             "requires": ["beta>=2", "gamma; extra == 'fast'", "delta; python_version < '3'"]},
            {"name": "beta", "version": "2.0"},
            {"name": "beta", "version": "2.1"},
        ]),
    );
    t
}
/// wheelhouse with uv, its configuration and pip's pointed at `index` (or nowhere).
fn wheelhouse(t: &Fixture, reqs: &str, args: &[&str], index: Option<&str>) -> Output {
    let doc = hashreq_doc(t.p(), reqs);
    let index = index.unwrap_or("http://127.0.0.1:9/simple");
    tool("wheelhouse")
        .cwd(t.p())
        .args([
            "--uv",
            &uv(),
            "--python",
            testsupport::python3_path(),
            "--dir",
            "wh",
        ])
        .args(args)
        .env("WHEELSHIP_CACHE", t.p().join("cache"))
        .env("UV_CACHE_DIR", t.p().join("uv-cache"))
        .env("PIP_INDEX_URL", index)
        .env_remove("PIP_FIND_LINKS")
        .env_remove("UV_INDEX_URL")
        .env_remove("UV_DEFAULT_INDEX")
        .env("UV_HTTP_TIMEOUT", "5")
        .stdin(doc)
        .output()
}
fn mkenv(t: &Fixture, doc: &Value) -> Output {
    tool("mkenv")
        .cwd(t.p())
        .args(["--envs", "envs", "--no-compile", "--python"])
        .args([testsupport::python3_path()])
        .stdin(doc.to_string())
        .output()
}
fn files(t: &Fixture, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(t.p().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
#[cfg_attr(wheelship_no_uv, ignore = "needs WHEELSHIP_UV (.ci/run provides it)")]
fn a_directory_that_satisfies_the_request_needs_no_index() {
    let t = setup();
    // The index does not answer: nothing may ask it.
    let s = doc_of(&wheelhouse(&t, "alpha==1.0\n", &[], None));
    let wh = &s["wheelhouse"];
    assert_eq!(pinned(wh), ["alpha==1.0", "beta==2.1"]);
    assert_eq!(wh["target"]["resolver"], "uv");
    assert_eq!(wh["target"]["native"], true);
    for w in wh["wheels"].as_array().unwrap() {
        let data = std::fs::read(t.p().join("wh").join(w["file"].as_str().unwrap())).unwrap();
        assert_eq!(w["sha256"], testsupport::sha256(&data));
    }
    // The same lock as pip's.
    let doc = hashreq_doc(t.p(), "alpha[fast]==1.0\nbeta<2.1\n");
    mkwheels(
        &t.p().join("wh"),
        json!({"name": "gamma", "version": "1.0"}),
    );
    let by = |resolver: &str| {
        let out = tool("wheelhouse")
            .cwd(t.p())
            .args(["--uv", &uv(), "--python", testsupport::python3_path()])
            .args([
                "--dir",
                "wh",
                "--offline",
                "--no-cache",
                "--resolver",
                resolver,
            ])
            .env("WHEELSHIP_CACHE", t.p().join("cache"))
            .stdin(doc.clone())
            .output();
        pinned(&doc_of(&out)["wheelhouse"])
    };
    assert_eq!(by("uv"), ["alpha==1.0", "beta==2.0", "gamma==1.0"]);
    assert_eq!(by("uv"), by("pip"));
}

#[test]
#[cfg_attr(wheelship_no_uv, ignore = "needs WHEELSHIP_UV (.ci/run provides it)")]
fn only_what_is_missing_is_fetched_and_checked() {
    let t = setup();
    let ix = t.p().join("index");
    mkwheels(
        &ix.join("files"),
        json!([
            {"name": "gamma", "version": "1.0", "requires": ["epsilon"]},
            {"name": "epsilon", "version": "3.0"},
            {"name": "beta", "version": "2.1"},
            {"name": "beta", "version": "2.0"},
        ]),
    );
    let index = Index::start(&ix);
    let before = std::fs::metadata(t.p().join("wh/beta-2.1-py3-none-any.whl")).unwrap();
    let out = wheelhouse(&t, "alpha[fast]==1.0\n", &[], Some(&index.url));
    let s = doc_of(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    // What sent it to the index is named.
    assert!(
        err.contains("does not satisfy the requirements for this interpreter")
            && err.contains("resolving with the index"),
        "{err}"
    );
    assert_eq!(
        pinned(&s["wheelhouse"]),
        ["alpha==1.0", "beta==2.1", "epsilon==3.0", "gamma==1.0"]
    );
    let mut fetched = index.fetched();
    fetched.sort();
    assert_eq!(
        fetched,
        ["epsilon-3.0-py3-none-any.whl", "gamma-1.0-py3-none-any.whl"]
    );
    // A file DIR had is not replaced.
    let after = std::fs::metadata(t.p().join("wh/beta-2.1-py3-none-any.whl")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));
    for w in s["wheelhouse"]["wheels"].as_array().unwrap() {
        let data = std::fs::read(t.p().join("wh").join(w["file"].as_str().unwrap())).unwrap();
        assert_eq!(w["sha256"], testsupport::sha256(&data));
    }
    // A file whose bytes are not what the index said is refused; it never gets its name.
    mkwheels(&ix.join("files"), json!({"name": "zeta", "version": "1.0"}));
    drop(index);
    let index = Index::start(&ix);
    // The same project and metadata, other bytes: what a tampered mirror serves.
    mkwheels(
        &ix.join("files"),
        json!({"name": "zeta", "version": "1.0", "files": {"zeta.py": "EVIL = 1\n"}}),
    );
    let out = wheelhouse(&t, "alpha==1.0\nzeta\n", &[], Some(&index.url));
    let err = failed_with(&out, 1);
    assert!(
        err.contains("`zeta-1.0-py3-none-any.whl` from http://127.0.0.1:")
            && err.contains("refusing it"),
        "{err}"
    );
    assert!(!files(&t, "wh").iter().any(|f| f.starts_with("zeta")));
    assert!(
        !files(&t, "wh").iter().any(|f| f.starts_with('.')),
        "{:?}",
        files(&t, "wh")
    );
}

#[test]
#[cfg_attr(wheelship_no_uv, ignore = "needs WHEELSHIP_UV (.ci/run provides it)")]
fn a_missing_requirement_with_no_index_names_itself() {
    let t = setup();
    let out = wheelhouse(&t, "alpha==1.0\nomega==9.9\n", &[], None);
    let err = failed_with(&out, 1);
    assert!(
        err.contains("(it has no `omega==9.9` (requirements.txt:2)): resolving with the index"),
        "{err}"
    );
    assert!(
        err.contains("cannot reach the package index (network)"),
        "{err}"
    );
}

#[test]
#[cfg_attr(wheelship_no_uv, ignore = "needs WHEELSHIP_UV (.ci/run provides it)")]
fn several_targets_in_one_run_and_mkenv_takes_its_own() {
    let t = setup();
    mkwheels(
        &t.p().join("wh"),
        json!([
            {"name": "fast", "version": "1.0", "tag": "cp312-cp312-manylinux_2_17_x86_64", "purelib": false},
            {"name": "fast", "version": "1.0", "tag": "cp312-cp312-manylinux_2_28_aarch64", "purelib": false},
            {"name": "fast", "version": "1.0", "tag": "py3-none-any"},
        ]),
    );
    let targets = [
        "--offline",
        "--target",
        "py3.12-manylinux_2_28_x86_64",
        "--target",
        "py3.12-manylinux_2_28_aarch64",
        "--target",
        "native",
    ];
    let s = doc_of(&wheelhouse(&t, "alpha==1.0\nfast\n", &targets, None));
    let wh = &s["wheelhouse"];
    let locks = wh["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 3);
    let files = |l: &Value| -> Vec<String> {
        l["wheels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["file"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(locks[0]["target"]["spec"], "py3.12-manylinux_2_28_x86_64");
    assert!(files(&locks[0]).contains(&"fast-1.0-cp312-cp312-manylinux_2_17_x86_64.whl".into()));
    assert!(files(&locks[1]).contains(&"fast-1.0-cp312-cp312-manylinux_2_28_aarch64.whl".into()));
    assert!(files(&locks[2]).contains(&"fast-1.0-py3-none-any.whl".into()));
    // `wheels` is the union, each file once: what DIR and an archive must hold.
    let union: Vec<String> = files(wh);
    assert_eq!(union.len(), 5, "{union:?}");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/document.schema.json")).unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    assert!(
        v.is_valid(&s),
        "{:?}",
        v.iter_errors(&s).map(|e| e.to_string()).collect::<Vec<_>>()
    );
    // mkenv builds from the lock of its interpreter.
    let env = doc_of(&mkenv(&t, &s));
    assert_eq!(env["env"]["wheels"], 3);
    let site = Path::new(env["env"]["path"].as_str().unwrap()).join(testsupport::site_packages());
    assert!(site.join("fast-1.0.dist-info").is_dir());
    // None for it: said, with the targets there are.
    let mut only_other = s.clone();
    only_other["wheelhouse"]["locks"]
        .as_array_mut()
        .unwrap()
        .truncate(2);
    let out = mkenv(&t, &only_other);
    let err = failed_with(&out, 1);
    assert!(
        err.contains("none of the 2 locks of the document is for this interpreter")
            && err.contains("py3.12-manylinux_2_28_x86_64, py3.12-manylinux_2_28_aarch64"),
        "{err}"
    );
}

#[test]
#[cfg_attr(wheelship_no_uv, ignore = "needs WHEELSHIP_UV (.ci/run provides it)")]
fn targets_are_checked() {
    let t = setup();
    for (args, why) in [
        (
            &["--target", "py3"][..],
            "--target `py3` is not a target (the Python version must be 3.Y or 3.Y.Z)",
        ),
        (
            &["--target", "py3.12-win_amd64"][..],
            "the platform must be",
        ),
        (
            &["--target", "native", "--target", "native"][..],
            "is given twice",
        ),
        (
            &["--target", "native", "--platform", "manylinux_2_17_x86_64"][..],
            "do not go together",
        ),
        (
            &[
                "--resolver",
                "uv",
                "--target",
                "py3.12-manylinux_2_5_x86_64",
            ][..],
            "uv has no --python-platform",
        ),
        (
            &[
                "--target",
                "native",
                "--target",
                "py3.12-manylinux_2_28_x86_64",
                "--pylock",
                "p/pylock.toml",
            ][..],
            "--pylock writes the lock of one target",
        ),
    ] {
        let mut a = vec!["--offline"];
        a.extend_from_slice(args);
        let out = wheelhouse(&t, "alpha==1.0\n", &a, None);
        let err = failed_with(&out, 2);
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// An sdist (a backend in the tree: no index) that counts its builds in `count`.
fn counting_sdist(dir: &Path, count: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let py = format!(
        r#"import io, sys, tarfile
backend = '''import os, zipfile, hashlib, base64
META = "Metadata-Version: 2.1\\nName: built\\nVersion: 1.0\\n"
def get_requires_for_build_wheel(c=None):
    return []
def prepare_metadata_for_build_wheel(d, c=None):
    os.makedirs(os.path.join(d, "built-1.0.dist-info"))
    with open(os.path.join(d, "built-1.0.dist-info", "METADATA"), "w") as f:
        f.write(META)
    return "built-1.0.dist-info"
def build_wheel(d, c=None, m=None):
    with open({count:?}, "a") as f:
        f.write("built\\n")
    name = "built-1.0-py3-none-any.whl"
    files = {{"built.py": "X = 1\\n", "built-1.0.dist-info/METADATA": META,
             "built-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}}
    record = ""
    with zipfile.ZipFile(os.path.join(d, name), "w") as z:
        for n, t in files.items():
            z.writestr(n, t)
            h = base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b"=").decode()
            record += "%s,sha256=%s,%d\\n" % (n, h, len(t))
        z.writestr("built-1.0.dist-info/RECORD", record + "built-1.0.dist-info/RECORD,,\\n")
    return name
'''
files = {{
    "pyproject.toml": "[build-system]\nrequires = []\nbuild-backend = 'backend'\nbackend-path = ['.']\n",
    "backend.py": backend,
    "PKG-INFO": "Metadata-Version: 2.1\nName: built\nVersion: 1.0\n",
}}
with tarfile.open(sys.argv[1], "w:gz") as t:
    for n, text in files.items():
        data = text.encode()
        info = tarfile.TarInfo("built-1.0/" + n)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#
    );
    let st = Command::new("python3")
        .args(["-c", &py])
        .arg(dir.join("built-1.0.tar.gz"))
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
#[cfg_attr(wheelship_no_uv, ignore = "needs WHEELSHIP_UV (.ci/run provides it)")]
fn an_sdist_is_built_once() {
    let t = setup();
    let count = t.p().join("builds.txt");
    counting_sdist(&t.p().join("index/files"), &count);
    let index = Index::start(&t.p().join("index"));
    let s = doc_of(&wheelhouse(&t, "built==1.0\n", &[], Some(&index.url)));
    assert_eq!(pinned(&s["wheelhouse"]), ["built==1.0"]);
    assert!(t.p().join("wh/built-1.0-py3-none-any.whl").is_file());
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "built\n");
    // Another directory, the same sdist: from wheelship's cache, not built again.
    let doc = hashreq_doc(t.p(), "built==1.0\n");
    let out = tool("wheelhouse")
        .cwd(t.p())
        .args([
            "--uv",
            &uv(),
            "--python",
            testsupport::python3_path(),
            "--dir",
            "wh2",
        ])
        .env("WHEELSHIP_CACHE", t.p().join("cache"))
        .env("UV_CACHE_DIR", t.p().join("uv-cache"))
        .env("PIP_INDEX_URL", &index.url)
        .env_remove("PIP_FIND_LINKS")
        .stdin(doc)
        .output();
    let s2 = doc_of(&out);
    assert_eq!(
        s2["wheelhouse"]["wheels"][0]["sha256"],
        s["wheelhouse"]["wheels"][0]["sha256"]
    );
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "built\n");
    // Each lock names the sdist its wheel was built from (file, sha256, where it came from),
    // whichever run built it; the release's SBOM (pedigree) and provenance name it too.
    let sdist = std::fs::read(t.p().join("index/files/built-1.0.tar.gz")).unwrap();
    let sdist_sha = testsupport::sha256(&sdist);
    for doc in [&s, &s2] {
        let b = &doc["wheelhouse"]["wheels"][0]["built_from"];
        assert_eq!(b["file"], "built-1.0.tar.gz", "{doc}");
        assert_eq!(b["sha256"], sdist_sha.as_str(), "{doc}");
        assert!(
            b["url"].as_str().unwrap().ends_with("/built-1.0.tar.gz"),
            "{doc}"
        );
    }
    testsupport::committed_app(&t.p().join("app"));
    let packed = tool("bundle")
        .cwd(t.p())
        .args(["pack", "--repo", "app", "--out", "dist"])
        .stdin(s.to_string())
        .ok();
    let archive = packed["bundle"]["path"].as_str().unwrap();
    let sbom: Value =
        serde_json::from_str(&tool("bundle").args(["sbom", archive]).ok_text()).unwrap();
    let built = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "built")
        .unwrap();
    let ancestor = &built["pedigree"]["ancestors"][0];
    assert_eq!(
        ancestor["hashes"][0]["content"],
        sdist_sha.as_str(),
        "{built}"
    );
    assert!(
        ancestor["purl"]
            .as_str()
            .unwrap()
            .ends_with("?file_name=built-1.0.tar.gz"),
        "{built}"
    );
    let provenance: Value = serde_json::from_str(
        &std::fs::read_to_string(packed["bundle"]["provenance"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let deps = provenance["predicate"]["buildDefinition"]["resolvedDependencies"].to_string();
    assert!(
        deps.contains(&sdist_sha) && deps.contains("\"builtInto\""),
        "{deps}"
    );
}

/// `scripts/release --target … --target …`: one fill, the locks of both in the archive's
/// document, and mkenv builds the one of its interpreter from it.
#[test]
#[cfg_attr(wheelship_no_uv, ignore = "needs WHEELSHIP_UV (.ci/run provides it)")]
fn a_release_for_two_targets_carries_both_locks() {
    let t = tempfile::tempdir().unwrap();
    let (app, wh) = testsupport::hermetic_app(t.path());
    let uv_dir = Path::new(&uv()).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", uv_dir.display(), std::env::var("PATH").unwrap());
    let out = testsupport::script("release")
        .args(["--offline", "--wheelhouse"])
        .args([&wh])
        .args([
            "--out",
            "dist",
            "--target",
            "native",
            "--target",
            "py3.12-manylinux_2_28_aarch64",
        ])
        .args([&app])
        .cwd(t.path())
        .env("PATH", path)
        .env("WHEELSHIP_CACHE", t.path().join("cache"))
        .output();
    let doc = doc_of(&out);
    let locks = doc["wheelhouse"]["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 2);
    assert_eq!(locks[0]["target"]["resolver"], "uv");
    assert_eq!(locks[1]["target"]["spec"], "py3.12-manylinux_2_28_aarch64");
    let env = tool("mkenv")
        .cwd(t.path())
        .args([
            "--envs",
            "envs",
            "--no-compile",
            "--python",
            testsupport::python3_path(),
        ])
        .stdin(doc.to_string())
        .ok();
    // greeter and colors.
    assert_eq!(env["env"]["wheels"], 2);
}
