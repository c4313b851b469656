//! Requirement files: any bytes give a parse or an error with a message, never a panic.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap()).path();
    let f = dir.join("requirements.txt");
    std::fs::write(&f, data).unwrap();
    // A fixed environment: `${VAR}` expands only HOME.
    let getenv = |n: &str| (n == "HOME").then(|| "/home/fuzz".to_string());
    if let Ok((section, _)) = hashreq::parse_files(&[f], dir, &getenv, 1 << 20) {
        assert!(section.hash.starts_with("sha256:") && section.hash.len() == 71);
    }
});
