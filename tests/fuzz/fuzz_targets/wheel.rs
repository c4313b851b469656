//! Wheel zip reading, RECORD, WHEEL and entry points: refused with a message or stored, never a
//! panic, never a file outside the store.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = wheelship_fuzz::Scratch::new("demo-1.0-py3-none-any.whl", data, "store");
    // Any 64-hex name will do: the store entry is named by it, the wheel is what is fuzzed.
    let _ = mkenv::store::ensure_stored(&s.handle, &s.file, &"0".repeat(64));
    // Nothing but the store and the wheel in the directory.
    s.assert_nothing_beside();
});
