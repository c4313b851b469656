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
