//! SHA-256 as the workspace writes it (lowercase hex), and the one reader and the one writer
//! that hash (and count) what passes through them.

use std::cell::RefCell;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// The 64 lowercase hex digits of `data`'s SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The SHA-256 (lowercase hex) and size of everything `r` yields.
pub fn sha256_reader(r: impl Read) -> io::Result<(String, u64)> {
    let mut h = Hashing::new(r);
    io::copy(&mut h, &mut io::sink())?;
    let t = h.tally();
    Ok((t.sha256(), t.bytes()))
}

/// What a [`Hashing`] reader has read: a handle that stays valid when the reader itself is
/// moved into another (a decompressor).
#[derive(Clone, Default)]
pub struct Tally(Rc<RefCell<(Sha256, u64)>>);

impl Tally {
    /// The bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.borrow().1
    }

    /// The SHA-256 (lowercase hex) of the bytes read so far.
    pub fn sha256(&self) -> String {
        hex(&self.0.borrow().0.clone().finalize())
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct Hashing<R> {
    inner: R,
    tally: Tally,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            tally: Tally::default(),
        }
    }

    /// The handle on what it read.
    pub fn tally(&self) -> Tally {
        self.tally.clone()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut t = self.tally.0.borrow_mut();
        t.0.update(&buf[..n]);
        t.1 += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for Hashing<R> {
    /// A seek starts the count again: what is hashed is what is read from there on (a reader
    /// that reads the data once, from the start, gets the data's hash).
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        *self.tally.0.borrow_mut() = Default::default();
        self.inner.seek(pos)
    }
}

/// A writer that hashes and counts what goes through it.
pub struct HashWriter<W> {
    pub inner: W,
    pub hash: Sha256,
    pub n: u64,
}

impl<W> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hash: Sha256::new(),
            n: 0,
        }
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            super::sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_reader_hashes_what_it_reads() {
        let mut r = super::Hashing::new(&b"abc"[..]);
        let t = r.tally();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(t.bytes(), 3);
        assert_eq!(t.sha256(), super::sha256_hex(b"abc"));
    }
}
