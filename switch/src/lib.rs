//! `switch`: activate, revert, list and prune releases under a root by atomic symlink flips.
//!
//! ```text
//! ROOT/releases/<id>/         an unpacked release; <id>/venv -> ../../envs/<key>
//! ROOT/envs/<key>/            virtualenvs, shared by releases with equal keys
//! ROOT/shared/                paths that outlive releases, linked into each
//! ROOT/current -> releases/<id>
//! ROOT/history.jsonl          one event a line, rewritten atomically
//! ROOT/.lock                  serialises every change
//! ```

mod service;

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use wheelship::beneath::{Dir, Kind};
use wheelship::doc::{
    self, doc_path, Bundle, Env, Release, Switch, Would, WouldDeploy, WouldRevert,
};
use wheelship::failpoint::point;
use wheelship::fsx;
use wheelship::history::{Event, History};
use wheelship::io::At;
use wheelship::lock::Lock;
use wheelship::trust::{self, Policy, Record};
use wheelship::{Document, Hint, UsageError};

/// Deploy, revert, list and prune releases by atomic symlink flips.
///
/// Without a subcommand, activates a release: the one in the document's `release` section (with
/// the env of its `env` section), or `--release`. It links `releases/<id>/venv` to the env and
/// the shared paths into the release, then renames a new `current` symlink over the old one
/// (never a moment without `current`), fsyncs, and appends the event to `history.jsonl`.
///
/// Exit status: 0 success; 1 the work failed (refused input, failed health check, lock
/// timeout); 2 usage.
#[derive(Debug, Parser)]
#[command(
    name = "switch",
    version,
    max_term_width = 100,
    args_override_self = true
)]
pub struct Args {
    /// The deploy root [default: the grandparent of the document's `release.dir`]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Print the document of what would happen and change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// After the flip (and the restart), run CMD with `sh -c` in the release until it succeeds
    /// or --check-timeout passes; if it never does, flip back, restart again, mark the release
    /// bad and exit 1 with the last run's output on stderr
    #[arg(long, global = true, value_name = "CMD")]
    pub check: Option<String>,

    /// How long --check may take to pass; each run of it is killed at this deadline
    #[arg(long, global = true, default_value_t = 60.0, value_name = "SECS")]
    pub check_timeout: f64,

    /// Seconds between two runs of --check
    #[arg(long, global = true, default_value_t = 1.0, value_name = "SECS")]
    pub check_interval: f64,

    /// After the flip, run CMD with `sh -c` in the release to restart the service (`systemctl
    /// restart app`), so that --check tests the process that serves; after a flip back it runs
    /// again in the previous release. If it fails, that is a failed deploy
    #[arg(long, global = true, value_name = "CMD")]
    pub restart: Option<String>,

    /// Before the flip, run CMD with `sh -c` in the new release with its env first on PATH
    /// (migrations, collectstatic, warm-up); if it fails nothing flips and the release is
    /// marked bad. Not for revert
    #[arg(long, value_name = "CMD")]
    pub before: Option<String>,

    /// Seconds to wait for another switch on the same root before giving up
    #[arg(long, global = true, default_value_t = 60, value_name = "SECS")]
    pub lock_timeout: u64,

    /// Activate this already unpacked release (an id, or a directory in ROOT/releases)
    /// instead of the document's
    #[arg(long, value_name = "DIR_OR_ID")]
    pub release: Option<String>,

    /// The env to link as the release's `venv` [default: the document's `env.path`; else the
    /// link the release already has]
    #[arg(long, value_name = "PATH")]
    pub env: Option<PathBuf>,

    /// A path (relative to the release) that lives in ROOT/shared and is linked into each
    /// release; repeatable, added to those listed in the release's `.wheelship-shared` file.
    /// A trailing `/` makes it a directory (created if missing); a file must already exist in
    /// ROOT/shared
    #[arg(long, value_name = "PATH")]
    pub shared: Vec<String>,

    /// Create ROOT (with releases/, envs/ and shared/) if it does not exist
    #[arg(long)]
    pub init: bool,

    /// Trust this minisign public key (a .pub file, or its base64 line; repeatable), added to
    /// those of ROOT/trusted. Under such a policy a release goes live (deploy or revert) only
    /// if `bundle unpack` recorded a signature of it by one of these keys
    #[arg(long, global = true, value_name = "PUBKEY")]
    pub trust: Vec<String>,

    /// Under a trust policy, deploy a release older (by commit time) than the newest release
    /// ever live on this root (`revert` needs no flag: it is the way back)
    #[arg(long)]
    pub allow_downgrade: bool,

    /// Dangerous: activate a release that does not satisfy the trust policy in force (not
    /// signed by a trusted key, or never verified), with a warning
    #[arg(long, global = true)]
    pub insecure_allow_unverified: bool,

    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Go back to the release that was live before the current one, by the history (a second
    /// revert undoes the first, like `cd -`); `--to ID` for any kept release
    Revert {
        #[arg(long, value_name = "ID")]
        to: Option<String>,
    },
    /// Print the releases: id, current, env, last activation, bad, commit, who signed it. On a
    /// terminal as a table; piped (or with --json), the document
    List {
        /// The document even on a terminal
        #[arg(long)]
        json: bool,
    },
    /// Remove releases beyond the N most recently activated (never current, previous, one
    /// activated after them, or one never activated), then the envs only they used
    Prune {
        #[arg(long, value_name = "N")]
        keep: usize,
        /// Never remove a release unpacked (or reused by an unpack) or an env built or reused
        /// in the last SECS seconds: another deploy may be between its unpack and its switch
        #[arg(long, default_value_t = 900, value_name = "SECS")]
        grace: u64,
    },
}

/// The file in a release that names its shared paths, one a line (`#` comments).
pub const SHARED_FILE: &str = ".wheelship-shared";

const NOTHING_TO_ACTIVATE: &str = "nothing to activate: give --release, or a document with a `release` section (or use revert, list, prune)";

/// wheelship's own directory in a release (what `bundle` writes).
const RESERVED: &str = ".wheelship";

struct Root {
    dir: PathBuf,
    /// The root opened and checked (mode, owner); `None` only for a `--dry-run --init` of a
    /// root that does not exist yet.
    opened: Option<wheelship::root::Root>,
}

impl Root {
    fn releases(&self) -> PathBuf {
        self.dir.join("releases")
    }
    fn current(&self) -> PathBuf {
        self.dir.join("current")
    }
    fn release(&self, id: &str) -> PathBuf {
        self.releases().join(id)
    }
    /// The context of a command run for release `id` in its own directory.
    fn ctx<'a>(&'a self, id: &'a str, previous: Option<&'a str>) -> service::Ctx<'a> {
        service::Ctx {
            root: &self.dir,
            release: id,
            previous,
            dir: self.release(id),
        }
    }

    /// A flip followed by `--restart` is about to happen: a crash before the restart ran leaves
    /// this mark for the next run.
    fn restart_owed(&self, args: &Args) -> Result<()> {
        if args.restart.is_some() {
            fsx::write_atomic(&self.dir.join(RESTART_PENDING), b"a restart is owed\n")?;
        }
        Ok(())
    }

    /// Renames a new `current -> releases/<id>` over the old one: never a moment without it.
    fn point_current(&self, id: &str) -> Result<()> {
        self.handle()?
            .replace_symlink(Path::new("releases").join(id), "current")
    }

    /// The restart owed is done: the marker goes.
    fn restart_done(&self) -> Result<()> {
        match fs::remove_file(self.dir.join(RESTART_PENDING)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).at("remove", self.dir.join(RESTART_PENDING))
            }
            _ => Ok(()),
        }
    }

    fn handle(&self) -> Result<Dir> {
        Dir::open(&self.dir)
    }
    fn releases_dir(&self) -> Result<Dir> {
        self.handle()?.open_dir("releases")
    }

    /// The `switch` section: the root, what is live and what revert would go back to.
    fn section(&self, current: Option<String>, previous: Option<String>) -> Result<Switch> {
        Ok(Switch {
            root: doc_path(&self.dir)?,
            current,
            previous,
            ..Switch::default()
        })
    }

    /// The release the history says was live before `current`.
    fn previous_of(&self, current: Option<&str>) -> Option<String> {
        let hist = History::read(&self.dir).ok()?;
        hist.previous(current?, |r| self.is_release(r))
    }

    /// Whether `releases/<id>` is a release: a directory itself, never a link to one (which
    /// could lead anywhere).
    fn is_release(&self, id: &str) -> bool {
        self.releases_dir()
            .and_then(|d| d.kind(id))
            .is_ok_and(|k| k == Some(Kind::Dir))
    }

    /// Opens `releases/<id>`, refusing anything but a real directory there.
    fn open_release(&self, id: &str) -> Result<Dir> {
        let releases = self.releases_dir()?;
        match releases.kind(id)? {
            Some(Kind::Dir) => releases.open_dir(id),
            None => bail!(
                "release `{id}` not found: `{}` does not exist",
                self.release(id).display()
            ),
            Some(Kind::Symlink) => bail!(
                "release `{id}`: `{}` is a symlink, not a release directory: refusing it",
                self.release(id).display()
            ),
            Some(_) => bail!(
                "release `{id}` not found: `{}` is not a directory",
                self.release(id).display()
            ),
        }
    }

    /// The id `current` points at; refuses a `current` that is not a symlink.
    fn current_id(&self) -> Result<Option<String>> {
        let link = self.current();
        match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("read", &link),
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(Hint::new(
                    format!(
                        "`{}` is not a symlink: refusing to replace it",
                        link.display()
                    ),
                    "move it out of the way; switch manages `current` as a symlink into releases/",
                )
                .into())
            }
            Ok(_) => {}
        }
        let target = fs::read_link(&link).at("read", &link)?;
        let id = target
            .strip_prefix("releases")
            .ok()
            .and_then(|p| p.to_str())
            .filter(|s| check_id(s).is_ok())
            .ok_or_else(|| {
                anyhow!(
                    "`{}` points at `{}`, not at a release in releases/",
                    link.display(),
                    target.display()
                )
            })?;
        Ok(Some(id.to_string()))
    }

    /// Removes what a crash may have left: temp links and files, trash directories.
    fn clean_leftovers(&self) {
        let Ok(root) = self.handle() else { return };
        wheelship::staged::remove_leftovers(&root, &[".trash-", ".current.tmp-", ".tmp-"]);
        // Only what switch itself makes there: `.staging-*` belongs to bundle, and envs/ to
        // mkenv, which cleans it under its own lock.
        if let Ok(d) = root.open_dir("releases") {
            wheelship::staged::remove_leftovers(&d, &[".trash-"]);
        }
    }
}

/// A release id is one safe path component.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id == "."
        || id == ".."
        || id.starts_with('.')
        || id.contains('/')
        || id.contains('\0')
        || id.len() > 255
    {
        bail!("`{id}` is not a valid release id (one path component, no `/` or `..`, not starting with `.`)");
    }
    Ok(())
}

/// An env is complete when it exists under its final name with its `pyvenv.cfg`: mkenv
/// renames an env into place only when it is whole. It is ours: another user's env, or one
/// they could write to, is never linked.
fn check_env(env: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(env).about("env", env)?;
    wheelship::root::check_mode(meta.uid(), meta.mode(), env, "env")?;
    if !env.join("pyvenv.cfg").is_file() {
        bail!(
            "env `{}` is not complete (no `pyvenv.cfg`): refusing to link it",
            env.display()
        );
    }
    Ok(())
}

fn open_root(args: &Args, doc_release: Option<&Release>) -> Result<Root> {
    let dir = match (&args.root, doc_release) {
        (Some(r), _) => r.clone(),
        (None, Some(rel)) => Path::new(&rel.dir)
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("cannot derive the root from `release.dir` `{}`", rel.dir))?,
        (None, None) => {
            return Err(UsageError("--root DIR is required without a document".into()).into())
        }
    };
    let exists = fs::symlink_metadata(&dir).is_ok();
    if !exists && !args.init {
        return Err(Hint::new(
            format!("root `{}` does not exist", dir.display()),
            "create it with `switch --init`, or check --root",
        )
        .into());
    }
    if !exists && args.dry_run {
        return Ok(Root {
            dir: std::path::absolute(&dir)?,
            opened: None,
        });
    }
    let opened = if exists {
        wheelship::root::Root::open(&dir, "root")?
    } else {
        wheelship::root::Root::create(&dir, "root")?
    };
    if !exists {
        for (sub, what) in [
            ("releases", "releases directory"),
            ("envs", "env store"),
            ("shared", "shared directory"),
        ] {
            opened.sub(sub, what, true)?;
        }
    }
    Ok(Root {
        dir: opened.path().to_path_buf(),
        opened: Some(opened),
    })
}

/// Under the trust policy in force on the root (`--trust` and ROOT/trusted), a release goes
/// live only if the record unpack wrote of it satisfies the policy; a deploy (not a revert)
/// also never goes back past the newest release ever live without `--allow-downgrade`.
fn check_trusted(args: &Args, root: &Root, id: &str, deploy: bool) -> Result<()> {
    let Some(opened) = &root.opened else {
        return Ok(());
    };
    let Some(policy) = Policy::load(opened, &args.trust)? else {
        return Ok(());
    };
    let release = root.open_release(id)?;
    let had = release
        .read(Path::new(RESERVED).join("archive.sha256"))
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let verdict = match Record::read(&release) {
        None => Err(
            "it has no record of how it was verified (it was not put there by `bundle unpack`)"
                .to_string(),
        ),
        Some(r) if r.id != id || r.sha256 != had => {
            Err("its record is of another release or archive".to_string())
        }
        Some(r) => r.satisfies(id, &policy).map(|_| ()),
    };
    if let Err(why) = verdict {
        if !args.insecure_allow_unverified {
            return Err(Hint::new(
                format!(
                    "release `{id}` does not satisfy the trust policy of `{}` (trusted: {}): {why}; refusing to activate it",
                    root.dir.display(),
                    policy.ids()
                ),
                "unpack it again from its signed archive (`bundle unpack`, which records the signature), or deploy a signed release",
            )
            .into());
        }
        eprintln!("switch: warning: release `{id}` does not satisfy the trust policy ({why}): activating it anyway (--insecure-allow-unverified)");
    }
    if deploy && root.current_id()?.as_deref() != Some(id) {
        let newest = trust::newest_activated(&root.dir)?;
        trust::check_not_older(
            id,
            newest.as_deref(),
            args.allow_downgrade,
            "--allow-downgrade",
        )?;
    }
    Ok(())
}

fn lock(root: &Root, timeout: u64) -> Result<Lock> {
    let l = Lock::acquire(
        &root.dir.join(".lock"),
        Duration::from_secs(timeout),
        "another switch on this root",
    )?;
    root.clean_leftovers();
    reconcile(root)?;
    Ok(l)
}

/// A crash between the flip and the history leaves `current` ahead of the history: record the
/// flip that happened, so that revert and prune read a true story.
fn reconcile(root: &Root) -> Result<()> {
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?;
    if current.is_some() && hist.live() != current {
        let ev = Event::new(
            "recover",
            hist.live().as_deref(),
            current.as_deref(),
            None,
            None,
        );
        History::append(&root.dir, &ev)?;
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    let doc_release: Option<Release> = doc.section("release")?;
    let section = match &args.command {
        None => {
            // A request that cannot be carried out changes nothing: not even `--init`'s dirs.
            if args.release.is_none() && doc_release.is_none() {
                return Err(UsageError(NOTHING_TO_ACTIVATE.into()).into());
            }
            let root = open_root(&args, doc_release.as_ref())?;
            activate_cmd(&args, &root, &doc, doc_release.as_ref())?
        }
        Some(Cmd::Revert { to }) => {
            let root = open_root(&args, None)?;
            revert(&args, &root, to.as_deref())?
        }
        Some(Cmd::List { json }) => {
            let root = open_root(&args, None)?;
            let section = list(&root)?;
            if !json && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return wheelship::cli::write_stdout(table(&section).as_bytes());
            }
            section
        }
        Some(Cmd::Prune { keep, grace }) => {
            let root = open_root(&args, None)?;
            prune(&args, &root, *keep, *grace)?
        }
    };
    doc.set("switch", &section)?;
    doc.write_stdout()
}

fn activate_cmd(
    args: &Args,
    root: &Root,
    doc: &Document,
    doc_release: Option<&Release>,
) -> Result<Switch> {
    let (id, given_dir) = match (&args.release, doc_release) {
        (Some(r), _) => resolve_release_arg(r)?,
        (None, Some(rel)) => (rel.id.clone(), Some(PathBuf::from(&rel.dir))),
        (None, None) => return Err(UsageError(NOTHING_TO_ACTIVATE.into()).into()),
    };
    check_id(&id)?;
    let dir = root.release(&id);
    if let Some(given) = given_dir {
        let given_real = fs::canonicalize(&given).about("release", &given)?;
        if given_real != dir {
            bail!(
                "release `{}` is not in `{}`: refusing a release outside the root's releases/",
                given.display(),
                root.releases().display()
            );
        }
    }
    let release = root.open_release(&id)?;
    let env = match &args.env {
        Some(e) => Some(e.clone()),
        None => doc.section::<Env>("env")?.map(|e| PathBuf::from(e.path)),
    };
    let env = match env {
        Some(e) => {
            let real = fs::canonicalize(&e).about("env", &e)?;
            check_env(&real)?;
            Some(real)
        }
        None => None,
    };
    let rev = doc.section::<Bundle>("bundle")?.and_then(|b| b.rev);
    let shared = shared_paths(&release, &args.shared)?;
    if args.dry_run {
        check_trusted(args, root, &id, true)?;
        let current = root.current_id()?;
        let previous = root.previous_of(current.as_deref());
        let would = Would::Deploy(WouldDeploy {
            activate: id,
            from: current.clone(),
            env: env.map(doc_path).transpose()?,
            shared,
            before: args.before.clone(),
            restart: args.restart.clone(),
            check: args.check.clone(),
            extra: Default::default(),
        });
        return Ok(Switch {
            dry_run: Some(true),
            would: Some(would),
            ..root.section(current, previous)?
        });
    }
    let _lock = lock(root, args.lock_timeout)?;
    check_trusted(args, root, &id, true)?;
    repair_restart(args, root)?;
    let from = root.current_id()?;
    prepare(root, &id, env.as_deref(), &shared)?;
    if let Some(cmd) = &args.before {
        let ctx = root.ctx(&id, from.as_deref());
        if let service::Ran::Failed { why, .. } = service::run(cmd, &ctx, true, None, false)? {
            History::append(&root.dir, &Event::new("bad", None, Some(&id), None, None))?;
            bail!("`--before` command `{cmd}` failed ({why}): nothing flipped; release `{id}` is marked bad");
        }
    }
    root.restart_owed(args)?;
    flip(root, &id, "deploy", from.as_deref(), rev)?;
    serve(args, root, &id, from.as_deref())?;
    let hist = History::read(&root.dir)?;
    let previous = hist.previous(&id, |r| root.is_release(r));
    root.section(Some(id), previous)
}

fn resolve_release_arg(r: &str) -> Result<(String, Option<PathBuf>)> {
    if r.contains('/') {
        let p = PathBuf::from(r);
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("`{r}` does not name a release directory"))?
            .to_string();
        Ok((name, Some(p)))
    } else {
        check_id(r)?;
        Ok((r.to_string(), None))
    }
}

/// The shared paths of a release: its `.wheelship-shared` file plus `--shared`. Each is a
/// relative path of plain names that does not lie under `venv` (the env, shared with other
/// releases) or wheelship's own `.wheelship`.
fn shared_paths(release: &Dir, extra: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let file = release.show(SHARED_FILE);
    let listed = match release.kind(SHARED_FILE)? {
        None => String::new(),
        Some(Kind::File) => {
            let bytes = release.read(SHARED_FILE)?;
            if bytes.len() > 1 << 20 {
                bail!("`{}` is larger than 1 MiB", file.display());
            }
            String::from_utf8(bytes).map_err(|_| anyhow!("`{}` is not UTF-8", file.display()))?
        }
        Some(_) => bail!("`{}` is not a regular file: refusing it", file.display()),
    };
    let lines = listed
        .lines()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("{}:{}", file.display(), i + 1),
                l.trim().to_string(),
            )
        })
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let flags = extra.iter().map(|s| ("--shared".to_string(), s.clone()));
    for (source, p) in lines.chain(flags) {
        let rel = Path::new(p.trim_end_matches('/'));
        let first = rel.components().next();
        let ok = !p.trim_end_matches('/').is_empty()
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
            && !p.contains("//")
            && !p.starts_with("./");
        if !ok {
            bail!("{source}: shared path `{p}` must be relative, inside the release, without `..`");
        }
        if let Some(reserved) = first
            .map(|c| c.as_os_str())
            .filter(|c| *c == "venv" || *c == RESERVED)
        {
            bail!(
                "{source}: shared path `{p}` lies under `{}`, which belongs to wheelship (the env is shared by releases)",
                reserved.to_string_lossy()
            );
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Links the shared paths of `releases/<id>` (its `.wheelship-shared` plus `extra`) under the
/// root `root`, as an activation does before its flip. For the fuzz targets (tests/fuzz).
#[doc(hidden)]
pub fn link_shared_paths(root: &Path, id: &str, extra: &[String]) -> Result<()> {
    let root = Root {
        dir: root.to_path_buf(),
        opened: None,
    };
    check_id(id)?;
    let release = root.open_release(id)?;
    let shared = shared_paths(&release, extra)?;
    link_shared(&root, &release, &shared)
}

/// What an activation does before the flip, each step durable before the next: the venv
/// link, the shared links.
fn prepare(root: &Root, id: &str, env: Option<&Path>, shared: &[String]) -> Result<()> {
    let dir = root.release(id);
    let release = root.open_release(id)?;
    point("switch-before-venv");
    if let Some(env) = env {
        let target = match env.strip_prefix(&root.dir) {
            Ok(inside) => Path::new("../..").join(inside),
            Err(_) => env.to_path_buf(),
        };
        release.replace_symlink(&target, "venv")?;
    } else if let Ok(target) = release.read_link("venv") {
        // Reverting: the release keeps the env it had; it must still be there.
        check_env(&dir.join(&target)).with_context(|| format!("release `{id}`'s venv"))?;
    }
    point("switch-after-venv");
    link_shared(root, &release, shared)?;
    point("switch-after-shared");
    release.sync()
}

/// The flip of `current`, and its event in the history.
fn flip(
    root: &Root,
    id: &str,
    action: &str,
    from: Option<&str>,
    rev: Option<String>,
) -> Result<()> {
    let dir = root.release(id);
    // The history's new content is written (and synced) before the flip, so a full disk stops
    // the deploy before anything changes; after the flip only a rename remains.
    let prepared = if from != Some(id) {
        let env_key = fs::read_link(dir.join("venv"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().to_string()));
        Some(History::prepare(
            &root.dir,
            &Event::new(action, from, Some(id), rev, env_key),
        )?)
    } else {
        None
    };
    point("switch-before-flip");
    root.point_current(id)?;
    point("switch-after-flip");
    if let Some(p) = prepared {
        p.commit()?;
    }
    fsx::fsync_dir(&root.dir)?;
    point("switch-after-fsync");
    point("switch-after-history");
    Ok(())
}

/// Links each shared path of the release to ROOT/shared. Both sides are reached through
/// handles that pass through no symlink: a release cannot make this touch anything but its own
/// tree and ROOT/shared.
fn link_shared(root: &Root, release: &Dir, shared: &[String]) -> Result<()> {
    if shared.is_empty() {
        return Ok(());
    }
    let store = root.handle()?.create_dir_all("shared")?;
    for p in shared {
        let is_dir = p.ends_with('/');
        let rel = Path::new(p.trim_end_matches('/'));
        if is_dir {
            store.create_dir_all(rel)?;
        } else if store.kind(rel)?.is_none() {
            return Err(Hint::new(
                format!("shared file `{}` does not exist", store.show(rel).display()),
                "create it once on the server (it outlives releases), or list a directory with a trailing `/`",
            )
            .into());
        }
        let mut target = PathBuf::new();
        for _ in 0..rel.components().count() + 1 {
            target.push("..");
        }
        target.push("shared");
        target.push(rel);
        let name = rel.file_name().expect("a shared path has a last component");
        let parent = release.create_dir_all(rel.parent().unwrap_or(Path::new("")))?;
        // What the release shipped at that path gives way to the shared one (a rename cannot
        // replace a directory with a link).
        if parent.kind(name)? == Some(Kind::Dir) {
            parent.remove_all(name)?;
        }
        parent.replace_symlink(&target, name)?;
    }
    Ok(())
}

/// The file that says a restart is owed: written before a flip that will be followed by
/// `--restart`, removed once the restart ran. A crash in between leaves it, and the next run
/// with `--restart` restarts first (`repair_restart`).
const RESTART_PENDING: &str = ".restart-pending";

/// After the flip: the restart, then the check with its deadline. If either fails: flip
/// back, restart again so that the previous release is what serves, mark this one bad, exit 1.
fn serve(args: &Args, root: &Root, id: &str, from: Option<&str>) -> Result<()> {
    let ctx = root.ctx(id, from);
    let mut failed = None;
    if let Some(cmd) = &args.restart {
        point("switch-before-restart");
        if let service::Ran::Failed { why, .. } = service::run(cmd, &ctx, false, None, false)? {
            failed = Some(format!("restart `{cmd}` failed ({why})"));
        }
    }
    if let (None, Some(cmd)) = (&failed, &args.check) {
        let timeout = Duration::from_secs_f64(args.check_timeout.max(0.0));
        let interval = Duration::from_secs_f64(args.check_interval.max(0.0));
        if let service::Ran::Failed { why, output } = service::check(cmd, &ctx, timeout, interval)?
        {
            eprint!("{output}");
            failed = Some(format!(
                "health check `{cmd}` did not pass within {}s ({why})",
                args.check_timeout
            ));
        }
    }
    let Some(failure) = failed else {
        root.restart_done()?;
        return Ok(());
    };
    point("switch-check-failed");
    if from == Some(id) {
        // It was live before this run: there is nothing to go back to, and taking it down
        // would not help.
        bail!("{failure}: `{id}` was already live and stays so; fix the service");
    }
    let back = match from {
        Some(prev) => {
            root.point_current(prev)?;
            format!("rolled back to `{prev}`")
        }
        None => {
            std::fs::remove_file(root.current()).at("remove", root.current())?;
            "removed `current` (there was no release live before)".to_string()
        }
    };
    fsx::fsync_dir(&root.dir)?;
    History::append(
        &root.dir,
        &Event::new("rollback", Some(id), from, None, None),
    )?;
    History::append(&root.dir, &Event::new("bad", None, Some(id), None, None))?;
    let mut again = String::new();
    if let (Some(cmd), Some(prev)) = (&args.restart, from) {
        match service::run(cmd, &root.ctx(prev, Some(id)), false, None, false)? {
            service::Ran::Ok => {
                root.restart_done()?;
                again = format!(", restarted on `{prev}`");
            }
            service::Ran::Failed { why, .. } => {
                again = format!(
                    ", and restarting on `{prev}` failed too ({why}): the service may be down"
                );
            }
        }
    }
    bail!("{failure}: {back}{again}; release `{id}` is marked bad")
}

/// A restart that a crash cut off (the flip happened, the restart did not): with `--restart`,
/// restart the release that is live now before anything else; without, say so.
fn repair_restart(args: &Args, root: &Root) -> Result<()> {
    if !root.dir.join(RESTART_PENDING).exists() {
        return Ok(());
    }
    let Some(current) = root.current_id()? else {
        return root.restart_done();
    };
    let Some(cmd) = &args.restart else {
        eprintln!("switch: warning: a restart after the last flip did not run (a crash?): `{current}` is live but the service may still run the release before it; run your restart, or the next switch with --restart does");
        return Ok(());
    };
    eprintln!("switch: the restart after the last flip did not run (a crash?): restarting on `{current}` first");
    let hist = History::read(&root.dir)?;
    let prev = hist.previous(&current, |r| root.is_release(r));
    match service::run(cmd, &root.ctx(&current, prev.as_deref()), false, None, false)? {
        service::Ran::Ok => root.restart_done(),
        service::Ran::Failed { why, .. } => bail!(
            "the restart owed since a crash failed ({why}): `{current}` is live; fix the service, then run switch again"
        ),
    }
}

fn revert(args: &Args, root: &Root, to: Option<&str>) -> Result<Switch> {
    if let Some(t) = to {
        check_id(t)?;
    }
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?.ok_or_else(|| {
        anyhow!(
            "nothing to revert: `{}` does not exist",
            root.current().display()
        )
    })?;
    let target = match to {
        Some(t) => {
            check_id(t)?;
            root.open_release(t)?;
            t.to_string()
        }
        None => hist
            .previous(&current, |r| root.is_release(r))
            .ok_or_else(|| Hint::new(
                format!("no release to revert to: the history has no good, kept release that was live before `{current}`"),
                "name one with `revert --to ID` (see `switch list`)",
            ))?,
    };
    let shared = shared_paths(&root.open_release(&target)?, &args.shared)?;
    if args.dry_run {
        check_trusted(args, root, &target, false)?;
        let would = Would::Revert(WouldRevert {
            revert: target,
            from: Some(current.clone()),
            restart: args.restart.clone(),
            check: args.check.clone(),
            extra: Default::default(),
        });
        let previous = hist.previous(&current, |r| root.is_release(r));
        return Ok(Switch {
            dry_run: Some(true),
            would: Some(would),
            ..root.section(Some(current), previous)?
        });
    }
    let _lock = lock(root, args.lock_timeout)?;
    check_trusted(args, root, &target, false)?;
    repair_restart(args, root)?;
    let from = root.current_id()?;
    prepare(root, &target, None, &shared)?;
    root.restart_owed(args)?;
    flip(root, &target, "revert", from.as_deref(), None)?;
    serve(args, root, &target, from.as_deref())?;
    root.section(Some(target), from)
}

struct Listed {
    id: String,
    env: Option<PathBuf>,
    last: Option<(usize, String)>,
    bad: bool,
    rev: Option<String>,
    verified_by: Option<String>,
}

/// The releases in `releases/`: real directories only (a link there is not a release).
fn releases(root: &Root, hist: &History) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    if root.handle()?.kind("releases")?.is_none() {
        return Ok(out);
    }
    let dir = root.releases_dir()?;
    for (name, kind) in dir.entries()? {
        let Some(id) = name.to_str().map(str::to_string) else {
            continue;
        };
        if id.starts_with('.') || kind != Kind::Dir || check_id(&id).is_err() {
            continue;
        }
        let env = dir.read_link(Path::new(&id).join("venv")).ok().map(|t| {
            let p = root.release(&id).join(t);
            fs::canonicalize(&p).unwrap_or(p)
        });
        let release = dir.open_dir(&id)?;
        let rev = release
            .read(Path::new(RESERVED).join("release.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|m| m["rev"].as_str().map(str::to_string));
        out.push(Listed {
            last: hist.last_activation(&id),
            bad: hist.is_bad(&id),
            env,
            rev,
            verified_by: Record::read(&release).and_then(|r| r.verified_by),
            id,
        });
    }
    // Most recently activated first, by the history's order; never-activated ones last.
    out.sort_by(|a, b| {
        b.last
            .as_ref()
            .map(|l| l.0)
            .cmp(&a.last.as_ref().map(|l| l.0))
            .then(a.id.cmp(&b.id))
    });
    Ok(out)
}

fn list(root: &Root) -> Result<Switch> {
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?;
    let rels = releases(root, &hist)?;
    let previous = current
        .as_deref()
        .and_then(|c| hist.previous(c, |r| root.is_release(r)));
    let listed = rels
        .iter()
        .map(|r| {
            Ok(doc::Listed {
                id: r.id.clone(),
                current: current.as_deref() == Some(r.id.as_str()),
                env: r.env.clone().map(doc_path).transpose()?,
                last_activated: r.last.as_ref().map(|l| l.1.clone()),
                bad: r.bad,
                rev: r.rev.clone(),
                verified_by: r.verified_by.clone(),
                extra: Default::default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Switch {
        releases: Some(listed),
        ..root.section(current, previous)?
    })
}

/// `switch list` for a person: one release a line, the live one starred.
fn table(s: &Switch) -> String {
    let mut out = format!("releases of {}\n", s.root);
    for r in s.releases.iter().flatten() {
        let mark = if r.current { "*" } else { " " };
        let last = r.last_activated.as_deref().unwrap_or("never live");
        let rev = r.rev.as_deref().map_or("", |r| &r[..r.len().min(12)]);
        let signed = r
            .verified_by
            .as_deref()
            .map_or("unsigned".to_string(), |k| format!("signed by {k}"));
        let bad = if r.bad { "  BAD" } else { "" };
        out.push_str(&format!(
            "{mark} {}  {last}  commit {rev}  {signed}{bad}\n",
            r.id
        ));
    }
    if s.releases.as_ref().is_none_or(Vec::is_empty) {
        out.push_str("  (none)\n");
    }
    out
}

/// Whether `name` in `dir` was made or touched less than `grace` seconds ago (a deploy in
/// flight: an unpack touches `<release>/.wheelship`, mkenv its env).
fn young(dir: &Dir, name: impl AsRef<Path>, grace: u64) -> bool {
    dir.age(name).ok().flatten().is_some_and(|age| age < grace)
}

/// What `prune` removes: releases beyond the newest `keep` activated (never current, previous,
/// anything activated since the older of them, or a deploy in flight), and the envs only they
/// used.
struct Doomed<'a> {
    releases: Vec<&'a Listed>,
    envs: Vec<PathBuf>,
}

fn prune(args: &Args, root: &Root, keep: usize, grace: u64) -> Result<Switch> {
    let _lock = if args.dry_run {
        None
    } else {
        Some(lock(root, args.lock_timeout)?)
    };
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?;
    let previous = current
        .as_deref()
        .and_then(|c| hist.previous(c, |r| root.is_release(r)));
    let rels = releases(root, &hist)?;
    let releases_dir = root.releases_dir()?;
    let envs_dir = root
        .handle()?
        .kind("envs")?
        .map(|_| root.handle()?.open_dir("envs"))
        .transpose()?;
    let protect = [current.as_deref(), previous.as_deref()];
    let doomed = doomed(root, &hist, &rels, protect, keep, grace, envs_dir.as_ref())?;
    let pruned = doc::Pruned {
        releases: doomed.releases.iter().map(|r| r.id.clone()).collect(),
        envs: doomed.envs.iter().map(doc_path).collect::<Result<_>>()?,
        extra: Default::default(),
    };
    let section = Switch {
        pruned: Some(pruned),
        dry_run: Some(args.dry_run),
        ..root.section(current.clone(), previous.clone())?
    };
    if !args.dry_run {
        remove_doomed(args, root, &doomed, &releases_dir, envs_dir.as_ref(), grace)?;
    }
    Ok(section)
}

fn doomed<'a>(
    root: &Root,
    hist: &History,
    rels: &'a [Listed],
    protect: [Option<&str>; 2],
    keep: usize,
    grace: u64,
    envs_dir: Option<&Dir>,
) -> Result<Doomed<'a>> {
    let releases_dir = root.releases_dir()?;
    // Anything activated at or after the oldest of current and previous is kept too.
    let floor = protect
        .iter()
        .flatten()
        .filter_map(|id| hist.last_activation(id).map(|l| l.0))
        .min();
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    let mut activated_seen = 0;
    for r in rels {
        let Some((pos, _)) = &r.last else {
            kept.push(r);
            continue;
        };
        activated_seen += 1;
        let protected = protect.contains(&Some(r.id.as_str()))
            || floor.is_some_and(|f| *pos >= f)
            || activated_seen <= keep
            || young(&releases_dir, Path::new(&r.id).join(RESERVED), grace);
        if protected {
            kept.push(r);
        } else {
            doomed.push(r);
        }
    }
    let kept_envs: Vec<&PathBuf> = kept.iter().filter_map(|r| r.env.as_ref()).collect();
    // Only envs in ROOT/envs, named by one plain component, that no kept release uses and no
    // deploy in flight may be about to link.
    let envs_path = root.dir.join("envs");
    let mut envs: Vec<PathBuf> = doomed
        .iter()
        .filter_map(|r| r.env.clone())
        .filter(|e| !kept_envs.contains(&e) && e.parent() == Some(envs_path.as_path()))
        .filter(|e| {
            let name = e.file_name().expect("an env under envs/ has a name");
            envs_dir.is_some_and(|d| {
                d.kind(name).ok().flatten() == Some(Kind::Dir) && !young(d, name, grace)
            })
        })
        .collect();
    envs.sort();
    envs.dedup();
    Ok(Doomed {
        releases: doomed,
        envs,
    })
}

/// Each release and env goes to a trash name first, then is deleted: a crash leaves a whole
/// release or a trash directory that the next run removes, never a half-deleted release.
fn remove_doomed(
    args: &Args,
    root: &Root,
    doomed: &Doomed,
    releases_dir: &Dir,
    envs_dir: Option<&Dir>,
    grace: u64,
) -> Result<()> {
    for (i, r) in doomed.releases.iter().enumerate() {
        wheelship::staged::trash(releases_dir, &r.id)?;
        if i == 0 {
            point("switch-prune-after-first-trash");
        }
    }
    if !doomed.envs.is_empty() {
        // envs/ is mkenv's store: its lock keeps this from racing a build or a gc there.
        let _envs_lock = Lock::acquire(
            &root.dir.join("envs").join(".lock"),
            Duration::from_secs(args.lock_timeout),
            "mkenv on this root's envs",
        )?;
        let d = envs_dir.expect("doomed envs exist only with envs/");
        for e in &doomed.envs {
            // Reused by a deploy while we waited for the lock: keep it.
            let name = e.file_name().expect("checked above");
            if !young(d, name, grace) {
                wheelship::staged::trash(d, name)?;
            }
        }
    }
    for r in &doomed.releases {
        History::append(
            &root.dir,
            &Event::new("prune", Some(&r.id), None, None, None),
        )?;
    }
    Ok(())
}
