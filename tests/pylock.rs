//! pylock.toml (PEP 751) in and out, against the tools that make and read it: pip 26
//! (`pip lock`, `pip install -r pylock.toml`) and uv (`uv export --format pylock.toml`,
//! `uv pip install -r pylock.toml`), all offline on wheels the test builds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use testsupport::{bin_dir, repo};

/// Runs a shell pipeline in `dir`; (success, stdout, stderr).
fn sh(dir: &Path, script: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {script}")])
        .current_dir(dir)
        .env(
            "PATH",
            format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap()),
        )
        .env("WHEELSHIP_CACHE", dir.join("cache"))
        .env_remove("PIP_FIND_LINKS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(dir: &Path, script: &str) -> String {
    let (ok, out, err) = sh(dir, script);
    assert!(ok, "{script}:\n{err}");
    out
}

/// A wheel directory `wh` with greeter 1.0 (needs colors) and colors 1.0 and 2.0.
fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("wh")).unwrap();
    let spec = r#"[{"name":"greeter","version":"1.0","requires":["colors>=1"],"files":{"greeter/__init__.py":"X=1\n"}},
                   {"name":"colors","version":"1.0","files":{"colors/__init__.py":"Y=1\n"}},
                   {"name":"colors","version":"2.0","files":{"colors/__init__.py":"Y=2\n"}}]"#;
    ok(
        t.path(),
        &format!(
            "python3 {} wh <<'EOF'\n{spec}\nEOF",
            repo().join("tests/support/mkwheel.py").display()
        ),
    );
    std::fs::write(
        t.path().join("requirements.txt"),
        "greeter==1.0\ncolors==1.0\n",
    )
    .unwrap();
    t
}

/// The distributions installed in an env (`name==version` from its `.dist-info` names).
fn installed(env: &Path) -> BTreeSet<String> {
    let site = std::fs::read_dir(env.join("lib"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("site-packages");
    std::fs::read_dir(site)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            let stem = n.strip_suffix(".dist-info")?;
            let (name, version) = stem.rsplit_once('-')?;
            Some(format!(
                "{}=={version}",
                name.to_lowercase().replace('_', "-")
            ))
        })
        .collect()
}

fn key(doc: &str) -> (String, PathBuf) {
    let v: Value = serde_json::from_str(doc).unwrap();
    (
        v["env"]["key"].as_str().unwrap().to_string(),
        PathBuf::from(v["env"]["path"].as_str().unwrap()),
    )
}

#[test]
#[cfg_attr(
    any(wheelship_no_pip26, wheelship_no_uv),
    ignore = "needs WHEELSHIP_PIP_PYTHON (pip >= 26) and WHEELSHIP_UV (.ci/run provides both)"
)]
fn our_pylock_installs_with_pip_and_uv() {
    let pip_python = std::env::var("WHEELSHIP_PIP_PYTHON").expect("WHEELSHIP_PIP_PYTHON");
    let uv = std::env::var("WHEELSHIP_UV").expect("WHEELSHIP_UV");
    let t = setup();
    let p = t.path();
    let doc = ok(p, "hashreq requirements.txt | wheelhouse --dir wh --offline --pylock locks/pylock.toml | mkenv --envs envs --no-compile");
    let (_, env) = key(&doc);
    let ours = installed(&env);
    assert_eq!(
        ours,
        BTreeSet::from(["colors==1.0".to_string(), "greeter==1.0".to_string()])
    );
    // The same lock gives the same bytes, paths relative to the file.
    let first = std::fs::read(p.join("locks/pylock.toml")).unwrap();
    ok(p, "hashreq requirements.txt | wheelhouse --dir wh --offline --no-cache --pylock locks/pylock.toml >/dev/null");
    assert_eq!(std::fs::read(p.join("locks/pylock.toml")).unwrap(), first);
    let text = String::from_utf8(first).unwrap();
    assert!(
        text.contains("path = \"../wh/greeter-1.0-py3-none-any.whl\""),
        "{text}"
    );
    assert!(text.contains("created-by = \"wheelship\""), "{text}");
    // pip 26 and uv install it with no index, from another directory, to the same set.
    ok(p, &format!("{pip_python} -m venv --without-pip vpip && cd / && {pip_python} -m pip --python {0}/vpip/bin/python install --quiet --no-index -r {0}/locks/pylock.toml", p.display()));
    assert_eq!(installed(&p.join("vpip")), ours);
    ok(p, &format!("{uv} venv -q vuv --python {pip_python} && cd / && {uv} pip install --offline -q -r {0}/locks/pylock.toml --python {0}/vuv/bin/python", p.display()));
    assert_eq!(installed(&p.join("vuv")), ours);
}

#[test]
#[cfg_attr(
    any(wheelship_no_pip26, wheelship_no_uv),
    ignore = "needs WHEELSHIP_PIP_PYTHON (pip >= 26) and WHEELSHIP_UV (.ci/run provides both)"
)]
fn pip_lock_and_uv_export_give_the_same_env() {
    let pip_python = std::env::var("WHEELSHIP_PIP_PYTHON").expect("WHEELSHIP_PIP_PYTHON");
    let uv = std::env::var("WHEELSHIP_UV").expect("WHEELSHIP_UV");
    let t = setup();
    let p = t.path();
    let pipeline = "| wheelhouse --dir wh --offline | mkenv --envs envs --no-compile";
    let (from_txt, _) = key(&ok(p, &format!("hashreq requirements.txt {pipeline}")));
    // pip lock: wheels as file:// URLs.
    ok(p, &format!("{pip_python} -m pip lock --quiet --no-index --find-links wh -r requirements.txt -o pylock.pip.toml"));
    let (from_pip, _) = key(&ok(p, &format!("hashreq pylock.pip.toml {pipeline}")));
    assert_eq!(from_pip, from_txt);
    // uv export of a project's lock.
    std::fs::create_dir_all(p.join("proj")).unwrap();
    std::fs::write(
        p.join("proj/pyproject.toml"),
        "[project]\nname = \"app\"\nversion = \"0.1\"\nrequires-python = \">=3.8\"\ndependencies = [\"greeter==1.0\", \"colors==1.0\"]\n",
    )
    .unwrap();
    ok(&p.join("proj"), &format!("{uv} lock -q --offline --no-index --find-links ../wh && {uv} export -q --format pylock.toml --offline --no-index --find-links ../wh -o ../pylock.uv.toml"));
    let (from_uv, _) = key(&ok(p, &format!("hashreq pylock.uv.toml {pipeline}")));
    assert_eq!(from_uv, from_txt);
}

/// A hash changed in the lock changes the requirements hash and is refused by wheelhouse,
/// naming the file and both hashes; a lock-version of another major is refused.
#[test]
fn a_tampered_or_unknown_lock_is_refused() {
    let t = setup();
    let p = t.path();
    ok(
        p,
        "hashreq requirements.txt | wheelhouse --dir wh --offline --pylock pylock.toml >/dev/null",
    );
    let text = std::fs::read_to_string(p.join("pylock.toml")).unwrap();
    let h1 = ok(p, "hashreq --print-hash pylock.toml");
    let real = text
        .lines()
        .find(|l| l.contains("sha256") && !l.contains("colors"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap()
        .to_string();
    let fake = "0".repeat(64);
    std::fs::write(p.join("pylock.toml"), text.replacen(&real, &fake, 1)).unwrap();
    let h2 = ok(p, "hashreq --print-hash pylock.toml");
    assert_ne!(
        h1, h2,
        "a changed hash in the lock changes the requirements hash"
    );
    let (okk, out, err) = sh(p, "hashreq pylock.toml | wheelhouse --dir wh --offline");
    assert!(!okk);
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("sha256 {real}, the lock says {fake}")),
        "{err}"
    );
    assert!(err.contains("-1.0-py3-none-any.whl`"), "{err}");
    // A lock whose path names another file: refused before that file gets a name in DIR.
    std::fs::write(
        p.join("pylock.toml"),
        text.replace(
            "path = \"wh/greeter-1.0-py3-none-any.whl\"",
            "path = \"wh/colors-2.0-py3-none-any.whl\"",
        ),
    )
    .unwrap();
    std::fs::create_dir_all(p.join("wh2")).unwrap();
    let (okk, _, err) = sh(p, "hashreq pylock.toml | wheelhouse --dir wh2 --offline");
    assert!(!okk);
    assert!(
        err.contains("colors-2.0-py3-none-any.whl`: sha256"),
        "{err}"
    );
    let landed = std::fs::read_dir(p.join("wh2"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("greeter"));
    assert!(!landed, "a wrong file got a wheel's name in DIR");
    std::fs::write(
        p.join("pylock.toml"),
        text.replace("lock-version = \"1.0\"", "lock-version = \"2.0\""),
    )
    .unwrap();
    let (okk, _, err) = sh(p, "hashreq pylock.toml");
    assert!(!okk);
    assert_eq!(
        err,
        "hashreq: pylock.toml: lock-version `2.0` is not supported: this hashreq reads pylock.toml 1.x\n"
    );
}

/// Extras and dependency groups select packages by their markers, as PEP 751 says; without
/// `--group` the lock's `default-groups` apply.
#[test]
#[cfg_attr(
    wheelship_no_pip26,
    ignore = "needs WHEELSHIP_PIP_PYTHON, a Python with pip >= 26 (.ci/run makes one)"
)]
fn extras_and_groups_select_packages() {
    let pip_python = std::env::var("WHEELSHIP_PIP_PYTHON").expect("WHEELSHIP_PIP_PYTHON");
    let t = setup();
    let p = t.path();
    ok(
        p,
        "hashreq requirements.txt | wheelhouse --dir wh --offline --pylock pylock.plain.toml >/dev/null",
    );
    let plain = std::fs::read_to_string(p.join("pylock.plain.toml")).unwrap();
    let lock = plain
        .replace(
            "created-by = \"wheelship\"\n",
            "created-by = \"wheelship\"\nextras = [\"fast\"]\ndependency-groups = [\"dev\", \"docs\"]\ndefault-groups = [\"dev\"]\n",
        )
        .replace(
            "name = \"colors\"\nversion = \"1.0\"\n",
            "name = \"colors\"\nversion = \"1.0\"\nmarker = \"'dev' in dependency_groups\"\n",
        )
        .replace(
            "name = \"greeter\"\nversion = \"1.0\"\n",
            "name = \"greeter\"\nversion = \"1.0\"\nmarker = \"'fast' in extras\"\n",
        );
    std::fs::write(p.join("pylock.toml"), lock).unwrap();
    let names = |args: &str| -> Vec<String> {
        let out = ok(
            p,
            &format!(
                "hashreq pylock.toml {args} | wheelhouse --dir wh --offline --python {pip_python}"
            ),
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        v["wheelhouse"]["wheels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(""), ["colors"]);
    assert_eq!(names("--extra fast"), ["colors", "greeter"]);
    assert_eq!(names("--extra fast --group docs"), ["greeter"]);
    let (okk, _, err) = sh(p, "hashreq pylock.toml --extra slow");
    assert!(!okk);
    assert!(
        err.contains("--extra `slow` is not one of the lock's extras (fast)"),
        "{err}"
    );
}
