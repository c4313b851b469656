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

mod activate;
pub mod host;
mod list;
mod prune;
mod root;
mod service;
mod shared;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use wheelship::doc::Release;
use wheelship::{Document, UsageError};

pub use activate::{record_rebuild, relink};
pub use shared::link_shared_paths;

/// Deploy, revert, list and prune releases by atomic symlink flips.
///
/// Without a subcommand, activates a release: the one in the document's `release` section (with
/// the env of its `env` section), or `--release`. It links `releases/<id>/venv` to the env and
/// the shared paths into the release, then renames a new `current` symlink over the old one
/// (never a moment without `current`), fsyncs, and appends the event to `history.jsonl`.
///
/// The gates compose: `--before`, `--restart` and `--check` may each be given several times,
/// and every one runs, in the order given.
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

    /// Activate this already unpacked release (an id, or a directory in ROOT/releases)
    /// instead of the document's
    #[arg(long, value_name = "DIR_OR_ID")]
    pub release: Option<String>,

    /// The env to link as the release's `venv` [default: the document's `env.path`; else the
    /// link the release already has]
    #[arg(long, value_name = "PATH")]
    pub env: Option<PathBuf>,

    /// Create ROOT (with releases/, envs/ and shared/) if it does not exist
    #[arg(long)]
    pub init: bool,

    #[command(flatten)]
    pub opts: Opts,

    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Everything a deploy or a revert takes besides the release and the root: the service around
/// the flip, the trust policy, the shared paths, the lock. Declared once, here: `switch` and
/// the host door (`wheelship-host`) both flatten it, so whatever switch accepts, every caller
/// of the door can pass.
#[derive(Debug, Clone, clap::Args)]
pub struct Opts {
    /// Print the document of what would happen and change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// Before the flip, run CMD with `sh -c` in the new release with its env first on PATH
    /// (migrations, collectstatic, warm-up); repeatable, each in order; if one fails nothing
    /// flips and the release is marked bad. Not for revert
    #[arg(long, global = true, value_name = "CMD")]
    pub before: Vec<String>,

    /// After the flip, run CMD with `sh -c` in the release to restart the service (`systemctl
    /// restart app`), so that --check tests the process that serves; repeatable, each in
    /// order; after a flip back they run again in the previous release. If one fails, that is
    /// a failed deploy
    #[arg(long, global = true, value_name = "CMD")]
    pub restart: Vec<String>,

    /// After the flip (and the restart), run CMD with `sh -c` in the release until it succeeds
    /// or --check-timeout passes; repeatable: each attempt runs every check in order, and passes
    /// when all pass. If they never do, flip back, restart again, check the previous release,
    /// mark the new one bad and exit 1 with the last run's output on stderr. Without --restart
    /// it tests the process already serving (a warning says so)
    #[arg(long, global = true, value_name = "CMD")]
    pub check: Vec<String>,

    /// How long --check may take to pass; each run of it is killed at this deadline
    #[arg(long, global = true, default_value_t = 60.0, value_name = "SECS", value_parser = seconds)]
    pub check_timeout: f64,

    /// After a failed check has flipped back, how long the previous release's check may take
    /// to pass (it served a moment ago: it needs less than a new release); never longer than
    /// --check-timeout
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECS", value_parser = seconds)]
    pub check_back_timeout: f64,

    /// Seconds between two runs of --check
    #[arg(long, global = true, default_value_t = 1.0, value_name = "SECS", value_parser = seconds)]
    pub check_interval: f64,

    /// Seconds to wait for another switch on the same root before giving up
    #[arg(long, global = true, default_value_t = 60, value_name = "SECS")]
    pub lock_timeout: u64,

    /// A path (relative to the release) that lives in ROOT/shared and is linked into each
    /// release; repeatable, added to those listed in the release's `.wheelship-shared` file.
    /// A trailing `/` makes it a directory (created if missing); a file must already exist in
    /// ROOT/shared
    #[arg(long, global = true, value_name = "PATH")]
    pub shared: Vec<String>,

    /// Trust this minisign public key (a .pub file, or its base64 line; repeatable), added to
    /// those of ROOT/trusted. Under such a policy a release goes live (deploy or revert) only
    /// if `bundle unpack` recorded a signature of it by one of these keys
    #[arg(long, global = true, value_name = "PUBKEY")]
    pub trust: Vec<String>,

    /// Under a trust policy, deploy a release older (by commit time) than the newest release
    /// ever live on this root (`revert` needs no flag: it is the way back)
    #[arg(long, global = true)]
    pub allow_downgrade: bool,

    /// Activate a release marked bad (its check or --before failed before): said on stderr;
    /// a success clears the mark
    #[arg(long, global = true)]
    pub allow_bad: bool,

    /// Dangerous: activate a release that does not satisfy the trust policy in force (not
    /// signed by a trusted key, or never verified), with a warning
    #[arg(long, global = true)]
    pub insecure_allow_unverified: bool,
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
    /// activated after them, or one never activated), then the envs only they used and the
    /// archives of theirs that deploys left in ROOT/incoming
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
const RESERVED: &str = wheelship::host::carried::RESERVED;

/// The service around a flip, from the command line: what runs before it, the restart after
/// it, and the check with its timing.
pub(crate) struct Service {
    pub before: Vec<String>,
    pub restart: Vec<String>,
    pub check: Vec<String>,
    pub check_timeout: Duration,
    /// The deadline of the check of the previous release after a flip back.
    pub check_back_timeout: Duration,
    pub check_interval: Duration,
}

/// The trust policy's part of the command line: the keys given, and the two overrides.
pub(crate) struct Trust {
    pub keys: Vec<String>,
    pub allow_downgrade: bool,
    pub insecure: bool,
}

/// What an activation (a deploy or a revert) is asked to do.
pub(crate) struct Activate {
    pub release: Option<String>,
    pub allow_bad: bool,
    pub env: Option<PathBuf>,
    pub shared: Vec<String>,
    pub dry_run: bool,
    pub lock_timeout: Duration,
    pub service: Service,
    pub trust: Trust,
}

impl Default for Opts {
    /// The options as switch takes them when none is given.
    fn default() -> Opts {
        Args::parse_from(["switch"]).opts
    }
}

impl Opts {
    /// What an activation is asked to do: these options with the release and env named.
    pub(crate) fn activation(&self, release: Option<String>, env: Option<PathBuf>) -> Activate {
        Activate {
            release,
            allow_bad: self.allow_bad,
            env,
            shared: self.shared.clone(),
            dry_run: self.dry_run,
            lock_timeout: Duration::from_secs(self.lock_timeout),
            service: Service {
                before: self.before.clone(),
                restart: self.restart.clone(),
                check: self.check.clone(),
                check_timeout: Duration::from_secs_f64(self.check_timeout.max(0.0)),
                check_back_timeout: Duration::from_secs_f64(
                    self.check_back_timeout.min(self.check_timeout).max(0.0),
                ),
                check_interval: Duration::from_secs_f64(self.check_interval.max(0.0)),
            },
            trust: Trust {
                keys: self.trust.clone(),
                allow_downgrade: self.allow_downgrade,
                insecure: self.insecure_allow_unverified,
            },
        }
    }
}

impl Args {
    fn opening(&self) -> root::Opening<'_> {
        root::Opening {
            root: self.root.as_deref(),
            init: self.init,
            dry_run: self.opts.dry_run,
        }
    }
}

/// Seconds on the command line: a finite number, 0 or more (exit 2 otherwise).
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1e9).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (like 30 or 0.5)")),
    }
}

pub fn run(args: Args) -> Result<()> {
    gates_on_one_side(std::env::args().skip(1))?;
    let doc = Document::from_stdin()?;
    if let (Some(Cmd::List { json: false }), true) = (
        &args.command,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
    ) {
        let root = root::open_root(&args.opening(), None)?;
        return wheelship::cli::write_stdout(list::table(&list::list(&root)?).as_bytes());
    }
    run_on(doc, &args)?.write_stdout()
}

/// The gates given on both sides of a subcommand (`switch --check A revert --check B`): clap
/// keeps one side's, so such a command line is refused rather than a gate silently dropped.
fn gates_on_one_side(args: impl Iterator<Item = String>) -> Result<()> {
    const GATES: [&str; 3] = ["--before", "--restart", "--check"];
    let args: Vec<String> = args.collect();
    let Some(sub) = args
        .iter()
        .position(|a| ["revert", "list", "prune"].contains(&a.as_str()))
    else {
        return Ok(());
    };
    let named = |a: &String, g: &str| a == g || a.starts_with(&format!("{g}="));
    for g in GATES {
        if args[..sub].iter().any(|a| named(a, g)) && args[sub..].iter().any(|a| named(a, g)) {
            return Err(UsageError(format!(
                "{g} is given both before and after `{}`: give every {g} after it",
                args[sub]
            ))
            .into());
        }
    }
    Ok(())
}

/// [`run`] on a document already read: the document with the `switch` section set (the host
/// door calls this after `bundle unpack` and `mkenv`).
pub fn run_on(mut doc: Document, args: &Args) -> Result<Document> {
    let o = &args.opts;
    let activates = !matches!(args.command, Some(Cmd::List { .. } | Cmd::Prune { .. }));
    if activates && !o.check.is_empty() && o.restart.is_empty() && !o.dry_run {
        wheelship::cli::warn("--check without --restart tests the process already serving, which a flip does not change: give --restart (or a handover) so that the check sees the new release");
    }
    if matches!(args.command, Some(Cmd::Revert { .. })) && !o.before.is_empty() {
        return Err(UsageError("--before runs before a deploy's flip: a revert goes back to a release that served already".into()).into());
    }
    let doc_release: Option<Release> = doc.section("release")?;
    let a = o.activation(args.release.clone(), args.env.clone());
    let section = match &args.command {
        None => {
            // A request that cannot be carried out changes nothing: not even `--init`'s dirs.
            if args.release.is_none() && doc_release.is_none() {
                return Err(UsageError(NOTHING_TO_ACTIVATE.into()).into());
            }
            let root = root::open_root(&args.opening(), doc_release.as_ref())?;
            activate::deploy(&a, &root, &doc, doc_release.as_ref())?
        }
        Some(Cmd::Revert { to }) => {
            let root = root::open_root(&args.opening(), None)?;
            activate::revert(&a, &root, to.as_deref())?
        }
        Some(Cmd::List { .. }) => {
            let root = root::open_root(&args.opening(), None)?;
            list::list(&root)?
        }
        Some(Cmd::Prune { keep, grace }) => {
            let root = root::open_root(&args.opening(), None)?;
            let job = prune::Prune {
                keep: *keep,
                grace: *grace,
                dry_run: o.dry_run,
                lock_timeout: a.lock_timeout,
            };
            prune::prune(&job, &root)?
        }
    };
    doc.set("switch", &section)?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_given_twice_are_both_kept() {
        let a = Args::try_parse_from(["switch", "--before", "a", "--check", "c1", "--before", "b"])
            .unwrap();
        assert_eq!(a.opts.before, ["a", "b"]);
        let a =
            Args::try_parse_from(["switch", "revert", "--check", "c1", "--check", "c2"]).unwrap();
        assert_eq!(a.opts.check, ["c1", "c2"]);
    }
}
