//! The cache of locks: an unchanged request against an unchanged DIR is answered without a
//! resolver. Keyed by the request, the targets and what DIR and every --find-links directory
//! hold (names, sizes, mtimes).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;
use wheelship::doc::TargetLock;
use wheelship::fs::fsx;
use wheelship::fs::io::At;

use crate::Source;

/// Version of the cached-lock format and of what the key covers.
const FORM: &str = "wheelship-lock-cache-v2";

fn listing(dir: &Path) -> Result<Vec<(String, u64, i128)>> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).at("read", dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let m = e.metadata()?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        v.push((name, m.len(), mtime));
    }
    v.sort();
    Ok(v)
}

/// The key: the request (requirements hash, or the bytes of `-r FILE`), the targets as asked
/// (with the resolver of each), and what DIR and every --find-links directory hold.
pub fn key(
    source: &Source,
    targets: &serde_json::Value,
    dir: &Path,
    find_links: &[PathBuf],
) -> Result<String> {
    let request = match source {
        Source::Doc(r) => r.hash.clone(),
        Source::File(f) => {
            let (sha, _) = fsx::sha256_file(f)?;
            format!("file:{}:{sha}", f.display())
        }
    };
    let mut dirs = vec![json!([dir, listing(dir)?])];
    for f in find_links {
        dirs.push(json!([f, listing(f)?]));
    }
    let form = json!({"form": FORM, "request": request, "targets": targets, "dirs": dirs});
    Ok(wheelship::hash::sha256_hex(form.to_string().as_bytes()))
}

fn cache_dir() -> Option<PathBuf> {
    wheelship::python::probe::cache_dir().map(|d| d.join("locks"))
}

pub fn get(key: &str) -> Option<Vec<TargetLock>> {
    let text = fs::read_to_string(cache_dir()?.join(format!("{key}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Best effort: a cache that cannot be written only costs the next run a resolution.
pub fn put(key: &str, locks: &[TargetLock]) {
    let Some(d) = cache_dir() else { return };
    if fs::create_dir_all(&d).is_ok() {
        if let Ok(text) = serde_json::to_vec(locks) {
            let _ = fsx::write_atomic(&d.join(format!("{key}.json")), &text);
        }
    }
}
