//! Reading a wheel's zip: the central directory scanned first (names, kinds, methods,
//! duplicates, sizes), then every member inflated whole (or streamed when large) and written
//! into the store through its handle, checked against the central directory's size and CRC-32
//! and hashed for RECORD as it goes.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{anyhow, Result};
use sha2::{Digest, Sha256};
use wheelship::fs::beneath::Dirs;
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::python::names::{canonicalize_name, WheelFilename};

use crate::record::{verify_record, wheel_purelib};
use crate::wheel::Stamp;
use crate::wheel::{
    check_member, parse_entry_points, record_hash, same_version, Info, MAX_UNPACKED,
};

/// Why a wheel is refused, in a message that names it.
pub(crate) use crate::record::{Extracted, Refuse};

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

pub(crate) fn unzip_verified(wheel: WheelData, file_name: &str, dest: Dirs) -> Result<Info> {
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
            let dirs = Dirs::new(wheelship::fs::beneath::Dir::open(&dest).unwrap());
            let info = unzip_with(data, "demo-1.0-py3-none-any.whl", dirs, whole_max).unwrap();
            let module = fs::read(dest.join("demo/__init__.py")).unwrap();
            let table = fs::read(dest.join("demo/table.bin")).unwrap();
            assert_eq!(module, b"X = 1\n".repeat(1000));
            assert_eq!(table.len(), 800_000);
            seen.push((info.files, module, table));
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]));
    }
}
