//! Random graphs of directories and symlinks, packed as a release and unpacked: either the
//! release is refused, or no link in it resolves outside it (checked by the kernel, with
//! `openat2(RESOLVE_BENEATH)`, and by the real path of every link that resolves).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

/// A component from one byte: a name, `..` or `.`.
fn component(b: u8) -> &'static str {
    match b % 6 {
        4 => "..",
        5 => ".",
        n => NAMES[n as usize],
    }
}

/// A path of 1..=4 components from the bytes.
fn path(bytes: &[u8]) -> String {
    let n = 1 + (bytes.first().copied().unwrap_or(0) % 4) as usize;
    bytes
        .iter()
        .skip(1)
        .take(n)
        .map(|&b| component(b))
        .collect::<Vec<_>>()
        .join("/")
}

fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    h[100..107].copy_from_slice(b"0000755");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn file(tar: &mut Vec<u8>, name: &str, data: &[u8]) {
    tar.extend(header(name.as_bytes(), b'0', data.len() as u64, b""));
    tar.extend(data);
    tar.extend(vec![0u8; (512 - data.len() % 512) % 512]);
}

fuzz_target!(|data: &[u8]| {
    let mut tar = Vec::new();
    file(
        &mut tar,
        ".wheelship/release.json",
        br#"{"id":"r","name":"t","rev":"x","tree":"y","commit_time":0}"#,
    );
    for chunk in data.chunks(6).take(24) {
        let name = path(chunk);
        match chunk[0] % 3 {
            0 => tar.extend(header(format!("{name}/").as_bytes(), b'5', 0, b"")),
            1 => {
                let target = path(&chunk[chunk.len().min(3)..]);
                tar.extend(header(name.as_bytes(), b'2', 0, target.as_bytes()));
            }
            _ => file(&mut tar, &name, b"x"),
        }
    }
    tar.extend([0u8; 1024]);
    let s = wheelship_fuzz::Scratch::new(
        "a.tar.zst",
        &zstd::encode_all(&tar[..], 1).unwrap(),
        "releases",
    );
    let args = wheelship_fuzz::unpack_args(&s.sub);
    let m = bundle::extract::peek_manifest(&s.file).unwrap();
    if bundle::extract::extract_into(&s.file, &s.handle, "staging", &args, &m, None).is_err() {
        return;
    }
    let staging = std::fs::canonicalize(s.sub.join("staging")).unwrap();
    check(&staging, &staging);
});

/// Every link under `dir` stays under `root`.
fn check(root: &Path, dir: &Path) {
    use std::os::fd::AsFd;
    let root_fd = std::fs::File::open(root).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = e.file_type().unwrap();
        if t.is_symlink() {
            let rel = p.strip_prefix(root).unwrap();
            let r = rustix::fs::openat2(
                root_fd.as_fd(),
                rel,
                rustix::fs::OFlags::PATH,
                rustix::fs::Mode::empty(),
                rustix::fs::ResolveFlags::BENEATH,
            );
            assert!(
                !matches!(r, Err(rustix::io::Errno::XDEV)),
                "{} -> {:?} leaves the release",
                rel.display(),
                std::fs::read_link(&p)
            );
            if let Ok(real) = std::fs::canonicalize(&p) {
                assert!(
                    real.starts_with(root),
                    "{} -> {}",
                    p.display(),
                    real.display()
                );
            }
        } else if t.is_dir() {
            check(root, &p);
        }
    }
}
