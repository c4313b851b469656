//! Shared paths: what outlives releases in `ROOT/shared`, linked into each release, listed in
//! its `.wheelship-shared` file and by `--shared`.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::host::layout;
use wheelship::Hint;

use crate::root::{check_id, DeployRoot};
use crate::{RESERVED, SHARED_FILE};

/// The shared paths of a release: its `.wheelship-shared` file plus `--shared`. Each is a
/// relative path of plain names that does not lie under `venv` (the env, shared with other
/// releases) or wheelship's own `.wheelship`.
pub(crate) fn shared_paths(release: &Dir, extra: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let file = release.show(SHARED_FILE);
    let listed = match release.kind(SHARED_FILE)? {
        None => String::new(),
        Some(Kind::File) => {
            let bytes = release.read(SHARED_FILE)?;
            if bytes.len() > 1 << 20 {
                bail!("`{}` is larger than 1 MiB", file.display());
            }
            String::from_utf8(bytes).map_err(|_| anyhow!("`{}` is not UTF-8", file.display()))?
        }
        Some(_) => bail!("`{}` is not a regular file: refusing it", file.display()),
    };
    let lines = listed
        .lines()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("{}:{}", file.display(), i + 1),
                l.trim().to_string(),
            )
        })
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let flags = extra.iter().map(|s| ("--shared".to_string(), s.clone()));
    for (source, p) in lines.chain(flags) {
        let rel = Path::new(p.trim_end_matches('/'));
        let first = rel.components().next();
        let ok = !p.trim_end_matches('/').is_empty()
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
            && !p.contains("//")
            && !p.starts_with("./");
        if !ok {
            bail!("{source}: shared path `{p}` must be relative, inside the release, without `..`");
        }
        if let Some(reserved) = first
            .map(|c| c.as_os_str())
            .filter(|c| *c == "venv" || *c == RESERVED)
        {
            bail!(
                "{source}: shared path `{p}` lies under `{}`, which belongs to wheelship (the env is shared by releases)",
                reserved.to_string_lossy()
            );
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Links the shared paths of `releases/<id>` (its `.wheelship-shared` plus `extra`) under the
/// root `root`, as an activation does before its flip. For the fuzz targets (tests/fuzz).
#[doc(hidden)]
pub fn link_shared_paths(root: &Path, id: &str, extra: &[String]) -> Result<()> {
    let root = DeployRoot {
        dir: root.to_path_buf(),
        opened: None,
    };
    check_id(id)?;
    let release = root.open_release(id)?;
    let shared = shared_paths(&release, extra)?;
    link_shared(&root, &release, &shared)
}

/// Links each shared path of the release to ROOT/shared. Both sides are reached through
/// handles that pass through no symlink: a release cannot make this touch anything but its own
/// tree and ROOT/shared.
pub(crate) fn link_shared(root: &DeployRoot, release: &Dir, shared: &[String]) -> Result<()> {
    if shared.is_empty() {
        return Ok(());
    }
    let store = root.handle()?.create_dir_all(layout::SHARED)?;
    for p in shared {
        let is_dir = p.ends_with('/');
        let rel = Path::new(p.trim_end_matches('/'));
        if is_dir {
            store.create_dir_all(rel)?;
        } else if store.kind(rel)?.is_none() {
            return Err(Hint::new(
                format!("shared file `{}` does not exist", store.show(rel).display()),
                "create it once on the server (it outlives releases), or list a directory with a trailing `/`",
            )
            .into());
        }
        let mut target = PathBuf::new();
        for _ in 0..rel.components().count() + 1 {
            target.push("..");
        }
        target.push(layout::SHARED);
        target.push(rel);
        let name = rel.file_name().expect("a shared path has a last component");
        let parent = release.create_dir_all(rel.parent().unwrap_or(Path::new("")))?;
        // What the release shipped at that path gives way to the shared one (a rename cannot
        // replace a directory with a link).
        if parent.kind(name)? == Some(Kind::Dir) {
            parent.remove_all(name)?;
        }
        parent.replace_symlink(&target, name)?;
    }
    Ok(())
}
