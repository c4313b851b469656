//! The document a release carries (`RELEASE/.wheelship/document.json`, written by `bundle
//! pack` with no path of the build box in it) as it reads on this host: its wheels are the
//! release's own (`RELEASE/.wheelship/wheels`) and its requirement files the release's files.
//! `bundle unpack` gives it to mkenv after extracting; `wheelship-host rebuild` reads it again
//! to build a kept release's env for another interpreter.

use std::path::{Component, Path};

use anyhow::Result;

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
