//! Credentials never leave hashreq: not in the document, not in messages, not in the hash.

use crate::lines::Expansion;

/// A value shorter than this is shown as it is: it cannot hold a secret, and it cannot be told
/// apart from the text around it (`foo==1.${MINOR}` with MINOR=1).
const MIN_HIDDEN: usize = 3;

pub struct Redactor<'a> {
    expansions: &'a [Expansion],
}

impl<'a> Redactor<'a> {
    pub fn new(expansions: &'a [Expansion]) -> Self {
        Redactor { expansions }
    }

    /// Replaces the user-info of every URL in `s` with `***` and the value of every expanded
    /// variable (of at least 3 characters; the longest first) with its `${NAME}`, whatever its
    /// name: which variables hold secrets is not decided by their names.
    pub fn clean(&self, s: &str) -> String {
        let mut out = redact_userinfo(s);
        let mut by_len: Vec<&Expansion> = self
            .expansions
            .iter()
            .filter(|e| e.value.chars().count() >= MIN_HIDDEN)
            .collect();
        by_len.sort_by(|a, b| b.value.len().cmp(&a.value.len()).then(a.name.cmp(&b.name)));
        for e in by_len {
            out = out.replace(&e.value, &format!("${{{}}}", e.name));
        }
        out
    }

    /// What the hash takes of the variables whose `${NAME}` the canonical form `form` shows:
    /// a digest of each value (`foo==${V}` with V=1.2 and with V=1.3 are two requests), never
    /// the value itself. A value that stood only in a URL's user-info (redacted to `***`) is not
    /// in the form, so a rotated credential leaves the hash as it is.
    pub fn digests(&self, form: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .expansions
            .iter()
            .filter(|e| form.contains(&format!("${{{}}}", e.name)))
            .map(|e| {
                (
                    e.name.clone(),
                    wheelship::hash::sha256_hex(e.value.as_bytes()),
                )
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

pub use wheelship::text::redact_userinfo;

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
    fn every_variable_goes_whatever_its_name() {
        let ex = [
            Expansion {
                name: "CI_JOB_JWT_V2".into(),
                value: "eyJhbGciOi".into(),
            },
            Expansion {
                name: "SLACK_WEBHOOK_PATH".into(),
                value: "T000/B000/XXXX".into(),
            },
            Expansion {
                name: "MINOR".into(),
                value: "1".into(),
            },
        ];
        let r = Redactor::new(&ex);
        assert_eq!(
            r.clean("https://h/simple/eyJhbGciOi/T000/B000/XXXX/ foo==1.1"),
            "https://h/simple/${CI_JOB_JWT_V2}/${SLACK_WEBHOOK_PATH}/ foo==1.1"
        );
        let d = r.digests("x ${SLACK_WEBHOOK_PATH} y");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "SLACK_WEBHOOK_PATH");
        assert!(!d[0].1.contains("XXXX"));
    }
}
