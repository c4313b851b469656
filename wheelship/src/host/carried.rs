//! The document a release carries (`RELEASE/.wheelship/document.json`, written by `bundle
//! pack` with no path of the build box in it) as it reads on this host: its wheels are the
//! release's own (`RELEASE/.wheelship/wheels`) and its requirement files the release's files.
//! `bundle unpack` gives it to mkenv after extracting; `wheelship-host rebuild` and `mkenv
//! --release` read it again ([`read`]) to build a kept release's env.

use std::path::{Component, Path};

use anyhow::{anyhow, bail, Result};

use crate::doc::{doc_path, Wheelhouse};
use crate::Document;

/// The directory of a release that holds what wheelship put there.
pub const RESERVED: &str = ".wheelship";

/// `doc` (the carried document) with the wheel directory and requirement files of the
/// release in `release_dir` (its final path).
pub fn on_host(mut doc: Document, release_dir: &Path) -> Result<Document> {
    if let Some(wh) = doc.section::<Wheelhouse>("wheelhouse")? {
        let dir = doc_path(release_dir.join(RESERVED).join("wheels"))?;
        doc.set("wheelhouse", &Wheelhouse { dir, ..wh })?;
    }
    // The carried document names requirement files relative to the repository (pack keeps
    // the build box's paths out): here they are the release's files.
    if let Some(mut r) = doc.raw("requirements").cloned() {
        let here = |v: &mut serde_json::Value| {
            if let Some(rel) = v.as_str().filter(|p| !p.starts_with('/')) {
                let rel = Path::new(rel);
                if rel.components().all(|c| matches!(c, Component::Normal(_))) {
                    *v = release_dir.join(rel).to_string_lossy().to_string().into();
                }
            }
        };
        if let Some(files) = r.get_mut("files").and_then(|f| f.as_array_mut()) {
            files.iter_mut().for_each(here);
        }
        if let Some(entries) = r.get_mut("entries").and_then(|e| e.as_array_mut()) {
            for e in entries {
                if let Some(f) = e.get_mut("file") {
                    here(f);
                }
            }
        }
        doc.set_raw("requirements", r);
    }
    Ok(doc)
}

/// The document the release in `dir` carries, as it reads on this host, with its `release`
/// section. The release and its reserved directory must be real directories (unpack makes them
/// so), and its wheels when it has any: a link there would make the reader read what it names.
pub fn read(dir: &Path) -> Result<Document> {
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("`{}` does not name a release directory", dir.display()))?;
    let reserved = dir.join(RESERVED);
    let wheels = reserved.join("wheels");
    for (d, needed) in [(dir, true), (&reserved, true), (&wheels, false)] {
        match std::fs::symlink_metadata(d) {
            Ok(m) if m.file_type().is_dir() => {}
            Err(e) if !needed && e.kind() == std::io::ErrorKind::NotFound => {}
            _ => bail!(
                "release `{id}`: `{}` is not a directory of the release (a link, or missing): refusing to read it",
                d.display()
            ),
        }
    }
    let path = reserved.join("document.json");
    let text = crate::fs::fsx::read_capped(&path, 64 << 20, "a release's document")?;
    let text = String::from_utf8(text).map_err(|_| anyhow!("`{}` is not UTF-8", path.display()))?;
    let mut doc = on_host(Document::parse(&text, "document.json")?, dir)?;
    doc.set(
        "release",
        &crate::doc::Release {
            id: id.to_string(),
            dir: doc_path(dir)?,
            name: None,
            rev: None,
            extra: Default::default(),
        },
    )?;
    Ok(doc)
}
