//! pip's `preprocess()` of a requirement file, step by step and in its order
//! (https://pip.pypa.io/en/stable/reference/requirements-file-format/ and pip's `req_file.py`): split lines, join `\` continuations, drop comments, expand `${VAR}`.

/// Python's `str.isspace()`: Unicode White_Space plus the four ASCII separators.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.splitlines()`.
pub fn splitlines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        let brk = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if brk {
            lines.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = iter.peek() {
                    iter.next();
                    end = j + 1;
                }
            }
            start = end;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// `COMMENT_RE.match(line)`: the line is a comment (optional whitespace, then `#`).
fn is_comment_line(line: &str) -> bool {
    line.trim_start_matches(py_isspace).starts_with('#')
}

/// `join_lines`: a line ending in `\` is joined to the next one with nothing inserted; the
/// joined line keeps the first line's number; a comment line ends a continuation.
pub fn join_lines<'a>(lines: impl IntoIterator<Item = (u32, &'a str)>) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut primary = 0;
    let mut pending: Vec<String> = Vec::new();
    for (n, line) in lines {
        if !line.ends_with('\\') || is_comment_line(line) {
            let line = if is_comment_line(line) {
                format!(" {line}")
            } else {
                line.to_string()
            };
            if pending.is_empty() {
                out.push((n, line));
            } else {
                pending.push(line);
                out.push((primary, pending.concat()));
                pending.clear();
            }
        } else {
            if pending.is_empty() {
                primary = n;
            }
            // `line.strip("\\")`: backslashes go from both ends.
            pending.push(line.trim_matches('\\').to_string());
        }
    }
    if !pending.is_empty() {
        out.push((primary, pending.concat()));
    }
    out
}

/// `COMMENT_RE.sub("", line)`: cut at the first `#` that starts the line or follows
/// whitespace (the whitespace goes too).
pub fn strip_comment(line: &str) -> &str {
    if line.starts_with('#') {
        return "";
    }
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if py_isspace(c) {
            let mut j = i + c.len_utf8();
            while let Some(&(k, d)) = chars.peek() {
                if py_isspace(d) {
                    chars.next();
                    j = k + d.len_utf8();
                } else {
                    break;
                }
            }
            if line[j..].starts_with('#') {
                return &line[..i];
            }
        }
    }
    line
}

/// `ignore_comments`: strip comments and surrounding whitespace, drop empty lines.
pub fn ignore_comments(lines: Vec<(u32, String)>) -> Vec<(u32, String)> {
    lines
        .into_iter()
        .filter_map(|(n, l)| {
            let s = strip_comment(&l).trim_matches(py_isspace);
            (!s.is_empty()).then(|| (n, s.to_string()))
        })
        .collect()
}

/// A `${NAME}` that was expanded, remembered so that secrets never leave the tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    pub name: String,
    pub value: String,
}

/// `expand_env_variables`: only `${NAME}` with NAME in `[A-Z0-9_]+`; an unset or empty
/// variable leaves the text as it is.
pub fn expand_env(
    line: &str,
    getenv: &dyn Fn(&str) -> Option<String>,
    seen: &mut Vec<Expansion>,
) -> String {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if name_len > 0 && after[name_len..].starts_with('}') {
            found.push(after[..name_len].to_string());
            rest = &after[name_len + 1..];
        } else {
            rest = after;
        }
    }
    let mut out = line.to_string();
    for name in found {
        let Some(value) = getenv(&name).filter(|v| !v.is_empty()) else {
            continue;
        };
        out = out.replace(&format!("${{{name}}}"), &value);
        let e = Expansion { name, value };
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    out
}

/// `break_args_options`: split on " " only; tokens up to the first that starts with `-` are
/// the requirement, the rest are options.
pub fn break_args_options(line: &str) -> (String, String) {
    let tokens: Vec<&str> = line.split(' ').collect();
    let n = tokens
        .iter()
        .position(|t| t.starts_with('-'))
        .unwrap_or(tokens.len());
    (tokens[..n].join(" "), tokens[n..].join(" "))
}

/// Python's `shlex.split` (POSIX mode, no comments), which pip applies to a line's options
/// (<https://docs.python.org/3/library/shlex.html#parsing-rules>). Not the `shlex` crate: it
/// splits as POSIX sh does, where `#` starts a comment and `\$` or `` \` `` inside double
/// quotes lose the backslash; Python keeps both, and pip reads what Python reads.
pub fn shlex_split(s: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            '\\' => {
                in_token = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("No escaped character"),
                }
            }
            '\'' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("No closing quotation"),
                    }
                }
            }
            '"' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err("No closing quotation"),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("No closing quotation"),
                    }
                }
            }
            _ => {
                in_token = true;
                cur.push(c);
            }
        }
    }
    if in_token {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_as_python_not_as_sh() {
        // python3 -c 'import shlex; print(shlex.split(r"""a "x\$y" #c 'q r' "\"" """))'
        assert_eq!(
            shlex_split(r#"a "x\$y" #c 'q r' "\"" "#).unwrap(),
            ["a", r"x\$y", "#c", "q r", "\""]
        );
        assert_eq!(shlex_split("'open").unwrap_err(), "No closing quotation");
    }

    fn numbered(text: &str) -> Vec<(u32, String)> {
        ignore_comments(join_lines(
            splitlines(text)
                .into_iter()
                .enumerate()
                .map(|(i, l)| (i as u32 + 1, l)),
        ))
    }

    #[test]
    fn splitlines_like_python() {
        assert_eq!(splitlines("a\r\nb\rc\nd"), ["a", "b", "c", "d"]);
        assert_eq!(splitlines("a\x0bb\x0cc\u{2028}d\n"), ["a", "b", "c", "d"]);
        assert_eq!(splitlines("a\n\nb\n"), ["a", "", "b"]);
        assert_eq!(splitlines(""), Vec::<&str>::new());
    }

    #[test]
    fn continuation_inserts_nothing_and_keeps_first_line_number() {
        assert_eq!(numbered("foo\\\n==1.0\n"), [(1, "foo==1.0".to_string())]);
        assert_eq!(
            numbered("x\nfoo \\\n  >=1 \\\n  ,<2\ny\n"),
            [
                (1, "x".to_string()),
                (2, "foo   >=1   ,<2".to_string()),
                (5, "y".to_string())
            ]
        );
    }

    #[test]
    fn comment_line_ends_a_continuation() {
        assert_eq!(
            numbered("foo\\\n# c \\\nbar\n"),
            [(1, "foo".into()), (3, "bar".into())]
        );
    }

    #[test]
    fn backslash_then_space_is_not_a_continuation() {
        assert_eq!(
            numbered("foo\\ \nbar\n"),
            [(1, "foo\\".into()), (2, "bar".into())]
        );
    }

    #[test]
    fn dangling_backslash_on_last_line() {
        assert_eq!(numbered("foo==1\\"), [(1, "foo==1".into())]);
    }

    #[test]
    fn comments_need_whitespace_before_the_hash() {
        assert_eq!(strip_comment("foo==1.0#x"), "foo==1.0#x");
        assert_eq!(strip_comment("foo==1.0 #x"), "foo==1.0");
        assert_eq!(strip_comment("foo==1.0\t\t# x"), "foo==1.0");
        assert_eq!(strip_comment("# all"), "");
        assert_eq!(
            strip_comment("https://h/x.tar.gz#egg=foo"),
            "https://h/x.tar.gz#egg=foo"
        );
        assert_eq!(numbered("  # x\n\n   \nfoo\n"), [(4, "foo".into())]);
    }

    #[test]
    fn env_expansion_rules() {
        let env = |n: &str| match n {
            "HOST" => Some("h.example".to_string()),
            "EMPTY" => Some(String::new()),
            "HASH" => Some("#x".to_string()),
            _ => None,
        };
        let mut seen = Vec::new();
        assert_eq!(
            expand_env("https://${HOST}/${HOST}", &env, &mut seen),
            "https://h.example/h.example"
        );
        assert_eq!(seen.len(), 1);
        assert_eq!(
            expand_env("${UNSET}${EMPTY}", &env, &mut seen),
            "${UNSET}${EMPTY}"
        );
        assert_eq!(
            expand_env("$HOST ${host} ${HO-ST}", &env, &mut seen),
            "$HOST ${host} ${HO-ST}"
        );
        assert_eq!(expand_env("a${HASH}", &env, &mut seen), "a#x");
    }

    #[test]
    fn args_and_options_split_on_space_only() {
        assert_eq!(
            break_args_options("foo==1.0 --hash=sha256:ab"),
            ("foo==1.0".into(), "--hash=sha256:ab".into())
        );
        assert_eq!(
            break_args_options("foo==1.0\t--hash=sha256:ab"),
            ("foo==1.0\t--hash=sha256:ab".into(), "".into())
        );
        assert_eq!(
            break_args_options("-r x.txt"),
            ("".into(), "-r x.txt".into())
        );
        assert_eq!(
            break_args_options("foo ; python_version < '3' -e x"),
            ("foo ; python_version < '3'".into(), "-e x".into())
        );
    }

    #[test]
    fn shlex() {
        assert_eq!(
            shlex_split("-r 'a b.txt' x\\ y \"q\\\"\"").unwrap(),
            ["-r", "a b.txt", "x y", "q\""]
        );
        assert_eq!(
            shlex_split("--hash 'x").unwrap_err(),
            "No closing quotation"
        );
        assert_eq!(shlex_split("").unwrap(), Vec::<String>::new());
    }
}
