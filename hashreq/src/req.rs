//! One requirement line, as pip's `parse_req_from_line` and `parse_editable` read it.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use pep508_rs::{MarkerTree, Requirement, VerbatimUrl, VersionOrUrl};
use wheelship::python::names::{canonicalize_name, WheelFilename};

use crate::marker;
use crate::redact::excerpt;
use wheelship::python::quiet_catch;

const VCS_SCHEMES: &[&str] = &[
    "git",
    "git+http",
    "git+https",
    "git+ssh",
    "git+git",
    "git+file",
    "hg+file",
    "hg+http",
    "hg+https",
    "hg+ssh",
    "hg+static-http",
    "svn",
    "svn+ssh",
    "svn+http",
    "svn+https",
    "svn+svn",
    "svn+file",
    "bzr+http",
    "bzr+https",
    "bzr+ssh",
    "bzr+sftp",
    "bzr+ftp",
    "bzr+lp",
    "bzr+file",
];

const ARCHIVE_EXTENSIONS: &[&str] = &[
    ".zip",
    ".whl",
    ".tar.bz2",
    ".tbz",
    ".tar.gz",
    ".tgz",
    ".tar",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
];

/// What a requirement line means, before it gets its file, line and options.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    pub name: Option<String>,
    pub specifier: String,
    pub extras: Vec<String>,
    pub marker: Option<String>,
    /// Not yet redacted: the caller removes credentials.
    pub url: Option<String>,
    pub pinned: bool,
    pub warning: Option<String>,
}

/// pip's `is_url`: a scheme pip knows before the first `:`.
pub fn is_url(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once(':') else {
        return false;
    };
    let scheme = scheme.to_ascii_lowercase();
    matches!(scheme.as_str(), "http" | "https" | "file" | "ftp")
        || VCS_SCHEMES.contains(&scheme.as_str())
}

fn is_vcs_url(s: &str) -> bool {
    s.split_once(':')
        .is_some_and(|(scheme, _)| VCS_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

fn is_archive_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ARCHIVE_EXTENSIONS.iter().any(|e| lower.ends_with(e))
}

fn looks_like_path(name: &str) -> bool {
    name.contains('/') || name.starts_with('.')
}

/// `_strip_extras`: `path[extra1,extra2]` into the path and the bracketed extras.
fn strip_extras(path: &str) -> (&str, Option<&str>) {
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            if i > 0 && !path[i + 1..path.len() - 1].contains(']') && i + 2 < path.len() {
                return (&path[..i], Some(&path[i..]));
            }
        }
    }
    (path, None)
}

/// `os.path.normpath(os.path.abspath(p))`, lexically.
pub fn abspath(cwd: &Path, p: &str) -> PathBuf {
    let joined = cwd.join(p);
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn path_to_url(p: &Path) -> String {
    let mut s = String::from("file://");
    for b in p.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The `#egg=` fragment of a URL.
fn egg_fragment(url: &str) -> Result<Option<String>, String> {
    let Some((_, frag)) = url.split_once('#') else {
        return Ok(None);
    };
    for part in frag.split('&') {
        if let Some(v) = part.strip_prefix("egg=") {
            // pip 26: `InvalidEggFragment` unless it is a PEP 508 name (with optional extras).
            let (n, _) = strip_extras(v);
            if !wheelship::python::names::is_valid_name(n) {
                return Err(format!(
                    "the `#egg=` fragment `{v}` is not a valid project name"
                ));
            }
            return Ok(Some(n.to_string()));
        }
    }
    Ok(None)
}

fn last_segment(url: &str) -> &str {
    let no_frag = url.split(['#', '?']).next().unwrap_or(url);
    no_frag.rsplit('/').next().unwrap_or(no_frag)
}

/// `%XX` escapes decoded, as pip reads a wheel's file name from a URL
/// (`torch-2.1.0%2Bcpu-…whl` is `torch-2.1.0+cpu-…whl`); anything else is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One specifier in the normal form that makes equal pins hash equal: PEP 440 pads release
/// segments with zeros when it compares (`==1.0` matches exactly what `==1.0.0` matches), so
/// trailing zeros are dropped for `==`, `!=`, `<=`, `>=`, `<`, `>`. Prefix matches (`==1.0.*`),
/// `~=` (whose meaning depends on the segment count) and `===` keep their text.
pub fn normal_specifier(spec: &str) -> String {
    let op_len = spec
        .bytes()
        .take_while(|b| matches!(b, b'=' | b'!' | b'<' | b'>' | b'~'))
        .count();
    let (op, v) = spec.split_at(op_len);
    if !matches!(op, "==" | "!=" | "<=" | ">=" | "<" | ">") || v.ends_with(".*") {
        return spec.to_string();
    }
    let Ok(version) = pep440_rs::Version::from_str(v) else {
        return spec.to_string();
    };
    let release = version.release();
    let keep = release.iter().rposition(|&n| n != 0).map_or(1, |i| i + 1);
    let trimmed: Vec<u64> = release[..keep].to_vec();
    format!("{op}{}", version.clone().with_release(trimmed))
}

fn canonical_extras(extras: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = extras.into_iter().map(|e| canonicalize_name(&e)).collect();
    v.sort();
    v.dedup();
    v
}

fn bracket_extras(s: Option<&str>) -> Result<Vec<String>, String> {
    let Some(s) = s else { return Ok(Vec::new()) };
    let inner = &s[1..s.len() - 1];
    let mut out = Vec::new();
    for e in inner.split(',') {
        let e = e.trim();
        if !wheelship::python::names::is_valid_name(e) {
            return Err(format!("invalid extra `{e}`"));
        }
        out.push(e.to_string());
    }
    Ok(canonical_extras(out))
}

/// A requirement line (not `-e`). Errors are pip's meaning in our words, without file:line.
pub fn parse_requirement(line: &str, cwd: &Path) -> Result<Parsed, String> {
    let sep = if is_url(line) { "; " } else { ";" };
    let (req, marker_text) = match line.split_once(sep) {
        Some((r, m)) => (r, Some(m.trim())),
        None => (line, None),
    };
    let marker = match marker_text.filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(canonical_marker(m)?),
    };
    let req = req.trim_matches(crate::lines::py_isspace);
    let mut parsed = Parsed {
        marker,
        ..Parsed::default()
    };

    // A bare URL, or a local path to a directory or archive: pip makes a link of it.
    let mut link: Option<String> = None;
    let mut path_extras = None;
    if is_url(req) {
        link = Some(req.to_string());
    } else {
        let (p, extras) = strip_extras(req);
        let abs = abspath(cwd, p);
        if looks_like_path(req) && abs.is_dir() {
            if !abs.join("setup.py").is_file() && !abs.join("pyproject.toml").is_file() {
                return Err(format!(
                    "directory `{req}` is not installable: neither `setup.py` nor `pyproject.toml` found"
                ));
            }
            link = Some(path_to_url(&abs));
            path_extras = extras;
        } else if is_archive_file(p) {
            let parts: Vec<&str> = req.splitn(2, '@').collect();
            if abs.is_file() {
                link = Some(path_to_url(&abs));
                path_extras = extras;
            } else if parts.len() != 2 || looks_like_path(parts[0]) {
                parsed.warning = Some(format!(
                    "requirement `{req}` looks like a file name, but the file does not exist"
                ));
                link = Some(path_to_url(&abs));
                path_extras = extras;
            }
        }
    }

    if let Some(url) = link {
        parsed.extras = bracket_extras(path_extras)?;
        let file = percent_decode(last_segment(&url));
        if file.to_ascii_lowercase().ends_with(".whl") {
            let w = WheelFilename::parse(&file)?;
            let v = pep440_rs::Version::from_str(&w.version)
                .map_err(|e| format!("invalid version in wheel file name `{file}`: {e}"))?;
            parsed.name = Some(canonicalize_name(&w.name));
            parsed.specifier = normal_specifier(&format!("=={v}"));
        } else {
            parsed.name = egg_fragment(&url)?.map(|n| canonicalize_name(&n));
        }
        parsed.url = Some(url);
        parsed.pinned = true;
        return Ok(parsed);
    }

    let (name, specifier, extras, url) = parse_pep508(req)?;
    parsed.name = Some(name);
    parsed.pinned = url.is_some()
        || specifier
            .split(',')
            .any(|s| s.starts_with("===") || (s.starts_with("==") && !s.ends_with(".*")));
    parsed.specifier = specifier;
    parsed.extras = extras;
    parsed.url = url;
    Ok(parsed)
}

/// `name @ url` where pep508_rs refuses the URL but packaging takes it as it is (packaging
/// does not validate a direct reference's URL: pip 26 reads `numpy @ https:///`): the name and
/// extras are parsed, the URL kept verbatim. Only a single token with a `scheme://`.
fn lax_url_requirement(req: &str) -> Option<(String, String, Vec<String>, Option<String>)> {
    let (head, url) = req.split_once('@')?;
    let url = url.trim_matches(crate::lines::py_isspace);
    let scheme = url.split_once("://")?.0;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        || url.chars().any(char::is_whitespace)
    {
        return None;
    }
    let r = quiet_catch(|| Requirement::<VerbatimUrl>::from_str(head.trim()))?.ok()?;
    if r.version_or_url.is_some() {
        return None;
    }
    let extras = canonical_extras(r.extras.iter().map(|e| e.to_string()));
    Some((
        r.name.to_string(),
        String::new(),
        extras,
        Some(url.to_string()),
    ))
}

/// The marker in packaging's form. The lexer follows packaging (which takes `'3.8'and(`);
/// `pep508_rs` then checks the meaning on the spaced-out form.
fn canonical_marker(m: &str) -> Result<String, String> {
    let invalid = |e: pep508_rs::Pep508Error<VerbatimUrl>| {
        format!("invalid marker `{m}`: {}", error_text(&e))
    };
    let Some(canonical) = marker::canonical(m) else {
        return Err(match quiet_catch(|| MarkerTree::from_str(m)) {
            Some(Err(e)) => invalid(e),
            _ => format!("invalid marker `{m}`"),
        });
    };
    match quiet_catch(|| MarkerTree::from_str(&canonical)) {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(invalid(e)),
        None => return Err(format!("invalid marker `{m}`")),
    }
    Ok(canonical)
}

/// The first line of a pep508_rs error. Its Display slices the input by byte offsets and can
/// panic on multi-byte characters (found by fuzzing), so it runs under `quiet_catch` too.
fn error_text(e: &dyn std::fmt::Display) -> String {
    quiet_catch(|| e.to_string())
        .map(|s| s.lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|| "not valid PEP 508".to_string())
}

/// pep508_rs 0.9.2 panics on a name its grammar reads but its name check refuses
/// (`Flask-01-.`; found by fuzzing): the name is checked first, as packaging's tokenizer does.
fn check_lead(req: &str) -> Result<(), String> {
    let lead: String = req
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if !lead.is_empty() && !wheelship::python::names::is_valid_name(&lead) {
        return Err(format!(
            "invalid requirement `{}`: `{}` is not a valid project name (letters, digits, and `.`, `_`, `-` only between them)",
            excerpt(req),
            excerpt(&lead)
        ));
    }
    Ok(())
}

/// Parses `name[extras] specifiers` or `name[extras] @ url` (no marker: pip splits it off
/// first). `===` takes any string, as pip does; `pep508_rs` only takes PEP 440 versions there,
/// so arbitrary operands are swapped for placeholders while it parses and restored after.
fn parse_pep508(req: &str) -> Result<(String, String, Vec<String>, Option<String>), String> {
    let mut arbitrary = Vec::new();
    let mut text = String::new();
    let mut rest = req;
    if !req.contains(" @") && !req.contains("@ ") {
        while let Some(i) = rest.find("===") {
            text.push_str(&rest[..i + 3]);
            let after = &rest[i + 3..];
            let ws = after.len() - after.trim_start_matches([' ', '\t']).len();
            let end = after[ws..]
                .find([',', ';', ')', ' ', '\t'])
                .map_or(after.len(), |e| e + ws);
            let operand = &after[ws..end];
            if !operand.is_empty() {
                text.push_str(&format!("0.0.0.0.0.0.{}", arbitrary.len()));
                arbitrary.push(operand.to_string());
            }
            rest = &after[end..];
        }
    }
    text.push_str(rest);

    check_lead(req)?;
    let Some(parsed) = quiet_catch(|| Requirement::<VerbatimUrl>::from_str(&text)) else {
        return Err(format!(
            "invalid requirement `{}`: the PEP 508 parser cannot read it",
            excerpt(req)
        ));
    };
    if parsed.is_err() {
        if let Some(r) = lax_url_requirement(req) {
            return Ok(r);
        }
    }
    let r = parsed.map_err(|e| {
        let mut msg = format!("invalid requirement `{}`: {}", excerpt(req), error_text(&e));
        if req.contains('/') {
            msg.push_str(" (it looks like a path, but there is no such file or directory)");
        } else if req.contains('=')
            && !["==", "!=", "<=", ">=", "~=", "==="]
                .iter()
                .any(|op| req.contains(op))
        {
            msg.push_str(" (`=` is not a valid operator: did you mean `==`?)");
        }
        msg
    })?;
    let name = r.name.to_string();
    let extras = canonical_extras(r.extras.iter().map(|e| e.to_string()));
    match r.version_or_url {
        None => Ok((name, String::new(), extras, None)),
        Some(VersionOrUrl::Url(u)) => {
            let given = u
                .given()
                .map(str::to_string)
                .unwrap_or_else(|| u.to_string());
            Ok((name, String::new(), extras, Some(given)))
        }
        Some(VersionOrUrl::VersionSpecifier(specs)) => {
            let mut parts: Vec<String> = specs
                .iter()
                .map(|s| {
                    let shown = s.to_string();
                    match shown.strip_prefix("===0.0.0.0.0.0.") {
                        Some(i) => format!("==={}", arbitrary[i.parse::<usize>().unwrap()]),
                        None => normal_specifier(&shown),
                    }
                })
                .collect();
            parts.sort();
            Ok((name, parts.join(","), extras, None))
        }
    }
}

/// An `-e` line, as pip's `parse_editable`.
pub fn parse_editable(value: &str, cwd: &Path) -> Result<Parsed, String> {
    let (no_extras, extras) = strip_extras(value);
    let abs = abspath(cwd, no_extras);
    let mut url = if abs.is_dir() {
        path_to_url(&abs)
    } else {
        no_extras.to_string()
    };
    if url.to_ascii_lowercase().starts_with("file:") {
        return Ok(Parsed {
            name: egg_fragment(&url)?.map(|n| canonicalize_name(&n)),
            extras: bracket_extras(extras)?,
            url: Some(url),
            pinned: true,
            ..Parsed::default()
        });
    }
    url = value.to_string();
    for vc in ["git", "hg", "svn", "bzr"] {
        if url.to_ascii_lowercase().starts_with(&format!("{vc}:")) {
            url = format!("{vc}+{url}");
            break;
        }
    }
    if !is_vcs_url(&url) {
        return Err(format!(
            "`{value}` is not a valid editable requirement: it should be a path to a local project or a VCS URL (beginning with {})",
            VCS_SCHEMES.join(", ")
        ));
    }
    let Some(name) = egg_fragment(&url)? else {
        return Err(format!(
            "cannot detect the project name of `{value}`: add `#egg=<name>` to it"
        ));
    };
    Ok(Parsed {
        name: Some(canonicalize_name(&name)),
        url: Some(url),
        pinned: true,
        ..Parsed::default()
    })
}

#[cfg(test)]
#[path = "req_tests.rs"]
mod tests;
