//! Asking an interpreter about itself, once: probes are cached by the executable's resolved
//! path, size and mtime (and the probe's own text), as uv caches its interpreter info.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

use crate::fs::io::At;
use crate::Hint;

/// `$WHEELSHIP_CACHE`, else `$XDG_CACHE_HOME/wheelship`, else `~/.cache/wheelship`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WHEELSHIP_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wheelship"))
}

/// The executable a name runs: itself if it has a `/`, else the first match on PATH.
pub fn resolve(python: &str) -> Result<PathBuf> {
    if python.contains('/') {
        return Ok(PathBuf::from(python));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let p = d.join(python);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Hint::new(
        format!("cannot find the interpreter `{python}` on PATH"),
        "give its path with --python",
    )
    .into())
}

/// Runs `python -I -c script` and parses its JSON output, from the cache when the executable
/// has not changed.
pub fn probe(python: &str, script: &str) -> Result<Value> {
    let exe = resolve(python)?;
    let real = std::fs::canonicalize(&exe).about("interpreter", &exe)?;
    let key = cache_key(&exe, &real, script)?;
    let cached = cache_dir().map(|d| d.join("probes").join(format!("{key}.json")));
    if let Some(c) = &cached {
        if let Ok(text) = std::fs::read_to_string(c) {
            if let Ok(v) = serde_json::from_str(&text) {
                return Ok(v);
            }
        }
    }
    let out = Command::new(&exe)
        .args(["-I", "-c", script])
        .stdin(Stdio::null())
        .output()
        .at("run the interpreter", &exe)?;
    if !out.status.success() {
        bail!(
            "the interpreter `{}` failed: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("cannot read what `{}` says of itself: {e}", exe.display()))?;
    if let Some(c) = cached {
        if let Some(d) = c.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = crate::fs::fsx::write_atomic(&c, v.to_string().as_bytes());
    }
    Ok(v)
}

fn cache_key(exe: &Path, real: &Path, script: &str) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(real).about("interpreter", real)?;
    // pyenv's shims pick the interpreter from PYENV_VERSION: part of the identity.
    let text = format!(
        "{}\n{}\n{}\n{}.{}\n{}\n{}",
        exe.display(),
        real.display(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        std::env::var("PYENV_VERSION").unwrap_or_default(),
        script
    );
    Ok(crate::hash::sha256_hex(text.as_bytes()))
}
