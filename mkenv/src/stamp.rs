//! The store stays what mkenv made it: every stored file (and every `.pyc` compiled into it) is
//! read-only, and mkenv records each one's inode, size and modification time when it makes it.
//! Before a store entry is linked into another env, every file is checked against that record
//! (a `stat` each, on all cores: cheap enough to do on every build); `mkenv --verify` and
//! `mkenv gc --verify` rehash them instead (wheel files against RECORD, bytecode against the
//! sha256 recorded when it was compiled). An entry that fails is stored again from its wheel,
//! never linked.
//!
//! Why not the inode's change time, which a user cannot set back: linking a file into an env,
//! and removing an env, change it too, so every entry would read as changed after its first
//! env. A change in place that also sets the modification time back, by the same user who
//! could rewrite this record, is what `--verify` is for.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wheelship::fs::beneath::Dir;

pub use crate::wheel::Stamp;

impl Stamp {
    pub fn of(st: &rustix::fs::Stat) -> Stamp {
        #[allow(clippy::unnecessary_cast)]
        Stamp {
            ino: st.st_ino as u64,
            mtime: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        }
    }
}

/// A `.pyc` compiled into a store entry: its path under `files/`, size, stamp and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pyc {
    pub path: String,
    pub size: u64,
    pub stamp: Stamp,
    pub sha256: String,
}

/// The content of a store entry's `compiled.<cache tag>` marker: what the compiler wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compiled {
    pub pycs: Vec<Pyc>,
    /// A `.pyc` of the entry did not come out whole (a full disk cut its write): it was
    /// removed, and the entry is not marked compiled, so that the next run compiles it again.
    #[serde(skip)]
    pub incomplete: bool,
}

impl Compiled {
    /// The marker of `entry` (`<store>/<sha256>`), when it is there and reads.
    pub fn read(store: &Dir, entry: &Path, marker: &str) -> Option<Compiled> {
        serde_json::from_slice(&store.read(entry.join(marker)).ok()?).ok()
    }

    /// Every `.pyc` the markers of `entry` record, whatever interpreter they were for (one that
    /// does not read records none).
    pub fn all(store: &Dir, entry: &Path) -> Result<Compiled, String> {
        let mut out = Compiled::default();
        let names = store
            .open_dir(entry)
            .and_then(|d| d.entries())
            .map_err(|e| format!("{e:#}"))?;
        for (name, _) in names {
            let name = name.to_string_lossy();
            if name.starts_with("compiled.") {
                if let Some(c) = Compiled::read(store, entry, &name) {
                    out.pycs.extend(c.pycs);
                }
            }
        }
        Ok(out)
    }
}

/// Each file's `(path under files/, size, stamp, what to rehash it against)`.
pub struct Expect<'a> {
    pub path: &'a str,
    pub size: u64,
    pub stamp: Stamp,
    pub hash: Hash<'a>,
}

/// What a file's bytes must hash to.
pub enum Hash<'a> {
    /// RECORD's `sha256=<urlsafe base64>`.
    Record(&'a str),
    /// Lowercase hex.
    Hex(&'a str),
}

/// Every file of an entry that its records name: the wheel's, then the compiled ones. `None`
/// when the entry's info has no stamps (an older mkenv stored it).
pub fn expected<'a>(
    info: &'a crate::wheel::Info,
    compiled: &'a Compiled,
) -> Option<Vec<Expect<'a>>> {
    if info.stamps.len() != info.files.len() {
        return None;
    }
    let pycs = compiled.pycs.as_slice();
    // A `.pyc` the wheel shipped for this interpreter was replaced by ours, compiled from its
    // source: ours is what the marker records.
    let ours: std::collections::HashSet<&str> = pycs.iter().map(|p| p.path.as_str()).collect();
    let mut out: Vec<Expect> = info
        .files
        .iter()
        .zip(&info.stamps)
        .filter(|((path, _, _), _)| !ours.contains(path.as_str()))
        .map(|((path, hash, size), stamp)| Expect {
            path,
            size: *size,
            stamp: *stamp,
            hash: Hash::Record(hash),
        })
        .collect();
    for p in pycs {
        out.push(Expect {
            path: &p.path,
            size: p.size,
            stamp: p.stamp,
            hash: Hash::Hex(&p.sha256),
        });
    }
    Some(out)
}

/// Checks every expected file of the entry whose files are in `files`: each is a regular file
/// with its recorded inode, size and modification time, and with `rehash`, its recorded hash.
/// The reason, naming the first file that is not. Large entries are checked on every core.
///
pub fn check(files: &Dir, expect: &[Expect], rehash: bool) -> Result<(), String> {
    const CHUNK: usize = 1024;
    if expect.len() <= CHUNK || rehash {
        return check_some(files, expect, rehash);
    }
    let chunks: Vec<&[Expect]> = expect.chunks(CHUNK).collect();
    let mut first = None;
    let threads = wheelship::work::cores();
    wheelship::work::each(
        &chunks,
        threads,
        |c| check_some(files, c, rehash),
        |_, r| {
            if let (Err(why), None) = (r, &first) {
                first = Some(why);
            }
            Ok(())
        },
    )
    .map_err(|e| e.to_string())?;
    first.map_or(Ok(()), Err)
}

fn check_some(files: &Dir, expect: &[Expect], rehash: bool) -> Result<(), String> {
    for e in expect {
        let (parent, name) = e.path.rsplit_once('/').unwrap_or(("", e.path));
        let io = |err: rustix::io::Errno| format!("`{}`: {}", e.path, std::io::Error::from(err));
        // By its path under `files/`: a symlink planted on the way can only make the file
        // read as changed (the env is linked beneath the store's handle, which refuses one).
        let st =
            rustix::fs::statat(files, e.path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(format!("`{}` is not a regular file", e.path));
        }
        #[allow(clippy::unnecessary_cast)]
        if st.st_size as u64 != e.size || Stamp::of(&st) != e.stamp {
            return Err(format!("`{}` was changed or replaced", e.path));
        }
        if rehash {
            let d = files
                .open_dir(parent)
                .map_err(|err| format!("`{}`: {err:#}", e.path))?;
            if !hash_matches(&d, std::ffi::OsStr::new(name), &e.hash) {
                return Err(format!("`{}` does not hash to what was stored", e.path));
            }
        }
    }
    Ok(())
}

fn hash_matches(dir: &Dir, name: &std::ffi::OsStr, want: &Hash) -> bool {
    let Ok(mut f) = dir.open_file(name) else {
        return false;
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    let digest = h.finalize();
    match want {
        Hash::Record(r) => crate::wheel::record_hash(&digest) == *r,
        Hash::Hex(x) => wheelship::hash::hex(&digest) == *x,
    }
}
