//! Whether an env can still run: the interpreter it was built for (its `pyvenv.cfg`'s
//! `executable` and `version`, which mkenv writes) is still on the host, and is still that
//! version. A system Python upgrade removes `/usr/bin/python3.11` from under every env built
//! on it; such an env must never be made live, and says so in every place that shows envs.

use std::path::{Path, PathBuf};

/// An env whose interpreter is gone or is no longer the one it was built for.
#[derive(Debug, Clone, PartialEq)]
pub struct Dead {
    /// The interpreter the env was built for, and its version.
    pub executable: PathBuf,
    pub version: String,
    /// What that path is now: `None` when it is gone; else the version it runs.
    pub now: Option<String>,
}

impl std::fmt::Display for Dead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.now {
            None => write!(
                f,
                "it was built for Python {} at `{}`, which is gone from this host",
                self.version,
                self.executable.display()
            ),
            Some(v) => write!(
                f,
                "it was built for Python {} at `{}`, which is Python {v} now",
                self.version,
                self.executable.display()
            ),
        }
    }
}

/// `key = value` of a `pyvenv.cfg`.
fn cfg_value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
    cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The minor version (`3.11`) of a version string (`3.11.7`).
fn minor(v: &str) -> &str {
    match v.match_indices('.').nth(1) {
        Some((i, _)) => &v[..i],
        None => v,
    }
}

/// `None` when `env` can run (or is not one mkenv built: no `executable` recorded); the
/// reason it cannot otherwise. Runs the interpreter only when its path is there and the env
/// was built for a minor version its name does not say (`python3` rather than `python3.11`).
pub fn dead(env: &Path) -> Option<Dead> {
    let cfg = std::fs::read_to_string(env.join("pyvenv.cfg")).ok()?;
    let executable = PathBuf::from(cfg_value(&cfg, "executable")?);
    let version = cfg_value(&cfg, "version")?.to_string();
    let dead = |now| {
        Some(Dead {
            executable: executable.clone(),
            version: version.clone(),
            now,
        })
    };
    if !executable.is_file() {
        return dead(None);
    }
    let name = executable.file_name()?.to_string_lossy().to_string();
    if name.ends_with(minor(&version)) {
        return None;
    }
    let out = std::process::Command::new(&executable)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let now = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || now.is_empty() {
        return dead(None);
    }
    (minor(&now) != minor(&version)).then(|| dead(Some(now)))?
}

/// The interpreter `python` names on this host now (resolved by PATH) and its version, for a
/// message: `python3 is Python 3.12.8 at /usr/bin/python3.12`.
pub fn host_python(python: &str) -> String {
    match crate::python::interp::Interp::probe(python) {
        Ok(i) => format!(
            "`{python}` here is Python {} at `{}`",
            i.version, i.base_executable
        ),
        Err(_) => format!("`{python}` does not run here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_env_whose_interpreter_is_gone_is_dead_and_one_that_runs_is_not() {
        let t = tempfile::tempdir().unwrap();
        let cfg = |exe: &str, version: &str| {
            std::fs::write(
                t.path().join("pyvenv.cfg"),
                format!("home = /x\nversion = {version}\nexecutable = {exe}\n"),
            )
            .unwrap();
        };
        cfg("/nonexistent/python3.11", "3.11.7");
        let d = dead(t.path()).unwrap();
        assert_eq!(d.now, None);
        assert!(d
            .to_string()
            .contains("3.11.7 at `/nonexistent/python3.11`, which is gone"));
        // A path that runs another minor version than the env's.
        let sh = t.path().join("python3");
        std::fs::write(&sh, "#!/bin/sh\necho 3.12.8\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
        cfg(sh.to_str().unwrap(), "3.11.7");
        assert_eq!(dead(t.path()).unwrap().now.as_deref(), Some("3.12.8"));
        cfg(sh.to_str().unwrap(), "3.12.1");
        assert_eq!(dead(t.path()), None);
        // Not an env mkenv built: nothing is said.
        std::fs::write(t.path().join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(dead(t.path()), None);
    }
}
