//! The one error path of every tool: `tool: message` on stderr, `hint:` lines where one helps,
//! exit 1 when the work failed and 2 for usage, and a quiet end when stdout is closed.

pub mod progress;

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::OnceLock;

/// The tool this process is (`parse_args` sets it): every message starts with its name.
static TOOL: OnceLock<&'static str> = OnceLock::new();

/// The name messages start with: the tool's, once `parse_args` ran.
pub fn tool() -> &'static str {
    TOOL.get().copied().unwrap_or("wheelship")
}

/// A warning for the person running the tool: `tool: warning: message` on stderr. The one way
/// a tool says something went less well than asked but the work goes on.
pub fn warn(message: impl fmt::Display) {
    eprintln!("{}: warning: {message}", tool());
}

/// An error that carries a `hint:` line for the person reading it.
#[derive(Debug)]
pub struct Hint {
    pub message: String,
    pub hint: String,
}

impl Hint {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Hint {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hint {}

/// A usage error found after argument parsing (conflicting flags, a missing input): exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the command line with clap, rendering usage errors as `tool: ...` with exit 2 and
/// printing `--help`/`--version` on stdout with exit 0.
///
/// Every tool starts here, so this is also where the modes of what they create are set:
/// umask 022, whatever the caller's. Directories are made 0755 and files 0644 (0755 when
/// executable), never writable by other users because a umask of 000 said so.
pub fn parse_args<P: clap::Parser>(tool: &'static str) -> Result<P, ExitCode> {
    parse_args_from(tool, std::env::args_os())
}

/// [`parse_args`] of a command line given (one a tool has rewritten first).
pub fn parse_args_from<P: clap::Parser, I, T>(tool: &'static str, args: I) -> Result<P, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let _ = TOOL.set(tool);
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    match P::try_parse_from(args) {
        Ok(p) => Ok(p),
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    Err(
                        if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                            ExitCode::from(2)
                        } else {
                            ExitCode::SUCCESS
                        },
                    )
                }
                _ => {
                    let text = e.render().to_string();
                    let text = text.strip_prefix("error: ").unwrap_or(&text);
                    eprint!("{tool}: {text}");
                    if !text.ends_with('\n') {
                        eprintln!();
                    }
                    Err(ExitCode::from(2))
                }
            }
        }
    }
}

/// Maps the result of a tool's `run` to its exit status, printing the error chain on stderr.
pub fn finish(tool: &str, result: anyhow::Result<()>) -> ExitCode {
    let err = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(err) => err,
    };
    if err.chain().any(|c| c.is::<StdoutClosed>()) {
        // `tool | head`: the reader has what it wanted.
        return ExitCode::SUCCESS;
    }
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{tool}: {err:#}");
    // The hints after a blank line, so that the eye finds them.
    let hints: Vec<&Hint> = err
        .chain()
        .filter_map(|c| c.downcast_ref::<Hint>())
        .collect();
    if !hints.is_empty() {
        let _ = writeln!(stderr);
    }
    for h in hints {
        let _ = writeln!(stderr, "hint: {}", h.hint);
    }
    if err.chain().any(|c| c.is::<UsageError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// The reader of our stdout went away (`tool | head`): the one broken pipe that ends a tool
/// quietly. A broken pipe anywhere else (a child process that died) is an error like any other.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes `bytes` on stdout and flushes: the only place a tool writes there.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
            _ => anyhow::anyhow!("cannot write the output to stdout: {}", io_reason(&e)),
        })
}

/// An I/O error's text without Rust's ` (os error N)` suffix: `No such file or directory`.
pub fn io_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}
