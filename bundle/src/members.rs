//! Every reader of an archive (unpack, thin, sbom, the document's peek) reads its members here,
//! and nowhere else. The tar crate reads a GNU long name or link (`L`, `K`) and a PAX header
//! (`x`, `g`) whole into memory before it returns the entry they describe, whatever their size:
//! one header of a 32 KiB archive asked for 1.5 GiB. Here the archive is read raw
//! (`Entries::raw`), each extension header is bounded by its declared size before a byte of it
//! is read, and applied by us: a long name or link names the next member, a PAX `path`,
//! `linkpath` or `size` too (a PAX size that disagrees with the header's is refused: that is how
//! members are smuggled past other readers, CVE-2026-33055). A global PAX header may say
//! nothing of paths or sizes.
//! (<https://www.gnu.org/software/tar/manual/html_node/Standard.html>,
//! <https://pubs.opengroup.org/onlinepubs/9799919799/utilities/pax.html#tag_20_94_13_03>.)

use std::io::Read;

use anyhow::{anyhow, bail, Result};

/// The largest GNU long name or link: a path, with room for the tar NUL.
pub const MAX_NAME: u64 = 4097;
/// The largest PAX header: a few keys a member.
pub const MAX_PAX: u64 = 64 << 10;

/// A member of the archive with what its extension headers said of it.
pub struct Member<'a, R: Read> {
    pub entry: tar::Entry<'a, R>,
    /// Its path: a long name's, a PAX path's, or the header's.
    pub path: Vec<u8>,
    /// Its link target, for links: a long link's, a PAX linkpath's, or the header's.
    pub link: Option<Vec<u8>>,
}

/// The members of an archive, each extension header bounded by `cap` bytes at most.
pub struct Members<'a, R: Read> {
    entries: tar::Entries<'a, R>,
    cap: u64,
}

/// The members of `ar`; no extension header may be larger than `max_memory` either.
pub fn members<R: Read>(ar: &mut tar::Archive<R>, max_memory: u64) -> Result<Members<'_, R>> {
    let entries = ar
        .entries()
        .map_err(|e| anyhow!("corrupt or truncated archive: {e}"))?
        .raw(true);
    Ok(Members {
        entries,
        cap: max_memory,
    })
}

/// What the extension headers before a member said.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
}

fn corrupt(e: std::io::Error) -> anyhow::Error {
    anyhow!("corrupt or truncated archive: {e}")
}

impl<R: Read> Members<'_, R> {
    /// An extension header's bytes, bounded by `max` (and the memory cap) before any is read.
    fn body(&self, e: &mut tar::Entry<'_, R>, what: &str, max: u64) -> Result<Vec<u8>> {
        let size = e.header().entry_size().map_err(corrupt)?;
        let max = max.min(self.cap);
        if size > max {
            bail!("a {what} of {size} bytes (more than {max}): refusing the archive before reading it");
        }
        let mut buf = Vec::with_capacity(size as usize);
        e.by_ref()
            .take(size)
            .read_to_end(&mut buf)
            .map_err(corrupt)?;
        if buf.len() as u64 != size {
            bail!("corrupt or truncated archive: a {what} ends early");
        }
        Ok(buf)
    }
}

/// A long name's bytes without the NULs that end it (one inside it stays, and is refused
/// where names are judged).
fn name(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

/// PAX records, `LEN KEY=VALUE\n`, where LEN counts the whole record.
fn pax_records(b: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
    let bad = || anyhow!("a PAX header that is not `LEN KEY=VALUE` records");
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&c| c == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n: &usize| n > sp + 1 && n <= rest.len())
            .ok_or_else(bad)?;
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").ok_or_else(bad)?;
        let eq = rec.iter().position(|&c| c == b'=').ok_or_else(bad)?;
        out.push((&rec[..eq], &rec[eq + 1..]));
        rest = &rest[len..];
    }
    Ok(out)
}

impl<'a, R: Read> Iterator for Members<'a, R> {
    type Item = Result<Member<'a, R>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut pending = Pending::default();
        loop {
            let mut e = match self.entries.next()? {
                Ok(e) => e,
                Err(err) => return Some(Err(corrupt(err))),
            };
            let kind = e.header().entry_type();
            let done = match kind {
                tar::EntryType::GNULongName => self
                    .body(&mut e, "GNU long name", MAX_NAME)
                    .map(|b| pending.path = Some(name(b)))
                    .map(|()| true),
                tar::EntryType::GNULongLink => self
                    .body(&mut e, "GNU long link", MAX_NAME)
                    .map(|b| pending.link = Some(name(b)))
                    .map(|()| true),
                tar::EntryType::XHeader => self
                    .body(&mut e, "PAX header", MAX_PAX)
                    .and_then(|b| apply_pax(&b, &mut pending))
                    .map(|()| true),
                tar::EntryType::XGlobalHeader => self
                    .body(&mut e, "PAX global header", MAX_PAX)
                    .and_then(|b| check_global(&b))
                    .map(|()| true),
                _ => Ok(false),
            };
            match done {
                Err(err) => return Some(Err(err)),
                Ok(true) => continue,
                Ok(false) => return Some(member(e, pending)),
            }
        }
    }
}

fn apply_pax(b: &[u8], p: &mut Pending) -> Result<()> {
    for (k, v) in pax_records(b)? {
        match k {
            b"path" => p.path = Some(v.to_vec()),
            b"linkpath" => p.link = Some(v.to_vec()),
            b"size" => {
                let n = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow!("a PAX size that is not a number"))?;
                p.size = Some(n);
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_global(b: &[u8]) -> Result<()> {
    for (k, _) in pax_records(b)? {
        if matches!(k, b"path" | b"linkpath" | b"size") {
            bail!(
                "a PAX global header that sets `{}` for every member: refused",
                String::from_utf8_lossy(k)
            );
        }
    }
    Ok(())
}

fn member<R: Read>(e: tar::Entry<'_, R>, p: Pending) -> Result<Member<'_, R>> {
    let header_size = e.header().entry_size().map_err(corrupt)?;
    if p.size.is_some_and(|s| s != header_size) {
        bail!(
            "`{}`: the PAX and tar header sizes disagree",
            String::from_utf8_lossy(&p.path.clone().unwrap_or_else(|| e.path_bytes().to_vec()))
        );
    }
    let path = p.path.unwrap_or_else(|| e.path_bytes().to_vec());
    let link = p.link.or_else(|| e.link_name_bytes().map(|l| l.to_vec()));
    Ok(Member {
        entry: e,
        path,
        link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_parse_and_refuse() {
        let r = pax_records(b"16 path=a/b/cde\n11 size=42\n").unwrap();
        assert_eq!(
            r,
            vec![(&b"path"[..], &b"a/b/cde"[..]), (&b"size"[..], &b"42"[..])]
        );
        for bad in [
            &b"99 path=x\n"[..],
            b"5 path=x\n",
            b"x path=x\n",
            b"9 pathx\n",
        ] {
            assert!(
                pax_records(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
