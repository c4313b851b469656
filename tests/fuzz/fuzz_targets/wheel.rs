//! Wheel zip reading, RECORD, WHEEL and entry points: refused with a message or stored, never a
//! panic, never a file outside the store.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let wheel = dir.path().join("demo-1.0-py3-none-any.whl");
    std::fs::write(&wheel, data).unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let handle = wheelship::beneath::Dir::open(&store).unwrap();
    // Any 64-hex name will do: the store entry is named by it, the wheel is what is fuzzed.
    let _ = mkenv::wheel::ensure_stored(&handle, &wheel, &"0".repeat(64));
    // Nothing but the store and the wheel in the directory.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
});
