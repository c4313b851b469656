//! A wheel, unzipped once into the store and verified as it goes (https://packaging.python.org/en/latest/specifications/binary-distribution-format/):
//! names inside the tree, no links, no duplicates, stored or deflated only, one `.dist-info`
//! that matches the file name, known `.data` keys, and every file's RECORD hash and size.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wheelship::beneath::{Dir, Dirs, Kind};
use wheelship::fsx;
use wheelship::names::{canonicalize_name, check_sha256, is_valid_name, WheelFilename};

use crate::stamp::{self, Compiled, Stamp};
use wheelship::io::At;

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
const MAX_UNPACKED: u64 = 8 << 30;

pub fn record_hash(data_sha: &[u8]) -> String {
    format!("sha256={}", data_encoding::BASE64URL_NOPAD.encode(data_sha))
}

/// Checks one member name: relative, inside, printable, no backslash.
fn check_member(name: &str) -> Result<(), String> {
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

fn parse_entry_points(text: &str) -> (Scripts, Scripts) {
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
    let tmp = wheelship::staged::Staged::new(store, ".tmp-")?;
    let files = tmp.open()?.create_dir_all("files")?;
    let info = unzip_verified(data, &file_name, Dirs::new(files))?;
    let mut f = store.create_file(Path::new(tmp.name()).join("info.json"), 0o444)?;
    f.write_all(&serde_json::to_vec(&info)?)
        .at("write", store.show(tmp.name()))?;
    if store.kind(entry)?.is_some() {
        // A store entry from a crash without info.json, or one that was changed: it goes.
        wheelship::staged::trash(store, entry)?;
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

/// Why a wheel is refused, in a message that names it.
type Refuse<'a> = &'a dyn Fn(String) -> anyhow::Error;

/// A wheel file's zip reader: over its bytes in memory, or over the file when it is large.
type Zip<R> = zip::ZipArchive<R>;

/// Wheels up to this size are read into memory whole (one read, then no seek or read per
/// member); larger ones are read from the file.
pub const IN_MEMORY_MAX: u64 = 256 << 20;

/// A wheel to unpack: its bytes, or its file when it is larger than [`IN_MEMORY_MAX`].
pub enum WheelData {
    Bytes(Vec<u8>),
    File(fs::File),
}

impl WheelData {
    /// Reads `path` (a regular file) whole when it is small enough.
    pub fn read(path: &Path) -> Result<WheelData> {
        let (mut f, size) = fsx::open_regular(path)?;
        if size > IN_MEMORY_MAX {
            return Ok(WheelData::File(f));
        }
        let mut bytes = SPARE.with_borrow_mut(|s| std::mem::take(&mut s.bytes));
        bytes.clear();
        bytes.reserve(size as usize);
        (&mut f)
            .take(IN_MEMORY_MAX + 1)
            .read_to_end(&mut bytes)
            .at("read", path)?;
        if bytes.len() as u64 > IN_MEMORY_MAX {
            return Ok(WheelData::File(fsx::open_regular(path)?.0));
        }
        Ok(WheelData::Bytes(bytes))
    }
}

/// What the central directory says: the files to extract and the one `.dist-info` directory.
struct Scan {
    files: Vec<Member>,
    dist_info: String,
}

/// A file of the wheel, as the central directory lists it.
struct Member {
    index: usize,
    /// Its normalised path (no `./` in front).
    name: String,
    executable: bool,
    /// Its size, as the central directory says.
    size: u64,
    /// Its size in the wheel, as the central directory says.
    packed: u64,
}

/// What extraction saw: each file's RECORD-style hash and size, and the `.dist-info` files'
/// bytes (RECORD, WHEEL, METADATA, entry_points.txt are read from them).
#[derive(Default)]
struct Extracted {
    hashes: BTreeMap<String, (String, u64)>,
    stamps: BTreeMap<String, Stamp>,
    dist_info_files: BTreeMap<String, Vec<u8>>,
}

fn unzip_verified(wheel: WheelData, file_name: &str, dest: Dirs) -> Result<Info> {
    unzip_with(wheel, file_name, dest, WHOLE_MAX)
}

/// [`unzip_verified`], with members larger than `whole_max` streamed.
fn unzip_with(wheel: WheelData, file_name: &str, dest: Dirs, whole_max: u64) -> Result<Info> {
    let mut whole = SPARE.with_borrow_mut(|s| std::mem::take(&mut s.whole));
    whole.max = whole_max;
    let info = match wheel {
        WheelData::Bytes(b) => {
            let info = unzip_from(
                std::io::Cursor::new(&b[..]),
                Some(&b),
                &mut whole,
                file_name,
                dest,
            );
            if b.capacity() <= SPARE_MAX {
                SPARE.with_borrow_mut(|s| s.bytes = b);
            }
            info
        }
        WheelData::File(f) => unzip_from(f, None, &mut whole, file_name, dest),
    };
    if whole.out.capacity() > SPARE_MAX || whole.raw.capacity() > SPARE_MAX {
        whole.out = Vec::new();
        whole.raw = Vec::new();
    }
    SPARE.with_borrow_mut(|s| s.whole = whole);
    info
}

/// The largest buffer a thread keeps for the next wheel.
const SPARE_MAX: usize = 64 << 20;

/// Each thread's buffers, kept from wheel to wheel (up to [`SPARE_MAX`] each): filling memory
/// this process already holds costs much less than having the kernel map and zero new memory
/// for every wheel.
#[derive(Default)]
struct Spare {
    bytes: Vec<u8>,
    whole: Whole,
}

thread_local! {
    static SPARE: std::cell::RefCell<Spare> = std::cell::RefCell::default();
}

fn unzip_from<R: Read + Seek>(
    mut f: R,
    bytes: Option<&[u8]>,
    whole: &mut Whole,
    file_name: &str,
    mut dest: Dirs,
) -> Result<Info> {
    let refuse = |what: String| anyhow!("cannot install `{file_name}`: {what}");
    let fname = WheelFilename::parse(file_name).map_err(&refuse)?;
    // The zip reader keeps one entry per name; the central directory says how many there are.
    // More there than here means duplicate names: which one a reader takes differs between
    // readers (Python takes the last), so such a wheel is refused.
    let declared = central_directory_entries(&mut f);
    let mut zip = Zip::new(f).map_err(|e| refuse(format!("not a valid zip file: {e}")))?;
    let declared = declared.map_err(&refuse)?;
    if declared != zip.len() as u64 {
        return Err(refuse(format!(
            "duplicate members: the central directory lists {declared} entries, {} distinct names",
            zip.len()
        )));
    }
    let scan = scan(&mut zip, &refuse)?;
    let dist_info = scan.dist_info.clone();
    let stem = dist_info.trim_end_matches(".dist-info");
    let (di_name, di_version) = stem
        .rsplit_once('-')
        .ok_or_else(|| refuse(format!("`{dist_info}` is not `<name>-<version>.dist-info`")))?;
    if canonicalize_name(di_name) != canonicalize_name(&fname.name)
        || !same_version(di_version, &fname.version)
    {
        return Err(refuse(format!(
            "`{dist_info}` does not match the file name"
        )));
    }
    let data_dir = format!("{stem}.data");
    let extracted = extract(&mut zip, bytes, whole, &scan, &data_dir, &mut dest, &refuse)?;
    let files = verify_record(&extracted, &dist_info, &refuse)?;
    let small = &extracted.dist_info_files;
    let purelib = wheel_purelib(small, &dist_info, &refuse)?;
    let metadata = small
        .get(&format!("{dist_info}/METADATA"))
        .ok_or_else(|| refuse(format!("no `{dist_info}/METADATA`")))?;
    std::str::from_utf8(metadata).map_err(|_| refuse("METADATA is not UTF-8".into()))?;
    let (console_scripts, gui_scripts) = small
        .get(&format!("{dist_info}/entry_points.txt"))
        .map(|b| parse_entry_points(&String::from_utf8_lossy(b)))
        .unwrap_or_default();
    let stamps = files
        .iter()
        .map(|(name, _, _)| extracted.stamps[name])
        .collect();
    let info = Info {
        name: canonicalize_name(&fname.name),
        version: di_version.to_string(),
        dist_info,
        data_dir,
        purelib,
        files,
        console_scripts,
        gui_scripts,
        stamps,
    };
    info.validate().map_err(refuse)?;
    Ok(info)
}

/// First pass, over the central directory only: names, kinds, methods, duplicates, the
/// declared total size, and the one `.dist-info`.
fn scan<R: Read + Seek>(zip: &mut Zip<R>, refuse: Refuse) -> Result<Scan> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    let mut dist_infos = HashSet::new();
    let mut declared_total = 0u64;
    for i in 0..zip.len() {
        let z = zip
            .by_index_raw(i)
            .map_err(|e| refuse(format!("bad zip entry #{i}: {e}")))?;
        let name = std::str::from_utf8(z.name_raw())
            .map_err(|_| refuse(format!("member #{i} has a name that is not UTF-8")))?
            .to_string();
        check_member(&name)
            .map_err(|why| refuse(format!("member `{}`: {why}", name.escape_debug())))?;
        if z.unix_mode()
            .is_some_and(|mode| mode & 0o170000 == 0o120000)
        {
            return Err(refuse(format!("member `{name}` is a symlink")));
        }
        if z.encrypted() {
            return Err(refuse(format!("member `{name}` is encrypted")));
        }
        if !matches!(
            z.compression(),
            zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated
        ) {
            return Err(refuse(format!(
                "member `{name}` uses unsupported compression {:?}",
                z.compression()
            )));
        }
        let norm = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if !seen.insert(norm.clone()) {
            return Err(refuse(format!("duplicate member `{name}`")));
        }
        declared_total += z.size();
        if declared_total > MAX_UNPACKED {
            return Err(refuse("it expands to more than 8 GiB".into()));
        }
        let top = norm.split('/').next().unwrap_or_default();
        if top.ends_with(".dist-info") {
            dist_infos.insert(top.to_string());
        }
        if !name.ends_with('/') {
            files.push(Member {
                index: i,
                name: norm,
                executable: z.unix_mode().is_some_and(|m| m & 0o111 != 0),
                size: z.size(),
                packed: z.compressed_size(),
            });
        }
    }
    let mut dist_infos: Vec<_> = dist_infos.into_iter().collect();
    dist_infos.sort();
    match dist_infos.len() {
        1 => Ok(Scan {
            files,
            dist_info: dist_infos.remove(0),
        }),
        0 => Err(refuse("no `.dist-info` directory".into())),
        _ => Err(refuse(format!(
            "more than one `.dist-info` directory: {}",
            dist_infos.join(", ")
        ))),
    }
}

/// A member may be in the wheel's one `.data` directory under a known key, or in its one
/// `.dist-info`, or anywhere else in the install root.
fn check_placement(name: &str, data_dir: &str, dist_info: &str, refuse: Refuse) -> Result<()> {
    let top = name.split('/').next().unwrap_or_default();
    if top.ends_with(".data") {
        if top != data_dir {
            return Err(refuse(format!(
                "member `{name}` is in `{top}`, not `{data_dir}`"
            )));
        }
        let key = name.split('/').nth(1).unwrap_or_default();
        if !matches!(key, "purelib" | "platlib" | "scripts" | "headers" | "data") {
            return Err(refuse(format!(
                "unknown `.data` key `{key}` (member `{name}`)"
            )));
        }
    } else if top.ends_with(".dist-info") && top != dist_info {
        return Err(refuse(format!(
            "member `{name}` is in another `.dist-info`"
        )));
    }
    Ok(())
}

/// Members up to this size (packed and unpacked) are inflated whole, in one call, into a buffer
/// kept from member to member (libdeflate, which inflates a whole buffer much faster than zlib
/// inflates a stream); larger ones are streamed.
const WHOLE_MAX: u64 = 256 << 20;

/// What a member's bytes are checked against, and what is kept of them.
struct Written {
    hash: String,
    size: u64,
    /// The bytes, for `.dist-info` files (RECORD, WHEEL, METADATA, entry points).
    kept: Option<Vec<u8>>,
}

/// Second pass: every file extracted under `dest`, hashed as it is written; no member may
/// hold other than the bytes the central directory says (size and CRC-32). `bytes` is the
/// whole wheel when it is in memory.
fn extract<R: Read + Seek>(
    zip: &mut Zip<R>,
    bytes: Option<&[u8]>,
    whole: &mut Whole,
    scan: &Scan,
    data_dir: &str,
    dest: &mut Dirs,
    refuse: Refuse,
) -> Result<Extracted> {
    let mut out = Extracted::default();
    let scripts = format!("{data_dir}/scripts/");
    let own = format!("{}/", scan.dist_info);
    for m in &scan.files {
        let name = &m.name;
        check_placement(name, data_dir, &scan.dist_info, refuse)?;
        // Read-only: nothing linked from the store is changed through an env by accident.
        let mode = if m.executable || name.starts_with(&scripts) {
            0o555
        } else {
            0o444
        };
        let (dir, leaf) = dest.parent(Path::new(name))?;
        let mut file = dir.create_file(leaf, mode)?;
        let shown = dir.show(leaf);
        let keep = name.starts_with(&own);
        let written = if m.size <= whole.max && m.packed <= whole.max {
            let content = whole
                .member(zip, bytes, m)
                .map_err(|why| refuse(format!("member `{name}` is corrupt: {why}")))?;
            fsx::write_new(&mut file, content).at("write", &shown)?;
            Written {
                hash: record_hash(&Sha256::digest(content)),
                size: content.len() as u64,
                kept: keep.then(|| content.to_vec()),
            }
        } else {
            streamed(zip, m, (&mut file, &shown), keep, refuse)?
        };
        fsx::start_writeback(&file);
        let st = rustix::fs::fstat(&file)
            .map_err(|e| anyhow!("cannot inspect `{}`: {e}", shown.display()))?;
        out.stamps.insert(name.clone(), Stamp::of(&st));
        if let Some(kept) = written.kept {
            out.dist_info_files.insert(name.clone(), kept);
        }
        out.hashes
            .insert(name.clone(), (written.hash, written.size));
    }
    Ok(out)
}

/// Reads members whole: the largest it reads so, the inflater, and the buffers it reads from
/// and writes to.
#[derive(Default)]
struct Whole {
    max: u64,
    inflater: Option<libdeflater::Decompressor>,
    raw: Vec<u8>,
    out: Vec<u8>,
}

impl Whole {
    /// The bytes of member `m`: its raw data sliced from the wheel's bytes (or read from the
    /// file), inflated when it is deflated; exactly the size the central directory says, with
    /// its CRC-32.
    fn member<'a, R: Read + Seek>(
        &'a mut self,
        zip: &mut Zip<R>,
        bytes: Option<&'a [u8]>,
        m: &Member,
    ) -> Result<&'a [u8], String> {
        let mut z = zip.by_index_raw(m.index).map_err(|e| e.to_string())?;
        let (method, crc, packed) = (z.compression(), z.crc32(), z.compressed_size());
        let raw: &[u8] = match (bytes, z.data_start()) {
            (Some(all), Some(start)) => usize::try_from(start)
                .ok()
                .zip(usize::try_from(packed).ok())
                .and_then(|(s, n)| all.get(s..s.checked_add(n)?))
                .ok_or("its data runs past the end of the file")?,
            _ => {
                self.raw.clear();
                z.read_to_end(&mut self.raw).map_err(|e| e.to_string())?;
                &self.raw
            }
        };
        let size = m.size as usize;
        let content: &[u8] = if method != zip::CompressionMethod::Stored {
            let out = fsx::aligned(&mut self.out, size);
            let inflater = self
                .inflater
                .get_or_insert_with(libdeflater::Decompressor::new);
            match inflater.deflate_decompress(raw, out) {
                Ok(n) => &out[..n],
                Err(libdeflater::DecompressionError::InsufficientSpace) => {
                    return Err("it is larger than it says".into())
                }
                Err(libdeflater::DecompressionError::BadData) => {
                    return Err("invalid deflate data".into())
                }
            }
        } else if raw.len() == size && size >= fsx::DIRECT_MIN {
            // Aligned, so that it can be written past the page cache.
            let out = fsx::aligned(&mut self.out, size);
            out.copy_from_slice(raw);
            out
        } else {
            raw
        };
        if content.len() != size {
            return Err(format!(
                "{} bytes, the central directory says {size}",
                content.len()
            ));
        }
        if libdeflater::crc32(content) != crc {
            return Err("its CRC-32 does not match".into());
        }
        Ok(content)
    }
}

/// A member too large to inflate whole: inflated as a stream, hashed and written as it goes.
fn streamed<R: Read + Seek>(
    zip: &mut Zip<R>,
    m: &Member,
    (file, shown): (&mut fs::File, &Path),
    keep: bool,
    refuse: Refuse,
) -> Result<Written> {
    let name = &m.name;
    let mut z = zip
        .by_index(m.index)
        .map_err(|e| refuse(format!("member `{name}`: {e}")))?;
    let mut buf = vec![0u8; 1 << 16];
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut kept = keep.then(Vec::new);
    loop {
        let n = z
            .read(&mut buf)
            .map_err(|e| refuse(format!("member `{name}` is corrupt: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
        if size > m.size {
            return Err(refuse(format!("member `{name}` is larger than it says")));
        }
        file.write_all(&buf[..n]).at("write", shown)?;
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(&buf[..n]);
        }
    }
    Ok(Written {
        hash: record_hash(&h.finalize()),
        size,
        kept,
    })
}

/// RECORD: every file listed with its true hash and size, nothing listed that is absent
/// (signatures aside): the installed files, with their hashes.
fn verify_record(
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
fn wheel_purelib(
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

/// The entry count of the end-of-central-directory record (ZIP64 aware).
fn central_directory_entries<R: Read + Seek>(f: &mut R) -> Result<u64, String> {
    let len = f.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let tail_len = len.min(65_557);
    f.seek(SeekFrom::Start(len - tail_len))
        .map_err(|e| e.to_string())?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail).map_err(|e| e.to_string())?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("no end of central directory record")?;
    let n = u16::from_le_bytes([tail[eocd + 10], tail[eocd + 11]]) as u64;
    if n != 0xffff {
        return Ok(n);
    }
    // ZIP64: the locator sits just before the EOCD and points at the ZIP64 EOCD record.
    let loc = eocd.checked_sub(20).ok_or("truncated ZIP64 locator")?;
    if tail[loc..loc + 4] != [0x50, 0x4b, 0x06, 0x07] {
        return Err("ZIP64 entry count without a ZIP64 locator".into());
    }
    let off = u64::from_le_bytes(tail[loc + 8..loc + 16].try_into().unwrap());
    f.seek(SeekFrom::Start(off)).map_err(|e| e.to_string())?;
    let mut rec = [0u8; 56];
    f.read_exact(&mut rec).map_err(|e| e.to_string())?;
    if rec[..4] != [0x50, 0x4b, 0x06, 0x06] {
        return Err("bad ZIP64 end of central directory record".into());
    }
    Ok(u64::from_le_bytes(rec[32..40].try_into().unwrap()))
}

fn same_version(a: &str, b: &str) -> bool {
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

    /// A small wheel: a deflated module, a stored file of bytes, the `.dist-info` files.
    fn small_wheel() -> Vec<u8> {
        use zip::write::SimpleFileOptions;
        use zip::CompressionMethod::{Deflated, Stored};
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let members: Vec<(&str, Vec<u8>, zip::CompressionMethod)> = vec![
            ("demo/__init__.py", b"X = 1\n".repeat(1000), Deflated),
            ("demo/table.bin", big, Stored),
            (
                "demo-1.0.dist-info/METADATA",
                b"Name: demo\nVersion: 1.0\n".to_vec(),
                Deflated,
            ),
            (
                "demo-1.0.dist-info/WHEEL",
                b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n".to_vec(),
                Deflated,
            ),
        ];
        let mut record = String::new();
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, method) in &members {
            w.start_file(
                *name,
                SimpleFileOptions::default().compression_method(*method),
            )
            .unwrap();
            w.write_all(data).unwrap();
            let hash = record_hash(&Sha256::digest(data));
            record += &format!("{name},{hash},{}\n", data.len());
        }
        record += "demo-1.0.dist-info/RECORD,,\n";
        w.start_file("demo-1.0.dist-info/RECORD", SimpleFileOptions::default())
            .unwrap();
        w.write_all(record.as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    }

    /// Whole or streamed, from memory or from the file: the same files, the same hashes.
    #[test]
    fn every_way_of_reading_a_member_stores_the_same() {
        let bytes = small_wheel();
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("demo-1.0-py3-none-any.whl");
        fs::write(&path, &bytes).unwrap();
        let mut seen = Vec::new();
        for (i, (in_memory, whole_max)) in
            [(true, WHOLE_MAX), (false, WHOLE_MAX), (true, 0), (false, 0)]
                .into_iter()
                .enumerate()
        {
            let dest = t.path().join(i.to_string());
            fs::create_dir(&dest).unwrap();
            let data = if in_memory {
                WheelData::Bytes(bytes.clone())
            } else {
                WheelData::File(fs::File::open(&path).unwrap())
            };
            let dirs = Dirs::new(Dir::open(&dest).unwrap());
            let info = unzip_with(data, "demo-1.0-py3-none-any.whl", dirs, whole_max).unwrap();
            let module = fs::read(dest.join("demo/__init__.py")).unwrap();
            let table = fs::read(dest.join("demo/table.bin")).unwrap();
            assert_eq!(module, b"X = 1\n".repeat(1000));
            assert_eq!(table.len(), 800_000);
            seen.push((info.files, module, table));
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
    }

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
