//! Resolving with uv (`uv pip compile --format pylock.toml`): which uv, which of pip's settings
//! it is given, and the lock it writes, read back and checked where it enters.
//! <https://docs.astral.sh/uv/reference/cli/#uv-pip-compile>

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Result};
use serde::Deserialize;
use wheelship::fs::io::At;

/// `uv pip compile --format pylock.toml` needs uv 0.8.
const MIN_UV: (u32, u32) = (0, 8);

/// The uv to resolve with: `--uv`, else `uv` on PATH; None when there is none (or it is too
/// old, said once on stderr), and pip resolves.
pub fn find(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    let exe = match explicit {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("uv"))
                .find(|p| p.is_file())
        }) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let out = Command::new(&exe)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).to_string(),
        Ok(o) if explicit.is_some() => {
            return Err(anyhow!(
                "--uv `{}` failed: {}",
                exe.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) if explicit.is_some() => return Err(e).at("run", &exe),
        _ => return Ok(None),
    };
    let version = text.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    if (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) < MIN_UV {
        let why = format!(
            "uv {version} (`{}`) is older than {}.{}",
            exe.display(),
            MIN_UV.0,
            MIN_UV.1
        );
        if explicit.is_some() {
            return Err(anyhow!("{why}: wheelhouse needs it to write pylock.toml"));
        }
        eprintln!("wheelhouse: {why}: pip resolves");
        return Ok(None);
    }
    Ok(Some(exe))
}

/// One `uv pip compile`.
#[derive(Clone)]
pub struct Compile<'a> {
    pub uv: &'a Path,
    /// Where uv writes its lock (a `pylock.<name>.toml` in the scratch directory).
    pub out: PathBuf,
    pub req: &'a Path,
    pub cons: Option<&'a Path>,
    /// DIR, then every --find-links directory.
    pub find_links: &'a [PathBuf],
    /// No index, no configuration: DIR and --find-links alone.
    pub offline: bool,
    /// `--python PY`, or `--python-version` and `--python-platform`.
    pub python: &'a Python,
    pub insecure_hosts: &'a [String],
}

/// The interpreter uv resolves for: one here (`--python`), or a version and platform.
#[derive(Clone, Debug)]
pub enum Python {
    Interpreter(String),
    Named { version: String, platform: String },
}

/// uv's answer: its lock, or why it has none (its own words).
pub enum Answer {
    Resolved(Vec<Package>),
    Unresolved(String),
}

pub fn compile(c: &Compile) -> Result<Answer> {
    let mut cmd = Command::new(c.uv);
    cmd.args(["pip", "compile", "--quiet", "--format", "pylock.toml"])
        .arg("--output-file")
        .arg(&c.out)
        .arg("--no-header");
    // uv would fetch a managed Python of the target's version to build with: no sdist is
    // built for a named target (binary wheels only), and none by uv for this one.
    cmd.arg("--no-python-downloads");
    match c.python {
        Python::Interpreter(p) => {
            cmd.arg("--python").arg(p);
        }
        Python::Named { version, platform } => {
            cmd.args(["--python-version", version, "--python-platform", platform]);
            cmd.args(["--only-binary", ":all:"]);
        }
    }
    for f in c.find_links {
        cmd.arg("--find-links").arg(f);
    }
    if c.offline {
        cmd.args(["--offline", "--no-index", "--no-config"]);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().to_string();
            if k.starts_with("UV_") && k != "UV_CACHE_DIR" {
                cmd.env_remove(k);
            }
        }
    } else {
        pip_settings(&mut cmd);
        for h in c.insecure_hosts {
            cmd.arg("--allow-insecure-host").arg(h);
        }
    }
    cmd.arg(c.req);
    if let Some(cons) = c.cons {
        cmd.arg("--constraint").arg(cons);
    }
    cmd.stdin(std::process::Stdio::null());
    let what = if c.offline {
        "resolving against the wheelhouse (uv)"
    } else {
        "resolving with the index (uv)"
    };
    let out = crate::pip::run_watched(cmd, what, &String::new)?;
    if !out.status.success() {
        return Ok(Answer::Unresolved(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = std::fs::read_to_string(&c.out).at("read uv's lock", &c.out)?;
    Ok(Answer::Resolved(parse(&text, &c.out)?))
}

/// pip's settings that uv does not read, given to uv when uv's own are not set: the index
/// (`PIP_INDEX_URL`, `PIP_EXTRA_INDEX_URL`, `PIP_NO_INDEX`), `PIP_FIND_LINKS`, `PIP_CERT` (as
/// `SSL_CERT_FILE`), `PIP_TRUSTED_HOST` and `PIP_DEFAULT_TIMEOUT`/`PIP_TIMEOUT`.
fn pip_settings(cmd: &mut Command) {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let uv_index = [
        "UV_INDEX_URL",
        "UV_DEFAULT_INDEX",
        "UV_INDEX",
        "UV_EXTRA_INDEX_URL",
    ]
    .iter()
    .any(|k| var(k).is_some());
    if !uv_index {
        if let Some(i) = var("PIP_INDEX_URL") {
            cmd.arg("--index-url").arg(i);
        }
        for u in var("PIP_EXTRA_INDEX_URL")
            .iter()
            .flat_map(|v| v.split_whitespace())
        {
            cmd.arg("--extra-index-url").arg(u);
        }
        if var("PIP_NO_INDEX").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on")) {
            cmd.arg("--no-index");
        }
    }
    if var("UV_FIND_LINKS").is_none() {
        for f in var("PIP_FIND_LINKS")
            .iter()
            .flat_map(|v| v.split_whitespace())
        {
            cmd.arg("--find-links").arg(f);
        }
    }
    if var("SSL_CERT_FILE").is_none() {
        if let Some(c) = var("PIP_CERT") {
            cmd.env("SSL_CERT_FILE", c);
        }
    }
    for h in var("PIP_TRUSTED_HOST")
        .iter()
        .flat_map(|v| v.split_whitespace())
    {
        cmd.arg("--allow-insecure-host").arg(h);
    }
    if var("UV_HTTP_TIMEOUT").is_none() {
        if let Some(t) = var("PIP_DEFAULT_TIMEOUT").or_else(|| var("PIP_TIMEOUT")) {
            cmd.env("UV_HTTP_TIMEOUT", t);
        }
    }
}

/// A package of uv's lock.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub marker: Option<String>,
    pub wheels: Vec<Artifact>,
    pub sdist: Option<Artifact>,
    /// A source uv's lock gives that is not an index's wheel or sdist (`vcs`, `directory`,
    /// `archive`): wheelhouse leaves those to pip.
    pub other: Option<&'static str>,
}

/// A file of a package: its name, where it is, its sha256 (checked: 64 hex digits) and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub file: String,
    pub at: Location,
    pub sha256: String,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Local(PathBuf),
    Url(String),
}

#[derive(Deserialize)]
struct RawLock {
    #[serde(default)]
    packages: Vec<RawPackage>,
}

#[derive(Deserialize)]
struct RawPackage {
    name: String,
    version: Option<String>,
    marker: Option<String>,
    #[serde(default)]
    wheels: Vec<RawArtifact>,
    sdist: Option<RawArtifact>,
    vcs: Option<toml::Value>,
    directory: Option<toml::Value>,
    archive: Option<toml::Value>,
}

#[derive(Deserialize)]
struct RawArtifact {
    name: Option<String>,
    url: Option<String>,
    path: Option<String>,
    size: Option<u64>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

/// Reads uv's lock. Every name, file name and sha256 is checked here: they become file names
/// in DIR and the lock's claims.
pub fn parse(text: &str, file: &Path) -> Result<Vec<Package>> {
    let raw: RawLock = toml::from_str(text).map_err(|e| anyhow!("`{}`: {e}", file.display()))?;
    let at = |what: String| anyhow!("`{}`: {what}", file.display());
    let mut out = Vec::new();
    for p in raw.packages {
        if !wheelship::python::names::is_valid_name(&p.name) {
            return Err(at(format!("`{}` is not a project name", p.name)));
        }
        let other = if p.vcs.is_some() {
            Some("vcs")
        } else if p.directory.is_some() {
            Some("directory")
        } else if p.archive.is_some() {
            Some("archive")
        } else {
            None
        };
        let version = p.version.unwrap_or_default();
        let artifact = |a: &RawArtifact| -> Result<Artifact> {
            artifact(a).map_err(|why| at(format!("package `{}`: {why}", p.name)))
        };
        let wheels = p.wheels.iter().map(artifact).collect::<Result<Vec<_>>>()?;
        let sdist = p.sdist.as_ref().map(artifact).transpose()?;
        for w in &wheels {
            let parsed = wheelship::python::names::WheelFilename::parse(&w.file).map_err(&at)?;
            if wheelship::python::names::canonicalize_name(&parsed.name) != p.name {
                return Err(at(format!("`{}` is not a wheel of `{}`", w.file, p.name)));
            }
        }
        out.push(Package {
            name: p.name,
            version,
            marker: p.marker,
            wheels,
            sdist,
            other,
        });
    }
    Ok(out)
}

fn artifact(a: &RawArtifact) -> Result<Artifact, String> {
    let sha256 = a
        .hashes
        .get("sha256")
        .ok_or("a file with no sha256")?
        .to_ascii_lowercase();
    wheelship::text::check_sha256(&sha256)?;
    let at = match (&a.url, &a.path) {
        (Some(u), _) if u.starts_with("file://") => {
            Location::Local(PathBuf::from(percent_decode(&u["file://".len()..])?))
        }
        (Some(u), _) if u.starts_with("https://") || u.starts_with("http://") => {
            Location::Url(u.clone())
        }
        (Some(u), _) => return Err(format!("`{u}` is not an http(s) or file URL")),
        (None, Some(p)) => Location::Local(PathBuf::from(p)),
        (None, None) => return Err("a file with neither url nor path".into()),
    };
    let last = match &at {
        Location::Local(p) => p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        Location::Url(u) => {
            let path = u.split(['?', '#']).next().unwrap_or(u);
            percent_decode(path.rsplit('/').next().unwrap_or_default())?
        }
    };
    let file = a.name.clone().unwrap_or(last);
    wheelship::text::check_file_name(&file)?;
    Ok(Artifact {
        file,
        at,
        sha256,
        size: a.size,
    })
}

/// `%XX` escapes decoded; the result must be UTF-8.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{s}`: a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8"))
}

/// The first of uv's lines that says why (its `cause:` or the `Because …` sentence).
pub fn reason(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .find_map(|l| l.strip_prefix("cause:").or_else(|| l.strip_prefix("╰─▶")))
        .or_else(|| lines.iter().find(|l| l.starts_with("Because")).copied())
        .or_else(|| lines.last().copied())
        .unwrap_or("uv failed with no output");
    pick.trim().to_string()
}

/// Whether uv's failure was the network.
pub fn is_network(stderr: &str) -> bool {
    [
        "Failed to fetch",
        "error sending request",
        "dns error",
        "Connection refused",
        "connection error",
        "timed out",
        "operation timed out",
        "tcp connect error",
    ]
    .iter()
    .any(|n| stderr.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_uvs_lock_and_refuses_what_cannot_be_a_file_name() {
        let lock = r#"
lock-version = "1.0"
[[packages]]
name = "alembic"
version = "1.20.1"
sdist = { url = "https://h/p/alembic-1.20.1.tar.gz", size = 3, hashes = { sha256 = "83490DEF1F723413DB5096591F7609AC52544805BE93849170088ED04F5A2E0B" } }
wheels = [{ url = "file:///w/wh/alembic-1.20.1-py3-none-any.whl", hashes = { sha256 = "9970712cfb81ea26c8658d378aaa5b8f6ff9146e5bb111d70497c164016cf598" } },
          { url = "https://h/p/alembic-1.20.1-py3-none-any.whl?x=1", size = 270355, hashes = { sha256 = "9970712cfb81ea26c8658d378aaa5b8f6ff9146e5bb111d70497c164016cf598" } }]
[[packages]]
name = "async-timeout"
version = "5.0.1"
marker = "python_full_version < '3.11.3'"
wheels = [{ url = "https://h/async_timeout-5.0.1-py3-none-any.whl", hashes = { sha256 = "39e3809566ff85354557ec2398b55e096c8364bacac9405a7a1fa429e77fe76c" } }]
"#;
        let p = parse(lock, Path::new("pylock.x.toml")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].wheels[0].at,
            Location::Local("/w/wh/alembic-1.20.1-py3-none-any.whl".into())
        );
        assert_eq!(p[0].wheels[1].file, "alembic-1.20.1-py3-none-any.whl");
        assert_eq!(p[0].sdist.as_ref().unwrap().sha256.len(), 64);
        assert!(p[0].sdist.as_ref().unwrap().sha256.starts_with("83490def"));
        assert_eq!(
            p[1].marker.as_deref(),
            Some("python_full_version < '3.11.3'")
        );
        for bad in [
            lock.replace(
                "alembic-1.20.1-py3-none-any.whl?x=1",
                "..%2F..%2Fetc%2Fx.whl",
            ),
            lock.replace("39e3809566ff", "zz"),
            lock.replace("file:///w/wh/alembic", "ftp://w/alembic"),
            lock.replace("async_timeout-5.0.1-py3", "other-5.0.1-py3"),
        ] {
            assert!(parse(&bad, Path::new("x")).is_err(), "{bad}");
        }
    }

    #[test]
    fn reasons() {
        let e = "error: No solution found when resolving dependencies\n  cause: Because httpx was not found in the provided package locations and you require httpx, we can conclude that your requirements are unsatisfiable.\n";
        assert!(reason(e).starts_with("Because httpx was not found"));
        assert!(!is_network(e));
        assert!(is_network(
            "error: Failed to fetch: `https://pypi.org/simple/x/`"
        ));
    }
}
