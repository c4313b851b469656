//! hashreq against pip's own parser on tricky requirement files: the same files accepted and
//! refused, the same canonical names, extras, specifier sets and markers.
//!
//! Needs a Python whose pip is 26 or newer in `WHEELSHIP_PIP_PYTHON` (`.ci/run` makes one);
//! without it the test says so loudly and passes.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const CASES: &[(&str, &str)] = &[
    ("plain", "Flask==3.0.3\nclick>=8.1,<9\n"),
    ("spelling", "Django_REST.framework==3.15\nFoo__Bar--baz..qux>=1\n"),
    ("extras", "requests[Socks,security,socks]==2.32.3\n"),
    ("markers", "six==1.16 ; python_version>'3.8'and(sys_platform=='linux'or os.name == \"nt\")\nattrs==23.1;python_implementation=='CPython'\nidna==3.7 ; extra == 'Foo_Bar'\n"),
    ("continuation", "flask\\\n==3.0.3\nclick\\\n # comment \\\n"),
    ("comment-hash", "flask==3.0.3#x\n"),
    ("comment-ok", "flask==3.0.3 #x\n\t# only a comment\n"),
    ("legacy-version", "foo==1.0-beta-legacy\n"),
    ("local-ge", "foo>=1.0+local\n"),
    ("wildcard-ge", "foo>=1.*\n"),
    ("compatible-one", "foo~=1\n"),
    ("arbitrary", "foo===foobar\nbar===1.00\n"),
    ("single-eq", "foo=1.0\n"),
    ("two-reqs", "foo==1.0 bar==2.0\n"),
    ("tab-hash", "foo==1.0\t--hash=sha256:aaaa\n"),
    ("hashes", "foo==1.0 --hash=sha256:bbbb --hash=sha256:aaaa \\\n  --hash=sha512:cccc\n"),
    ("md5", "foo==1.0 --hash=md5:aaaa\n"),
    ("no-algo", "foo==1.0 --hash=aaaa\n"),
    ("install-option", "foo==1.0\n--install-option=--x\n"),
    ("unknown-option", "--frobnicate\n"),
    ("ignored-option", "foo==1.0 --pre\n"),
    ("dash-f", "-foo==1.0\n"),
    ("options", "-i https://pypi.example/simple\n--extra-index-url https://x.example/simple\n--pre\n--only-binary :all:\n--prefer-binary\n--require-hashes\nfoo==1.0\n"),
    ("url-marker-space", "https://h.example/pkg-1.0.tar.gz#egg=pkg ; python_version >= '3'\n"),
    ("wheel-url", "https://h.example/Foo_Bar-1.2.3-py3-none-any.whl\n"),
    ("direct-ref", "pkg @ https://h.example/pkg-1.0.tar.gz ; os_name == 'posix'\n"),
    ("name-invalid", "café==1.0\n"),
    ("editable-vcs", "-e git+https://h.example/r.git@v1#egg=Some_Pkg\n"),
    ("editable-noname", "-e git+https://h.example/r.git\n"),
    ("parens", "foo (>=1.0, <2)\n"),
    ("extras-after", "foo>=1.0[bar]\n"),
    ("crlf", "foo==1.0\r\nbar==2.0\r\n"),
    ("bad-marker", "foo==1.0 ; python_version >\n"),
    ("marker-case", "foo==1.0 ; OS_NAME == 'nt'\n"),
    ("empty-marker", "foo==1.0 ;\n"),
];

#[test]
#[cfg_attr(
    wheelship_no_pip26,
    ignore = "needs WHEELSHIP_PIP_PYTHON, a Python with pip >= 26 (.ci/run makes one)"
)]
fn pip_oracle_agrees_on_tricky_files() {
    let python = std::env::var("WHEELSHIP_PIP_PYTHON")
        .expect("WHEELSHIP_PIP_PYTHON: a Python with pip >= 26 (.ci/run makes one)");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("pip_oracle.py");
    let dir = tempfile::tempdir().unwrap();
    let mut disagreements = Vec::new();
    for (name, text) in CASES {
        let file = dir.path().join(format!("{name}.txt"));
        std::fs::write(&file, text).unwrap();
        let mut pip = Command::new(&python);
        // pip's own configuration must not colour what it parses: drop PIP_* settings.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("PIP_")) {
            pip.env_remove(k);
        }
        let pip = pip
            .arg(&script)
            .arg(&file)
            .current_dir(dir.path())
            .env("PIP_NO_INPUT", "1")
            .output()
            .unwrap();
        let pip = testsupport::doc_of(&pip);
        let ours = Command::new(testsupport::bin("hashreq"))
            .arg(&file)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let pip_ok = pip.get("error").is_none();
        if pip_ok != ours.status.success() {
            disagreements.push(format!(
                "{name}: pip {} / hashreq {}",
                pip.get("error")
                    .map_or("accepts".to_string(), |e| format!("refuses ({e})")),
                if ours.status.success() {
                    "accepts".to_string()
                } else {
                    format!("refuses ({})", String::from_utf8_lossy(&ours.stderr).trim())
                }
            ));
            continue;
        }
        if !pip_ok {
            continue;
        }
        let doc: Value = serde_json::from_slice(&ours.stdout).unwrap();
        let entries = doc["requirements"]["entries"].as_array().unwrap();
        let theirs = pip["entries"].as_array().unwrap();
        if entries.len() != theirs.len() {
            disagreements.push(format!(
                "{name}: {} entries, pip has {}",
                entries.len(),
                theirs.len()
            ));
            continue;
        }
        for (e, p) in entries.iter().zip(theirs) {
            for key in [
                "name",
                "extras",
                "marker",
                "hashes",
                "constraint",
                "editable",
            ] {
                if e[key] != p[key] {
                    disagreements.push(format!("{name}: {key} {} vs pip {}", e[key], p[key]));
                }
            }
            // pip keeps the versions as written; hashreq normalises them, so compare the
            // operator sets and the normalised text where they agree in spelling.
            let ours_spec = e["specifier"].as_str().unwrap();
            let pip_spec = p["specifier"].as_str().unwrap();
            if ours_spec.replace(' ', "") != trim_zeros(&pip_spec.replace(' ', "")) {
                disagreements.push(format!(
                    "{name}: specifier `{ours_spec}` vs pip `{pip_spec}`"
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "hashreq and pip disagree:\n{}",
        disagreements.join("\n")
    );
}

/// pip's specifier with the trailing zeros of each release dropped where PEP 440 pads them
/// (`==1.0.0` is `==1`), as hashreq writes it; `~=`, `===` and prefix matches as they are.
fn trim_zeros(spec: &str) -> String {
    spec.split(',')
        .map(|c| {
            let op_len = c.bytes().take_while(|b| b"=!<>~".contains(b)).count();
            let (op, v) = c.split_at(op_len);
            if !["==", "!=", "<=", ">=", "<", ">"].contains(&op) || v.ends_with(".*") {
                return c.to_string();
            }
            let rel_len = v
                .bytes()
                .take_while(|b| b.is_ascii_digit() || *b == b'.')
                .count();
            let (release, rest) = v.split_at(rel_len);
            let mut parts: Vec<&str> = release.trim_end_matches('.').split('.').collect();
            while parts.len() > 1 && parts.last().is_some_and(|p| p.bytes().all(|b| b == b'0')) {
                parts.pop();
            }
            let release: Vec<String> = parts
                .iter()
                .map(|p| p.trim_start_matches('0'))
                .map(|p| {
                    if p.is_empty() {
                        "0".to_string()
                    } else {
                        p.to_string()
                    }
                })
                .collect();
            format!("{op}{}{rest}", release.join("."))
        })
        .collect::<Vec<_>>()
        .join(",")
}
