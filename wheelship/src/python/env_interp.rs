//! Whether an env can still run: the interpreter it was built for (its `pyvenv.cfg`'s
//! `executable`, which mkenv writes resolved, `/usr/bin/python3.11`, and `version`) is still
//! on the host. A system Python upgrade removes `/usr/bin/python3.11` from under every env
//! built on it; such an env must never be made live, and says so in every place that shows
//! envs. Nothing is run to find out: a `pyvenv.cfg` is read, a path is looked at (an env's
//! files are not trusted to name a program to run, even the tools' own).

use std::path::{Path, PathBuf};

/// An env whose interpreter is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct Dead {
    /// The interpreter the env was built for, and its version.
    pub executable: PathBuf,
    pub version: String,
}

impl std::fmt::Display for Dead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it was built for Python {} at `{}`, which is gone from this host",
            self.version,
            self.executable.display()
        )
    }
}

/// `key = value` of a `pyvenv.cfg`.
fn cfg_value<'a>(cfg: &'a str, key: &str) -> Option<&'a str> {
    cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// `None` when `env` can run (or is not one mkenv built: no `executable` recorded); why it
/// cannot otherwise.
pub fn dead(env: &Path) -> Option<Dead> {
    let bytes =
        crate::fs::fsx::read_capped(&env.join("pyvenv.cfg"), 64 << 10, "a pyvenv.cfg").ok()?;
    let cfg = String::from_utf8(bytes).ok()?;
    let executable = PathBuf::from(cfg_value(&cfg, "executable")?);
    let version = cfg_value(&cfg, "version")?.to_string();
    (!executable.is_file()).then_some(Dead {
        executable,
        version,
    })
}

/// The interpreter `python` names on this host now and its version, for a message:
/// `` `python3` here is Python 3.12.8 at `/usr/bin/python3.12` ``.
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
    fn an_env_whose_interpreter_is_gone_is_dead_and_one_whose_is_there_is_not() {
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
        assert!(d
            .to_string()
            .contains("3.11.7 at `/nonexistent/python3.11`, which is gone"));
        let here = t.path().join("python3.11");
        std::fs::write(&here, "").unwrap();
        cfg(here.to_str().unwrap(), "3.11.7");
        assert_eq!(dead(t.path()), None);
        // Not an env mkenv built: nothing is said.
        std::fs::write(t.path().join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(dead(t.path()), None);
    }
}
