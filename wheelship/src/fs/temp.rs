//! The names of what is on its way in or out: temp siblings, trash, staging. Every tool makes
//! them with these prefixes, and every clean finds them by these prefixes.

/// A temp file or directory beside its final name (`fsx::Prepared`, `staged::Staged`, tempfile).
pub const TMP: &str = ".tmp-";
/// A symlink on its way to replacing another (`beneath::Dir::replace_symlink`): `current`, a
/// release's `venv`, a shared path's link. Under [`TMP`], so every clean of a root finds it; in a
/// release, where the app's own files live, only symlinks of this prefix are removed.
pub const LINK: &str = ".tmp-link-";
/// A directory on its way out (`staged::trash`).
pub const TRASH: &str = ".trash-";
/// A release being extracted (`bundle unpack`).
pub const STAGING: &str = ".staging-";

/// A name unique to this process and call, for temporary siblings (`.tmp-<pid>-<n>`).
pub fn temp_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}{}-{n}-{nanos:x}", std::process::id())
}
