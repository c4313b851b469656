//! Wheel file names and their tags.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(w) = wheelship::python::names::WheelFilename::parse(name) {
        assert!(!w.tags().is_empty());
        let _ = wheelship::python::names::canonicalize_name(&w.name);
    }
});
