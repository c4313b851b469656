//! The tags mkenv accepts are packaging's `sys_tags()` for the same interpreter, in order.
//!
//! The oracle is the packaging vendored in pip >= 26 (`WHEELSHIP_PIP_PYTHON`, a venv of the
//! same python3 that `.ci/run` makes): packaging before 22 left out `cp3XX-none-any`.

mod common;

use common::*;
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
    let wheels = mkwheels(
        &t.path().join("wh"),
        serde_json::json!({"name": "a", "version": "1"}),
    );
    let env = ok(
        t.path(),
        &["--envs", "envs", "--no-compile"],
        &lock(&wheels, &["a"]),
    );
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
