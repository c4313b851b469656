//! Helpers for mkenv's tests: real wheels from tests/support/mkwheel.py, locks that name them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{json, Value};

pub fn mkwheels(dir: &Path, spec: Value) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/support/mkwheel.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect()
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A document whose lock names `wheels` (paths in one directory) and whose requirements ask
/// for `requested`.
pub fn lock(wheels: &[PathBuf], requested: &[&str]) -> Value {
    let dir = wheels[0].parent().unwrap();
    let entries: Vec<Value> = requested
        .iter()
        .map(|n| json!({"name": n, "specifier": "", "extras": [], "marker": null, "hashes": [], "url": null, "file": "/r.txt", "line": 1}))
        .collect();
    let locked: Vec<Value> = wheels
        .iter()
        .map(|w| {
            let data = std::fs::read(w).unwrap();
            let file = w.file_name().unwrap().to_str().unwrap();
            let name = file.split('-').next().unwrap().to_lowercase().replace('_', "-");
            let version = file.split('-').nth(1).unwrap();
            json!({"name": name, "version": version, "file": file, "sha256": sha256(&data), "size": data.len()})
        })
        .collect();
    json!({
        "requirements": {"hash": format!("sha256:{}", "0".repeat(64)), "files": ["/r.txt"], "entries": entries},
        "wheelhouse": {"dir": dir, "wheels": locked},
    })
}

pub fn mkenv(cwd: &Path, args: &[&str], doc: &Value) -> Output {
    mkenv_env(cwd, args, doc, &[])
}

pub fn mkenv_env(cwd: &Path, args: &[&str], doc: &Value, env: &[(&str, &str)]) -> Output {
    let mut c = Command::cargo_bin("mkenv").unwrap();
    c.current_dir(cwd)
        .args(args)
        .env("WHEELSHIP_CACHE", cwd.join("cache"))
        .write_stdin(doc.to_string());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

pub fn ok(cwd: &Path, args: &[&str], doc: &Value) -> Value {
    let out = mkenv(cwd, args, doc);
    assert!(
        out.status.success(),
        "mkenv {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["env"].clone()
}

/// The app used by most tests: a package with a module tree, a dependency, a console script,
/// a `#!python` script and data files in `.data`.
pub fn app_wheels(dir: &Path) -> Vec<PathBuf> {
    mkwheels(
        dir,
        json!([
            {"name": "Shop_App", "version": "1.2.0", "requires": ["helper>=1"],
             "files": {"shop_app/__init__.py": "from helper import greet\nVERSION = '1.2.0'\n",
                       "shop_app/cli.py": "import sys\nfrom shop_app import VERSION\ndef main():\n    print('shop', VERSION, ' '.join(sys.argv[1:]))\n    return 0\n",
                       "shop_app/data/prices.json": "{\"a\": 1}\n"},
             "entry_points": {"console_scripts": {"shop": "shop_app.cli:main"}},
             "data": {"scripts/shop-admin": "#!python\nimport shop_app\nprint('admin', shop_app.VERSION)\n",
                      "data/share/shop/README": "shared data\n",
                      "headers/shop.h": "#define SHOP 1\n",
                      "purelib/shop_extra.py": "EXTRA = True\n"}},
            {"name": "helper", "version": "1.0",
             "files": {"helper/__init__.py": "def greet(n):\n    return 'hi ' + n\n", "helper/sub/__init__.py": ""}},
        ]),
    )
}
