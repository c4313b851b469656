//! Credentials never leave hashreq: not in the document, not in messages, not in the hash.

use crate::lines::Expansion;

/// Names of variables whose values are treated as secrets wherever they appear.
const SECRET_WORDS: &[&str] = &[
    "PRIVATE",
    "CREDS",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "SECRET",
    "KEY",
    "AUTH",
    "CREDENTIAL",
];

pub struct Redactor<'a> {
    expansions: &'a [Expansion],
}

impl<'a> Redactor<'a> {
    pub fn new(expansions: &'a [Expansion]) -> Self {
        Redactor { expansions }
    }

    /// Replaces the user-info of every URL in `s` with `***` and the value of every
    /// secret-named expanded variable with its `${NAME}`.
    pub fn clean(&self, s: &str) -> String {
        let mut out = redact_userinfo(s);
        for e in self.expansions {
            if SECRET_WORDS.iter().any(|w| e.name.contains(w)) && e.value.len() >= 3 {
                out = out.replace(&e.value, &format!("${{{}}}", e.name));
            }
        }
        out
    }
}

/// `scheme://user:pass@host/...` becomes `scheme://***@host/...`, for every URL in the text.
pub fn redact_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let auth_end = after
            .find(['/', '?', '#', ' ', '\t', '\'', '"', '`'])
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

/// Every string in a JSON value (a pylock.toml source table) with [`redact_userinfo`].
pub fn redact_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => *s = redact_userinfo(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact_value),
        serde_json::Value::Object(o) => o.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// At most the first 60 characters of a line, for a message that quotes it: a file that is not
/// a requirements file (a binary, the environment of a process) is not echoed whole.
pub fn excerpt(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_goes() {
        assert_eq!(
            redact_userinfo("https://u:p@h.example/simple and git+ssh://git@h/r.git"),
            "https://***@h.example/simple and git+ssh://***@h/r.git"
        );
        assert_eq!(
            redact_userinfo("https://h.example/a@b"),
            "https://h.example/a@b"
        );
    }

    #[test]
    fn secret_variables_go() {
        let ex = [Expansion {
            name: "PIP_TOKEN".into(),
            value: "s3cr3t".into(),
        }];
        let r = Redactor::new(&ex);
        assert_eq!(
            r.clean("https://h/simple/s3cr3t/"),
            "https://h/simple/${PIP_TOKEN}/"
        );
    }
}
