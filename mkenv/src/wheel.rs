//! A wheel, unzipped once into the store and verified as it goes (https://packaging.python.org/en/latest/specifications/binary-distribution-format/):
//! names inside the tree, no links, no duplicates, stored or deflated only, one `.dist-info`
//! that matches the file name, known `.data` keys, and every file's RECORD hash and size.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use wheelship::fs::beneath::{Dir, Dirs, Kind};
use wheelship::{
    python::names::{canonicalize_name, is_valid_name},
    text::check_sha256,
};

use crate::stamp::{self, Compiled, Stamp};
pub use crate::unzip::WheelData;
use crate::unzip::{unzip_verified, Extracted, Refuse};
use wheelship::fs::io::At;

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
fn parse_record(text: &str) -> Result<BTreeMap<String, (String, Option<u64>)>, String> {
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

/// Makes sure `<store>/<sha256>` holds the verified, unzipped wheel; returns its info. What the
/// store already holds is checked again as it is read: its info is trusted no more than the
/// wheel it was made from.
pub fn ensure_stored(store: &Dir, wheel: &Path, sha256: &str) -> Result<Info> {
    ensure_stored_with(store, wheel, sha256, &Reuse::default(), || {
        WheelData::read(wheel)
    })
    .map(|(info, _)| info)
}

/// How a store entry that is already there is checked before it is used again.
#[derive(Default)]
pub struct Reuse {
    /// Rehash every file (`--verify`), not only its inode, size and modification time.
    pub rehash: bool,
}

/// [`ensure_stored`], with the wheel's data given by `data` when it has to be unpacked (the
/// caller may have read it already, to check its sha256). An entry that is there is used
/// again only if every file is as it was stored (`crate::stamp`); one that is not is stored
/// again from the wheel, with a warning. Also says whether it was stored now.
pub fn ensure_stored_with(
    store: &Dir,
    wheel: &Path,
    sha256: &str,
    reuse: &Reuse,
    data: impl FnOnce() -> Result<WheelData>,
) -> Result<(Info, bool)> {
    let entry = Path::new(check_sha256(sha256).map_err(|e| anyhow!(e))?);
    if store.kind(entry)? == Some(Kind::Dir) {
        if let Ok(bytes) = store.read(entry.join("info.json")) {
            if let Ok(info) = serde_json::from_slice::<Info>(&bytes) {
                info.validate().map_err(|why| {
                    anyhow!(
                        "`{}`: the store entry is not one mkenv made: {why}",
                        store.show(entry).display()
                    )
                })?;
                match unchanged(store, entry, &info, reuse) {
                    Ok(()) => return Ok((info, false)),
                    Err(Some(why)) => eprintln!(
                        "mkenv: warning: the store entry `{}` was changed after it was stored ({why}): storing it again from `{}`; envs built before still link the changed files (`mkenv gc --verify` names them)",
                        store.show(entry).display(),
                        wheel.display()
                    ),
                    // Stored by an older mkenv, without stamps: stored again, quietly.
                    Err(None) => {}
                }
            }
        }
    }
    let file_name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let data = data()?;
    let tmp = wheelship::fs::staged::Staged::new(store, wheelship::fs::temp::TMP)?;
    let files = tmp.open()?.create_dir_all("files")?;
    let info = unzip_verified(data, &file_name, Dirs::new(files))?;
    let mut f = store.create_file(Path::new(tmp.name()).join("info.json"), 0o444)?;
    f.write_all(&serde_json::to_vec(&info)?)
        .at("write", store.show(tmp.name()))?;
    if store.kind(entry)?.is_some() {
        // A store entry from a crash without info.json, or one that was changed: it goes.
        wheelship::fs::staged::trash(store, entry)?;
    }
    tmp.commit(entry)?;
    Ok((info, true))
}

/// Whether the entry's files are as they were stored: `Err(None)` when it has no stamps to
/// tell, `Err(Some(why))` when one is not.
fn unchanged(store: &Dir, entry: &Path, info: &Info, reuse: &Reuse) -> Result<(), Option<String>> {
    let compiled = Compiled::all(store, entry).map_err(Some)?;
    let expect = stamp::expected(info, &compiled).ok_or(None)?;
    let files = store
        .open_dir(entry.join("files"))
        .map_err(|e| Some(format!("{e:#}")))?;
    stamp::check(&files, &expect, reuse.rehash).map_err(Some)
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

/// RECORD: every file listed with its true hash and size, nothing listed that is absent
/// (signatures aside): the installed files, with their hashes.
pub(crate) fn verify_record(
    x: &Extracted,
    dist_info: &str,
    refuse: Refuse,
) -> Result<Vec<(String, String, u64)>> {
    let record_name = format!("{dist_info}/RECORD");
    let record = x
        .dist_info_files
        .get(&record_name)
        .ok_or_else(|| refuse(format!("no `{record_name}`")))?;
    let record = std::str::from_utf8(record).map_err(|_| refuse("RECORD is not UTF-8".into()))?;
    let rows = parse_record(record).map_err(refuse)?;
    // RECORD's own signatures (`RECORD.jws`, `RECORD.p7s`) cannot hash themselves into it:
    // listed without a hash, or not at all. They are installed, as pip does.
    let signature = |name: &str| {
        name.strip_prefix(dist_info)
            .is_some_and(|n| n == "/RECORD.jws" || n == "/RECORD.p7s")
    };
    let unlisted = |name: &str| name == record_name || signature(name);
    let mut files = Vec::new();
    for (name, (hash, size)) in &x.hashes {
        if name == &record_name {
            continue;
        }
        if signature(name) {
            files.push((name.clone(), hash.clone(), *size));
            continue;
        }
        let Some((rh, rsize)) = rows.get(name) else {
            return Err(refuse(format!("`{name}` is not in RECORD")));
        };
        if rh != hash || rsize.is_some_and(|s| s != *size) {
            return Err(refuse(format!("RECORD hash mismatch for `{name}`")));
        }
        files.push((name.clone(), hash.clone(), *size));
    }
    if let Some(name) = rows
        .keys()
        .find(|n| !unlisted(n) && !x.hashes.contains_key(*n))
    {
        check_member(name).map_err(|why| refuse(format!("RECORD names `{name}`: {why}")))?;
        return Err(refuse(format!(
            "RECORD lists `{name}`, which is not in the wheel"
        )));
    }
    Ok(files)
}

/// WHEEL: a major version above 1 is refused (the first Wheel-Version counts: some wheels
/// repeat it); whether the root is purelib.
pub(crate) fn wheel_purelib(
    small: &BTreeMap<String, Vec<u8>>,
    dist_info: &str,
    refuse: Refuse,
) -> Result<bool> {
    let wheel_text = small
        .get(&format!("{dist_info}/WHEEL"))
        .map(|b| String::from_utf8_lossy(b).to_string())
        .ok_or_else(|| refuse(format!("no `{dist_info}/WHEEL`")))?;
    let header = |k: &str| {
        wheel_text.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(key, _)| key.trim().eq_ignore_ascii_case(k))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let wv = header("Wheel-Version").unwrap_or_default();
    if wv
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_none_or(|m| m > 1)
    {
        return Err(refuse(format!("unsupported Wheel-Version `{wv}`")));
    }
    Ok(header("Root-Is-Purelib").is_some_and(|v| v.eq_ignore_ascii_case("true")))
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
