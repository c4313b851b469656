//! Progress for people, on stderr, only when stderr is a terminal: a pipe or a log file gets
//! nothing extra (and stdout, the document's, never anything).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn at all.
pub fn shown() -> bool {
    std::io::stderr().is_terminal()
}

fn target() -> ProgressDrawTarget {
    if shown() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar of `len` steps: `tool: what [=====>   ] 12/40 message`.
pub fn bar(tool: &str, what: &str, len: u64) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{tool}: {what} [{{bar:30}}] {{pos}}/{{len}} {{msg}} ({{elapsed}})"
    ))
    .expect("a valid template")
    .progress_chars("=> ");
    ProgressBar::with_draw_target(Some(len), target()).with_style(style)
}

/// A spinner for work whose length is not known: `tool: what ⠙ message (12s)`.
pub fn spinner(tool: &str, what: &str) -> ProgressBar {
    let style =
        ProgressStyle::with_template(&format!("{tool}: {what} {{spinner}} {{msg}} ({{elapsed}})"))
            .expect("a valid template");
    let p = ProgressBar::with_draw_target(None, target()).with_style(style);
    p.enable_steady_tick(Duration::from_millis(120));
    p
}

/// Bytes for people: `38.2 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
