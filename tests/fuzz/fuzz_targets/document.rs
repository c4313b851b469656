//! The JSON document and every section type: parse, read, write back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wheelship::doc::*;
use wheelship::Document;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = Document::parse(text, "stdin") else {
        return;
    };
    let _ = doc.section::<Requirements>("requirements");
    let _ = doc.section::<Wheelhouse>("wheelhouse");
    let _ = doc.section::<Env>("env");
    let _ = doc.section::<Bundle>("bundle");
    let _ = doc.section::<Release>("release");
    let _ = doc.section::<Switch>("switch");
    // What is written back reads back the same.
    let again = Document::parse(&doc.to_json(), "stdin").unwrap();
    assert_eq!(again, doc);
});
