//! The container formats of a `.deb` (deb(5)): an `ar` archive of `debian-binary` and two
//! gzipped tars, each member with owners root, the release's time as every mtime, entries
//! sorted, gzip without a timestamp: the same package gives the same bytes.

use std::io::Write;

use anyhow::{Context, Result};

/// One member of a tar: its path (relative, without `./`), mode and bytes or the one file
/// opened for it (read from its start each time).
pub(crate) enum Body<'a> {
    Bytes(Vec<u8>),
    File(&'a std::fs::File),
}

pub(crate) struct Entry<'a> {
    pub(crate) path: String,
    pub(crate) mode: u32,
    pub(crate) body: Option<Body<'a>>,
}

pub(crate) fn dir<'a>(path: &str) -> Entry<'a> {
    Entry {
        path: path.into(),
        mode: 0o755,
        body: None,
    }
}

pub(crate) fn file<'a>(path: &str, mode: u32, body: Body<'a>) -> Entry<'a> {
    Entry {
        path: path.into(),
        mode,
        body: Some(body),
    }
}

pub(crate) fn member(
    ar: &mut ar::Builder<&mut std::fs::File>,
    name: &str,
    data: &[u8],
    time: i64,
) -> Result<()> {
    let mut h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
    h.set_mtime(time.max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o100644);
    ar.append(&h, data).context("cannot write the package")
}

/// A member's bytes, read from the start of its body.
pub(crate) fn read_body(body: &Body<'_>, out: &mut dyn std::io::Write) -> Result<u64> {
    use std::io::{Seek, SeekFrom};
    match body {
        Body::Bytes(b) => {
            out.write_all(b).context("cannot write the package")?;
            Ok(b.len() as u64)
        }
        Body::File(f) => {
            let mut f: &std::fs::File = f;
            f.seek(SeekFrom::Start(0))
                .context("cannot read the archive")?;
            std::io::copy(&mut f, out).context("cannot read the archive")
        }
    }
}

pub(crate) fn gz(data: &[u8], level: u32) -> Result<Vec<u8>> {
    // No name and mtime 0 in the gzip header: the same input gives the same bytes.
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).context("gzip")?;
    e.finish().context("gzip")
}

/// A tar (GNU format, `./`-prefixed paths, owners root, the given mtime), gzipped.
pub(crate) fn tar_gz(entries: &[Entry], time: i64, level: u32) -> Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(level));
    let mut t = tar::Builder::new(gz);
    let mut root = tar::Header::new_gnu();
    head(&mut root, 0o755, 0, time, tar::EntryType::Directory);
    t.append_data(&mut root, "./", std::io::empty())
        .context("tar")?;
    for e in entries {
        let mut h = tar::Header::new_gnu();
        match &e.body {
            None => {
                head(&mut h, e.mode, 0, time, tar::EntryType::Directory);
                t.append_data(&mut h, format!("./{}/", e.path), std::io::empty())
            }
            Some(Body::Bytes(b)) => {
                head(
                    &mut h,
                    e.mode,
                    b.len() as u64,
                    time,
                    tar::EntryType::Regular,
                );
                t.append_data(&mut h, format!("./{}", e.path), b.as_slice())
            }
            Some(Body::File(f)) => {
                use std::io::{Seek, SeekFrom};
                let mut r: &std::fs::File = f;
                let len = r.metadata().context("cannot read the archive")?.len();
                r.seek(SeekFrom::Start(0))
                    .context("cannot read the archive")?;
                head(&mut h, e.mode, len, time, tar::EntryType::Regular);
                t.append_data(&mut h, format!("./{}", e.path), std::io::Read::take(r, len))
            }
        }
        .context("tar")?;
    }
    t.into_inner().context("tar")?.finish().context("gzip")
}

pub(crate) fn head(h: &mut tar::Header, mode: u32, size: u64, time: i64, kind: tar::EntryType) {
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(time.max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
}
