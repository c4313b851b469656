//! Tests of `req`.
use super::*;

fn p(s: &str) -> Parsed {
    parse_requirement(s, Path::new("/nonexistent-cwd")).unwrap()
}
fn err(s: &str) -> String {
    parse_requirement(s, Path::new("/nonexistent-cwd")).unwrap_err()
}

#[test]
fn names_extras_specifiers_markers() {
    let r = p("Foo_Bar[B,a,A] >= 1.0 , <2 ; python_version>'3.8'");
    assert_eq!(r.name.as_deref(), Some("foo-bar"));
    assert_eq!(r.extras, ["a", "b"]);
    assert_eq!(r.specifier, "<2,>=1");
    assert_eq!(r.marker.as_deref(), Some("python_version > \"3.8\""));
    assert!(!r.pinned);
    assert!(p("foo==1.0").pinned);
    assert!(!p("foo==1.*").pinned);
}

#[test]
fn versions_are_normalised() {
    assert_eq!(p("foo==1.0.POST1").specifier, "==1.post1");
    assert_eq!(p("foo>=v1.0-beta1").specifier, ">=1b1");
}

/// `==1.0` and `==1.0.0` match the same versions, so they are one pin;
/// `==2023.04.0` and `==2023.4.0` too. Prefix matches and `~=` keep their segments.
#[test]
fn equal_pins_are_one_pin() {
    for (a, b) in [
        ("foo==1.0", "foo==1.0.0"),
        ("foo==1", "foo==1.0.0.0"),
        ("foo==2023.04.0", "foo==2023.4"),
        ("foo!=1.0", "foo!=1.0.0"),
        ("foo>=1.0rc1", "foo>=1.0.0rc1"),
        ("foo==1.0+local", "foo==1.0.0+local"),
        ("foo==0.0", "foo==0"),
    ] {
        assert_eq!(p(a).specifier, p(b).specifier, "{a} vs {b}");
    }
    assert_eq!(p("foo==1.0.0").specifier, "==1");
    assert_eq!(p("foo==1.10.0").specifier, "==1.10");
    assert_eq!(p("foo==1.0.*").specifier, "==1.0.*");
    assert_ne!(p("foo==1.0.*").specifier, p("foo==1.*").specifier);
    assert_ne!(p("foo~=1.0").specifier, p("foo~=1.0.0").specifier);
    assert_eq!(p("foo===1.0.0").specifier, "===1.0.0");
}

/// A percent-encoded `+` in a wheel's file name (PyTorch's index), and
/// `name @ url` with a URL that packaging takes as it is.
#[test]
fn percent_encoded_wheel_names_and_lax_urls() {
    let r =
        p("https://download.pytorch.org/whl/cpu/torch-2.1.0%2Bcpu-cp311-cp311-linux_x86_64.whl");
    assert_eq!(r.name.as_deref(), Some("torch"));
    assert_eq!(r.specifier, "==2.1+cpu");
    let r = p("numpy @ https:///");
    assert_eq!(r.name.as_deref(), Some("numpy"));
    assert_eq!(r.url.as_deref(), Some("https:///"));
    assert!(err("numpy @ not a url").contains("invalid requirement"));
}

#[test]
fn arbitrary_equality_keeps_its_string() {
    let r = p("foo===foobar");
    assert_eq!(r.specifier, "===foobar");
    assert!(r.pinned);
    assert_eq!(p("foo === 1.00, !=2").specifier, "!=2,===1.00");
}

#[test]
fn strict_pep440_refusals() {
    for bad in [
        "foo==1.0-beta-legacy",
        "foo>=1.0+local",
        "foo>=1.*",
        "foo~=1",
        "foo==1.0#x",
        "café==1.0",
    ] {
        let e = err(bad);
        assert!(
            e.starts_with(&format!("invalid requirement `{bad}`: ")),
            "{e}"
        );
    }
    assert!(err("foo=1.0").ends_with("(`=` is not a valid operator: did you mean `==`?)"));
    assert!(err("foo==1.0 bar==2.0").starts_with("invalid requirement"));
}

#[test]
fn names_pep508_rs_would_panic_on_are_refused() {
    // Found by fuzzing (tests/fuzz, target `requirements`).
    let e = err("Flask-01-. hash=sha256:abcd");
    assert!(
        e.contains("`Flask-01-.` is not a valid project name"),
        "{e}"
    );
    assert!(err("foo-").contains("is not a valid project name"));
}

#[test]
fn errors_on_multibyte_text_do_not_panic() {
    // Found by fuzzing: pep508_rs's error display slices inside `ÿ`.
    let e = err("pkgsha256:abcd \\; os_name == \"it\"\u{0}\u{0}\u{0}-njne-any.whl ; o\u{ff}");
    assert!(e.starts_with("invalid"), "{e}");
}

#[test]
fn urls_and_wheels() {
    let r = p("https://h.example/Foo_Bar-1.2.3-py3-none-any.whl ; python_version >= '3'");
    assert_eq!(r.name.as_deref(), Some("foo-bar"));
    assert_eq!(r.specifier, "==1.2.3");
    assert_eq!(r.marker.as_deref(), Some("python_version >= \"3\""));
    let r = p("https://h.example/x.tar.gz#egg=Pkg");
    assert_eq!(r.name.as_deref(), Some("pkg"));
    assert_eq!(p("https://h.example/x.tar.gz").name, None);
    let r = p("pkg @ https://h.example/x.tar.gz#sha256=ab ; os_name=='posix'");
    assert_eq!(
        r.url.as_deref(),
        Some("https://h.example/x.tar.gz#sha256=ab")
    );
    assert_eq!(r.marker.as_deref(), Some("os_name == \"posix\""));
    // Without the space after `;`, the marker stays in a bare URL (pip 26 refuses it).
    assert!(parse_requirement(
        "https://h/x.tar.gz#egg=foo;python_version>'3'",
        Path::new("/")
    )
    .is_err());
}

#[test]
fn editables() {
    let r = parse_editable("git+https://h/r.git@abc#egg=Foo", Path::new("/")).unwrap();
    assert_eq!(r.name.as_deref(), Some("foo"));
    let r = parse_editable("git://h/r.git#egg=foo", Path::new("/")).unwrap();
    assert_eq!(r.url.as_deref(), Some("git+git://h/r.git#egg=foo"));
    assert!(parse_editable("git+https://h/r.git", Path::new("/"))
        .unwrap_err()
        .contains("#egg="));
    assert!(parse_editable("./missing", Path::new("/nonexistent"))
        .unwrap_err()
        .contains("not a valid editable"));
}

#[test]
fn local_directories_must_be_projects() {
    let d = std::env::temp_dir().join(format!("hashreq-req-test-{}", std::process::id()));
    std::fs::create_dir_all(d.join("proj")).unwrap();
    let e = parse_requirement("./proj", &d).unwrap_err();
    assert!(e.contains("is not installable"), "{e}");
    std::fs::write(d.join("proj/pyproject.toml"), "").unwrap();
    let r = parse_requirement("./proj[X]", &d).unwrap();
    assert!(r.url.unwrap().ends_with("/proj"));
    assert_eq!(r.extras, ["x"]);
    std::fs::remove_dir_all(&d).unwrap();
}
