//! switch's shared links on a hostile release: random trees of directories, files and links
//! (some leading outside the root, some to a sibling release) and a random `.wheelship-shared`.
//! Whatever happens, nothing outside the root and nothing in the sibling release changes.
#![no_main]
use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 5] = ["a", "b", "venv", "x", ".."];

fn path(bytes: &[u8]) -> String {
    let n = 1 + (bytes.first().copied().unwrap_or(0) % 3) as usize;
    bytes
        .iter()
        .skip(1)
        .take(n)
        .map(|&b| NAMES[(b % 5) as usize])
        .collect::<Vec<_>>()
        .join("/")
}

/// Every path under `dir` with what it is (and holds), to compare before and after.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            let what = if t.is_symlink() {
                format!("-> {:?}", std::fs::read_link(&p).unwrap())
            } else if t.is_dir() {
                stack.push(p.clone());
                "dir".into()
            } else {
                format!("file {:?}", std::fs::read(&p).unwrap())
            };
            out.insert(p.display().to_string(), what);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(t.path()).unwrap();
    let root = base.join("srv");
    let outside = base.join("outside");
    for d in [
        "srv/releases/r/venv-real",
        "srv/releases/sib/a",
        "srv/shared",
        "outside/a/b",
    ] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(outside.join("a/b/keep"), "keep").unwrap();
    std::fs::write(root.join("releases/sib/a/keep"), "keep").unwrap();
    let rel = root.join("releases/r");
    std::os::unix::fs::symlink("venv-real", rel.join("venv")).unwrap();
    let (tree, list) = data.split_at(data.len() / 2);
    for chunk in tree.chunks(5).take(12) {
        let p = rel.join(path(chunk));
        let Ok(p) = std::path::absolute(&p) else {
            continue;
        };
        if !p.starts_with(&rel) {
            continue;
        }
        let _ = std::fs::create_dir_all(p.parent().unwrap());
        let _ = match chunk.last().copied().unwrap_or(0) % 4 {
            0 => std::fs::create_dir_all(&p),
            1 => std::fs::write(&p, "release"),
            2 => std::os::unix::fs::symlink(&outside, &p),
            _ => std::os::unix::fs::symlink("../sib", &p),
        };
    }
    let listed: Vec<String> = list
        .chunks(4)
        .take(6)
        .map(|c| {
            let mut p = path(c);
            if c.last().copied().unwrap_or(0) % 2 == 0 {
                p.push('/');
            }
            p
        })
        .collect();
    let _ = std::fs::write(rel.join(".wheelship-shared"), listed.join("\n"));
    let before = (
        snapshot(&outside),
        snapshot(&root.join("releases/sib")),
        snapshot(&rel.join("venv-real")),
    );
    let _ = switch::link_shared_paths(&root, "r", &[]);
    let after = (
        snapshot(&outside),
        snapshot(&root.join("releases/sib")),
        snapshot(&rel.join("venv-real")),
    );
    assert_eq!(before, after, "listed: {listed:?}");
});
