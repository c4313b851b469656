//! `pylock.toml` (PEP 751, https://packaging.python.org/en/latest/specifications/pylock-toml/)
//! through the wheel directory: a lock read by hashreq is taken as exact — for each package
//! whose marker holds for the target, the wheel the lock names that the target supports best is
//! fetched (never resolved) and verified against the lock's sha256 — and any lock can be
//! written out as a PEP 751 file that pip and uv install from with no index.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};
use wheelship::doc::{LockedWheel, PylockWheel, Requirements};
use wheelship::fs::fsx;
use wheelship::Hint;

use crate::pip::{self, Config};
use wheelship::fs::io::At;

/// Evaluates, with the target's own pip (its vendored packaging), each package's marker (with
/// the selected `extras` and `dependency_groups`), the `requires-python`s and `environments`,
/// and picks each package's wheel the interpreter ranks best.
const SELECT: &str = r#"import json, platform, sys
from pip._vendor.packaging.markers import Marker
from pip._vendor.packaging.specifiers import SpecifierSet
from pip._vendor.packaging.tags import sys_tags
from pip._vendor.packaging.utils import parse_wheel_filename
req = json.load(sys.stdin)
rank = {str(t): i for i, t in enumerate(sys_tags())}
py = platform.python_version()
env = {"extras": set(req["extras"]), "dependency_groups": set(req["groups"])}
def holds(m):
    if not m:
        return True
    try:
        return Marker(m).evaluate(env, "lock_file")
    except TypeError:
        return Marker(m).evaluate(env)
out = {"why": None, "packages": []}
if req["requires_python"] and py not in SpecifierSet(req["requires_python"]):
    out["why"] = "the lock requires Python %s and this is %s" % (req["requires_python"], py)
elif req["environments"] and not any(Marker(e).evaluate() for e in req["environments"]):
    out["why"] = "none of the lock's environments (%s) is this interpreter's" % "; ".join(req["environments"])
for p in req["packages"]:
    if not holds(p["marker"]):
        out["packages"].append({"take": False})
        continue
    if p["requires_python"] and py not in SpecifierSet(p["requires_python"]):
        out["packages"].append({"take": True, "why": "requires Python %s" % p["requires_python"]})
        continue
    best = None
    for i, f in enumerate(p["wheels"]):
        try:
            tags = parse_wheel_filename(f)[3]
        except Exception:
            continue
        r = min((rank[str(t)] for t in tags if str(t) in rank), default=None)
        if r is not None and (best is None or r < best[0]):
            best = (r, i)
    out["packages"].append({"take": True, "wheel": best[1] if best else None})
print(json.dumps(out))
"#;

/// What the selection script is asked: the lock's selectors and each package's marker,
/// `requires-python` and wheel file names.
#[derive(Serialize)]
struct Request<'a> {
    extras: &'a [String],
    groups: &'a [String],
    requires_python: Option<&'a str>,
    environments: &'a [String],
    packages: Vec<RequestPackage<'a>>,
}

#[derive(Serialize)]
struct RequestPackage<'a> {
    marker: Option<&'a str>,
    requires_python: Option<&'a str>,
    wheels: Vec<&'a str>,
}

#[derive(Debug, Deserialize)]
struct Selected {
    why: Option<String>,
    packages: Vec<Pick>,
}

#[derive(Debug, Deserialize)]
struct Pick {
    take: bool,
    wheel: Option<usize>,
    why: Option<String>,
}

/// The wheels of the lock for the target, fetched into DIR when missing (not when offline),
/// The wheel the selection took for each package, checked where it enters: a valid sha256 and
/// a wheel file name. (name, version, wheel, sha256).
fn choose(
    python: &str,
    r: &Requirements,
    sources: &[Vec<PylockWheel>],
    sel: &Selected,
) -> Result<Vec<(String, String, PylockWheel, String)>> {
    let mut chosen = Vec::new();
    for ((e, w), pick) in r.entries.iter().zip(sources).zip(&sel.packages) {
        let name = e.name.clone().unwrap_or_default();
        if !pick.take {
            continue;
        }
        if let Some(why) = &pick.why {
            bail!("`{name}` in the lock {why}: not for `{python}`");
        }
        let Some(i) = pick.wheel else {
            let only = if w.is_empty() {
                "no wheel at all (an sdist, VCS or directory source)"
            } else {
                "no wheel this interpreter supports"
            };
            return Err(Hint::new(
                format!("`{name}` has {only} in the lock: wheelhouse installs wheels only"),
                format!("lock on (or for) this interpreter: `{python}`"),
            )
            .into());
        };
        let s = w[i].clone();
        let sha = s
            .sha256
            .clone()
            .filter(|h| wheelship::text::check_sha256(h).is_ok())
            .ok_or_else(|| anyhow!("`{}` in the lock has no valid sha256", s.file))?;
        if s.file.contains('/') || wheelship::python::names::WheelFilename::parse(&s.file).is_err()
        {
            bail!(
                "the lock names `{}`, which is not a wheel file name",
                s.file
            );
        }
        let version = e.specifier.trim_start_matches("==").to_string();
        chosen.push((name, version, s, sha));
    }
    Ok(chosen)
}

/// each verified against the lock's sha256.
pub fn lock_exact(
    python: &str,
    offline: bool,
    dir: &Path,
    work: &Path,
    r: &Requirements,
) -> Result<Vec<LockedWheel>> {
    let meta = r.pylock.clone().unwrap_or_default();
    let sources: Vec<Vec<PylockWheel>> = r
        .entries
        .iter()
        .map(|e| e.pylock_wheels.clone().unwrap_or_default())
        .collect();
    let request = Request {
        extras: &meta.extras,
        groups: &meta.dependency_groups,
        requires_python: meta.requires_python.as_deref(),
        environments: &meta.environments,
        packages: r
            .entries
            .iter()
            .zip(&sources)
            .map(|(e, w)| RequestPackage {
                marker: e.marker.as_deref(),
                requires_python: e.requires_python.as_deref(),
                wheels: w.iter().map(|s| s.file.as_str()).collect(),
            })
            .collect(),
    };
    let sel = select(python, &request)?;
    if let Some(why) = sel.why {
        bail!("the lock does not fit `{python}`: {why}");
    }
    let chosen = choose(python, r, &sources, &sel)?;
    let lock_file = r.files.first().map(|f| f.as_std_path());
    fetch(python, offline, dir, work, &chosen, lock_file)?;
    let mut wheels = Vec::new();
    for (name, _, s, sha) in &chosen {
        let path = dir.join(&s.file);
        let (got, size) = fsx::sha256_file(&path)?;
        if &got != sha {
            bail!(
                "`{}`: sha256 {got}, the lock says {sha}: refusing it",
                path.display()
            );
        }
        let version = wheelship::python::names::WheelFilename::parse(&s.file)
            .map(|w| w.version)
            .unwrap_or_default();
        wheels.push(LockedWheel {
            name: name.clone(),
            version,
            file: s.file.clone(),
            sha256: sha.clone(),
            size,
            extra: Default::default(),
        });
    }
    wheels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(wheels)
}

fn select(python: &str, request: &Request) -> Result<Selected> {
    use std::io::Write;
    let mut c = std::process::Command::new(python);
    c.args(["-I", "-c", SELECT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c
        .spawn()
        .map_err(|e| anyhow!("cannot run `{python}`: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(&serde_json::to_vec(request)?)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{python}` could not evaluate the lock's markers and wheels: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("unexpected answer from `{python}`: {e}"))
}

/// What is not in DIR with its sha256 comes from the lock's `path` (or a `file:` URL), or, when
/// not offline, from its URL through pip (`--require-hashes`, pip's own configuration).
fn fetch(
    python: &str,
    offline: bool,
    dir: &Path,
    work: &Path,
    chosen: &[(String, String, PylockWheel, String)],
    lock_file: Option<&Path>,
) -> Result<()> {
    let mut remote = String::new();
    for (name, _, s, sha) in chosen {
        let dest = dir.join(&s.file);
        if dest.is_file() {
            continue; // verified by the caller, like everything else
        }
        let local = s.path.clone().map(PathBuf::from).or_else(|| {
            s.url
                .as_deref()
                .filter(|u| u.starts_with("file://"))
                .and_then(|u| pip::file_url_path(u).ok())
        });
        if let Some(p) = local.filter(|p| p.is_file()) {
            // Verified before it gets its name in DIR: a wrong file never lands there.
            fsx::copy_in(&p, dir, &s.file, Some(sha))?;
            continue;
        }
        match (&s.url, offline) {
            (Some(url), false) => {
                // The document never carries credentials (`https://***@host/…`): the URL with
                // them is read from the lock file itself, for pip alone.
                let url = match lock_file.filter(|_| url.contains("://***@")) {
                    Some(f) => original_url(f, sha)?,
                    None => url.clone(),
                };
                remote.push_str(&format!("{name} @ {url} --hash=sha256:{sha}\n"))
            }
            _ => {
                return Err(Hint::new(
                    format!(
                        "`{}` is not in `{}`, and the lock names no local copy of it",
                        s.file,
                        dir.display()
                    ),
                    "run wheelhouse without --offline to fetch it from the lock's URL",
                )
                .into())
            }
        }
    }
    if !remote.is_empty() {
        download(python, dir, work, &remote)?;
    }
    fsx::fsync_dir(dir)
}

/// `pip download --require-hashes` of `remote` (requirement lines with their hashes) into a
/// staging directory, each file then renamed into DIR.
fn download(python: &str, dir: &Path, work: &Path, remote: &str) -> Result<()> {
    let stage = work.join("stage");
    std::fs::create_dir_all(&stage).at("create", &stage)?;
    let req = work.join("pylock-fetch.txt");
    std::fs::write(&req, remote).at("write", &req)?;
    let log = work.join("pip-fetch.log");
    let mut c = pip::command(python, Config::User);
    c.arg("--log").arg(&log);
    c.args(["download", "--no-deps", "--require-hashes", "--dest"])
        .arg(&stage)
        .arg("-r")
        .arg(&req);
    let out = pip::run_watched(c, "fetching the lock's wheels", &String::new)?;
    if !out.status.success() {
        return Err(pip::failure(
            &out,
            &pip::Failed {
                what: "pip download",
                dir,
                offline: false,
                target: None,
                python: None,
                log: Some(&log),
                reqs: None,
            },
        ));
    }
    for e in std::fs::read_dir(&stage).at("list", &stage)? {
        let e = e?;
        let dest = dir.join(e.file_name());
        if !dest.exists() {
            std::fs::rename(e.path(), &dest).at("rename", &dest)?;
        }
    }
    Ok(())
}

/// The URL the lock file gives the wheel whose sha256 is `sha`, as written (with credentials).
fn original_url(lock_file: &Path, sha: &str) -> Result<String> {
    let text = fsx::read_capped(lock_file, 64 << 20, "a lock file")?;
    let v: toml::Value = toml::from_str(&String::from_utf8_lossy(&text)).map_err(|e| {
        anyhow!(
            "`{}`: not a pylock.toml: {}",
            lock_file.display(),
            e.message()
        )
    })?;
    let wheels = v
        .get("packages")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("wheels").and_then(|w| w.as_array()))
        .flatten();
    for w in wheels {
        let hash = w
            .get("hashes")
            .and_then(|h| h.get("sha256"))
            .and_then(|h| h.as_str());
        if hash.is_some_and(|h| h.eq_ignore_ascii_case(sha)) {
            if let Some(url) = w.get("url").and_then(|u| u.as_str()) {
                return Ok(url.to_string());
            }
        }
    }
    bail!(
        "`{}` no longer names the wheel with sha256 {sha}: hash the requirements again",
        lock_file.display()
    )
}

/// `a` relative to the directory `base` (both absolute).
fn relative(a: &Path, base: &Path) -> PathBuf {
    let a: Vec<Component> = a.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &a[common..] {
        out.push(c);
    }
    out
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The lock as a PEP 751 file at `file`: every wheel by `path` relative to the file's
/// directory, with its sha256 and size; keys and packages in a fixed order, so the same lock
/// gives the same bytes. Written to a temp name and renamed.
pub fn write(file: &Path, dir: &Path, wheels: &[LockedWheel]) -> Result<()> {
    let file = std::path::absolute(file)?;
    let base = file.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(base).at("create", base)?;
    let base = std::fs::canonicalize(base).at("open", base)?;
    let mut text = String::from(
        "# Written by wheelship (wheelhouse --pylock): the wheels of the lock, by path.\nlock-version = \"1.0\"\ncreated-by = \"wheelship\"\n",
    );
    let mut sorted: Vec<&LockedWheel> = wheels.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.file).cmp(&(&b.name, &b.file)));
    for w in sorted {
        let path = relative(&dir.join(&w.file), &base);
        text.push_str(&format!(
            "\n[[packages]]\nname = {}\nversion = {}\n\n[[packages.wheels]]\nname = {}\npath = {}\nsize = {}\nhashes = {{ sha256 = {} }}\n",
            quoted(&w.name),
            quoted(&w.version),
            quoted(&w.file),
            quoted(&path.display().to_string()),
            w.size,
            quoted(&w.sha256),
        ));
    }
    fsx::write_atomic(&file, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/wh/x.whl"), Path::new("/a")),
            Path::new("wh/x.whl")
        );
        assert_eq!(
            relative(Path::new("/a/wh/x.whl"), Path::new("/a/locks")),
            Path::new("../wh/x.whl")
        );
        assert_eq!(
            relative(Path::new("/wh/x.whl"), Path::new("/a/b")),
            Path::new("../../wh/x.whl")
        );
    }

    #[test]
    fn toml_strings() {
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
