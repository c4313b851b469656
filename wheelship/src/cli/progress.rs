//! Progress for people, on stderr (stdout, the document's, never gets any): bars and spinners
//! on a terminal; off a terminal (a CI log, a pipe), a plain line every few seconds while a
//! long step runs, saying what it does and how much is done, and nothing for a step that ends
//! within its first seconds.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn at all: for a person at a terminal. dpkg runs maintainer scripts
/// on a pty whose output goes to apt's logs (`DPKG_MAINTSCRIPT_NAME` is set there), and a
/// `TERM=dumb` terminal cannot redraw a line: both get the plain lines.
pub fn shown() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("DPKG_MAINTSCRIPT_NAME").is_none()
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

fn target() -> ProgressDrawTarget {
    if shown() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// Off a terminal, the first line comes after this long, the next ones this far apart
/// (`WHEELSHIP_PROGRESS_SECS` sets both, for tests of slow steps made quick).
fn pace() -> (Duration, Duration) {
    match std::env::var("WHEELSHIP_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        Some(s) if s >= 0.0 => (Duration::from_secs_f64(s), Duration::from_secs_f64(s)),
        _ => (Duration::from_secs(2), Duration::from_secs(5)),
    }
}

/// Off a terminal: a line on stderr every few seconds until `p` is finished,
/// `tool: what: 12/40 message (7s)`.
fn lines_off_terminal(p: &ProgressBar, tool: &str, what: &str) {
    if shown() || std::env::var_os("WHEELSHIP_NO_PROGRESS").is_some() {
        return;
    }
    // Weak: a bar dropped without being finished (an error) ends its lines too.
    let (weak, head) = (p.downgrade(), format!("{tool}: {what}"));
    let (first, every) = pace();
    std::thread::spawn(move || {
        let mut next = first;
        loop {
            std::thread::sleep(Duration::from_millis(200).min(every.max(Duration::from_millis(5))));
            let Some(p) = weak.upgrade().filter(|p| !p.is_finished()) else {
                break;
            };
            let elapsed = p.elapsed();
            if elapsed < next || p.is_finished() {
                continue;
            }
            next = elapsed + every;
            let done = match p.length() {
                Some(len) => format!(": {}/{len}", p.position()),
                None => String::new(),
            };
            let msg = p.message();
            let msg = if msg.is_empty() {
                String::new()
            } else {
                format!(" {msg}")
            };
            eprintln!("{head}{done}{msg} ({}s)", elapsed.as_secs());
        }
    });
}

/// A bar of `len` steps: `tool: what [=====>   ] 12/40 message`.
pub fn bar(tool: &str, what: &str, len: u64) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{tool}: {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{elapsed}})"
    ))
    .expect("a valid template")
    .progress_chars("=> ");
    let p = ProgressBar::with_draw_target(Some(len), target()).with_style(style);
    lines_off_terminal(&p, tool, what);
    p
}

/// A spinner for work whose length is not known: `tool: what ⠙ message (12s)`.
pub fn spinner(tool: &str, what: &str) -> ProgressBar {
    let style =
        ProgressStyle::with_template(&format!("{tool}: {what} {{spinner}} {{msg}} ({{elapsed}})"))
            .expect("a valid template");
    let p = ProgressBar::with_draw_target(None, target()).with_style(style);
    p.enable_steady_tick(Duration::from_millis(120));
    lines_off_terminal(&p, tool, what);
    p
}

/// Bytes for people: `38.2 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// `WHEELSHIP_TIMING=1`: the time of each phase on stderr, for benchmarks.
pub fn timing(tool: &str, phase: &str, since: &std::time::Instant) {
    if std::env::var_os("WHEELSHIP_TIMING").is_some() {
        eprintln!(
            "{tool}: timing: {phase} done at {:.3}s",
            since.elapsed().as_secs_f64()
        );
    }
}
