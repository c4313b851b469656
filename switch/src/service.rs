//! The service around a flip: a command before it (in the new release, with its env), the
//! restart after it (and again after a flip back), and a health check retried until a
//! deadline. Each runs with `sh -c` in a release directory, with `WHEELSHIP_ROOT`,
//! `WHEELSHIP_RELEASE` and `WHEELSHIP_PREVIOUS` set, stdin closed and nothing on our stdout
//! (that is the document's).

use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Where and for which release a command runs.
pub struct Ctx<'a> {
    pub root: &'a Path,
    pub release: &'a str,
    pub previous: Option<&'a str>,
    /// The release directory the command runs in.
    pub dir: PathBuf,
}

/// How a command ended.
pub enum Ran {
    Ok,
    Failed {
        why: String,
        output: String,
        /// Killed by a signal (directly, or as the shell reports it: 128 + the signal).
        signaled: bool,
    },
}

/// Runs `cmd` once. With `capture`, its stdout and stderr are kept (in a temp file, so a
/// daemon it leaves behind cannot hold us on a pipe) and returned; without, they go to our
/// stderr as they come. At `deadline` the whole process group is killed.
pub fn run(
    cmd: &str,
    ctx: &Ctx,
    venv: bool,
    deadline: Option<Instant>,
    capture: bool,
) -> Result<Ran> {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .current_dir(&ctx.dir)
        .env("WHEELSHIP_ROOT", ctx.root)
        .env("WHEELSHIP_RELEASE", ctx.release)
        .env("WHEELSHIP_PREVIOUS", ctx.previous.unwrap_or(""))
        .stdin(Stdio::null())
        .process_group(0);
    if venv {
        // As `. venv/bin/activate` would: the release's env first on PATH.
        let env = ctx.dir.join("venv");
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![env.join("bin")];
        paths.extend(std::env::split_paths(&path));
        c.env("VIRTUAL_ENV", &env)
            .env("PATH", std::env::join_paths(paths).context("PATH")?)
            .env_remove("PYTHONHOME");
    }
    let log = if capture {
        let f = tempfile::tempfile().context("cannot make a temp file for the command's output")?;
        c.stdout(f.try_clone()?).stderr(f.try_clone()?);
        Some(f)
    } else {
        // Its output is for people: our stderr, never our stdout.
        let err = std::io::stderr();
        let fd = std::os::fd::AsFd::as_fd(&err).try_clone_to_owned()?;
        c.stdout(Stdio::from(fd));
        None
    };
    let mut child = c.spawn().with_context(|| format!("cannot run `{cmd}`"))?;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_child(&child),
                rustix::process::Signal::KILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = match log {
        Some(mut f) => {
            let mut s = String::new();
            f.rewind()?;
            f.take(1 << 20).read_to_string(&mut s).ok();
            s
        }
        None => String::new(),
    };
    Ok(match status {
        Some(st) if st.success() => Ran::Ok,
        Some(st) => Ran::Failed {
            why: st.to_string(),
            output,
            signaled: {
                use std::os::unix::process::ExitStatusExt;
                st.signal().is_some() || st.code().is_some_and(|c| (129..=192).contains(&c))
            },
        },
        None => Ran::Failed {
            why: KILLED.into(),
            output,
            signaled: false,
        },
    })
}

/// A command of a gate that failed: which, and how.
pub struct GateFailed {
    pub cmd: String,
    pub why: String,
    /// It was killed by a signal (the machine, an operator, the OOM killer): that says nothing
    /// of the release.
    pub signaled: bool,
}

/// Runs each command of `cmds` in order until one fails: `None` when all passed, else the one
/// that failed and how.
pub fn run_each(cmds: &[String], ctx: &Ctx, venv: bool) -> Result<Option<GateFailed>> {
    for cmd in cmds {
        if let Ran::Failed { why, signaled, .. } = run(cmd, ctx, venv, None, false)? {
            return Ok(Some(GateFailed {
                cmd: cmd.clone(),
                why,
                signaled,
            }));
        }
    }
    Ok(None)
}

/// How a check that never passed ended: the command that failed last, why, and its output.
pub struct CheckFailed {
    pub cmd: String,
    pub why: String,
    pub output: String,
}

/// Runs the health checks until all pass in one attempt or `timeout` has passed, `interval`
/// apart; every run is killed at the deadline. While they fail, where it stands is said every
/// few seconds. The last failure is returned with its output.
pub fn check(
    cmds: &[String],
    ctx: &Ctx,
    timeout: Duration,
    interval: Duration,
) -> Result<Option<CheckFailed>> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut said = start;
    // The last run that ended by itself says more than one the deadline cut short.
    let mut last_ended: Option<CheckFailed> = None;
    loop {
        let mut failed = None;
        for cmd in cmds {
            if let Ran::Failed { why, output, .. } = run(cmd, ctx, false, Some(deadline), true)? {
                failed = Some(CheckFailed {
                    cmd: cmd.clone(),
                    why,
                    output,
                });
                break;
            }
        }
        let Some(f) = failed else {
            return Ok(None);
        };
        if f.why == KILLED {
            return Ok(Some(last_ended.unwrap_or(f)));
        }
        if said.elapsed() >= SAY_EVERY {
            said = Instant::now();
            eprintln!(
                "{}: check `{}` has not passed yet ({:.0}s of {}s): {}",
                wheelship::cli::tool(),
                f.cmd,
                start.elapsed().as_secs_f64(),
                timeout.as_secs_f64(),
                f.why
            );
        }
        last_ended = Some(f);
        if Instant::now() + interval >= deadline {
            return Ok(last_ended);
        }
        std::thread::sleep(interval);
    }
}

const KILLED: &str = "killed at the deadline";
/// How often a check that keeps failing says where it stands.
const SAY_EVERY: Duration = Duration::from_secs(5);
