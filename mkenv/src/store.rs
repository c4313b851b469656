//! The store: every locked wheel checked against the lock's sha256, verified and unzipped once
//! into `<store>/<sha256>/` (shared by every env), on every core; each stored wheel's bytecode
//! is sent to the compiler as soon as it is there.

use std::path::Path;

use anyhow::{bail, Result};
use sha2::Digest;
use wheelship::cli::progress;
use wheelship::doc::{LockedWheel, Wheelhouse};
use wheelship::fs::beneath::Dir;
use wheelship::fs::fsx;

use crate::compile::{site_py_files, Compiler};
use crate::stamp::Compiled;
use crate::wheel::{self, Info, Reuse};

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
    let checked = || -> Result<wheel::WheelData> {
        let data = wheel::WheelData::read(&path)?;
        let (sha, size) = match &data {
            wheel::WheelData::Bytes(b) => (
                wheelship::hash::hex(&sha2::Sha256::digest(b)),
                b.len() as u64,
            ),
            wheel::WheelData::File(_) => fsx::sha256_file(&path)?,
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
    let (info, fresh) = wheel::ensure_stored_with(store, &path, &w.sha256, &reuse, checked)?;
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
