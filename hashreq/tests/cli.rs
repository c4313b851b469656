//! hashreq's command line, run for real in a temp dir per test.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

fn dir(files: &[(&str, &str)]) -> TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

fn hashreq(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    Command::cargo_bin("hashreq")
        .unwrap()
        .current_dir(cwd)
        .args(args)
        .env_remove("SECRET_TOKEN")
        .write_stdin(stdin)
        .output()
        .unwrap()
}

fn ok(cwd: &Path, args: &[&str]) -> Value {
    let out = hashreq(cwd, args, "");
    assert!(
        out.status.success(),
        "hashreq {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hash_of(text: &str) -> String {
    let d = dir(&[("requirements.txt", text)]);
    ok(d.path(), &[])["requirements"]["hash"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs and expects failure: returns (exit code, stderr) and checks stdout is empty.
fn fails(cwd: &Path, args: &[&str], stdin: &str) -> (i32, String) {
    let out = hashreq(cwd, args, stdin);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout on failure: {:?}", out.stdout);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const BASE: &str =
    "flask==3.0.3\nclick>=8.1,<9\nrequests[socks,security]==2.32.3 ; python_version >= '3.8'\n";

#[test]
fn hash_ignores_what_does_not_change_meaning() {
    let base = hash_of(BASE);
    for variant in [
        // line order, comments, blank lines, whitespace
        "# deps\n\nrequests[socks,security]==2.32.3;python_version>='3.8'   # net\nclick>=8.1,<9\n\n  flask==3.0.3\n",
        // continuations
        "flask\\\n==3.0.3\nclick>=8.1,\\\n<9\nrequests[socks,security]==2.32.3 ; python_version >= '3.8'\n",
        // name case and -_. spelling, extras and specifier order, marker quoting
        "Flask==3.0.3\nCLICK<9,>=8.1\nRequests[Security,socks]==2.32.3 ; python_version >= \"3.8\"\n",
        // CRLF line endings and a BOM
        "\u{feff}flask==3.0.3\r\nclick>=8.1,<9\r\nrequests[socks,security]==2.32.3 ; python_version >= '3.8'\r\n",
    ] {
        assert_eq!(hash_of(variant), base, "{variant:?}");
    }
    // Whether a line sits in an included file.
    let d = dir(&[
        ("requirements.txt", "flask==3.0.3\n-r more/deps.txt\n"),
        (
            "more/deps.txt",
            "click>=8.1,<9\nrequests[socks,security]==2.32.3 ; python_version >= '3.8'\n",
        ),
    ]);
    assert_eq!(ok(d.path(), &[])["requirements"]["hash"], base);
}

#[test]
fn hash_changes_with_what_changes_meaning() {
    let base = hash_of(BASE);
    let mut seen = vec![base.clone()];
    for variant in [
        BASE.replace("3.0.3", "3.0.2"),
        BASE.replace(">=8.1", ">=8.0"),
        BASE.replace("'3.8'", "'3.9'"),
        BASE.replace("socks,", ""),
        BASE.replace(
            "flask==3.0.3",
            &format!("flask==3.0.3 --hash=sha256:{}", "a".repeat(64)),
        ),
        BASE.replace(
            "flask==3.0.3",
            "flask @ https://h.example/flask-3.0.3-py3-none-any.whl",
        ),
        format!("{BASE}--index-url https://mirror.example/simple\n"),
        format!("{BASE}--extra-index-url https://mirror.example/simple\n"),
        format!("{BASE}--no-index\n"),
        format!("{BASE}--find-links /wheels\n"),
        format!("{BASE}--pre\n"),
        format!("{BASE}--only-binary :all:\n"),
        format!("{BASE}--no-binary flask\n"),
        format!("{BASE}--prefer-binary\n"),
        format!("{BASE}--require-hashes\n"),
        "-e git+https://h.example/r.git#egg=flask\nclick>=8.1,<9\n".to_string(),
    ] {
        let h = hash_of(&variant);
        assert!(!seen.contains(&h), "no change for {variant:?}");
        seen.push(h);
    }
}

#[test]
fn hash_changes_with_constraint_file_content_and_flag() {
    let a = dir(&[
        ("requirements.txt", "flask\n-c c.txt\n"),
        ("c.txt", "flask==3.0.3\n"),
    ]);
    let b = dir(&[
        ("requirements.txt", "flask\n-c c.txt\n"),
        ("c.txt", "flask==3.0.2\n"),
    ]);
    let c = dir(&[
        ("requirements.txt", "flask\n-r c.txt\n"),
        ("c.txt", "flask==3.0.3\n"),
    ]);
    let ha = ok(a.path(), &[])["requirements"]["hash"].clone();
    let hb = ok(b.path(), &[])["requirements"]["hash"].clone();
    let hc = ok(c.path(), &[])["requirements"]["hash"].clone();
    assert_ne!(ha, hb);
    assert_ne!(ha, hc);
}

#[test]
fn section_shape() {
    let d = dir(&[
        ("requirements.txt", "Flask_Login[X]==0.6.3\n-c sub/c.txt\n"),
        ("sub/c.txt", "werkzeug==3.0.3 ; os_name=='posix'\n"),
    ]);
    let doc = ok(d.path(), &[]);
    let r = &doc["requirements"];
    let root = std::fs::canonicalize(d.path()).unwrap();
    assert!(r["hash"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(r["hash"].as_str().unwrap().len(), 7 + 64);
    assert_eq!(
        r["files"],
        serde_json::json!([
            root.join("requirements.txt").display().to_string(),
            root.join("sub/c.txt").display().to_string()
        ])
    );
    let e = &r["entries"][0];
    assert_eq!(e["name"], "flask-login");
    assert_eq!(e["extras"], serde_json::json!(["x"]));
    assert_eq!(e["specifier"], "==0.6.3");
    assert_eq!(e["line"], 1);
    assert_eq!(e["constraint"], false);
    let c = &r["entries"][1];
    assert_eq!(c["constraint"], true);
    assert_eq!(c["marker"], "os_name == \"posix\"");
    assert_eq!(c["file"], root.join("sub/c.txt").display().to_string());
}

#[test]
fn print_hash_is_just_the_hex() {
    let d = dir(&[("requirements.txt", BASE)]);
    let out = hashreq(d.path(), &["--print-hash"], "");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let doc = ok(d.path(), &[]);
    assert_eq!(
        text,
        format!(
            "{}\n",
            doc["requirements"]["hash"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
        )
    );
}

#[test]
fn unknown_sections_pass_through() {
    let d = dir(&[("requirements.txt", "flask==3.0.3\n")]);
    let input = r#"{"custom":{"keep":[1,{"x":null}]},"requirements":{"old":true},"env":{"path":"/e","key":"k","reused":true,"python":{"version":"3","implementation":"cpython","tag":"cp3"},"future":1}}"#;
    let out = hashreq(d.path(), &[], input);
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let orig: Value = serde_json::from_str(input).unwrap();
    assert_eq!(doc["custom"], orig["custom"]);
    assert_eq!(doc["env"], orig["env"]);
    assert!(
        doc["requirements"].get("old").is_none(),
        "own section is replaced whole"
    );
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["custom", "requirements", "env"]);
    assert!(out.stdout.ends_with(b"}\n"));
}

#[test]
fn errors_name_file_and_line() {
    let d = dir(&[
        ("requirements.txt", "flask==3.0.3\n\nfoo==1.0-beta-legacy\n"),
        ("opt.txt", "--install-option=x\n"),
        ("inc.txt", "# x\n-r missing.txt\n"),
        ("a.txt", "-r b.txt\n"),
        ("b.txt", "flask\n-r a.txt\n"),
        ("tab.txt", "flask==1.0\t--hash=sha256:aa\n"),
        ("md5.txt", "flask==1.0 --hash=md5:aa\n"),
    ]);
    let (code, err) = fails(d.path(), &[], "");
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "hashreq: requirements.txt:3: invalid requirement `foo==1.0-beta-legacy`: "
        ),
        "{err}"
    );
    let (code, err) = fails(d.path(), &["opt.txt"], "");
    assert_eq!(
        (code, err.as_str()),
        (1, "hashreq: opt.txt:1: no such option: --install-option\n")
    );
    let (code, err) = fails(d.path(), &["inc.txt"], "");
    assert_eq!(
        (code, err.as_str()),
        (1, "hashreq: inc.txt:2: cannot read included file `missing.txt`: No such file or directory\n")
    );
    let (code, err) = fails(d.path(), &["a.txt"], "");
    assert_eq!(code, 1);
    assert!(
        err.starts_with("hashreq: b.txt:2: `a.txt` includes itself: "),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with(
            "b.txt -> {root}/a.txt"
                .replace(
                    "{root}",
                    &std::fs::canonicalize(d.path())
                        .unwrap()
                        .display()
                        .to_string()
                )
                .as_str()
        ),
        "{err}"
    );
    let (_, err) = fails(d.path(), &["tab.txt"], "");
    assert!(
        err.starts_with("hashreq: tab.txt:1: invalid requirement `flask==1.0\t--hash=sha256:aa`"),
        "{err}"
    );
    let (_, err) = fails(d.path(), &["md5.txt"], "");
    assert_eq!(
        err,
        "hashreq: md5.txt:1: Allowed hash algorithms for --hash are sha256, sha384, sha512.\n"
    );
}

#[test]
fn missing_file_and_bad_stdin_and_usage() {
    let d = dir(&[("requirements.txt", "flask==3.0.3\n")]);
    let (code, err) = fails(d.path(), &["nope.txt"], "");
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "hashreq: nope.txt: cannot read requirements file: No such file or directory\n"
        )
    );
    let (code, err) = fails(d.path(), &[], "{\"a\": ");
    assert_eq!(code, 1);
    assert!(
        err.starts_with("hashreq: stdin: not a JSON document: "),
        "{err}"
    );
    let (code, err) = fails(d.path(), &[], "[]");
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "hashreq: stdin: the document must be a JSON object, not an array\n"
        )
    );
    let (code, err) = fails(d.path(), &["--bogus"], "");
    assert_eq!(code, 2);
    assert!(
        err.starts_with("hashreq: unexpected argument '--bogus'"),
        "{err}"
    );
}

#[test]
fn credentials_never_leave() {
    let d = dir(&[(
        "requirements.txt",
        "-i https://alice:hunter22@pypi.example/simple\n--extra-index-url https://${SECRET_TOKEN}@x.example/simple/\npkg @ https://bob:pw99@files.example/pkg-1.0.tar.gz\n-f https://h.example/${SECRET_TOKEN}/links\nbad==1.0-beta-legacy --hash=sha256:${SECRET_TOKEN}\n",
    )]);
    // The last line fails: the secret must not be in the message either.
    let out = Command::cargo_bin("hashreq")
        .unwrap()
        .current_dir(d.path())
        .env("SECRET_TOKEN", "tok-12345")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !err.contains("tok-12345") && !err.contains("hunter22"),
        "{err}"
    );
    std::fs::write(
        d.path().join("requirements.txt"),
        "-i https://alice:hunter22@pypi.example/simple\n--extra-index-url https://${SECRET_TOKEN}@x.example/simple/\npkg @ https://bob:pw99@files.example/pkg-1.0.tar.gz\n-f https://h.example/${SECRET_TOKEN}/links\n",
    )
    .unwrap();
    let run = |token: &str| {
        let out = Command::cargo_bin("hashreq")
            .unwrap()
            .current_dir(d.path())
            .env("SECRET_TOKEN", token)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let a = run("tok-12345");
    for secret in ["hunter22", "alice", "tok-12345", "pw99"] {
        assert!(!a.contains(secret), "{secret} leaked: {a}");
    }
    assert!(a.contains("https://***@pypi.example/simple"));
    assert!(a.contains("https://h.example/${SECRET_TOKEN}/links"));
    // A value never enters the hash: a digest of it does, where `${NAME}` stands in what the
    // requirements mean (a find-links path naming another directory is another request); a
    // credential in a URL's user-info is not there, and rotates freely.
    let b = run("tok-67890");
    let h = |s: &str| serde_json::from_str::<Value>(s).unwrap()["requirements"]["hash"].clone();
    assert_ne!(h(&a), h(&b));
    std::fs::write(
        d.path().join("requirements.txt"),
        "--extra-index-url https://${SECRET_TOKEN}@x.example/simple/\nfoo==1\n",
    )
    .unwrap();
    assert_eq!(h(&run("tok-12345")), h(&run("tok-67890")));
}

#[test]
fn closed_stdout_ends_quietly() {
    use std::process::{Command as Std, Stdio};
    let d = dir(&[("requirements.txt", "flask==3.0.3\n")]);
    // A big document, so the write meets the closed pipe.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1 << 20));
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("hashreq"))
        .current_dir(d.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(big.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every crash the fuzzer found (tests/fuzz/corpus/requirements/regression-*) is an ordinary
/// error now: exit 1 with a message, never a panic (exit 101).
#[test]
fn fuzz_regressions_end_with_a_message() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/corpus/requirements");
    let mut seen = 0;
    for e in std::fs::read_dir(corpus).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("regression-")
        {
            continue;
        }
        seen += 1;
        let d = dir(&[]);
        std::fs::copy(&p, d.path().join("requirements.txt")).unwrap();
        let out = hashreq(d.path(), &[], "");
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}: {:?}",
            p.display(),
            out.status
        );
        if out.status.code() == Some(1) {
            assert!(
                String::from_utf8_lossy(&out.stderr).starts_with("hashreq: requirements.txt:"),
                "{}",
                p.display()
            );
        }
    }
    assert!(seen >= 1);
}

/// A value expanded from the environment reached messages, `files` and
/// the markers (and so the hash). What the file says is shown and hashed; `${VAR}` is resolved
/// only to read an include.
#[test]
fn expanded_values_never_leave() {
    let d = dir(&[
        (
            "requirements.txt",
            "-r inc/${PRIVATE_DIR}.txt\nfoo==1.0; python_version > \"${PRIVATE_DIR}\"\n",
        ),
        ("inc/s3cr3t-name.txt", "bar==2.0\n"),
    ]);
    let run = |value: &str| {
        Command::cargo_bin("hashreq")
            .unwrap()
            .current_dir(d.path())
            .env("PRIVATE_DIR", value)
            .output()
            .unwrap()
    };
    let out = run("s3cr3t-name");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("s3cr3t"), "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    let r = &doc["requirements"];
    assert!(
        r["files"][1]
            .as_str()
            .unwrap()
            .ends_with("/inc/${PRIVATE_DIR}.txt"),
        "{}",
        r["files"]
    );
    let names: Vec<&str> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bar", "foo"]);
    assert_eq!(
        r["entries"][1]["marker"],
        "python_version > \"${PRIVATE_DIR}\""
    );
    assert!(r["entries"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("/inc/${PRIVATE_DIR}.txt"));
    // Another value: the marker it stands in says something else, so the hash differs (by a
    // digest of the value, which never appears itself).
    std::fs::copy(
        d.path().join("inc/s3cr3t-name.txt"),
        d.path().join("inc/other.txt"),
    )
    .unwrap();
    let again: Value = serde_json::from_slice(&run("other").stdout).unwrap();
    assert_ne!(again["requirements"]["hash"], r["hash"]);
    // A missing include is named as written.
    let out = run("n0-such-s3cr3t");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!err.contains("s3cr3t"), "{err}");
    assert!(
        err.contains("cannot read included file `inc/${PRIVATE_DIR}.txt`"),
        "{err}"
    );
}

/// Only regular files are read, within a size that a flag can
/// raise, and includes nest at most 100 deep (10,000 overflowed the stack).
#[test]
fn endless_and_deep_inputs_are_refused() {
    let d = dir(&[
        ("requirements.txt", "-r /dev/zero\n"),
        ("big.txt", &"# x\n".repeat(1000)),
    ]);
    let (code, err) = fails(d.path(), &[], "");
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "hashreq: /dev/zero: cannot read requirements file: cannot read `/dev/zero`: it is a device, not a regular file\n"
    );
    let (_, err) = fails(d.path(), &["big.txt", "--max-file-size", "100"], "");
    assert!(
        err.contains("is 4000 bytes, more than the limit of 100 (--max-file-size)"),
        "{err}"
    );
    assert!(ok(d.path(), &["big.txt"])["requirements"]["entries"]
        .as_array()
        .unwrap()
        .is_empty());
    let fifo = d.path().join("fifo.txt");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (_, err) = fails(d.path(), &["fifo.txt"], "");
    assert!(err.contains("it is a FIFO, not a regular file"), "{err}");
    for i in 0..10_000 {
        std::fs::write(
            d.path().join(format!("r{i}.txt")),
            format!("-r r{}.txt\n", i + 1),
        )
        .unwrap();
    }
    let (code, err) = fails(d.path(), &["r0.txt"], "");
    assert_eq!(code, 1);
    assert!(
        err.ends_with("cannot include `r100.txt`: includes nest deeper than 100 files\n"),
        "{err}"
    );
}

/// The canonical bytes are written by structs whose field order is the code's (not by a JSON
/// map whose order follows a Cargo feature): a fixed file gives this fixed hash, here and on
/// every machine. A change to it changes every env's requirements hash: say so when it moves.
#[test]
fn golden_hash() {
    let d = dir(&[
        (
            "requirements.txt",
            "-i https://pypi.org/simple\n--only-binary :all:\nFlask[Async]==3.0.0 ; python_version >= \"3.8\"\nrequests>=2.31,<3 --hash=sha256:aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000aaaa0000\n-c constraints.txt\n",
        ),
        ("constraints.txt", "urllib3==2.2.1\n"),
    ]);
    assert_eq!(
        ok(d.path(), &[])["requirements"]["hash"],
        "sha256:51c42ff5e38068bfdbb67714fbd6747ed48efaed8bec525adc92f10cdcd1279e"
    );
}

/// `${VAR}` is expanded before the line is parsed, as pip does, so
/// `foo==${FOO_VERSION}` is the pin it names; a variable pip leaves unset is an invalid pin,
/// as for pip. A secret-named variable is shown and hashed as written.
#[test]
fn variables_in_a_pin_parse_as_pip_parses_them() {
    let d = dir(&[(
        "requirements.txt",
        "foo==${FOO_VERSION}\nbar @ https://h.example/${PIP_TOKEN}/bar-1.0.tar.gz\n",
    )]);
    let run = |version: &str, token: &str| {
        Command::cargo_bin("hashreq")
            .unwrap()
            .current_dir(d.path())
            .env("FOO_VERSION", version)
            .env("PIP_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = run("1.2", "t0ps3cret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("t0ps3cret"), "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    let entry = |name: &str| {
        doc["requirements"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()
            .clone()
    };
    // Every variable is shown as written, whatever its name.
    assert_eq!(entry("foo")["specifier"], "==${FOO_VERSION}");
    assert_eq!(
        entry("bar")["url"],
        "https://h.example/${PIP_TOKEN}/bar-1.0.tar.gz"
    );
    // The pin counts (by a digest of its value), and so does a token in a URL's path.
    let same: Value = serde_json::from_slice(&run("1.2", "t0ps3cret").stdout).unwrap();
    assert_eq!(same["requirements"]["hash"], doc["requirements"]["hash"]);
    let rotated: Value = serde_json::from_slice(&run("1.2", "n3wt0ken").stdout).unwrap();
    assert_ne!(rotated["requirements"]["hash"], doc["requirements"]["hash"]);
    let other: Value = serde_json::from_slice(&run("1.3", "t0ps3cret").stdout).unwrap();
    assert_ne!(other["requirements"]["hash"], doc["requirements"]["hash"]);
    // Unset: pip keeps the text, which is not a version.
    let out = Command::cargo_bin("hashreq")
        .unwrap()
        .current_dir(d.path())
        .env_remove("FOO_VERSION")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("requirements.txt:1: invalid requirement `foo==${FOO_VERSION}`"));
}

/// Credentials in a lock file's URLs (wheels, VCS, archives) never reach
/// the document or the hash; the kernel's files are not requirement files, whatever their
/// size; and a line that is not a requirement is quoted only in part.
#[test]
fn secrets_stay_out_of_locks_messages_and_the_hash() {
    let lock = |token: &str| {
        format!(
            r#"lock-version = "1.0"
created-by = "test"
[[packages]]
name = "foo"
version = "1.0"
wheels = [{{ name = "foo-1.0-py3-none-any.whl", url = "https://u:{token}@h.example/foo-1.0-py3-none-any.whl", hashes = {{ sha256 = "{}" }} }}]
[[packages]]
name = "bar"
version = "2.0"
vcs = {{ type = "git", url = "https://u:{token}@h.example/bar.git", commit-id = "{}" }}
[[packages]]
name = "baz"
version = "3.0"
archive = {{ url = "https://u:{token}@h.example/baz.tar.gz", hashes = {{ sha256 = "{}" }} }}
"#,
            "a".repeat(64),
            "b".repeat(40),
            "c".repeat(64)
        )
    };
    let d = dir(&[("pylock.toml", &lock("tok3n-one"))]);
    let out = hashreq(d.path(), &["pylock.toml"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("tok3n"), "{text}");
    assert!(
        text.contains("https://***@h.example/foo-1.0-py3-none-any.whl"),
        "{text}"
    );
    let first: Value = serde_json::from_str(&text).unwrap();
    std::fs::write(d.path().join("pylock.toml"), lock("tok3n-two")).unwrap();
    let second = ok(d.path(), &["pylock.toml"]);
    assert_eq!(
        first["requirements"]["hash"],
        second["requirements"]["hash"]
    );
    // procfs is refused by type: its files pass the regular-file and size checks.
    std::fs::write(d.path().join("requirements.txt"), "-r /proc/self/environ\n").unwrap();
    let out = Command::cargo_bin("hashreq")
        .unwrap()
        .current_dir(d.path())
        .env("SOME_SECRET_VALUE", "hunter2hunter2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("it is on procfs, not an ordinary file system"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    // A long line that is not a requirement: an excerpt.
    let junk = format!("x-y{}", "z ".repeat(5000));
    std::fs::write(d.path().join("requirements.txt"), format!("{junk}\n")).unwrap();
    let out = hashreq(d.path(), &["requirements.txt"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.len() < 400, "{} bytes: {err}", err.len());
}
