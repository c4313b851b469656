//! Filling and locking with pip (when uv is not there, is not asked for, or cannot say the
//! request): `pip wheel` (or `pip download` for another target) fetches and builds what is
//! missing, then `pip install --dry-run --report` against DIR alone, with pip's configuration
//! ignored, is the lock.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use wheelship::cli::io_reason;
use wheelship::doc::{LockedWheel, Requirements};
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::python::names::{canonicalize_name, WheelFilename};

use crate::pip::{self, Config};
use crate::target::PipCross;
use crate::Fill;

/// The requirement (and constraint) files pip reads, and the requirements they were written
/// from (for messages that quote a line as written).
#[derive(Clone, Copy)]
pub struct Files<'a> {
    pub req: &'a Path,
    pub cons: Option<&'a Path>,
    pub reqs: Option<&'a Requirements>,
}

/// One target's fill (unless offline) and lock, in its own scratch directory `work`.
pub fn fill_and_lock(f: &Fill, cross: Option<&PipCross>, work: &Path) -> Result<Vec<LockedWheel>> {
    if !f.offline {
        let (req, cons) = crate::write_files(f.source, work, true)?;
        let files = Files {
            req: &req,
            cons: cons.as_deref(),
            reqs: f.source.reqs(),
        };
        fill(f, cross, work, &files)?;
    }
    let (req, cons) = crate::write_files(f.source, work, false)?;
    let files = Files {
        req: &req,
        cons: cons.as_deref(),
        reqs: f.source.reqs(),
    };
    lock(f, cross, work, &files)
}

/// Where a `pip wheel`/`pip download` run stands, from its log: the requirements it has
/// collected, the files it downloaded and the wheels it built so far.
fn pip_progress(log: &str) -> String {
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    let (collected, downloaded) = (count("Collecting "), count(" Downloading "));
    let built = count("Created wheel for ");
    let mut said = format!("{collected} requirements collected, {downloaded} files downloaded");
    if built > 0 {
        said.push_str(&format!(", {built} wheels built"));
    }
    said
}

/// Fetch or build what is missing: `pip wheel` (native) or `pip download` (cross-target) into a
/// staging directory, then each new wheel renamed into DIR, so no partial file ever sits there.
fn fill(f: &Fill, cross: Option<&PipCross>, work: &Path, files: &Files) -> Result<()> {
    let dir = f.dir;
    let stage = work.join("stage");
    std::fs::create_dir(&stage).at("create", &stage)?;
    let log = work.join("pip-fill.log");
    let mut c = pip::command(f.python, Config::User);
    c.arg("--log").arg(&log);
    match cross {
        Some(x) => {
            c.args(["download", "--dest"]).arg(&stage).args(x.args());
        }
        None => {
            c.args(["wheel", "--wheel-dir"]).arg(&stage);
        }
    }
    c.arg("--find-links").arg(dir);
    for l in f.find_links {
        c.arg("--find-links").arg(l);
    }
    c.arg("-r").arg(files.req);
    if let Some(cons) = files.cons {
        c.arg("-c").arg(cons);
    }
    let verb = if cross.is_some() {
        "pip download"
    } else {
        "pip wheel"
    };
    let what = format!("filling `{}` with {verb}", dir.display());
    // pip saves into the staging directory only at its end: where it stands is in its log.
    let arrived = || pip_progress(&fs::read_to_string(&log).unwrap_or_default());
    let out = pip::run_watched(c, &what, &arrived)?;
    if !out.status.success() {
        let target = cross.map(PipCross::describe);
        return Err(pip::failure(
            &out,
            &pip::Failed {
                what: verb,
                dir,
                offline: false,
                target: target.as_deref(),
                python: Some(f.python),
                log: Some(&log),
                reqs: files.reqs,
            },
        ));
    }
    for e in fs::read_dir(&stage)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".whl") {
            continue;
        }
        let dest = dir.join(&name);
        if !dest.exists() {
            fs::rename(e.path(), &dest).map_err(|err| {
                anyhow!(
                    "cannot move `{name}` into `{}`: {}",
                    dir.display(),
                    io_reason(&err)
                )
            })?;
        }
    }
    fsx::fsync_dir(dir)
}

/// Resolve against DIR (and --find-links) alone, with pip's configuration ignored, and lock
/// what pip would install.
fn lock(
    f: &Fill,
    cross: Option<&PipCross>,
    work: &Path,
    files: &Files,
) -> Result<Vec<LockedWheel>> {
    let dir = f.dir;
    let report = work.join("report.json");
    let mut c = pip::command(f.python, Config::Isolated);
    c.args([
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--no-index",
        "--only-binary=:all:",
        "--report",
    ])
    .arg(&report)
    .arg("--find-links")
    .arg(dir);
    for l in f.find_links {
        c.arg("--find-links").arg(l);
    }
    if let Some(x) = cross {
        c.arg("--target").arg(work.join("target")).args(x.args());
    }
    c.arg("-r").arg(files.req);
    if let Some(cons) = files.cons {
        c.arg("-c").arg(cons);
    }
    let out = pip::run_watched(
        c,
        &format!("resolving against `{}`", dir.display()),
        &String::new,
    )?;
    if !out.status.success() {
        let target = cross.map(PipCross::describe);
        return Err(pip::failure(
            &out,
            &pip::Failed {
                what: "resolving against the wheelhouse",
                dir,
                offline: true,
                target: target.as_deref(),
                python: Some(f.python),
                log: None,
                reqs: files.reqs,
            },
        ));
    }
    let report = pip::read_report(&report)?;
    let mut wheels = Vec::new();
    for item in report.install {
        let path = pip::file_url_path(&item.download_info.url)?;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| anyhow!("pip resolved `{}`", item.download_info.url))?;
        WheelFilename::parse(&file).map_err(|e| anyhow!("pip resolved {e}"))?;
        let in_dir = dir.join(&file);
        if path.parent() != Some(dir) {
            // From --find-links: the lock names files inside DIR, so copy it in.
            fsx::copy_in(&path, dir, &file, None)?;
        }
        let (sha256, size) = fsx::sha256_file(&in_dir)?;
        wheels.push(LockedWheel {
            name: canonicalize_name(&item.metadata.name),
            version: item.metadata.version,
            file,
            sha256,
            size,
            extra: Default::default(),
        });
    }
    wheels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(wheels)
}

/// pip's scratch directory inside DIR (on its filesystem: wheels are renamed out of it),
/// removed when dropped.
pub fn scratch(dir: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(".wheelhouse-tmp-")
        .tempdir_in(dir)
        .at("create a directory in", dir)
}

/// A subdirectory of the scratch directory for one target.
pub fn sub(work: &Path, n: usize) -> Result<PathBuf> {
    let p = work.join(format!("target-{n}"));
    fs::create_dir_all(&p).at("create", &p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_is_read_from_pips_log() {
        let log = "2026-12-08T00:12:54,662 Collecting six==1.17.0\n\
                   2026-12-08T00:12:54,702   Downloading six-1.17.0-py2.py3-none-any.whl (11 kB)\n\
                   2026-12-08T00:12:54,720 Collecting lib==1.0\n\
                   2026-12-08T00:12:55,100   Created wheel for lib: filename=lib-1.0-cp311-cp311-linux_x86_64.whl\n";
        assert_eq!(
            super::pip_progress(log),
            "2 requirements collected, 1 files downloaded, 1 wheels built"
        );
        assert_eq!(
            super::pip_progress(""),
            "0 requirements collected, 0 files downloaded"
        );
    }
}
