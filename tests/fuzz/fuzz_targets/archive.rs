//! tar.zst unpacking: refused with a message or extracted into the staging directory, never a
//! panic, never anything outside it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    std::fs::write(&archive, data).unwrap();
    let releases = dir.path().join("releases");
    std::fs::create_dir(&releases).unwrap();
    let args = bundle::UnpackArgs {
        releases: releases.clone(),
        max_bytes: 1 << 20,
        max_entries: 1000,
        max_ratio: 200,
        trust: Vec::new(),
        archive: None,
    };
    let handle = wheelship::beneath::Dir::open(&releases).unwrap();
    if let Ok(m) = bundle::unpack::peek_manifest(&archive) {
        let _ = bundle::unpack::extract_into(&archive, &handle, "staging", &args, &m, None);
    }
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
});
