//! What a wheel says of itself, checked against what it holds: RECORD (every file listed with
//! its true hash and size) and WHEEL (its version, where its root goes).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::wheel::{check_member, parse_record, Stamp};

/// How a wheel is refused, naming it: the reason in, the error out.
pub(crate) type Refuse<'a> = &'a dyn Fn(String) -> anyhow::Error;

/// What extraction saw: each file's RECORD-style hash and size, and the `.dist-info` files'
/// bytes (RECORD, WHEEL, METADATA, entry_points.txt are read from them).
#[derive(Default)]
pub(crate) struct Extracted {
    pub(crate) hashes: BTreeMap<String, (String, u64)>,
    pub(crate) stamps: BTreeMap<String, Stamp>,
    pub(crate) dist_info_files: BTreeMap<String, Vec<u8>>,
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
