//! Helpers shared by bundle's tests: a raw tar writer (tar::Builder refuses `..`, so hostile
//! archives are made byte by byte), zstd, and running the real binary.

#![allow(dead_code)]

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

/// One raw 512-byte tar header (ustar, GNU-compatible).
pub fn header(name: &[u8], typeflag: u8, size: u64, mode: u32, link: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let oct = |h: &mut Vec<u8>, off: usize, len: usize, v: u64| {
        let s = format!("{:0width$o}\0", v, width = len - 1);
        h[off..off + len].copy_from_slice(s.as_bytes());
    };
    oct(&mut h, 100, 8, mode as u64);
    oct(&mut h, 108, 8, 0);
    oct(&mut h, 116, 8, 0);
    oct(&mut h, 124, 12, size);
    oct(&mut h, 136, 12, 1_700_000_000);
    h[156] = typeflag;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn pad(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(512) * 512, 0);
    v
}

/// A tar being built entry by entry.
#[derive(Default)]
pub struct RawTar(pub Vec<u8>);

impl RawTar {
    /// Starts with a valid `.wheelship/release.json` whose id is `id`.
    pub fn release(id: &str) -> RawTar {
        let mut t = RawTar::default();
        let m = format!(
            r#"{{"id":"{id}","name":"t","rev":"{}","tree":"{}","commit_time":0}}"#,
            "a".repeat(40),
            "b".repeat(40)
        );
        t.file(b".wheelship/release.json", m.as_bytes(), 0o644);
        t.file(b".wheelship/document.json", b"{}\n", 0o644);
        t
    }
    pub fn file(&mut self, name: &[u8], data: &[u8], mode: u32) -> &mut Self {
        self.0
            .extend(header(name, b'0', data.len() as u64, mode, b""));
        self.0.extend(pad(data));
        self
    }
    pub fn entry(&mut self, name: &[u8], typeflag: u8, link: &[u8], mode: u32) -> &mut Self {
        self.0.extend(header(name, typeflag, 0, mode, link));
        self
    }
    /// A GNU long-name record, applying to the next entry.
    pub fn long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.0.extend(header(
            b"././@LongLink",
            b'L',
            data.len() as u64,
            0o644,
            b"",
        ));
        self.0.extend(pad(&data));
        self
    }
    /// A PAX extended header with the given records, applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            let body_len = k.len() + v.len() + 3;
            let mut len = body_len + body_len.to_string().len();
            if len.to_string().len() != body_len.to_string().len() {
                len += 1;
            }
            data.extend(format!("{len} {k}=").as_bytes());
            data.extend(*v);
            data.push(b'\n');
        }
        self.0
            .extend(header(b"PaxHeaders/x", b'x', data.len() as u64, 0o644, b""));
        self.0.extend(pad(&data));
        self
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let mut v = self.0.clone();
        v.extend(vec![0u8; 1024]);
        v
    }
}

pub fn zst(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn bundle(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    Command::cargo_bin("bundle")
        .unwrap()
        .current_dir(cwd)
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap()
}

/// `cmd args` in `cwd`, asserting success: its stdout.
pub fn run(cmd: &str, args: &[&str], cwd: &Path) -> String {
    testsupport::run(cmd).args(args).cwd(cwd).ok_text()
}
