//! Tests of `doc`.
use super::*;

#[test]
fn empty_text_is_empty_document() {
    assert!(Document::parse("", "stdin").unwrap().is_empty());
    assert!(Document::parse(" \n\t", "stdin").unwrap().is_empty());
}

#[test]
fn not_an_object_is_an_error() {
    let err = Document::parse("[1]", "stdin").unwrap_err();
    assert_eq!(
        format!("{err:#}"),
        "stdin: the document must be a JSON object, not an array"
    );
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = Document::parse("{\"a\": }", "stdin").unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.starts_with("stdin: not a JSON document: "), "{msg}");
    assert!(msg.contains("line 1 column 7"), "{msg}");
}

#[test]
fn unknown_sections_and_keys_pass_through_in_order() {
    let text = r#"{"zeta":{"x":[1,2]},"release":{"id":"a","dir":"/r/a","later":true},"alpha":3}"#;
    let mut doc = Document::parse(text, "stdin").unwrap();
    let release: Release = doc.section("release").unwrap().unwrap();
    assert_eq!(release.extra.get("later"), Some(&Value::Bool(true)));
    doc.set("release", &release).unwrap();
    assert_eq!(doc.to_json(), text);
}

/// Numbers in keys wheelship does not know came back changed
/// (`1.2345678901234568e+29`) or were refused (`1e400`).
#[test]
fn numbers_pass_through_untouched() {
    let text = r#"{"x":{"big":123456789012345678901234567890,"fine":1.0000000000000000000001,"huge":1e+400,"neg":-0.0,"exp":1.5e-7}}"#;
    let doc = Document::parse(text, "stdin").unwrap();
    assert_eq!(doc.to_json(), text);
    // Every digit is kept; only an exponent's spelling is serde_json's (`1E400` is `1e+400`).
    let doc = Document::parse(r#"{"x":1E400}"#, "stdin").unwrap();
    assert_eq!(doc.to_json(), r#"{"x":1e+400}"#);
}

#[test]
fn a_malformed_section_names_it() {
    let doc = Document::parse(r#"{"release":{"id":3}}"#, "stdin").unwrap();
    let err = doc.section::<Release>("release").unwrap_err();
    assert!(format!("{err:#}").starts_with("stdin: the `release` section is malformed: "));
}
