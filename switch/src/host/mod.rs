//! `wheelship-host`: the door of a host, and the controller's side of it.
//!
//! On a host it runs the steps of a deploy, written once: `bundle unpack | mkenv | switch [|
//! prune]` (deploy), the first two (stage), the last (flip), `switch revert`, `switch list`, and
//! `facts` (what the host has, in one line). It takes every option switch takes for a deploy
//! or a revert — switch's own declaration ([`crate::Opts`]), flattened — so that a new switch
//! option needs no change in any caller. It runs only programs that nobody but this user or
//! root could have written, through the handle it checked ([`programs`]).
//!
//! On the controller, `plan` decides what a host needs sent (the binaries by hash, a thin copy
//! or the whole archive, the signature and provenance), and `remote` prints the command line
//! that opens the door on a host safely. `scripts/deploy`, `scripts/rollback` and the Ansible
//! plugin only carry out what these two say.

pub mod package;
mod place;
pub mod plan;
pub mod programs;
pub mod remote;
pub mod settings;
mod ship;
mod steps;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// The host's steps of a deploy, and the controller's plan of what a host needs.
///
/// Every step reads the document on stdin (when there is one) and prints the document of the
/// last tool on stdout; the first step that fails is named and is the last word.
///
/// Exit status: 0 success; 1 a step failed (named on stderr); 2 usage; 3 refused (something
/// others could write would have run); 75 a thin copy this host cannot rebuild (send the
/// archive whole).
#[derive(Debug, Parser)]
#[command(
    name = "wheelship-host",
    version,
    max_term_width = 100,
    args_override_self = true
)]
pub struct HostArgs {
    #[command(subcommand)]
    pub cmd: HostCmd,
}

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// bundle unpack | mkenv | switch [| switch prune]: a release made live
    Deploy(Deploy),
    /// bundle unpack | mkenv: a release ready to flip, `current` untouched
    Stage(Deploy),
    /// switch [| switch prune] of the staged release the document on stdin describes
    Flip(Flip),
    /// switch revert: back to the release live before, by the history, or to --to
    Revert(Revert),
    /// After a system Python upgrade: every kept release's env built again for --python
    /// (the live one first) from the release's own lock and wheels, offline, its venv moved
    /// to it and the history told; the live release then handed over as a deploy would be
    /// (gates, restart, check). A release with no lock for the interpreter stays as it is
    Rebuild(Flip),
    /// switch list: the releases, as a document
    List {
        #[arg(value_name = "ROOT")]
        root: PathBuf,
    },
    /// What this host has, in one line: its architecture, the sha256 of each program in
    /// ROOT/bin, whether release ID is staged, switch list's document and bundle have's
    Facts {
        #[arg(value_name = "ROOT")]
        root: PathBuf,
        #[arg(value_name = "ID")]
        id: Option<String>,
    },
    /// Every entry of a deploy root, by name, as JSON
    Paths {
        #[arg(value_name = "ROOT")]
        root: PathBuf,
    },
    /// On the controller: the command line that opens the door on a host's ROOT, after
    /// checking that nobody but the deploying user or root could have written what runs
    Remote(remote_cli::RemoteArgs),
    /// On the controller: what each host needs sent, from their facts and the release's
    /// document (stdin)
    Plan(plan::PlanArgs),
    /// A release's Debian package on this host: what its maintainer scripts run
    Package(package::PackageArgs),
    /// Checks a command line of the door, running nothing: exit 0, or 2 with the usage error
    /// (the scripts check their options before any work)
    #[command(hide = true)]
    Args {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
}

/// What a deploy or a staging takes.
#[derive(Debug, clap::Args)]
pub struct Deploy {
    /// The deploy root (created when missing)
    #[arg(value_name = "ROOT")]
    pub root: PathBuf,
    /// The archive [default: the one among --uploads]
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,
    #[command(flatten)]
    pub host: HostOpts,
    #[command(flatten)]
    pub switch: crate::Opts,
}

/// What a flip takes.
#[derive(Debug, clap::Args)]
pub struct Flip {
    /// The deploy root
    #[arg(value_name = "ROOT")]
    pub root: PathBuf,
    #[command(flatten)]
    pub host: HostOpts,
    #[command(flatten)]
    pub switch: crate::Opts,
}

/// What a revert takes.
#[derive(Debug, clap::Args)]
pub struct Revert {
    /// The deploy root
    #[arg(value_name = "ROOT")]
    pub root: PathBuf,
    /// The release to go back to [default: the one live before, by the history]
    #[arg(long, value_name = "ID")]
    pub to: Option<String>,
    #[command(flatten)]
    pub switch: crate::Opts,
}

/// The door's own options (the rest are switch's).
#[derive(Debug, Clone, clap::Args)]
pub struct HostOpts {
    /// The env's interpreter
    #[arg(long, default_value = "python3", value_name = "PY")]
    pub python: String,
    /// After a good flip, prune releases beyond the N most recent (switch prune --keep)
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    /// A directory of files the controller sent (programs, the archive or its thin copy,
    /// signature, provenance): put in place first, then removed, whatever happens
    #[arg(long, value_name = "DIR")]
    pub uploads: Option<PathBuf>,
}

mod remote_cli {
    use std::path::PathBuf;

    #[derive(Debug, clap::Args)]
    pub struct RemoteArgs {
        /// The deploy root on the host
        #[arg(value_name = "ROOT")]
        pub root: PathBuf,
        /// A directory on the host that the controller sent files into
        #[arg(long, value_name = "DIR")]
        pub uploads: Option<String>,
        /// The sha256 of the door among --uploads (it runs instead of ROOT/bin's)
        #[arg(long, value_name = "SHA256", requires = "uploads")]
        pub door_sha256: Option<String>,
        /// Make ROOT/incoming/NAME (mode 0700) for the next uploads, first
        #[arg(long, value_name = "NAME")]
        pub make_uploads: Option<String>,
        /// The door's command and arguments, as `wheelship-host` takes them on the host
        #[arg(last = true, required = true, value_name = "ARGS")]
        pub args: Vec<String>,
    }
}

/// The door's main: the settings file expanded, the command line parsed, the command run.
pub fn main() -> std::process::ExitCode {
    let tool = tool_name();
    let argv = match settings::expand(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => return wheelship::cli::finish(tool, Err(e)),
    };
    match wheelship::cli::parse_args_from::<HostArgs, _, _>(tool, argv) {
        Ok(args) => {
            let result = run(args);
            match &result {
                Err(e) if e.downcast_ref::<place::NeedArchive>().is_some() => {
                    eprintln!("{tool}: {e:#}");
                    std::process::ExitCode::from(place::NEED_ARCHIVE)
                }
                _ => wheelship::cli::finish(tool, result),
            }
        }
        Err(code) => code,
    }
}

/// Messages start with the caller's name when it says who it is (`deploy: step 'mkenv'
/// failed on /srv/app`), else the door's.
fn tool_name() -> &'static str {
    match std::env::var("WHEELSHIP_SCRIPT") {
        Ok(s) if wheelship::text::check_file_name(&s).is_ok() && s.len() <= 40 => {
            Box::leak(s.into_boxed_str())
        }
        _ => "wheelship-host",
    }
}

pub fn run(args: HostArgs) -> Result<()> {
    match args.cmd {
        HostCmd::Deploy(d) => steps::deploy(&d, true),
        HostCmd::Stage(d) => steps::deploy(&d, false),
        HostCmd::Flip(f) => steps::flip(&f),
        HostCmd::Revert(r) => steps::revert(&r),
        HostCmd::Rebuild(f) => steps::rebuild(&f),
        HostCmd::List { root } => steps::list(&root),
        HostCmd::Facts { root, id } => steps::facts(&root, id.as_deref()),
        HostCmd::Paths { root } => steps::paths(&root),
        HostCmd::Remote(r) => {
            let o = remote::Opening {
                facts: r.args.first().is_some_and(|a| a == "facts"),
                uploads: r.uploads.as_deref(),
                door_sha256: r.door_sha256.as_deref(),
                make_uploads: r.make_uploads.as_deref(),
            };
            if let Some(n) = &r.make_uploads {
                // A temp name, which the cleaning of `incoming/` finds if a run dies.
                let tmp = wheelship::fs::temp::TMP;
                n.strip_prefix(tmp)
                    .map(wheelship::text::check_file_name)
                    .unwrap_or_else(|| Err(format!("`{n}` does not start with `{tmp}`")))
                    .map_err(|e| anyhow::anyhow!("--make-uploads: {e}"))?;
            }
            if let Some(s) = &r.door_sha256 {
                wheelship::text::check_sha256(s)
                    .map_err(|e| anyhow::anyhow!("--door-sha256: {e}"))?;
            }
            let line = remote::command(&r.root, &o, &r.args)?;
            wheelship::cli::write_stdout(format!("{line}\n").as_bytes())
        }
        HostCmd::Plan(p) => plan::run(&p),
        HostCmd::Package(p) => package::run(&p),
        HostCmd::Args { args } => {
            let argv = std::iter::once("wheelship-host".to_string()).chain(args);
            let argv = settings::expand(argv.map(Into::into))?;
            match HostArgs::try_parse_from(argv) {
                Ok(_) => Ok(()),
                Err(e) => {
                    let text = e.render().to_string();
                    let text = text.strip_prefix("error: ").unwrap_or(&text).trim_end();
                    Err(wheelship::UsageError(text.to_string()).into())
                }
            }
        }
    }
}
