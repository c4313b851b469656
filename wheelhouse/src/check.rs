//! `--check` (every locked wheel in DIR with its sha256 and size, offline, without pip) and
//! `--prune` (the wheels no lock needs removed).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use wheelship::doc::Wheelhouse;
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::{Document, UsageError};

/// What `--check` and `--prune` are asked.
pub struct Job<'a> {
    pub dir: Option<&'a Path>,
    pub check: bool,
    pub keep_locks: &'a [PathBuf],
}

pub fn run(job: &Job, mut doc: Document) -> Result<()> {
    let wh: Wheelhouse = doc.section("wheelhouse")?.ok_or_else(|| {
        UsageError(
            "--check and --prune need a document with a `wheelhouse` section (the lock)".into(),
        )
    })?;
    let dir = job
        .dir
        .map_or_else(|| PathBuf::from(&wh.dir), Path::to_path_buf);
    if job.check {
        check(&dir, &wh)?;
        return doc.write_stdout();
    }
    let removed = prune(&dir, &wh, job.keep_locks)?;
    let section = Wheelhouse {
        pruned: Some(removed),
        ..wh
    };
    doc.set("wheelhouse", &section)?;
    doc.write_stdout()
}

fn check(dir: &Path, wh: &Wheelhouse) -> Result<()> {
    let mut bad = Vec::new();
    for w in &wh.wheels {
        let p = dir.join(&w.file);
        match fsx::sha256_file(&p) {
            Err(e) => bad.push(format!("`{}`: {e:#}", w.file)),
            Ok((sha, size)) if sha != w.sha256 || size != w.size => bad.push(format!(
                "`{}`: sha256 {sha} ({size} bytes), the lock says {} ({} bytes)",
                w.file, w.sha256, w.size
            )),
            Ok(_) => {}
        }
    }
    if !bad.is_empty() {
        bail!(
            "`{}` does not hold the locked wheels:\n  {}",
            dir.display(),
            bad.join("\n  ")
        );
    }
    Ok(())
}

fn prune(dir: &Path, wh: &Wheelhouse, keep_locks: &[PathBuf]) -> Result<Vec<String>> {
    let mut keep: BTreeSet<String> = wh.wheels.iter().map(|w| w.file.clone()).collect();
    for f in keep_locks {
        let text = fs::read_to_string(f).about("", f)?;
        let other = Document::parse(&text, &f.display().to_string())?;
        let w: Wheelhouse = other
            .section("wheelhouse")?
            .ok_or_else(|| anyhow!("`{}` has no `wheelhouse` section", f.display()))?;
        keep.extend(w.wheels.into_iter().map(|w| w.file));
    }
    let mut removed = Vec::new();
    for e in fs::read_dir(dir).at("read", dir)? {
        let name = e?.file_name().to_string_lossy().to_string();
        if name.ends_with(".whl") && !keep.contains(&name) {
            fs::remove_file(dir.join(&name)).at("remove", &name)?;
            removed.push(name);
        }
    }
    removed.sort();
    fsx::fsync_dir(dir)?;
    Ok(removed)
}
