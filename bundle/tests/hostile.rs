//! Every hostile tar shape we know of (PEP 706's `data` filter cases,
//! https://peps.python.org/pep-0706/, and the tar-rs advisories), built byte by byte: the whole release is refused,
//! nothing is written outside the staging directory, and no staging directory is left behind.

mod common;

use std::path::Path;

use common::{bundle, zst, RawTar};

struct Case {
    tmp: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("releases")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/sentinel"), "untouched").unwrap();
        Case { tmp }
    }
    fn p(&self) -> &Path {
        self.tmp.path()
    }
    /// Unpacks `archive` (already compressed) and returns (exit code, stderr).
    fn unpack_bytes(&self, archive: &[u8], extra: &[&str]) -> (i32, String) {
        let a = self.p().join("a.tar.zst");
        std::fs::write(&a, archive).unwrap();
        let mut args = vec!["unpack", "--releases", "releases"];
        args.extend_from_slice(extra);
        args.push("a.tar.zst");
        let out = bundle(self.p(), &args, "");
        if !out.status.success() {
            assert!(out.stdout.is_empty(), "stdout on failure");
        }
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }
    fn refused(&self, tar: &[u8], why: &str) {
        let (code, err) = self.unpack_bytes(&zst(tar), &[]);
        assert_eq!(code, 1, "accepted, expected `{why}`: {err}");
        assert!(err.contains(why), "expected `{why}` in: {err}");
        assert!(
            err.starts_with("bundle: refusing `") || err.starts_with("bundle: `"),
            "{err}"
        );
        self.assert_clean();
    }
    /// Nothing outside the target changed and nothing half-made is left.
    fn assert_clean(&self) {
        let names: Vec<String> = std::fs::read_dir(self.p().join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != ".lock")
            .collect();
        assert!(names.is_empty(), "left behind: {names:?}");
        assert_eq!(
            std::fs::read_to_string(self.p().join("outside/sentinel")).unwrap(),
            "untouched"
        );
        let outside: Vec<_> = std::fs::read_dir(self.p().join("outside"))
            .unwrap()
            .collect();
        assert_eq!(outside.len(), 1);
        assert!(!Path::new("/tmp/abs_evil.txt").exists());
    }
}

#[test]
fn traversal_and_absolute_names() {
    for (name, why) in [
        (&b"../evil"[..], "`..` in a member name"),
        (b"/tmp/abs_evil.txt", "absolute member name"),
        (b"///tmp/abs_evil.txt", "absolute member name"),
        (b"/./tmp/abs_evil.txt", "absolute member name"),
        (b"/../tmp/abs_evil.txt", "absolute member name"),
        (b"a/../../evil", "`..` in a member name"),
        (b"./../evil", "`..` in a member name"),
        (b"..", "`..` in a member name"),
        (b"/////////..", "absolute member name"),
        (b"some/../../outside/sentinel", "`..` in a member name"),
    ] {
        let c = Case::new();
        c.refused(&RawTar::release("r1").file(name, b"x", 0o644).finish(), why);
    }
}

/// A name that would reach a terminal or a log as something else (a newline that forges a
/// line, an escape that rewrites the screen) or is not text at all: refused, and shown escaped.
#[test]
fn names_that_are_not_plain_text() {
    for (name, why) in [
        (&b"app\n.py"[..], "the control character '\\n'"),
        (b"\x1b]0;pwn\x07x", "the control character '\\u{1b}'"),
        (
            b"x\x1b[2J\nbundle: signature verified/../evil",
            "the control character",
        ),
        (b"\xff\xfe.py", "not UTF-8"),
        (b"a/\x7f", "the control character"),
    ] {
        let c = Case::new();
        let tar = RawTar::release("r1").file(name, b"x", 0o644).finish();
        let (code, err) = c.unpack_bytes(&zst(&tar), &[]);
        assert_eq!(code, 1, "accepted: {err}");
        assert!(err.contains(why), "expected `{why}` in: {err}");
        assert!(!err.contains('\x1b') && err.lines().count() <= 3, "{err:?}");
        c.assert_clean();
    }
}

#[test]
fn links_that_leave() {
    let c = Case::new();
    // 5. a symlink to / followed by a file through it.
    c.refused(
        &RawTar::release("r1")
            .entry(b"l", b'2', b"/", 0o777)
            .file(b"l/etc/x", b"x", 0o644)
            .finish(),
        "symlink to absolute path `/`",
    );
    // 6. a symlink to .. followed by a file through it.
    c.refused(
        &RawTar::release("r1")
            .entry(b"l", b'2', b"..", 0o777)
            .file(b"l/evil", b"x", 0o644)
            .finish(),
        "leaves the release",
    );
    c.refused(
        &RawTar::release("r1")
            .entry(b"a/b/l", b'2', b"../../../outside", 0o777)
            .finish(),
        "leaves the release",
    );
    // A link that stays inside is fine, but nothing may be written through it.
    c.refused(
        &RawTar::release("r1")
            .entry(b"sub/", b'5', b"", 0o755)
            .entry(b"l", b'2', b"sub", 0o777)
            .file(b"l/x", b"x", 0o644)
            .finish(),
        "written through the symlink `l`",
    );
    // 7. the CVE-2026-33056 shape: a symlink then a same-name directory entry with mode 0777.
    c.refused(
        &RawTar::release("r1")
            .entry(b"d", b'2', b"/tmp/outside", 0o777)
            .entry(b"d/.", b'5', b"", 0o777)
            .finish(),
        "symlink to absolute path",
    );
    c.refused(
        &RawTar::release("r1")
            .entry(b"d", b'2', b"x", 0o777)
            .entry(b"d/.", b'5', b"", 0o777)
            .finish(),
        "duplicate entry",
    );
    // 8, 9. hard links to outside.
    c.refused(
        &RawTar::release("r1")
            .entry(b"h", b'1', b"/etc/passwd", 0o644)
            .finish(),
        "absolute member name",
    );
    c.refused(
        &RawTar::release("r1")
            .entry(b"h", b'1', b"../x", 0o644)
            .finish(),
        "`..` in a member name",
    );
    c.refused(
        &RawTar::release("r1")
            .entry(b"h", b'1', b"nothere", 0o644)
            .finish(),
        "which is not a file of this release",
    );
}

#[test]
fn duplicates_devices_and_names() {
    let c = Case::new();
    // 10. a symlink, then a regular file with the same name.
    c.refused(
        &RawTar::release("r1")
            .entry(b"x", b'2', b"y", 0o777)
            .file(b"x", b"data", 0o644)
            .finish(),
        "duplicate entry",
    );
    c.refused(
        &RawTar::release("r1")
            .file(b"x", b"1", 0o644)
            .file(b"./x", b"2", 0o644)
            .finish(),
        "duplicate entry",
    );
    // 11. devices and FIFOs.
    c.refused(
        &RawTar::release("r1").entry(b"c", b'3', b"", 0o644).finish(),
        "character device entries are refused",
    );
    c.refused(
        &RawTar::release("r1").entry(b"b", b'4', b"", 0o644).finish(),
        "block device entries are refused",
    );
    c.refused(
        &RawTar::release("r1").entry(b"f", b'6', b"", 0o644).finish(),
        "FIFO entries are refused",
    );
    // 13. NUL in a name (through a GNU long name, which can carry one).
    c.refused(
        &RawTar::release("r1")
            .long_name(b"a\0b")
            .file(b"ignored", b"x", 0o644)
            .finish(),
        "NUL in a member name",
    );
    // 14, 16. `..` at the 100-byte boundary of a long name.
    let mut long = "d/".repeat(49).into_bytes();
    long.extend_from_slice(b"../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../../evil");
    c.refused(
        &RawTar::release("r1")
            .long_name(&long)
            .file(&long[..100], b"x", 0o644)
            .finish(),
        "`..` in a member name",
    );
    c.refused(
        &RawTar::release("r1")
            .pax(&[("path", b"a/../../evil")])
            .file(b"innocent", b"x", 0o644)
            .finish(),
        "`..` in a member name",
    );
    // 18. a path longer than PATH_MAX: refused as a name (past 4000 bytes), or as a long-name
    // header before it is read (past 4097).
    for (n, why) in [
        (2010, "member name longer than"),
        (2100, "a GNU long name of 4201 bytes"),
    ] {
        let huge = "a/".repeat(n).into_bytes();
        c.refused(
            &RawTar::release("r1")
                .long_name(&huge)
                .file(b"x", b"x", 0o644)
                .finish(),
            why,
        );
    }
    c.refused(
        &RawTar::release("r1")
            .long_name(&[b'z'; 300])
            .file(b"x", b"x", 0o644)
            .finish(),
        "a name component longer than 255 bytes",
    );
}

#[test]
fn pax_size_smuggling_cannot_hide_an_entry() {
    // 15. A PAX size of 0 for a file whose ustar size covers a smuggled symlink header: the
    // PAX size wins in tar >= 0.4.45; bundle refuses the disagreement itself.
    let c = Case::new();
    let mut t = RawTar::release("r1");
    t.pax(&[("size", b"0")]);
    let smuggled = common::header(b"evil", b'2', 0, 0o777, b"/etc");
    t.0.extend(common::header(b"carrier", b'0', 512, 0o644, b""));
    t.0.extend(smuggled);
    c.refused(
        &t.finish(),
        "`carrier`: the PAX and tar header sizes disagree",
    );
}

#[test]
fn modes_are_normalised() {
    // 12. setuid and world-writable files are accepted with those bits stripped.
    use std::os::unix::fs::PermissionsExt;
    let c = Case::new();
    let tar = RawTar::release("r1")
        .file(b"suid", b"x", 0o4755)
        .file(b"ww", b"x", 0o666)
        .file(b"sgid", b"x", 0o2777)
        .finish();
    let (code, err) = c.unpack_bytes(&zst(&tar), &[]);
    assert_eq!(code, 0, "{err}");
    let mode = |n: &str| {
        std::fs::metadata(c.p().join("releases/r1").join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("ww"), 0o644);
    assert_eq!(mode("sgid"), 0o755);
}

#[test]
fn bombs_and_limits() {
    // 17. 300 MiB of zeros compresses to a few KiB: the ratio limit stops it.
    let c = Case::new();
    let mut t = RawTar::release("r1");
    let size = 300u64 << 20;
    t.0.extend(common::header(b"zeros", b'0', size, 0o644, b""));
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    use std::io::Write;
    enc.write_all(&t.0).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        enc.write_all(&zeros).unwrap();
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let (code, err) = c.unpack_bytes(&bomb, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("a compression bomb?"), "{err}");
    c.assert_clean();
    // The byte and entry limits.
    let tar = RawTar::release("r1")
        .file(b"big", &[7u8; 5000], 0o644)
        .finish();
    let (code, err) = c.unpack_bytes(&zst(&tar), &["--max-bytes", "4096"]);
    assert_eq!(code, 1);
    assert!(err.contains("more than 4096 bytes (--max-bytes)"), "{err}");
    let (code, err) = c.unpack_bytes(&zst(&tar), &["--max-entries", "2"]);
    assert_eq!(code, 1);
    assert!(err.contains("more than 2 entries"), "{err}");
    c.assert_clean();
}

#[test]
fn empty_truncated_and_corrupt() {
    let c = Case::new();
    // 19. empty archive, truncated archive.
    let (code, err) = c.unpack_bytes(&zst(&[0u8; 1024]), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a wheelship release"), "{err}");
    let good = zst(&RawTar::release("r1")
        .file(b"data", &[1u8; 100_000], 0o644)
        .finish());
    let (code, err) = c.unpack_bytes(&good[..good.len() / 2], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("corrupt"), "{err}");
    let (code, err) = c.unpack_bytes(b"not zstd at all", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is corrupt or not a tar.zst") || err.contains("not a zstd archive"),
        "{err}"
    );
    // A release whose first entry is not release.json.
    let mut t = RawTar::default();
    t.file(b"app.py", b"x", 0o644);
    let (code, err) = c.unpack_bytes(&zst(&t.finish()), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("does not start with `.wheelship/release.json`"),
        "{err}"
    );
    // An unsafe id.
    let (code, err) = c.unpack_bytes(&zst(&RawTar::release("../x").finish()), &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is not safe as a directory name"), "{err}");
    c.assert_clean();
}

/// Chains of links whose text stays inside but whose real path does
/// not. Each link is judged by where it really leads, through every link before it.
#[test]
fn link_chains_are_judged_by_where_they_lead() {
    let c = Case::new();
    // `d/b -> ..` is harmless alone; through it, `x` climbs above the release.
    c.refused(
        &RawTar::release("r1")
            .entry(b"d/", b'5', b"", 0o755)
            .entry(b"d/b", b'2', b"..", 0o777)
            .entry(
                b"x",
                b'2',
                b"d/b/d/b/d/b/d/b/../../../../../../../..",
                0o777,
            )
            .finish(),
        "`x`: symlink `d/b/d/b/d/b/d/b/../../../../../../../..` leaves the release",
    );
    // `x/up -> ..` leads to the release's root; `a -> x/up/..` to its parent (a sibling).
    c.refused(
        &RawTar::release("r1")
            .entry(b"x/", b'5', b"", 0o755)
            .entry(b"x/up", b'2', b"..", 0o777)
            .entry(b"a", b'2', b"x/up/..", 0o777)
            .finish(),
        "`a`: symlink `x/up/..` leaves the release",
    );
    // A link judged before the link it passes through exists: `p -> .` makes `a` escape.
    c.refused(
        &RawTar::release("r1")
            .entry(b"a", b'2', b"p/q/../..", 0o777)
            .entry(b"p", b'2', b".", 0o777)
            .finish(),
        "`a`: symlink `p/q/../..` leaves the release",
    );
    // A loop of links is refused, not followed for ever.
    c.refused(
        &RawTar::release("r1")
            .entry(b"l1", b'2', b"l2/x", 0o777)
            .entry(b"l2", b'2', b"l1/x", 0o777)
            .finish(),
        "leaves the release",
    );
    // Links that stay inside, through other links, are kept.
    let ok = c.unpack_bytes(
        &zst(&RawTar::release("r2")
            .entry(b"d/", b'5', b"", 0o755)
            .entry(b"d/b", b'2', b"..", 0o777)
            .entry(b"x", b'2', b"d/b/d/b/d", 0o777)
            .entry(b"y", b'2', b"missing/../d", 0o777)
            .finish()),
        &[],
    );
    assert_eq!(ok.0, 0, "{}", ok.1);
    let rel = c.p().join("releases/r2");
    assert_eq!(
        std::fs::canonicalize(rel.join("x")).unwrap(),
        std::fs::canonicalize(rel.join("d")).unwrap()
    );
}

/// An archive that is not a regular file (a device that never ends, a
/// FIFO that never opens) is refused before the lock is taken, and a document's sha256 must be
/// one.
#[test]
fn only_regular_files_are_archives() {
    let c = Case::new();
    let doc = |path: &str, sha: &str| {
        format!(r#"{{"bundle":{{"path":"{path}","id":"x","sha256":"{sha}","size":1}}}}"#)
    };
    let out = bundle(
        c.p(),
        &["unpack", "--releases", "releases"],
        &doc("/dev/zero", &"0".repeat(64)),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        "bundle: cannot read `/dev/zero`: it is a device, not a regular file\n"
    );
    assert!(out.stdout.is_empty());
    let fifo = c.p().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = bundle(c.p(), &["unpack", "--releases", "releases", "fifo"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it is a FIFO, not a regular file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&fifo).unwrap();
    let a = c.p().join("a.tar.zst");
    std::fs::write(&a, zst(&RawTar::release("r1").finish())).unwrap();
    let out = bundle(
        c.p(),
        &["unpack", "--releases", "releases"],
        &doc(a.to_str().unwrap(), "../../etc/passwd"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("`bundle.sha256`: `../../etc/passwd` is not a sha256"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&a).unwrap();
    c.assert_clean();
}

/// A hand-made, unsigned archive whose document claims
/// `bundle.verified_by` (and carries an `env` and a `switch` of its own) comes out of unpack
/// saying nothing it did not establish: no signer, none of those sections.
#[test]
fn claims_carried_in_the_archive_are_not_repeated() {
    let c = Case::new();
    let mut t = RawTar::default();
    let m = format!(
        r#"{{"id":"r1","name":"t","rev":"{}","tree":"{}","commit_time":0}}"#,
        "a".repeat(40),
        "b".repeat(40)
    );
    t.file(b".wheelship/release.json", m.as_bytes(), 0o644);
    let claims = r#"{"bundle":{"path":"/x.tar.zst","id":"r1","sha256":"00","size":1,"verified_by":"FEEDFACEFEEDFACE"},"env":{"path":"/evil","key":"k","reused":true},"switch":{"root":"/","current":"r0","previous":null},"app":{"kept":true}}"#;
    t.file(b".wheelship/document.json", claims.as_bytes(), 0o644);
    t.file(b"app.py", b"x", 0o644);
    let a = c.p().join("a.tar.zst");
    std::fs::write(&a, zst(&t.finish())).unwrap();
    let out = bundle(
        c.p(),
        &["unpack", "--releases", "releases", "a.tar.zst"],
        "",
    );
    let doc = testsupport::doc_of(&out);
    assert_eq!(
        doc["bundle"]["verified_by"],
        serde_json::Value::Null,
        "{doc}"
    );
    assert_ne!(doc["bundle"]["sha256"], "00");
    assert!(
        doc.get("env").is_none() && doc.get("switch").is_none(),
        "{doc}"
    );
    assert_eq!(doc["app"]["kept"], true, "what the build put there passes");
    // And what unpack writes of its own in `.wheelship/` an archive cannot supply.
    let c = Case::new();
    for reserved in [
        &b".wheelship/verified.json"[..],
        b".wheelship/archive.sha256",
        b".wheelship/x/y",
    ] {
        let mut t = RawTar::release("r2");
        t.file(reserved, b"{}", 0o644);
        c.refused(&t.finish(), "holds only what `bundle pack` writes there");
    }
}

/// Unpack's bookkeeping does not grow with the length of the names: 20,000
/// files with 3.7 KB paths (all in one deep directory) unpack within 2 MiB of it (before, their
/// names alone took 150 MB), and a limit below what they need is a clear error.
#[test]
fn memory_is_bounded_by_a_flag_not_by_the_names() {
    let c = Case::new();
    let deep: Vec<String> = (0..15)
        .map(|i| format!("{i:02}{}", "d".repeat(240)))
        .collect();
    let dir = deep.join("/");
    let mut t = RawTar::release("r3");
    for i in 0..20_000 {
        let name = format!("{dir}/{i:05}");
        t.long_name(name.as_bytes());
        t.file(b"placeholder", b"", 0o644);
    }
    let archive = zst(&t.finish());
    let (code, err) = c.unpack_bytes(&archive, &["--max-memory", "500000"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(--max-memory)"), "{err}");
    c.assert_clean();
    let (code, err) = c.unpack_bytes(&archive, &["--max-memory", &(2 << 20).to_string()]);
    assert_eq!(code, 0, "{err}");
}

/// Boundaries issue, finding 6: an extension header (a GNU long name or link, a PAX header) is
/// bounded by its declared size before a byte of it is read, in every reader of an archive
/// (unpack, sbom, thin): a long name declaring 64 MiB of zeros (a few KiB compressed) is
/// refused at once, and so is a global PAX header that would set every member's path or size.
#[test]
fn extension_headers_are_bounded_before_they_are_read() {
    use std::io::Write;
    let c = Case::new();
    let huge = 64u64 << 20;
    for (flag, what) in [
        (b'L', "GNU long name"),
        (b'K', "GNU long link"),
        (b'x', "PAX header"),
    ] {
        let mut t = RawTar::release("r4");
        t.0.extend(common::header(b"././@LongLink", flag, huge, 0o644, b""));
        let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        z.write_all(&t.0).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(huge >> 20) {
            z.write_all(&zeros).unwrap();
        }
        z.write_all(&[0u8; 1024]).unwrap();
        let archive = z.finish().unwrap();
        assert!(archive.len() < 64 << 10, "{} bytes", archive.len());
        let (code, err) = c.unpack_bytes(&archive, &[]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("a {what} of {huge} bytes")), "{err}");
        c.assert_clean();
        std::fs::write(c.p().join("b.tar.zst"), &archive).unwrap();
        let out = bundle(c.p(), &["sbom", "b.tar.zst"], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("a {what} of {huge} bytes")), "{err}");
    }
    let mut t = RawTar::release("r5");
    let data = b"23 path=../../etc/evil\n";
    t.0.extend(common::header(
        b"pax_global_header",
        b'g',
        data.len() as u64,
        0o644,
        b"",
    ));
    t.0.extend(data);
    t.0.extend(vec![0u8; 512 - data.len()]);
    t.file(b"app.py", b"x", 0o644);
    c.refused(&t.finish(), "a PAX global header that sets `path`");
}

/// Boundaries issue, finding 7: a release dated in the future is refused at unpack (and at
/// pack: tests/trust.rs), so that it can never make every later real release look older.
#[test]
fn a_release_from_the_future_is_refused() {
    let c = Case::new();
    let t = RawTar::release("20990101T000000Z-aaaaaaaaaaaa-bbbbbbbbbbbb").finish();
    c.refused(&t, "refusing a release from the future");
}
