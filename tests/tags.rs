//! The tags mkenv accepts are packaging's `sys_tags()` for the same interpreter, in order.
//!
//! The oracle is the packaging vendored in pip >= 26 (`WHEELSHIP_PIP_PYTHON`, a venv of the
//! same python3 that `.ci/run` makes): packaging before 22 left out `cp3XX-none-any`.

use serde_json::Value;

#[test]
#[cfg_attr(
    wheelship_no_pip26,
    ignore = "needs WHEELSHIP_PIP_PYTHON, a Python with pip >= 26 (.ci/run makes one)"
)]
fn tags_match_packaging() {
    let oracle = std::env::var("WHEELSHIP_PIP_PYTHON")
        .expect("WHEELSHIP_PIP_PYTHON: a venv of python3 with pip >= 26 (.ci/run makes one)");
    let t = tempfile::tempdir().unwrap();
    let wheels = testsupport::mkwheels(
        &t.path().join("wh"),
        serde_json::json!({"name": "a", "version": "1"}),
    );
    let doc = testsupport::tool("mkenv")
        .cwd(t.path())
        .args(["--envs", "envs", "--no-compile"])
        .env("WHEELSHIP_CACHE", t.path().join("cache"))
        .stdin(testsupport::lock_requesting(&wheels, &["a"]).to_string())
        .ok();
    let env = &doc["env"];
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env["path"].as_str().unwrap()).join(".wheelship-env.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ours: Vec<String> = serde_json::from_value(meta["python"]["tags"].clone()).unwrap();
    let out = testsupport::run(oracle)
        .args(["-c", "import json; from pip._vendor.packaging.tags import sys_tags; print(json.dumps([str(t) for t in sys_tags()]))"])
        .ok_text();
    let theirs: Vec<String> = serde_json::from_str(&out).unwrap();
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(a, b, "tag #{i}");
    }
}

/// On musl (Alpine) the interpreter gets `musllinux_*` tags, in packaging's
/// order; checked against pip 26's packaging with its musl detection answering 1.2 (this
/// machine runs glibc).
#[test]
#[cfg_attr(
    wheelship_no_pip26,
    ignore = "needs WHEELSHIP_PIP_PYTHON, a Python with pip >= 26 (.ci/run makes one)"
)]
fn musllinux_tags_match_packaging() {
    let oracle = std::env::var("WHEELSHIP_PIP_PYTHON")
        .expect("WHEELSHIP_PIP_PYTHON: a venv of python3 with pip >= 26");
    let mut i = mkenv::interp::Interp::probe(&oracle).unwrap();
    i.libc = ("musl".into(), "1.2".into());
    let ours = mkenv::interp::tags(&i);
    assert!(ours.iter().any(|t| t.contains("musllinux_1_2_")));
    let code = "import json\n\
from pip._vendor.packaging import _manylinux, _musllinux, tags\n\
_musllinux._get_musl_version = lambda exe: _musllinux._MuslVersion(1, 2)\n\
_manylinux.platform_tags = lambda archs: iter(())\n\
print(json.dumps([str(t) for t in tags.sys_tags()]))";
    let out = testsupport::run(&oracle).args(["-c", code]).ok_text();
    let theirs: Vec<String> = serde_json::from_str(&out).unwrap();
    assert_eq!(ours, theirs);
}
