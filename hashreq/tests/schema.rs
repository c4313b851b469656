//! docs/document.schema.json checked against hashreq's real output, and against a document
//! that breaks it (so the check can fail).

use assert_cmd::Command;
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/document.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn real_output_matches_the_schema() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("requirements.txt"),
        "-i https://u:p@pypi.example/simple\n--only-binary :all:\nFlask[async]>=3 ; python_version >= '3.8'\nclick==8.1.7 --hash=sha256:aa\npkg @ https://h.example/pkg-1.0.tar.gz\n-e git+https://h.example/r.git#egg=tool\n-c c.txt\n",
    )
    .unwrap();
    std::fs::write(d.path().join("c.txt"), "werkzeug==3.0.3\n").unwrap();
    let out = Command::cargo_bin("hashreq")
        .unwrap()
        .current_dir(d.path())
        .write_stdin(r#"{"release":{"id":"r1","dir":"/srv/app/releases/r1"},"extra":{"x":1}}"#)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = validator();
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_schema_rejects_a_broken_document() {
    let v = validator();
    let bad = serde_json::json!({"requirements": {"hash": "md5:x", "files": ["rel.txt"], "entries": [], "options": {}, "unpinned": []}});
    assert!(!v.is_valid(&bad));
    let bad = serde_json::json!({"release": {"id": "../x", "dir": "/r"}});
    assert!(!v.is_valid(&bad));
}
