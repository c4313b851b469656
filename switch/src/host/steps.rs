//! The host's steps, each reading the document the previous one wrote: `bundle unpack` and
//! `mkenv` as the checked programs beside the door, switch in this process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use wheelship::fs::owned::OwnedDir;
use wheelship::host::layout::{self, Layout};
use wheelship::Document;

use super::programs::Programs;
use super::{Deploy, Flip, Revert};

/// Runs step `step` (`bundle unpack`: the program, then its first argument) of `programs` on
/// `doc` with `args`: its document, or the step named as the one that failed (the tool has
/// said why).
pub(super) fn tool(
    programs: &Programs,
    step: &str,
    args: &[&std::ffi::OsStr],
    doc: &Document,
    root: &Path,
) -> Result<Document> {
    let name = step.split(' ').next().unwrap_or(step);
    let program = programs.open_program(name)?;
    let mut c = program.command();
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot run `{}`", program.path().display()))?;
    let input = doc.to_json();
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot run `{}`", program.path().display()))?;
    // A tool that fails early may not read its input: its own message says why.
    let _ = writer.join();
    if !out.status.success() {
        bail!("step '{step}' failed on {} (see above)", root.display());
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| anyhow!("step '{step}' printed a document that is not UTF-8"))?;
    Document::parse(&text, step)
}

/// The root, created when missing, opened and checked as every tool opens a root.
fn open_root(root: &Path, create: bool) -> Result<OwnedDir> {
    if create {
        OwnedDir::create(root, "root")
    } else {
        OwnedDir::open(root, "root")
    }
}

fn switch_args(root: &Path, opts: &crate::Opts, command: Option<crate::Cmd>) -> crate::Args {
    crate::Args {
        root: Some(root.to_path_buf()),
        release: None,
        env: None,
        init: true,
        opts: opts.clone(),
        command,
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// `bundle unpack | mkenv [| switch [| switch prune]]` on the document on stdin.
pub fn deploy(d: &Deploy, live: bool) -> Result<()> {
    deploy_doc(d, live, Document::from_stdin()?)?.write_stdout()
}

/// [`deploy`] of `doc`: the last step's document.
pub fn deploy_doc(d: &Deploy, live: bool, mut doc: Document) -> Result<Document> {
    let root = open_root(&d.root, true)?;
    let at = Layout::new(root.path());
    write_handover(&root)?;
    let (programs, placed) = match &d.host.uploads {
        Some(u) => {
            let programs = Programs::after_uploads(u, &at.bin());
            let placed = super::place::place(&at, u, &doc)?;
            (programs.or_else(|_| Programs::open(&at.bin()))?, placed)
        }
        None => (Programs::find()?, None),
    };
    let archive: PathBuf = match (&d.archive, placed, waiting(&at, &doc)?) {
        (Some(a), _, _) => a.clone(),
        (None, Some(p), _) => p,
        (None, None, Some(w)) => w,
        (None, None, None) => {
            return Err(wheelship::UsageError(
                "no archive: give ARCHIVE, or --uploads with the archive or its thin copy, or the document of a release whose archive is in ROOT/incoming".into(),
            )
            .into())
        }
    };
    let releases = at.releases();
    let mut unpack: Vec<&std::ffi::OsStr> =
        vec![os("unpack"), os("--releases"), releases.as_os_str()];
    for k in &d.switch.trust {
        unpack.extend([os("--trust"), os(k)]);
    }
    if d.switch.allow_downgrade {
        unpack.push(os("--allow-downgrade"));
    }
    unpack.push(archive.as_os_str());
    doc = tool(&programs, "bundle unpack", &unpack, &doc, root.path())?;
    let envs = at.envs();
    let mkenv = [
        os("--envs"),
        envs.as_os_str(),
        os("--python"),
        os(&d.host.python),
    ];
    doc = tool(&programs, "mkenv", &mkenv, &doc, root.path())?;
    if live {
        doc = flip_and_prune(root.path(), &d.switch, d.host.keep, doc)?;
    }
    Ok(doc)
}

/// The handover the door carries, in `ROOT/bin` (written when it differs): what a service's
/// `--restart` and `--check` run for a gapless handover.
const HANDOVER: [(&str, &str, u32); 2] = [
    (
        layout::HANDOVER[0],
        include_str!("../../host/handover"),
        0o755,
    ),
    (
        layout::HANDOVER[1],
        include_str!("../../host/handover.conf.py"),
        0o644,
    ),
];

fn write_handover(root: &OwnedDir) -> Result<()> {
    let bin = root.sub(layout::BIN, "programs' directory", true)?;
    for (name, text, mode) in HANDOVER {
        if bin.dir().read(name).ok().as_deref() == Some(text.as_bytes()) {
            continue;
        }
        let tmp = wheelship::fs::temp::temp_name(wheelship::fs::temp::TMP);
        let mut f = bin.dir().create_file(&tmp, mode)?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| {
                anyhow!(
                    "cannot write `{}`: {}",
                    bin.join(&tmp).display(),
                    wheelship::cli::io_reason(&e)
                )
            })?;
        bin.dir().rename(&tmp, bin.dir(), name)?;
    }
    Ok(())
}

/// The archive of the document's release when it already waits in `incoming/` (sent by an
/// earlier deploy).
fn waiting(at: &Layout, doc: &Document) -> Result<Option<PathBuf>> {
    let Some(b) = doc.section::<wheelship::doc::Bundle>("bundle")? else {
        return Ok(None);
    };
    wheelship::text::check_file_name(&b.id).map_err(|e| anyhow!("bundle.id: {e}"))?;
    let p = at.incoming_archive(&b.id);
    Ok(p.is_file().then_some(p))
}

/// switch [| switch prune --keep N] on `doc`.
fn flip_and_prune(
    root: &Path,
    opts: &crate::Opts,
    keep: Option<usize>,
    doc: Document,
) -> Result<Document> {
    let doc = crate::run_on(doc, &switch_args(root, opts, None))
        .with_context(|| format!("step 'switch' failed on {}", root.display()))?;
    if let (Some(keep), false) = (keep, opts.dry_run) {
        let prune = crate::Cmd::Prune { keep, grace: 900 };
        crate::run_on(Document::default(), &switch_args(root, opts, Some(prune)))
            .with_context(|| format!("step 'switch prune' failed on {}", root.display()))?;
    }
    Ok(doc)
}

/// switch [| switch prune] of a staged release.
pub fn flip(f: &Flip) -> Result<()> {
    let doc = Document::from_stdin()?;
    let root = open_root(&f.root, false)?;
    flip_and_prune(root.path(), &f.switch, f.host.keep, doc)?.write_stdout()
}

pub fn revert(r: &Revert) -> Result<()> {
    let root = open_root(&r.root, false)?;
    let cmd = crate::Cmd::Revert { to: r.to.clone() };
    crate::run_on(
        Document::default(),
        &switch_args(root.path(), &r.switch, Some(cmd)),
    )
    .with_context(|| format!("step 'switch revert' failed on {}", root.path().display()))?
    .write_stdout()
}

fn list_doc(root: &Path) -> Result<Document> {
    let args = crate::Args {
        init: false,
        ..switch_args(
            root,
            &crate::Opts::default(),
            Some(crate::Cmd::List { json: true }),
        )
    };
    crate::run_on(Document::default(), &args)
}

pub fn list(root: &Path) -> Result<()> {
    list_doc(root)?.write_stdout()
}

/// The sha256 of each program in `ROOT/bin` (none when it has no door).
fn programs_here(at: &Layout) -> Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    let Ok(bin) = wheelship::fs::beneath::Dir::open(&at.bin()) else {
        return Ok(out);
    };
    for name in layout::SHIPPED.iter().chain(layout::HANDOVER) {
        if let Ok(f) = bin.open_file(name) {
            let (sha, _) = wheelship::hash::sha256_reader(f)
                .with_context(|| format!("cannot read `{}`", bin.show(name).display()))?;
            out.insert(name.to_string(), sha.into());
        }
    }
    Ok(out)
}

/// What this host has, in one line.
pub fn facts(root: &Path, id: Option<&str>) -> Result<()> {
    if let Some(id) = id {
        wheelship::text::check_file_name(id).map_err(|e| anyhow!("release id: {e}"))?;
    }
    let arch = rustix::system::uname()
        .machine()
        .to_string_lossy()
        .to_string();
    let exists = std::fs::symlink_metadata(root).is_ok();
    let mut out = json!({"arch": arch, "fresh": !exists});
    if exists {
        let root = open_root(root, false)?;
        let at = Layout::new(root.path());
        out["bin"] = programs_here(&at)?.into();
        out["staged"] = id.is_some_and(|id| at.release(id).is_dir()).into();
        out["archived"] = id
            .is_some_and(|id| at.incoming_archive(id).is_file())
            .into();
        out["list"] = list_doc(root.path())?.into_value();
        if at.releases().is_dir() {
            let programs = Programs::find()?;
            let releases = at.releases();
            let have = [os("have"), os("--releases"), releases.as_os_str()];
            let doc = tool(
                &programs,
                "bundle",
                &have,
                &Document::default(),
                root.path(),
            )?;
            out["have"] = doc.into_value();
        }
    }
    wheelship::cli::write_stdout(format!("{out}\n").as_bytes())
}

pub fn paths(root: &Path) -> Result<()> {
    let root = std::path::absolute(root).with_context(|| format!("`{}`", root.display()))?;
    let out = Layout::new(root).json();
    wheelship::cli::write_stdout(format!("{out}\n").as_bytes())
}

/// The kept releases as `switch list` sees them (its ids checked, real directories only), the
/// live one first, then by their last activation, and the live one's id.
fn kept_releases(root: &Path) -> Result<(Option<String>, Vec<String>)> {
    let listed = list_doc(root)?
        .section::<wheelship::doc::Switch>("switch")?
        .unwrap_or_default();
    let mut ids: Vec<String> = listed
        .releases
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.id)
        .collect();
    if let Some(c) = &listed.current {
        ids.retain(|i| i != c);
        ids.insert(0, c.clone());
    }
    Ok((listed.current, ids))
}

/// The document release `id` carries, as it reads on this host ([`wheelship::host::carried`]).
fn carried(at: &Layout, id: &str) -> Result<Document> {
    wheelship::text::check_file_name(id).map_err(|e| anyhow!("release id: {e}"))?;
    wheelship::host::carried::read(&at.release(id))
}

/// `wheelship-host rebuild ROOT`: for every kept release (the live one first), an env for
/// `--python` from the release's own lock for that interpreter and its own wheels, no index;
/// its `venv` moved to it under the root's lock, and the change in the history. The live
/// release is then handed over as a deploy would be (its gates, restart and check). A release
/// with no lock for the interpreter is named and left as it is.
pub fn rebuild(f: &Flip) -> Result<()> {
    rebuild_doc(f)?.write_stdout()
}

/// [`rebuild`]'s document: what became of each kept release.
pub fn rebuild_doc(f: &Flip) -> Result<Document> {
    let root = open_root(&f.root, false)?;
    let at = Layout::new(root.path());
    write_handover(&root)?;
    let programs = Programs::find()?;
    let (current, ids) = kept_releases(root.path())?;
    let envs = at.envs();
    let mkenv = [
        os("--envs"),
        envs.as_os_str(),
        os("--python"),
        os(&f.host.python),
    ];
    let mut done = Vec::new();
    let mut live_failed = None;
    for id in ids {
        let live = current.as_deref() == Some(id.as_str());
        let built =
            carried(&at, &id).and_then(|doc| tool(&programs, "mkenv", &mkenv, &doc, root.path()));
        let doc = match built {
            Ok(d) => d,
            Err(e) => {
                eprintln!(
                    "{}: release `{id}` stays on its env: no env for `{}` could be built from it ({e:#})",
                    wheelship::cli::tool(),
                    f.host.python
                );
                done.push(json!({"id": id, "live": live, "runs_here": false}));
                if live {
                    live_failed = Some(id);
                }
                continue;
            }
        };
        let env = PathBuf::from(
            doc.section::<wheelship::doc::Env>("env")?
                .ok_or_else(|| anyhow!("mkenv wrote no `env` section"))?
                .path,
        );
        let linked = std::fs::canonicalize(at.release(&id).join("venv")).ok();
        let rebuilt = linked.as_deref() != Some(env.as_path());
        if rebuilt && live {
            flip_and_prune(root.path(), &f.switch, f.host.keep, doc)?;
            crate::record_rebuild(root.path(), &id, &env)?;
        } else if rebuilt {
            // A release pruned meanwhile (or otherwise not linkable) is named; the others
            // go on.
            if let Err(e) = crate::relink(root.path(), &id, &env) {
                eprintln!(
                    "{}: release `{id}` stays as it is: {e:#}",
                    wheelship::cli::tool()
                );
                done.push(json!({"id": id, "live": false, "runs_here": false}));
                continue;
            }
        }
        done.push(
            json!({"id": id, "live": live, "runs_here": true, "rebuilt": rebuilt, "env": env}),
        );
    }
    let mut out = Document::default();
    out.set_raw(
        "rebuild",
        json!({"root": root.path(), "python": f.host.python, "releases": done}),
    );
    match live_failed {
        Some(id) => Err(wheelship::Hint::new(
            format!("no env for `{}` could be built for the live release `{id}` (said above): the service stays on its env", f.host.python),
            "deploy a release locked for this interpreter too (`scripts/release --target native --target py<X.Y>`), or rebuild with --python naming the interpreter it was locked for",
        )
        .into()),
        None => Ok(out),
    }
}
