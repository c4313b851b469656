//! Values from outside held to the shape of where they go: a sha256, a name that becomes a file
//! or a command-line word.

/// A sha256 as the document carries it: exactly 64 lowercase hex digits. Anything else (a
/// path, `../x`, upper case) is refused where it enters, since it names files in the store.
pub fn check_sha256(s: &str) -> Result<&str, String> {
    if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(s)
    } else {
        Err(format!(
            "`{}` is not a sha256 (64 lowercase hex digits)",
            s.escape_debug()
        ))
    }
}

/// A release id or archive name as it may enter a path or a command line: one or more of
/// `[A-Za-z0-9._-]`, not starting with `.` or `-`, at most 200 bytes. Nothing else (no `/`, no
/// space, no `$`, no quote) ever reaches a file name or a remote shell.
pub fn check_file_name(s: &str) -> Result<&str, String> {
    let ok = !s.is_empty()
        && s.len() <= 200
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "`{}` is not a safe name (letters, digits, `.`, `_`, `-`; not starting with `.` or `-`)",
            s.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names() {
        assert!(check_file_name("app-20261126T093542Z-d058e624c812-3d0b").is_ok());
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "a b",
            "app-$(id)",
            "a'b",
            "a\nb",
            &"x".repeat(201),
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }
}

/// A value that goes into one line of a structured output (a Debian control field, a changelog
/// line, a terminal line, a lock's holder): printable text, no newline or other control
/// character, at most `max` bytes. `what` names where it came from (`DEBEMAIL`, `--maintainer`).
pub fn one_line<'a>(what: &str, value: &'a str, max: usize) -> Result<&'a str, String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > max {
        return Err(format!("{what} is longer than {max} bytes"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} holds the control character {:?}: one line of text only",
            c
        ));
    }
    Ok(value)
}

/// Text another party wrote (a host's reply, a lock's holder, a file's content), as a terminal
/// may show it: every control character escaped, at most `max` characters.
pub fn shown(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn one_line_refuses_what_would_break_a_line() {
        assert_eq!(one_line("DEBEMAIL", "a@b", 100), Ok("a@b"));
        for bad in ["a\nPre-Depends: x", "a\rb", "\u{1b}[31m", " ", ""] {
            assert!(one_line("DEBEMAIL", bad, 100).is_err(), "{bad:?}");
        }
        assert!(one_line("x", &"a".repeat(101), 100).is_err());
        assert_eq!(shown("a\u{1b}[2Jb\n", 100), "a\\u{1b}[2Jb\\n");
        assert_eq!(shown("abcdef", 3), "abc…");
    }
}

/// Every URL in `text` (`scheme://…`) with its user-info (`user:password@`) as `***@`: for
/// messages and documents that quote a URL someone wrote with credentials in it.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let auth_end = after
            .find(['/', '?', '#', ' ', '\t', '\n', '\'', '"', '`'])
            .unwrap_or(after.len());
        let authority = &after[..auth_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[auth_end..];
    }
    out.push_str(rest);
    out
}

/// A repository or index URL rebuilt from its parts without any user-info, whatever its shape:
/// `scheme://[user[:pass]@]host[:port][/path…]`, scp's `[user@]host:path`, or a local path (as
/// it is). `None` for a value with a control character or whitespace in it.
pub fn url_without_userinfo(url: &str) -> Option<String> {
    if url.is_empty() || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return Some(format!("{scheme}://{host}{tail}"));
    }
    // scp-like, `[user[:pass]@]host:path`: the user-info ends at the last `@` before any `/`,
    // and a `:` follows it.
    let head = &url[..url.find('/').unwrap_or(url.len())];
    if let Some(at) = head.rfind('@') {
        if url[at + 1..].contains(':') {
            return Some(url[at + 1..].to_string());
        }
    }
    Some(url.to_string())
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn credentials_go_in_every_shape() {
        for (given, want) in [
            (
                "https://ci:TOKEN@git.example.com",
                "https://git.example.com",
            ),
            (
                "https://ci:TOKEN@git.example.com/a/b.git",
                "https://git.example.com/a/b.git",
            ),
            (
                "https://TOKEN@git.example.com?x=1",
                "https://git.example.com?x=1",
            ),
            ("ssh://git@h:22/r.git", "ssh://h:22/r.git"),
            ("git@github.com:org/repo.git", "github.com:org/repo.git"),
            (
                "deploy:T0KEN@git.example.com:o/app.git",
                "git.example.com:o/app.git",
            ),
            ("a@b/c", "a@b/c"),
            ("https://git.example.com/a@b", "https://git.example.com/a@b"),
            ("/srv/git/app", "/srv/git/app"),
            ("../app", "../app"),
        ] {
            assert_eq!(
                url_without_userinfo(given).as_deref(),
                Some(want),
                "{given}"
            );
        }
        assert_eq!(url_without_userinfo("https://h/\nx"), None);
        assert_eq!(
            redact_userinfo("https://u:p@h.example/simple and git+ssh://git@h/r.git"),
            "https://***@h.example/simple and git+ssh://***@h/r.git"
        );
        assert_eq!(
            redact_userinfo("https://h.example/a@b"),
            "https://h.example/a@b"
        );
    }
}
