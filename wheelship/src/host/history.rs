//! `ROOT/history.jsonl`: one JSON event a line, in the order they happened, written by
//! `switch` and read by `switch` and `bundle unpack` (what was ever live, for replay
//! protection). The file is rewritten whole through a temp file and a rename, so a crash
//! leaves it with or without the new line, never with half of one.

use std::path::Path;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::fs::fsx::Prepared;
use crate::fs::io::At;

pub const FILE: &str = crate::host::layout::HISTORY;

/// What an event of the history records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A release made live by a deploy.
    Deploy,
    /// A release made live again by a revert.
    Revert,
    /// The flip back after a failed restart or check.
    Rollback,
    /// A flip whose event a crash lost, found by the next run.
    Recover,
    /// A release marked bad (its check or `--before` failed).
    Bad,
    /// A release pruned.
    Prune,
    /// A release's env rebuilt for another interpreter (`wheelship-host rebuild`): `to` is the
    /// release, `env` its new env; not an activation.
    Rebuild,
    /// An action of a later wheelship: read, never written.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub action: Action,
    pub from: Option<String>,
    pub to: Option<String>,
    pub user: String,
    pub rev: Option<String>,
    pub env: Option<String>,
}

impl Event {
    pub fn new(
        action: Action,
        from: Option<&str>,
        to: Option<&str>,
        rev: Option<String>,
        env: Option<String>,
    ) -> Event {
        Event {
            time: crate::time::now_rfc3339(),
            action,
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            user: std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| {
                    use std::os::unix::fs::MetadataExt;
                    std::fs::metadata("/proc/self")
                        .map_or("unknown".into(), |m| format!("uid {}", m.uid()))
                }),
            rev,
            env,
        }
    }

    fn activates(&self) -> bool {
        matches!(
            self.action,
            Action::Deploy | Action::Revert | Action::Rollback | Action::Recover
        )
    }
}

pub struct History {
    events: Vec<Event>,
}

impl History {
    pub fn read(root: &Path) -> Result<History> {
        let path = root.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).at("read", &path),
        };
        let mut events = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let e: Event = serde_json::from_str(line)
                .map_err(|e| anyhow!("{}:{}: not a history event: {e}", path.display(), i + 1))?;
            events.push(e);
        }
        Ok(History { events })
    }

    pub fn append(root: &Path, event: &Event) -> Result<()> {
        History::prepare(root, event)?.commit()?;
        crate::fs::fsx::fsync_dir(root)
    }

    /// Writes the history with `event` appended to a synced temp file; `commit` renames it into
    /// place (no allocation left to fail). Dropped without commit, the temp file goes.
    pub fn prepare(root: &Path, event: &Event) -> Result<Prepared> {
        let path = root.join(FILE);
        let mut data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).at("read", &path),
        };
        if !data.is_empty() && !data.ends_with(b"\n") {
            data.push(b'\n');
        }
        data.extend_from_slice(serde_json::to_string(event)?.as_bytes());
        data.push(b'\n');
        Prepared::write(&path, &data)
    }

    /// The release the history says is live: the `to` of the last activating event.
    pub fn live(&self) -> Option<String> {
        self.events
            .iter()
            .rev()
            .find(|e| e.activates())
            .and_then(|e| e.to.clone())
    }

    /// Every activation the history records: the release, and when.
    pub fn activations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.events
            .iter()
            .filter(|e| e.activates())
            .filter_map(|e| e.to.as_deref().map(|to| (to, e.time.as_str())))
    }

    /// Every release the history says was ever live, in the order they first were.
    pub fn activated(&self) -> impl Iterator<Item = &str> {
        self.events
            .iter()
            .filter(|e| e.activates())
            .filter_map(|e| e.to.as_deref())
    }

    /// Whether `id` is marked bad: a `bad` event after the last event that made it live (a
    /// later activation, which `switch --allow-bad` allows, clears the mark).
    pub fn is_bad(&self, id: &str) -> bool {
        self.bad_since(id).is_some()
    }

    /// The time of the `bad` event that marks `id`, if it is marked bad.
    pub fn bad_since(&self, id: &str) -> Option<&str> {
        let last = |pred: &dyn Fn(&Event) -> bool| {
            self.events
                .iter()
                .rposition(|e| e.to.as_deref() == Some(id) && pred(e))
        };
        let bad = last(&|e| e.action == Action::Bad)?;
        match last(&|e| e.activates()) {
            Some(live) if live > bad => None,
            _ => Some(self.events[bad].time.as_str()),
        }
    }

    /// The position and time of the last event that made `id` live.
    pub fn last_activation(&self, id: &str) -> Option<(usize, String)> {
        self.events
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| e.activates() && e.to.as_deref() == Some(id))
            .map(|(i, e)| (i, e.time.clone()))
    }

    /// The release that was live before `current` became live: the `from` of the latest event
    /// that made `current` live, skipping releases marked bad or gone. After `revert`, that is
    /// the release reverted from, so a second revert undoes the first.
    pub fn previous(&self, current: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
        self.events
            .iter()
            .rev()
            .filter(|e| e.activates() && e.to.as_deref() == Some(current))
            .filter_map(|e| e.from.clone())
            .find(|f| f != current && !self.is_bad(f) && exists(f))
    }
}
