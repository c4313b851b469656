//! The store: every locked wheel checked against the lock's sha256, verified and unzipped once
//! into `<store>/<sha256>/` (shared by every env), on every core; each stored wheel's bytecode
//! is sent to the compiler as soon as it is there.

use std::path::Path;

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use sha2::Digest;
use wheelship::cli::progress;
use wheelship::doc::{LockedWheel, Wheelhouse};
use wheelship::fs::beneath::Dir;
use wheelship::fs::beneath::{Dirs, Kind};
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::text::check_sha256;

use crate::compile::{site_py_files, Compiler};
use crate::stamp::Compiled;
use crate::stamp::{self as stamps};
use crate::unzip::{unzip_verified, WheelData};
use crate::wheel::Info;

/// A wheel of the lock, in the store.
pub struct Stored<'w> {
    pub wheel: &'w LockedWheel,
    pub info: Info,
    /// Stored (again) by this run, not found there.
    pub fresh: bool,
}

/// How the store is filled.
pub struct Fill<'a> {
    /// The compiled marker of the target interpreter (`compiled.<cache tag>`).
    pub marker: &'a str,
    /// Rehash every file of an entry that is there (`--verify`).
    pub rehash: bool,
}

/// Stores every locked wheel on every core, feeding the compiler (when bytecode is wanted) as
/// each one is ready.
pub fn store_all<'w>(
    store: &Dir,
    wh: &'w Wheelhouse,
    fill: &Fill,
    mut compiler: Option<&mut Compiler>,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Stored<'w>>> {
    let mut results: Vec<Option<(Info, bool)>> = vec![None; wh.wheels.len()];
    // Biggest first: a big wheel started last would leave the other threads idle.
    let mut order: Vec<usize> = (0..wh.wheels.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(wh.wheels[i].size));
    let mut stored_bytes = 0u64;
    // Two threads per core: a thread waits while its large files go straight to the device
    // (`fsx::write_new`), and the other keeps the core busy meanwhile. At most 16: each holds
    // a wheel and its largest member in memory (up to 256 MiB each).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() * 2);
    wheelship::work::each(
        &order,
        threads.min(16),
        |&i| store_one(store, wh, &wh.wheels[i], fill),
        |n, res| {
            let i = order[n];
            let (info, fresh) = res?;
            let sha = Path::new(&wh.wheels[i].sha256);
            if let Some(c) = compiler.as_deref_mut() {
                if Compiled::read(store, sha, fill.marker).is_none() {
                    c.send(&site_py_files(&store.show(sha), &info))?;
                }
            }
            results[i] = Some((info, fresh));
            stored_bytes += wh.wheels[i].size;
            bar.inc(1);
            bar.set_message(progress::bytes(stored_bytes));
            Ok(())
        },
    )?;
    Ok(wh
        .wheels
        .iter()
        .zip(results)
        .map(|(w, r)| {
            let (info, fresh) = r.expect("every wheel was stored");
            Stored {
                wheel: w,
                info,
                fresh,
            }
        })
        .collect())
}

fn store_one(store: &Dir, wh: &Wheelhouse, w: &LockedWheel, fill: &Fill) -> Result<(Info, bool)> {
    let path = Path::new(&wh.dir).join(&w.file);
    // Read once: hashed, then unpacked from memory (a large wheel is hashed, then read again).
    let checked = || -> Result<WheelData> {
        let data = WheelData::read(&path)?;
        let (sha, size) = match &data {
            WheelData::Bytes(b) => (
                wheelship::hash::hex(&sha2::Sha256::digest(b)),
                b.len() as u64,
            ),
            WheelData::File(_) => fsx::sha256_file(&path)?,
        };
        if sha != w.sha256 || size != w.size {
            bail!(
                "cannot install `{}`: sha256 {sha} ({size} bytes) does not match the lock's {} ({} bytes)",
                path.display(),
                w.sha256,
                w.size
            );
        }
        Ok(data)
    };
    let reuse = Reuse {
        rehash: fill.rehash,
    };
    let (info, fresh) = ensure_stored_with(store, &path, &w.sha256, &reuse, checked)?;
    if info.name != w.name {
        bail!(
            "cannot install `{}`: it holds `{}`, the lock says `{}`",
            w.file,
            info.name,
            w.name
        );
    }
    Ok((info, fresh))
}

/// Makes sure `<store>/<sha256>` holds the verified, unzipped wheel; returns its info. What the
/// store already holds is checked again as it is read: its info is trusted no more than the
/// wheel it was made from.
pub fn ensure_stored(store: &Dir, wheel: &Path, sha256: &str) -> Result<Info> {
    ensure_stored_with(store, wheel, sha256, &Reuse::default(), || {
        WheelData::read(wheel)
    })
    .map(|(info, _)| info)
}

/// How a store entry that is already there is checked before it is used again.
#[derive(Default)]
pub struct Reuse {
    /// Rehash every file (`--verify`), not only its inode, size and modification time.
    pub rehash: bool,
}

/// [`ensure_stored`], with the wheel's data given by `data` when it has to be unpacked (the
/// caller may have read it already, to check its sha256). An entry that is there is used
/// again only if every file is as it was stored (`crate::stamp`); one that is not is stored
/// again from the wheel, with a warning. Also says whether it was stored now.
pub fn ensure_stored_with(
    store: &Dir,
    wheel: &Path,
    sha256: &str,
    reuse: &Reuse,
    data: impl FnOnce() -> Result<WheelData>,
) -> Result<(Info, bool)> {
    let entry = Path::new(check_sha256(sha256).map_err(|e| anyhow!(e))?);
    if store.kind(entry)? == Some(Kind::Dir) {
        if let Ok(bytes) = store.read(entry.join("info.json")) {
            if let Ok(info) = serde_json::from_slice::<Info>(&bytes) {
                info.validate().map_err(|why| {
                    anyhow!(
                        "`{}`: the store entry is not one mkenv made: {why}",
                        store.show(entry).display()
                    )
                })?;
                match unchanged(store, entry, &info, reuse) {
                    Ok(()) => return Ok((info, false)),
                    Err(Some(why)) => wheelship::cli::warn(format_args!(
                        "the store entry `{}` was changed after it was stored ({why}): storing it again from `{}`; envs built before still link the changed files (`mkenv gc --verify` names them)",
                        store.show(entry).display(),
                        wheel.display()
                    )),
                    // Stored by an older mkenv, without stamps: stored again, quietly.
                    Err(None) => {}
                }
            }
        }
    }
    let file_name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let data = data()?;
    let tmp = wheelship::fs::staged::Staged::new(store, wheelship::fs::temp::TMP)?;
    let files = tmp.open()?.create_dir_all("files")?;
    let info = unzip_verified(data, &file_name, Dirs::new(files))?;
    let mut f = store.create_file(Path::new(tmp.name()).join("info.json"), 0o444)?;
    f.write_all(&serde_json::to_vec(&info)?)
        .at("write", store.show(tmp.name()))?;
    if store.kind(entry)?.is_some() {
        // A store entry from a crash without info.json, or one that was changed: it goes.
        wheelship::fs::staged::trash(store, entry)?;
    }
    tmp.commit(entry)?;
    Ok((info, true))
}

/// Whether the entry's files are as they were stored: `Err(None)` when it has no stamps to
/// tell, `Err(Some(why))` when one is not.
fn unchanged(store: &Dir, entry: &Path, info: &Info, reuse: &Reuse) -> Result<(), Option<String>> {
    let compiled = Compiled::all(store, entry).map_err(Some)?;
    let expect = stamps::expected(info, &compiled).ok_or(None)?;
    let files = store
        .open_dir(entry.join("files"))
        .map_err(|e| Some(format!("{e:#}")))?;
    stamps::check(&files, &expect, reuse.rehash).map_err(Some)
}
