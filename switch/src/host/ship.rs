//! The controller's binaries as a host gets them: stripped (the debug line tables are most of a
//! release build), kept in `<cache>/ship/<key>/` where KEY comes from the identity of the
//! originals (path, inode, size, modification time), so a second deploy of the same build
//! strips and hashes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Result};
use wheelship::fs::io::At;
use wheelship::host::layout;

use super::plan::File;

/// A day: a copy unused that long belongs to an older build.
const STALE_SECS: u64 = 86_400;

/// (name, stripped copy) of each program of [`layout::SHIPPED`] in `bin`.
pub fn shipped(bin: &Path) -> Result<Vec<(String, File)>> {
    use std::os::unix::fs::MetadataExt;
    let mut key = String::new();
    for name in layout::SHIPPED {
        let p = bin.join(name);
        let m = std::fs::metadata(&p).about("the binary", &p)?;
        key.push_str(&format!(
            "{} {} {} {}\n",
            p.display(),
            m.ino(),
            m.size(),
            m.mtime() * 1_000_000_000 + m.mtime_nsec()
        ));
    }
    let cache = wheelship::python::probe::cache_dir()
        .ok_or_else(|| anyhow!("no cache directory: set WHEELSHIP_CACHE or HOME"))?
        .join("ship");
    std::fs::create_dir_all(&cache).at("create", &cache)?;
    let dir = cache.join(&wheelship::hash::sha256_hex(key.as_bytes())[..32]);
    if !dir.join(layout::SHIPPED[0]).is_file() {
        strip_into(bin, &cache, &dir)?;
        remove_stale(&cache, &dir);
    }
    // In use: not stale for another day.
    let _ = std::fs::File::open(&dir).and_then(|f| f.set_modified(std::time::SystemTime::now()));
    layout::SHIPPED
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let (sha256, size) = wheelship::fs::fsx::sha256_file(&path)?;
            Ok((name.to_string(), File { path, sha256, size }))
        })
        .collect()
}

fn strip_into(bin: &Path, cache: &Path, dir: &Path) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix(wheelship::fs::temp::TMP)
        .tempdir_in(cache)
        .at("create a directory in", cache)?;
    for name in layout::SHIPPED {
        let (src, out) = (bin.join(name), work.path().join(name));
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(&src, &out).at("copy", &src)?;
        }
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .at("chmod", &out)?;
    }
    let work = work.keep();
    if std::fs::rename(&work, dir).is_err() {
        // Another run made it first.
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}

/// Older builds' copies, and what a killed run left half made: gone after a day unused (another
/// deploy, of another build, may be sending from its copy now).
fn remove_stale(cache: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let p: PathBuf = e.path();
        let stale = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > STALE_SECS);
        if p != keep && stale {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}
