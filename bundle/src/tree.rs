//! The model of what an archive has made so far, against which every symlink is resolved,
//! component by component, as the kernel would resolve it; its bookkeeping is a few bytes an
//! entry whatever the names, and counted against a limit.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// A path of the release as the bookkeeping keeps it: 128 bits of two keyed hashes (SipHash,
/// keys random per run), not the path itself, so that what unpack remembers of an entry is a
/// few bytes whatever its name's length.
pub(crate) type PathKey = u128;

/// The two hashers of [`PathKey`]s, keyed once per run.
pub(crate) struct Keys(std::hash::RandomState, std::hash::RandomState);

impl Keys {
    fn new() -> Keys {
        Keys(Default::default(), Default::default())
    }

    /// The key of the path made of `components`.
    pub(crate) fn of<'c>(&self, components: impl Iterator<Item = &'c [u8]> + Clone) -> PathKey {
        use std::hash::{BuildHasher, Hasher};
        let hash = |s: &std::hash::RandomState| {
            let mut h = s.build_hasher();
            for c in components.clone() {
                h.write(c);
                h.write_u8(b'/');
            }
            h.finish()
        };
        (u128::from(hash(&self.0)) << 64) | u128::from(hash(&self.1))
    }

    pub(crate) fn path(&self, p: &Path) -> PathKey {
        self.of(p.components().map(|c| c.as_os_str().as_bytes()))
    }
}

/// What one entry costs the bookkeeping, beyond a symlink's path and target: its key in two
/// sets, with their overhead.
pub const BYTES_PER_ENTRY: u64 = 48;

/// What the archive has made so far, by path relative to the release: the model against which
/// every link is resolved, component by component, as the kernel would resolve it.
pub struct Tree {
    pub(crate) keys: Keys,
    pub(crate) files: HashSet<PathKey>,
    /// Each symlink: its path and target (symlinks are few; both are counted).
    pub(crate) links: HashMap<PathKey, (PathBuf, Vec<u8>)>,
    pub(crate) seen: HashSet<PathKey>,
    /// Bytes of bookkeeping so far, against `--max-memory`.
    bytes: u64,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree {
            keys: Keys::new(),
            files: HashSet::new(),
            links: HashMap::new(),
            seen: HashSet::new(),
            bytes: 0,
        }
    }
}

/// How many links one resolution may pass through (the kernel's own limit is 40).
const MAX_LINK_HOPS: u32 = 40;

impl Tree {
    /// Where `target`, read from the directory `from`, really leads: a path inside the release,
    /// or an error when it leaves it (through any chain of links) or loops. Components that do
    /// not exist are taken as directories, as they would be if someone made them later.
    fn resolve(&self, from: &Path, target: &[u8], hops: &mut u32) -> Result<PathBuf, ()> {
        let mut cur: Vec<Vec<u8>> = from
            .components()
            .map(|c| c.as_os_str().as_bytes().to_vec())
            .collect();
        for c in target.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    cur.pop().ok_or(())?;
                }
                name => {
                    cur.push(name.to_vec());
                    let key = self.keys.of(cur.iter().map(Vec::as_slice));
                    if let Some((here, t)) = self.links.get(&key) {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS || t.first() == Some(&b'/') {
                            return Err(());
                        }
                        let parent = here.parent().unwrap_or(Path::new(""));
                        cur = self
                            .resolve(parent, t, hops)?
                            .components()
                            .map(|c| c.as_os_str().as_bytes().to_vec())
                            .collect();
                    }
                }
            }
        }
        Ok(cur.iter().map(|c| OsStr::from_bytes(c)).collect())
    }

    /// Every link of the finished tree, resolved through every link before it, must stay in
    /// the release (PEP 706's `data` filter judges the real path the same way).
    pub(crate) fn check_links(&self) -> Result<()> {
        let mut links: Vec<_> = self.links.values().collect();
        links.sort();
        for (link, target) in links {
            self.check_link(link, target)?;
        }
        Ok(())
    }

    pub(crate) fn check_link(&self, link: &Path, target: &[u8]) -> Result<()> {
        let parent = link.parent().unwrap_or(Path::new(""));
        if self.resolve(parent, target, &mut 0).is_err() {
            bail!(
                "`{}`: symlink `{}` leaves the release",
                link.display(),
                String::from_utf8_lossy(target)
            );
        }
        Ok(())
    }

    /// Counts `n` more bytes of bookkeeping against the limit.
    pub(crate) fn count(&mut self, n: u64, max: u64) -> Result<()> {
        self.bytes += n;
        if self.bytes > max {
            bail!(
                "the archive's entries need more than {max} bytes of bookkeeping (--max-memory): too many entries or symlinks"
            );
        }
        Ok(())
    }

    /// The nearest ancestor of `rel` that is a symlink, if any.
    pub(crate) fn link_above(&self, rel: &Path) -> Option<&Path> {
        if self.links.is_empty() {
            return None;
        }
        let comps: Vec<&[u8]> = rel.components().map(|c| c.as_os_str().as_bytes()).collect();
        (1..comps.len())
            .rev()
            .find_map(|n| self.links.get(&self.keys.of(comps[..n].iter().copied())))
            .map(|(p, _)| p.as_path())
    }
}
