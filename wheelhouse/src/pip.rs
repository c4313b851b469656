//! Running pip: which configuration applies, and what its failures mean.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use wheelship::cli::io_reason;
use wheelship::Hint;

/// `pip install --dry-run --report` appeared in pip 22.2.
pub const MIN_PIP: (u32, u32) = (22, 2);

/// Whether pip's own configuration (PIP_* variables, pip.conf) applies to a call.
#[derive(Clone, Copy, PartialEq)]
pub enum Config {
    /// Fetching: the user's index URLs, proxies, certificates and credentials apply.
    User,
    /// Resolving the lock: nothing may widen it beyond the wheelhouse and `--find-links`.
    Isolated,
}

pub fn command(python: &str, config: Config) -> Command {
    let mut c = Command::new(python);
    // -I: PYTHONPATH, PYTHONHOME and the user site do not change which pip runs or how.
    c.args(["-I", "-m", "pip"]);
    if config == Config::Isolated {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PIP_") {
                c.env_remove(k);
            }
        }
        c.env("PIP_CONFIG_FILE", "/dev/null");
    }
    c.env("PIP_NO_INPUT", "1");
    c.env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    c.stdin(Stdio::null());
    c
}

pub fn run(c: Command, what: &str) -> Result<Output> {
    run_watched(c, what, &|| String::new())
}

/// Runs pip with its output captured; on a terminal a spinner shows `status()` (what has
/// arrived so far) and the time, since a fill can take minutes.
pub fn run_watched(mut c: Command, what: &str, status: &dyn Fn() -> String) -> Result<Output> {
    use std::io::Read;
    let program = c.get_program().to_os_string();
    let fail = |e: std::io::Error| anyhow!("cannot run {what} ({program:?}): {}", io_reason(&e));
    if !wheelship::progress::shown() {
        return c.output().map_err(fail);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out_t = drain(Box::new(child.stdout.take().expect("piped")));
    let err_t = drain(Box::new(child.stderr.take().expect("piped")));
    let spin = wheelship::progress::spinner("wheelhouse", what);
    let status_code = loop {
        if let Some(st) = child.try_wait().map_err(fail)? {
            break st;
        }
        spin.set_message(status());
        std::thread::sleep(std::time::Duration::from_millis(150));
    };
    spin.finish_and_clear();
    Ok(Output {
        status: status_code,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    })
}

/// Checks that `python -m pip` works and is new enough.
pub fn check_version(python: &str) -> Result<()> {
    let mut c = command(python, Config::Isolated);
    c.arg("--version");
    let out = run(c, "pip")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(Hint::new(
            format!(
                "pip is not available for `{python}`: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            format!("install it with `{python} -m ensurepip --upgrade`"),
        )
        .into());
    }
    let version = text.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if v < MIN_PIP {
        return Err(Hint::new(
            format!(
                "pip {version} for `{python}` is too old: wheelhouse needs pip >= {}.{}",
                MIN_PIP.0, MIN_PIP.1
            ),
            format!("upgrade it: `{python} -m pip install --upgrade pip`"),
        )
        .into());
    }
    Ok(())
}

/// The pip lines that mean the index could not be reached.
const NETWORK: [&str; 9] = [
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
    "Connection refused",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ProxyError",
];

/// A pip failure in our words: the network (pip goes on to say "versions found: none" after
/// its connection errors, so this is asked first), a requirement that nothing satisfies, an
/// sdist that failed to build (its own error lines, and the whole log kept in a file), or pip's
/// own last lines. `target` describes a cross-target.
pub fn failure(
    out: &Output,
    what: &str,
    dir: &Path,
    offline: bool,
    target: Option<&str>,
) -> anyhow::Error {
    let err = String::from_utf8_lossy(&out.stderr);
    let all = format!("{err}\n{}", String::from_utf8_lossy(&out.stdout));
    if !offline && NETWORK.iter().any(|n| all.contains(n)) {
        let detail = all
            .lines()
            .rfind(|l| NETWORK.iter().any(|n| l.contains(n)))
            .unwrap_or("")
            .trim();
        return Hint::new(
            format!("{what} failed: cannot reach the package index (network): {detail}"),
            "check the network or the index URL, or lock from the wheelhouse alone with --offline",
        )
        .into();
    }
    if let Some(e) = build_failure(&all, what) {
        return e;
    }
    for l in all.lines() {
        if let Some(rest) = l
            .split("Could not find a version that satisfies the requirement ")
            .nth(1)
        {
            let (req, versions) = match rest.split_once(" (from versions: ") {
                Some((r, v)) => (r.trim(), v.trim_end_matches(')').trim()),
                None => (rest.trim(), ""),
            };
            let req = req.split(" (from ").next().unwrap_or(req);
            let versions = if versions.is_empty() || versions == "none" {
                "none".to_string()
            } else {
                versions.to_string()
            };
            if let (Some(t), false, "none") = (target, offline, versions.as_str()) {
                return Hint::new(
                    format!("no wheel of `{req}` for the target ({t}): only wheels can be fetched for another target, and an sdist-only project cannot be built for one"),
                    "build it on the target's own interpreter: `wheelhouse --python /path/to/python3.X` (without the cross-target options)",
                )
                .into();
            }
            let where_ = if offline {
                format!("in `{}`", dir.display())
            } else {
                "in the wheelhouse or the index".to_string()
            };
            let hint = if offline {
                "run wheelhouse without --offline to fetch it, or add --find-links DIR"
            } else {
                "check the pin, the index URL and the target"
            };
            return Hint::new(
                format!("no wheel {where_} satisfies `{req}` (versions found: {versions})"),
                hint,
            )
            .into();
        }
    }
    let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(6)..].join("\n");
    anyhow!("{what} failed ({}):\n{tail}", out.status)
}

/// An sdist that failed to build: the project, the build's own last error lines (what pip
/// shows between `[N lines of output]` and `[end of output]`), and the whole of pip's output
/// kept in a log file the message names.
fn build_failure(all: &str, what: &str) -> Option<anyhow::Error> {
    all.find("subprocess-exited-with-error")?;
    // pip names the project in "Failed to build X" (pip 24+), else in the last "Collecting" or
    // "Processing" line (on stdout: pip stops collecting at the failing one).
    let project = all
        .lines()
        .find_map(|l| {
            let l = l.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
            [
                "Failed to build ",
                "Failed building wheel for ",
                "Could not build wheels for ",
            ]
            .iter()
            .find_map(|p| l.strip_prefix(p))
            .map(|rest| rest.split([' ', ',']).next().unwrap_or(rest).to_string())
        })
        .or_else(|| {
            all.lines().rev().find_map(|l| {
                let l = l.trim();
                if let Some(r) = l.strip_prefix("Collecting ") {
                    let name: String = r
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                        .collect();
                    return (!name.is_empty()).then_some(name);
                }
                let r = l.strip_prefix("Processing ")?;
                let file = r.split_whitespace().next()?.rsplit('/').next()?;
                let stem = file
                    .trim_end_matches(".tar.gz")
                    .trim_end_matches(".zip")
                    .trim_end_matches(".tar.bz2");
                Some(stem.rsplit_once('-').map_or(stem, |(n, _)| n).to_string())
            })
        })
        .unwrap_or_else(|| "a project".to_string());
    let mut output = Vec::new();
    let mut inside = false;
    for l in all.lines() {
        let t = l
            .trim_start_matches([' ', '│', '|', '╰', '─', '>'])
            .trim_end();
        if t.contains("lines of output]") {
            inside = true;
            output.clear();
            continue;
        }
        if t.contains("[end of output]") {
            inside = false;
            continue;
        }
        if inside && !t.is_empty() {
            output.push(t.to_string());
        }
    }
    let shown = output[output.len().saturating_sub(12)..].join("\n  ");
    let log = keep_log(all);
    let mut msg = format!("{what} failed: building `{project}` from its sdist failed");
    let project = project.as_str();
    if !shown.is_empty() {
        msg.push_str(&format!(":\n  {shown}"));
    }
    if let Some(log) = &log {
        msg.push_str(&format!("\nthe whole of pip's output: {}", log.display()));
    }
    Some(
        Hint::new(
            msg,
            format!("`{project}` has no wheel for this interpreter: install what its build needs (headers, a compiler), or pin a version with a wheel"),
        )
        .into(),
    )
}

/// pip's whole output in `<cache>/logs/`, for the message to name; best effort.
fn keep_log(text: &str) -> Option<std::path::PathBuf> {
    let dir = wheelship::python::cache_dir()?.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!(
        "pip-{}-{}.log",
        wheelship::time::compact(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        ),
        std::process::id()
    ));
    std::fs::write(&path, text).ok()?;
    Some(path)
}

#[derive(Debug, Deserialize)]
pub struct Report {
    pub install: Vec<Item>,
}

#[derive(Debug, Deserialize)]
pub struct Item {
    pub download_info: DownloadInfo,
    pub metadata: Metadata,
}

#[derive(Debug, Deserialize)]
pub struct DownloadInfo {
    pub url: String,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub version: String,
}

pub fn read_report(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "pip wrote no report `{}`: {}",
            path.display(),
            io_reason(&e)
        )
    })?;
    serde_json::from_str(&text).map_err(|e| anyhow!("cannot read pip's report: {e}"))
}

/// `file:///a%20b/x.whl` to a path.
pub fn file_url_path(url: &str) -> Result<std::path::PathBuf> {
    let Some(rest) = url.strip_prefix("file://") else {
        bail!("pip resolved `{url}`, which is not a local file");
    };
    let mut bytes = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                bytes.push(v);
                i += 3;
                continue;
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    Ok(std::path::PathBuf::from(std::ffi::OsString::from_vec(
        bytes,
    )))
}
