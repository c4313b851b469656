//! Requirement files for pip, written from the document's `requirements` section: the
//! document is the contract between the tools, so pip sees what hashreq understood.

use wheelship::doc::{Entry, Requirements};

/// One requirement line in pip's syntax.
fn line(e: &Entry, with_hashes: bool) -> String {
    let extras = if e.extras.is_empty() {
        String::new()
    } else {
        format!("[{}]", e.extras.join(","))
    };
    let mut s = if e.editable {
        format!("-e {}", e.url.clone().unwrap_or_default())
    } else {
        match (&e.name, &e.url) {
            (Some(n), Some(u)) => format!("{n}{extras} @ {u}"),
            (None, Some(u)) => u.clone(),
            (Some(n), None) => format!("{n}{extras}{}", e.specifier),
            (None, None) => String::new(),
        }
    };
    if let Some(m) = &e.marker {
        // A bare URL needs `; ` (with the space) before its marker.
        s.push_str(&format!(" ; {m}"));
    }
    if with_hashes && !e.editable {
        for h in &e.hashes {
            s.push_str(&format!(" --hash={h}"));
        }
    }
    for (k, vs) in &e.config_settings {
        for v in vs {
            s.push_str(&format!(" --config-settings={k}={v}"));
        }
    }
    s
}

/// (requirements, constraints) files. With `fill`, the options of the files and the hashes are
/// included (for `pip wheel`/`pip download`); without, only what the resolution against the
/// wheelhouse needs (hashes of sdists would not match the wheels built from them).
pub fn render(r: &Requirements, fill: bool) -> (String, String) {
    let mut req = String::new();
    let mut cons = String::new();
    if fill {
        let o = &r.options;
        if o.no_index {
            req.push_str("--no-index\n");
        }
        if let Some(i) = &o.index_url {
            req.push_str(&format!("--index-url {i}\n"));
        }
        for u in &o.extra_index_urls {
            req.push_str(&format!("--extra-index-url {u}\n"));
        }
        for f in &o.find_links {
            req.push_str(&format!("--find-links {f}\n"));
        }
        for h in &o.trusted_hosts {
            req.push_str(&format!("--trusted-host {h}\n"));
        }
        if !o.no_binary.is_empty() {
            req.push_str(&format!("--no-binary {}\n", o.no_binary.join(",")));
        }
        if !o.only_binary.is_empty() {
            req.push_str(&format!("--only-binary {}\n", o.only_binary.join(",")));
        }
        if o.prefer_binary {
            req.push_str("--prefer-binary\n");
        }
        if o.require_hashes {
            req.push_str("--require-hashes\n");
        }
    }
    if r.options.all_releases.iter().any(|a| a == ":all:") {
        req.push_str("--pre\n");
    }
    for e in &r.entries {
        let l = line(e, fill);
        if l.is_empty() {
            continue;
        }
        let target = if e.constraint { &mut cons } else { &mut req };
        target.push_str(&l);
        target.push('\n');
    }
    (req, cons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let e = Entry {
            name: Some("foo".into()),
            specifier: "<2,>=1".into(),
            extras: vec!["a".into(), "b".into()],
            marker: Some("python_version >= \"3.8\"".into()),
            hashes: vec!["sha256:aa".into()],
            ..Entry::default()
        };
        assert_eq!(
            line(&e, true),
            "foo[a,b]<2,>=1 ; python_version >= \"3.8\" --hash=sha256:aa"
        );
        assert_eq!(
            line(&e, false),
            "foo[a,b]<2,>=1 ; python_version >= \"3.8\""
        );
        let u = Entry {
            url: Some("https://h/x.tar.gz#egg=x".into()),
            ..Entry::default()
        };
        assert_eq!(line(&u, true), "https://h/x.tar.gz#egg=x");
    }
}
