//! Running pip: which configuration applies, and what its failures mean.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use wheelship::cli::io_reason;
use wheelship::fs::io::At;
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

/// Runs pip with its output captured; `status()` (what has arrived so far) and the time show
/// on a spinner on a terminal, and every few seconds off one, since a fill can take minutes.
pub fn run_watched(mut c: Command, what: &str, status: &dyn Fn() -> String) -> Result<Output> {
    let program = c.get_program().to_os_string();
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("cannot run {what} ({program:?}): {}", io_reason(&e)))?;
    wait_watched(child, what, status)
}

/// Waits for a child whose stdout and stderr are piped, with the spinner of [`run_watched`].
pub fn wait_watched(
    mut child: std::process::Child,
    what: &str,
    status: &dyn Fn() -> String,
) -> Result<Output> {
    use std::io::Read;
    let fail = |e: std::io::Error| anyhow!("{what}: {}", io_reason(&e));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out_t = drain(Box::new(child.stdout.take().expect("piped")));
    let err_t = drain(Box::new(child.stderr.take().expect("piped")));
    let spin = wheelship::cli::progress::spinner("wheelhouse", what);
    // Short waits first: most runs are quick, and a fixed poll would add its period to each.
    let mut nap = std::time::Duration::from_millis(2);
    let status_code = loop {
        if let Some(st) = child.try_wait().map_err(fail)? {
            break st;
        }
        spin.set_message(status());
        std::thread::sleep(nap);
        nap = (nap * 2).min(std::time::Duration::from_millis(100));
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

/// What a failed pip run was, for [`failure`].
pub struct Failed<'a> {
    /// The step, for the message (`pip wheel`).
    pub what: &'a str,
    pub dir: &'a Path,
    pub offline: bool,
    /// The cross-target, described.
    pub target: Option<&'a str>,
    /// The interpreter the lock is for, when native (its path as given).
    pub python: Option<&'a str>,
    /// pip's `--log` file: it logs what it could not fetch there at every verbosity, where its
    /// own output says nothing of it.
    pub log: Option<&'a Path>,
    /// The requirements, to quote a pin as it was written.
    pub reqs: Option<&'a wheelship::doc::Requirements>,
}

/// A pip failure in our words: the network (pip goes on to say "versions found: none" after
/// its connection errors, so this is asked first), a requirement that nothing satisfies (the
/// versions cut to those nearest the pin and the newest), an sdist that failed to build (its
/// own error lines, and the whole log kept in a file), or pip's own last lines.
pub fn failure(out: &Output, f: &Failed) -> anyhow::Error {
    let err = String::from_utf8_lossy(&out.stderr);
    let log = f
        .log
        .and_then(|l| wheelship::fs::fsx::read_capped(l, 64 << 20, "pip's log").ok())
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default();
    let all = format!("{err}\n{}", String::from_utf8_lossy(&out.stdout));
    if !f.offline {
        if let Some(e) = no_such_project(&format!("{all}\n{log}"), f) {
            return e;
        }
        if let Some(e) = network(&format!("{all}\n{log}"), f.what) {
            return e;
        }
    }
    if let Some(e) = build_failure(&all, &log, f.what) {
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
            return unsatisfied(f, req, versions);
        }
    }
    let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(6)..].join("\n");
    anyhow!("{} failed ({}):\n{tail}", f.what, out.status)
}

/// The index answered that it has no such project: pip logs a 404 for the project's page
/// (`Could not fetch URL https://…/simple/djnago/: 404 Client Error`), then finds no version.
/// That is a name to check, not the network: the requirement as written, where, and the
/// names nearest it that the wheelhouse holds.
fn no_such_project(all: &str, f: &Failed) -> Option<anyhow::Error> {
    let line = all
        .lines()
        .find(|l| l.contains("Could not fetch URL") && l.contains(": 404 "))?;
    let url = line.split_once("Could not fetch URL ")?.1;
    let url = url.split(": 404 ").next()?;
    let project = url.trim_end_matches('/').rsplit('/').next()?;
    let project = wheelship::python::names::canonicalize_name(project);
    if project.is_empty() {
        return None;
    }
    let (shown, at) = as_written(f.reqs, &project);
    let mut near: Vec<String> = std::fs::read_dir(f.dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            wheelship::python::names::WheelFilename::parse(&n)
                .ok()
                .map(|w| wheelship::python::names::canonicalize_name(&w.name))
        })
        .filter(|n| strsim::levenshtein(n, &project) <= 2)
        .collect();
    near.sort();
    near.dedup();
    let hint = if near.is_empty() {
        "check the name's spelling (https://pypi.org/search/ finds projects by name)".to_string()
    } else {
        format!(
            "did you mean {}?",
            near.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Some(
        Hint::new(
            format!(
                "{} failed: the package index has no project `{project}`, which `{shown}`{at} asks for (it answered 404 for {})",
                f.what,
                wheelship::text::redact_userinfo(url)
            ),
            hint,
        )
        .into(),
    )
}

/// pip could not reach an index: said in pip's output (its retries), or only in its log
/// (`Could not fetch URL …: connection error`, with no retries).
fn network(all: &str, what: &str) -> Option<anyhow::Error> {
    let detail = all
        .lines()
        .rfind(|l| l.contains("Could not fetch URL") || NETWORK.iter().any(|n| l.contains(n)))?;
    let detail = detail
        .split_once("Could not fetch URL ")
        .map_or(detail, |(_, r)| r)
        .trim()
        .trim_end_matches(" - skipping");
    let detail = wheelship::text::redact_userinfo(detail);
    Some(
        Hint::new(
            format!("{what} failed: cannot reach the package index (network): {detail}"),
            "check the network or the index URL, or lock from the wheelhouse alone with --offline",
        )
        .into(),
    )
}

/// Nothing satisfies `req` (as pip wrote it): the pin as written in the requirements, the
/// versions nearest it and the newest, and how many there are.
fn unsatisfied(f: &Failed, req: &str, versions: &str) -> anyhow::Error {
    let versions: Vec<&str> = versions
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "none")
        .collect();
    if let (Some(t), false, true) = (f.target, f.offline, versions.is_empty()) {
        return Hint::new(
            format!("no wheel of `{req}` for the target ({t}): only wheels can be fetched for another target, and an sdist-only project cannot be built for one"),
            "build it on the target's own interpreter: `wheelhouse --python /path/to/python3.X` (without the cross-target options)",
        )
        .into();
    }
    let (shown, at) = as_written(f.reqs, req);
    if versions.is_empty() {
        let others = wheels_of(f.dir, req);
        if !others.is_empty() {
            let n = others.len();
            return Hint::new(
                format!(
                    "no wheel in `{}` satisfies `{shown}`{at}: it has {} of the project, for other interpreters or platforms than this lock's ({}): {}",
                    f.dir.display(),
                    if n == 1 { "1 wheel".to_string() } else { format!("{n} wheels") },
                    f.target.or(f.python).unwrap_or("the native interpreter"),
                    others.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                        + if n > 3 { ", …" } else { "" }
                ),
                if f.offline {
                    "fill the directory for this interpreter (run wheelhouse without --offline where it can fetch or build), or lock for the interpreter those wheels are for with --python"
                } else {
                    "check the pin and the target: the index has nothing for this interpreter either"
                },
            )
            .into();
        }
    }
    let where_ = if f.offline {
        format!("in `{}`", f.dir.display())
    } else {
        "in the wheelhouse or the index".to_string()
    };
    let hint = if f.offline {
        "run wheelhouse without --offline to fetch it, or add --find-links DIR"
    } else {
        "check the pin, the index URL and the target"
    };
    Hint::new(
        format!(
            "no wheel {where_} satisfies `{shown}`{at} (versions found: {})",
            cut_versions(&versions, req)
        ),
        hint,
    )
    .into()
}

/// The project a requirement as pip writes it names (`Flask>=3` → `flask`), normalized.
fn project_of(req: &str) -> String {
    let name: String = req
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    wheelship::python::names::canonicalize_name(&name)
}

/// The wheel files in `dir` of the project `req` names, sorted.
fn wheels_of(dir: &Path, req: &str) -> Vec<String> {
    let name = project_of(req);
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|f| {
            wheelship::python::names::WheelFilename::parse(f)
                .is_ok_and(|w| wheelship::python::names::canonicalize_name(&w.name) == name)
        })
        .collect();
    out.sort();
    out
}

/// The requirement line that asked for `req` (pip's spelling of it), as written in its file,
/// and where: (`fastapi==0.999.0`, ` (requirements.txt:3)`). pip's spelling when not found.
fn as_written(reqs: Option<&wheelship::doc::Requirements>, req: &str) -> (String, String) {
    let name = project_of(req);
    let found = reqs.into_iter().flat_map(|r| &r.entries).find_map(|e| {
        if e.name.as_deref() != Some(name.as_str()) || e.line == 0 {
            return None;
        }
        let text = std::fs::read_to_string(e.file.as_std_path()).ok()?;
        let line = text.lines().nth(e.line as usize - 1)?;
        let line = line.split(" #").next().unwrap_or(line).trim();
        let line = line.split(" --").next().unwrap_or(line).trim();
        let shown = Path::new(e.file.as_str())
            .file_name()
            .map_or(e.file.to_string(), |n| n.to_string_lossy().to_string());
        (!line.is_empty() && line.len() <= 200)
            .then(|| (line.to_string(), format!(" ({shown}:{})", e.line)))
    });
    found.unwrap_or_else(|| (req.to_string(), String::new()))
}

/// pip's version list (oldest first) cut to what helps: the few versions around the pinned
/// one, the newest, and how many there are.
fn cut_versions(versions: &[&str], req: &str) -> String {
    const AROUND: usize = 2;
    if versions.is_empty() {
        return "none".into();
    }
    if versions.len() <= 2 * AROUND + 3 {
        return versions.join(", ");
    }
    use std::str::FromStr;
    let pinned = req
        .find(['=', '<', '>', '~', '!'])
        .map(|i| req[i..].trim_start_matches(['=', '<', '>', '~', '!']))
        .and_then(|v| pep440_rs::Version::from_str(v.trim()).ok());
    let at = pinned.map_or(versions.len(), |p| {
        versions
            .iter()
            .position(|v| pep440_rs::Version::from_str(v).is_ok_and(|v| v >= p))
            .unwrap_or(versions.len())
    });
    let lo = at.saturating_sub(AROUND);
    let hi = (at + AROUND).min(versions.len());
    let mut shown: Vec<&str> = Vec::new();
    if lo > 0 {
        shown.push("…");
    }
    shown.extend(&versions[lo..hi]);
    if hi < versions.len() {
        if hi < versions.len() - 1 {
            shown.push("…");
        }
        shown.push(versions[versions.len() - 1]);
    }
    format!("{}; {} in all", shown.join(", "), versions.len())
}

/// The output of the command that failed, from pip's `--log` file: the lines after its last
/// `Running command …` and before the error it ended with (each line less its timestamp).
fn failed_command_in_log(log: &str) -> Vec<String> {
    let (mut current, mut failed, mut inside) = (Vec::new(), Vec::new(), false);
    for l in log.lines() {
        let t = l.split_once(' ').map_or(l, |(_, rest)| rest).trim();
        if t.starts_with("Running command ") {
            (inside, current) = (true, Vec::new());
        } else if inside && (t.starts_with("ERROR:") || t.contains(" exited with ")) {
            (inside, failed) = (false, std::mem::take(&mut current));
        } else if inside && t.contains("finished with status") {
            inside = false;
        } else if inside && !t.is_empty() {
            current.push(t.to_string());
        }
    }
    failed
}

/// An sdist that failed to build: the project, the build's own last error lines (what pip
/// shows between `[N lines of output]` and `[end of output]`), and the whole of pip's output
/// kept in a log file the message names.
fn build_failure(all: &str, log: &str, what: &str) -> Option<anyhow::Error> {
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
    if output.is_empty() {
        // With `--log`, pip streams a build's output to its log, not into the error.
        output = failed_command_in_log(log);
    }
    let shown = output[output.len().saturating_sub(12)..].join("\n  ");
    let log = keep_log(&format!("{all}\n{log}"));
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
    let dir = wheelship::python::probe::cache_dir()?.join("logs");
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
    let text = std::fs::read_to_string(path).about("pip wrote no report", path)?;
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

#[cfg(test)]
mod tests {
    use super::cut_versions;

    #[test]
    fn versions_near_the_pin_and_the_newest() {
        let v: Vec<String> = (0..300).map(|i| format!("0.{i}.0")).collect();
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        assert_eq!(
            cut_versions(&v, "fastapi==0.999"),
            "…, 0.298.0, 0.299.0; 300 in all"
        );
        assert_eq!(
            cut_versions(&v, "x==0.100.5"),
            "…, 0.99.0, 0.100.0, 0.101.0, 0.102.0, …, 0.299.0; 300 in all"
        );
        assert_eq!(cut_versions(&["1.0", "2.0"], "x==3"), "1.0, 2.0");
        assert_eq!(cut_versions(&[], "x==3"), "none");
    }
}
