//! Helpers for mkenv's tests: real wheels from tests/support/mkwheel.py, locks that name them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{json, Value};

pub use testsupport::mkwheels;

/// A document whose lock names `wheels` (paths in one directory) and whose requirements ask
/// for `requested`.
pub fn lock(wheels: &[PathBuf], requested: &[&str]) -> Value {
    testsupport::lock_requesting(wheels, requested)
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
