//! What the controller sent, put in place: the programs into `ROOT/bin`, the archive (or the
//! archive rebuilt from its thin copy) with its signature and provenance into
//! `ROOT/incoming`. Each file by its name's kind, under a temp name first, then renamed; the
//! upload directory is removed whatever happens. A name that is none of these is refused.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::fs::owned::OwnedDir;
use wheelship::host::layout::{self, Layout};
use wheelship::Document;

use super::programs::{check_runnable, Programs};

/// The exit status that tells the controller to send the archive whole: this host could not
/// rebuild it from the thin copy.
pub const NEED_ARCHIVE: u8 = 75;

/// The door could not rebuild the archive from a thin copy.
#[derive(Debug)]
pub struct NeedArchive;

impl std::fmt::Display for NeedArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this host cannot rebuild the archive from the thin copy: send it whole")
    }
}

impl std::error::Error for NeedArchive {}

/// What a sent file is, by its name.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sent {
    Program,
    Archive,
    Thin,
    Beside,
}

fn kind_of(name: &str) -> Option<Sent> {
    if layout::SHIPPED.contains(&name) {
        return Some(Sent::Program);
    }
    wheelship::text::check_file_name(name).ok()?;
    if name.ends_with(".tar.zst") {
        Some(Sent::Archive)
    } else if name.ends_with(".tar.zst.thin") {
        Some(Sent::Thin)
    } else if [
        ".tar.zst.minisig",
        ".tar.zst.intoto.json",
        ".tar.zst.intoto.json.minisig",
    ]
    .iter()
    .any(|s| name.ends_with(s))
    {
        Some(Sent::Beside)
    } else {
        None
    }
}

/// Puts the uploads of `dir` in place; the archive they make, if any.
///
/// `dir` is either what `remote --make-uploads` made (`ROOT/incoming/.tmp-NAME`), which is
/// removed afterwards whatever happens, or a private directory of the caller's (owned by the
/// user running the door, mode 0700: Ansible's remote temp directory), which is its to
/// remove. Any other directory (the root, a typo for `/usr/bin`) is refused before it is read,
/// and nothing in it is touched.
pub fn place(at: &Layout, dir: &Path, doc: &Document) -> Result<Option<PathBuf>> {
    let made = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.strip_prefix(wheelship::fs::temp::TMP)
                .is_some_and(|rest| wheelship::text::check_file_name(rest).is_ok())
        })
        .filter(|_| {
            let parent = dir.parent().and_then(|p| p.canonicalize().ok());
            parent.is_some() && parent == at.incoming().canonicalize().ok()
        });
    if made.is_none() {
        use std::os::unix::fs::MetadataExt;
        let private = std::fs::symlink_metadata(dir).is_ok_and(|m| {
            m.is_dir() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o077 == 0
        });
        if !private {
            bail!(
                "--uploads `{}` is not an upload directory of this root (`{}/{}NAME`, made by the door) nor a private one (mode 0700, the caller's): refusing it, and leaving it as it is",
                dir.display(),
                at.incoming().display(),
                wheelship::fs::temp::TMP
            );
        }
    }
    // The door's own directory is opened beneath `incoming/`'s handle, by its name (no link
    // followed, whatever happened to the path since it was checked); a private one by its path,
    // then checked on the handle.
    let up = match made {
        Some(name) => Dir::open(&at.incoming())?.open_dir(name)?,
        None => Dir::open(dir)?,
    };
    check_runnable(&up, dir, "the upload directory")?;
    let result = place_from(at, &up, doc);
    // Ours to remove, whatever happened (the door made it for this run), by its name in
    // `incoming/`.
    if let Some(name) = made {
        if let Err(e) = Dir::open(&at.incoming()).and_then(|i| i.remove_all(name)) {
            wheelship::cli::warn(format_args!("cannot remove `{}`: {e:#}", dir.display()));
        }
    }
    result
}

fn place_from(at: &Layout, up: &Dir, doc: &Document) -> Result<Option<PathBuf>> {
    let mut sent = Vec::new();
    for (name, kind) in up.entries()? {
        let name = name
            .to_str()
            .filter(|_| kind == Kind::File)
            .and_then(|n| kind_of(n).map(|k| (n.to_string(), k)))
            .ok_or_else(|| {
                anyhow!(
                    "`{}`: not a file the controller sends: refusing the uploads",
                    up.show(&name).display()
                )
            })?;
        sent.push(name);
    }
    sent.sort();
    let root = OwnedDir::open(at.root(), "root")?;
    if sent.iter().any(|(_, k)| *k == Sent::Program) {
        let bin = root.sub(layout::BIN, "programs' directory", true)?;
        // The door last: a door that fails to replace the others leaves the old door, which
        // the next plan sees as old and sends again.
        for (name, _) in sent
            .iter()
            .filter(|(n, k)| *k == Sent::Program && n != layout::SHIPPED[0])
        {
            install(up, name, bin.dir(), 0o755)?;
        }
        if sent.iter().any(|(n, _)| n == layout::SHIPPED[0]) {
            install(up, layout::SHIPPED[0], bin.dir(), 0o755)?;
        }
    }
    let files: Vec<&(String, Sent)> = sent.iter().filter(|(_, k)| *k != Sent::Program).collect();
    if files.is_empty() {
        return Ok(None);
    }
    let incoming = root.sub(layout::INCOMING, "incoming directory", true)?;
    for (name, _) in files.iter().filter(|(_, k)| *k == Sent::Beside) {
        install(up, name, incoming.dir(), 0o644)?;
    }
    let archives: Vec<&&(String, Sent)> =
        files.iter().filter(|(_, k)| *k != Sent::Beside).collect();
    match archives.as_slice() {
        [] => Ok(None),
        [(name, Sent::Archive)] => {
            install(up, name, incoming.dir(), 0o644)?;
            Ok(Some(incoming.join(name)))
        }
        [(name, _)] => {
            let programs = Programs::after_uploads(up.path(), &at.bin())?;
            thick(&programs, at, &up.show(name), doc).map(Some)
        }
        _ => bail!("more than one archive among the uploads: one deploy is one release"),
    }
}

/// One sent file copied into `to` under a temp name, then renamed over `name`.
fn install(up: &Dir, name: &str, to: &Dir, mode: u32) -> Result<()> {
    let tmp = wheelship::fs::temp::temp_name(wheelship::fs::temp::TMP);
    let mut src = up.open_file(name)?;
    let mut dst = to.create_file(&tmp, mode)?;
    let copied = io::copy(&mut src, &mut dst)
        .and_then(|_| dst.sync_all())
        .map_err(|e| {
            anyhow!(
                "cannot write `{}`: {}",
                to.show(&tmp).display(),
                wheelship::cli::io_reason(&e)
            )
        });
    if let Err(e) = copied.and_then(|()| to.rename(&tmp, to, name)) {
        let _ = to.remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// `bundle thick`: the archive rebuilt from the thin copy and this host's wheels, into
/// `incoming/<id>.tar.zst`; a host that cannot is told apart (exit [`NEED_ARCHIVE`]).
fn thick(programs: &Programs, at: &Layout, thin: &Path, doc: &Document) -> Result<PathBuf> {
    let id = doc
        .section::<wheelship::doc::Bundle>("bundle")?
        .map(|b| b.id)
        .ok_or_else(|| anyhow!("a thin copy needs the release's document on stdin"))?;
    wheelship::text::check_file_name(&id).map_err(|e| anyhow!("bundle.id: {e}"))?;
    let (releases, incoming) = (at.releases(), at.incoming());
    let args = [
        std::ffi::OsStr::new("thick"),
        "--releases".as_ref(),
        releases.as_os_str(),
        "--out".as_ref(),
        incoming.as_os_str(),
        thin.as_os_str(),
    ];
    super::steps::tool(programs, "bundle thick", &args, doc, at.root())
        .map_err(|e| e.context(NeedArchive))?;
    Ok(at.incoming_archive(&id))
}
