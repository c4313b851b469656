//! The wheel format (https://packaging.python.org/en/latest/specifications/binary-distribution-format/)
//! as mkenv reads it: what the store keeps of a wheel ([`Info`]), RECORD, member and script
//! names. Reading and verifying a wheel is `unzip`'s; the life of a store entry is `store`'s.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use wheelship::python::names::{canonicalize_name, is_valid_name};

/// The inode and modification time (ns since the epoch) of a stored file, as mkenv made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub ino: u64,
    pub mtime: i64,
}

/// What the store keeps about a wheel beside its files (`<store>/<sha256>/info.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub name: String,
    pub version: String,
    pub dist_info: String,
    pub data_dir: String,
    pub purelib: bool,
    /// Every file of the wheel but RECORD: (path, `sha256=<urlsafe b64>`, size).
    pub files: Vec<(String, String, u64)>,
    pub console_scripts: Vec<(String, String)>,
    pub gui_scripts: Vec<(String, String)>,
    /// Each file's inode and modification time as stored, in the order of `files`
    /// (`crate::stamp`); empty in entries an older mkenv made.
    #[serde(default)]
    pub stamps: Vec<Stamp>,
}

/// The most a single wheel may expand to.
pub(crate) const MAX_UNPACKED: u64 = 8 << 30;

pub fn record_hash(data_sha: &[u8]) -> String {
    format!("sha256={}", data_encoding::BASE64URL_NOPAD.encode(data_sha))
}

/// Checks one member name: relative, inside, printable, no backslash.
pub(crate) fn check_member(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_control()) {
        return Err("empty name or a control character in it".into());
    }
    if name.starts_with('/')
        || name.contains('\\')
        || (name.len() > 1 && name.as_bytes()[1] == b':')
    {
        return Err("absolute path".into());
    }
    for c in Path::new(name).components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err("`..` or a root in the name".into()),
        }
    }
    Ok(())
}

/// Reads `<dist-info>/RECORD` rows: path, hash, size (CSV, quotes allowed).
pub(crate) fn parse_record(text: &str) -> Result<BTreeMap<String, (String, Option<u64>)>, String> {
    let mut out = BTreeMap::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    for row in reader.records() {
        let row = row.map_err(|e| format!("RECORD: {e}"))?;
        let line = row.position().map_or(0, |p| p.line());
        if row.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (Some(path), Some(hash), Some(size)) = (row.get(0), row.get(1), row.get(2)) else {
            return Err(format!("RECORD line {line}: expected path,hash,size"));
        };
        let size = if size.is_empty() {
            None
        } else {
            Some(
                size.parse()
                    .map_err(|_| format!("RECORD line {line}: bad size"))?,
            )
        };
        if out
            .insert(path.to_string(), (hash.to_string(), size))
            .is_some()
        {
            return Err(format!("RECORD lists `{path}` twice"));
        }
    }
    Ok(out)
}

/// `name = module:attr` items.
type Scripts = Vec<(String, String)>;

pub(crate) fn parse_entry_points(text: &str) -> (Scripts, Scripts) {
    let (mut console, mut gui) = (Vec::new(), Vec::new());
    let mut section = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') && l.ends_with(']') {
            section = l[1..l.len() - 1].trim().to_string();
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            let item = (k.trim().to_string(), v.trim().to_string());
            match section.as_str() {
                "console_scripts" => console.push(item),
                "gui_scripts" => gui.push(item),
                _ => {}
            }
        }
    }
    (console, gui)
}

impl Info {
    /// What mkenv itself checks of a wheel, checked again on what the store says of one: the
    /// name, the two directories, every member and script name.
    pub fn validate(&self) -> Result<(), String> {
        if !is_valid_name(&self.name) || canonicalize_name(&self.name) != self.name {
            return Err(format!("`{}` is not a canonical project name", self.name));
        }
        let stem = self
            .dist_info
            .strip_suffix(".dist-info")
            .filter(|s| !s.contains('/') && s.contains('-'))
            .ok_or_else(|| format!("`{}` is not a `.dist-info` name", self.dist_info))?;
        if self.data_dir != format!("{stem}.data") {
            return Err(format!("`{}` is not `{stem}.data`", self.data_dir));
        }
        for (member, _, _) in &self.files {
            check_member(member).map_err(|why| format!("member `{member}`: {why}"))?;
            if let Some(rest) = member.strip_prefix(&format!("{}/", self.data_dir)) {
                let key = rest.split('/').next().unwrap_or_default();
                if !matches!(key, "purelib" | "platlib" | "scripts" | "headers" | "data") {
                    return Err(format!("unknown `.data` key `{key}`"));
                }
                if let Some(script) = rest.strip_prefix("scripts/") {
                    check_script_name(script).map_err(|why| format!("script `{member}`: {why}"))?;
                }
            }
        }
        for (name, target) in self.console_scripts.iter().chain(&self.gui_scripts) {
            check_script_name(name).map_err(|why| format!("entry point `{name}`: {why}"))?;
            if !target.contains(':') || target.contains('\n') {
                return Err(format!(
                    "entry point `{name}` = `{target}` is not `module:attr`"
                ));
            }
        }
        Ok(())
    }
}

pub(crate) fn same_version(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    norm(a) == norm(b)
}

/// A script name must stay in `bin/` and must not replace the interpreter or the activators.
pub fn check_script_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.contains('/')
        || name.contains('\\')
        || name == "."
        || name == ".."
        || name.chars().any(|c| c.is_control())
    {
        return Err("the name leaves `bin/`".into());
    }
    let lower = name.to_ascii_lowercase();
    // python, python3, python3.12, python3.13t, pythonw, pypy3.10, ...
    let interpreter = ["python", "pythonw", "pypy", "graalpy"].iter().any(|p| {
        lower.strip_prefix(p).is_some_and(|rest| {
            let rest = rest.strip_suffix('t').unwrap_or(rest);
            rest.is_empty()
                || rest
                    .split('.')
                    .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
    });
    let reserved = interpreter
        || lower == "activate"
        || lower.starts_with("activate.")
        || lower == "deactivate";
    if reserved {
        return Err("the name is reserved for the env's interpreter or activators".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_csv() {
        let text =
            "a.py,sha256=x,3\n\"dir,with comma/b.py\",sha256=y,\n\n\"q\"\"uote.py\",sha256=z,1\r\n";
        let rows = parse_record(text).unwrap();
        assert_eq!(rows["a.py"], ("sha256=x".to_string(), Some(3)));
        assert_eq!(rows["dir,with comma/b.py"], ("sha256=y".to_string(), None));
        assert_eq!(rows["q\"uote.py"], ("sha256=z".to_string(), Some(1)));
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn malformed_records_name_their_line() {
        assert_eq!(
            parse_record("a.py,h,1\nb.py,h\n").unwrap_err(),
            "RECORD line 2: expected path,hash,size"
        );
        assert_eq!(
            parse_record("a.py,h,x\n").unwrap_err(),
            "RECORD line 1: bad size"
        );
        assert_eq!(
            parse_record("a.py,h,1\na.py,h,1\n").unwrap_err(),
            "RECORD lists `a.py` twice"
        );
    }
}
