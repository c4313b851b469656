//! tar.zst unpacking: refused with a message or extracted into the staging directory, never a
//! panic, never anything outside it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = wheelship_fuzz::Scratch::new("a.tar.zst", data, "releases");
    let args = wheelship_fuzz::unpack_args(&s.sub);
    if let Ok(m) = bundle::extract::peek_manifest(&s.file) {
        let _ = bundle::extract::extract_into(&s.file, &s.handle, "staging", &args, &m, None);
    }
    s.assert_nothing_beside();
});
