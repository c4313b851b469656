//! The whole pipeline, tool after tool, as the contract sees it: every section of the real
//! output is checked against docs/document.schema.json and read back through its type in
//! `wheelship::doc`; and, online, the env built from PyPI's wheels is the one pip builds.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use testsupport::{commit_all, mkwheels, tool};
use wheelship::doc;

fn validator() -> (jsonschema::Validator, Value) {
    let path = testsupport::repo().join("docs/document.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (jsonschema::validator_for(&schema).unwrap(), schema)
}

/// Every key of `value` below `schema` is one the schema declares (`$ref`s followed): a tool
/// that writes a key the contract does not name fails here.
fn declared(schema: &Value, root: &Value, value: &Value, at: &str) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => root.pointer(r.trim_start_matches('#')).unwrap(),
        None => schema,
    };
    for alt in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(alt).and_then(Value::as_array) {
            for a in alts {
                let sub = jsonschema::validator_for(&json!({"$defs": root["$defs"], "allOf": [a]}))
                    .unwrap();
                if sub.is_valid(value) {
                    declared(a, root, value, at);
                    return;
                }
            }
        }
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let Some(props) = props else { return };
            for (k, v) in map {
                let sub = props
                    .get(k)
                    .unwrap_or_else(|| panic!("`{at}.{k}` is written but not in the schema"));
                declared(sub, root, v, &format!("{at}.{k}"));
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    declared(item, root, v, &format!("{at}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

/// The section read through its type: nothing lands in the type's unknown keys, and writing it
/// back gives the same JSON.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value, name: &str, extra: fn(&T) -> bool) {
    let Some(v) = doc.get(name) else { return };
    let t: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("`{name}` does not read as its type: {e}"));
    assert!(extra(&t), "`{name}` has keys its type does not know: {v}");
    assert_eq!(&serde_json::to_value(&t).unwrap(), v, "`{name}` round trip");
}

fn check(doc: &Value) {
    let (v, schema) = validator();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    for (name, section) in doc.as_object().unwrap() {
        if let Some(s) = schema["properties"].get(name) {
            declared(s, &schema, section, name);
        }
    }
    typed::<doc::Requirements>(doc, "requirements", |t| t.extra.is_empty());
    typed::<doc::Wheelhouse>(doc, "wheelhouse", |t| t.extra.is_empty());
    typed::<doc::Env>(doc, "env", |t| t.extra.is_empty());
    typed::<doc::EnvGc>(doc, "mkenv_gc", |t| t.extra.is_empty());
    typed::<doc::Bundle>(doc, "bundle", |t| t.extra.is_empty());
    typed::<doc::Release>(doc, "release", |t| t.extra.is_empty());
    typed::<doc::Switch>(doc, "switch", |t| t.extra.is_empty());
    typed::<doc::Keygen>(doc, "keygen", |t| t.extra.is_empty());
    typed::<doc::Have>(doc, "have", |t| t.extra.is_empty());
    typed::<doc::Thin>(doc, "thin", |t| t.extra.is_empty());
}

fn app(dir: &Path) {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("requirements.txt"), "greeter==1.0\n").unwrap();
    std::fs::write(app.join("app.py"), "import greeter\n").unwrap();
    commit_all(&app, "v1");
    mkwheels(
        &dir.join("wh"),
        json!([
            {"name": "greeter", "version": "1.0", "requires": ["colors>=1"],
             "files": {"greeter/__init__.py": "import colors\n"},
             "entry_points": {"console_scripts": {"greet": "greeter:main"}}},
            {"name": "colors", "version": "1.0", "files": {"colors/__init__.py": ""}},
        ]),
    );
}

#[test]
fn every_section_of_the_pipeline_keeps_the_contract() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    app(d);
    let (root, envs) = (d.join("root"), d.join("root/envs"));
    let env = [("WHEELSHIP_CACHE", d.join("cache"))];
    let run = |name: &str, args: &[&str], stdin: &Value| {
        let doc = tool(name)
            .args(args)
            .cwd(d)
            .env(env[0].0, &env[0].1)
            .stdin(stdin.to_string())
            .ok();
        check(&doc);
        doc
    };
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let keys = run(
        "bundle",
        &["keygen", "--dir", "keys", "--unencrypted"],
        &json!({}),
    );
    let doc = run("hashreq", &["app/requirements.txt"], &keys);
    let doc = run("wheelhouse", &["--dir", "wh", "--offline"], &doc);
    let doc = run("mkenv", &["--envs", &s(&envs)], &doc);
    let sec = s(&d.join("keys/wheelship.key"));
    let doc = run(
        "bundle",
        &["pack", "--repo", "app", "--out", "dist", "--sign", &sec],
        &doc,
    );
    let archive = doc["bundle"]["path"].as_str().unwrap().to_string();
    let packed = doc.clone();
    let pubkey = s(&d.join("keys/wheelship.pub"));
    let releases = s(&root.join("releases"));
    let unpack = [
        "unpack",
        "--releases",
        &releases,
        "--trust",
        &pubkey,
        &archive,
    ];
    let doc = run("bundle", &unpack, &json!({}));
    let doc = run("mkenv", &["--envs", &s(&envs)], &doc);
    let r = s(&root);
    run("switch", &["--root", &r, "--dry-run"], &doc);
    let doc = run("switch", &["--root", &r], &doc);
    assert_eq!(doc["switch"]["current"], doc["release"]["id"]);
    run("switch", &["--root", &r, "list"], &json!({}));
    run(
        "switch",
        &["--root", &r, "prune", "--keep", "1", "--dry-run"],
        &json!({}),
    );
    run(
        "mkenv",
        &["--envs", &s(&envs), "gc", "--dry-run"],
        &json!({}),
    );
    run("wheelhouse", &["--prune", "--dir", "wh"], &doc);
    // The thin copy of the release for a host that has its wheels, and the archive again.
    let have = run("bundle", &["have", "--releases", &releases], &json!({}));
    std::fs::write(d.join("have.json"), have.to_string()).unwrap();
    let thin = ["thin", "--have", "have.json", "--out", "r.thin", &archive];
    run("bundle", &thin, &json!({}));
    std::fs::create_dir(d.join("again")).unwrap();
    let thick = ["thick", "--releases", &releases, "--out", "again", "r.thin"];
    let doc = run("bundle", &thick, &packed);
    let again = std::fs::read(doc["bundle"]["path"].as_str().unwrap()).unwrap();
    assert_eq!(again, std::fs::read(&archive).unwrap());
}

#[test]
fn the_schema_rejects_a_broken_document() {
    let (v, _) = validator();
    let bad = json!({"requirements": {"hash": "md5:x", "files": ["rel.txt"], "entries": [], "options": {}, "unpinned": []}});
    assert!(!v.is_valid(&bad));
    let bad = json!({"release": {"id": "../x", "dir": "/r"}});
    assert!(!v.is_valid(&bad));
    let bad = json!({"env": {"path": "relative", "key": "k", "reused": false,
                             "python": {"version": "3", "implementation": "c", "tag": "t"}}});
    assert!(!v.is_valid(&bad));
}

#[test]
#[cfg_attr(
    wheelship_offline,
    ignore = "uses PyPI: set WHEELSHIP_ONLINE=1 (.ci/run does)"
)]
fn online_real_web_stack_matches_pip() {
    testsupport::assert_pypi_reachable();
    let t = tempfile::tempdir().unwrap();
    let app = testsupport::repo().join("examples/app");
    let (wh, cache) = (t.path().join("wh"), t.path().join("cache"));
    let req = tool("hashreq").args([app.join("requirements.txt")]).ok();
    let doc = tool("wheelhouse")
        .args(["--dir".as_ref(), wh.as_os_str()])
        .env("WHEELSHIP_CACHE", &cache)
        .stdin(req.to_string())
        .ok();
    assert!(doc["wheelhouse"]["wheels"].as_array().unwrap().len() >= 8);
    let doc = tool("mkenv")
        .args(["--envs".as_ref(), t.path().join("envs").as_os_str()])
        .env("WHEELSHIP_CACHE", &cache)
        .stdin(doc.to_string())
        .ok();
    let path = Path::new(doc["env"]["path"].as_str().unwrap());
    let reference = testsupport::pip_env(
        &t.path().join("ref"),
        &wh,
        &["-r", "requirements.txt"],
        &app,
    );
    testsupport::assert_same_env(path, &reference);
    // The console scripts run: flask's and gunicorn's.
    let version = |s: &str| tool_at(&path.join("bin").join(s));
    assert!(version("flask").contains("Flask"));
    assert!(version("gunicorn").contains("gunicorn"));
}

fn tool_at(exe: &Path) -> String {
    testsupport::run(exe).args(["--version"]).ok_text()
}
