//! What the fuzz targets share: a scratch directory with the fuzzed file in it, a releases
//! directory to unpack into, and the check that nothing else appeared.

use std::path::{Path, PathBuf};

/// A scratch directory holding `data` as `name`, and an empty directory `sub` beside it (with
/// a handle on it): what a target extracts or stores into.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub sub: PathBuf,
    pub handle: wheelship::fs::beneath::Dir,
}

impl Scratch {
    pub fn new(name: &str, data: &[u8], sub: &str) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(name);
        std::fs::write(&file, data).unwrap();
        let sub = dir.path().join(sub);
        std::fs::create_dir(&sub).unwrap();
        let handle = wheelship::fs::beneath::Dir::open(&sub).unwrap();
        Scratch {
            dir,
            file,
            sub,
            handle,
        }
    }

    /// Asserts that the scratch directory holds only the fuzzed file and `sub`: nothing was
    /// written beside them.
    pub fn assert_nothing_beside(&self) {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}

/// `bundle unpack`'s arguments for fuzzing: small limits, no trusted keys.
pub fn unpack_args(_releases: &Path) -> bundle::extract::Limits {
    bundle::extract::Limits {
        max_bytes: 1 << 20,
        max_entries: 1000,
        max_ratio: 200,
        max_memory: 1 << 20,
    }
}
