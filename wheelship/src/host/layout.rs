//! Every entry of a deploy root, named here and nowhere else. The tools build their paths from
//! these names; the door (`wheelship-host paths ROOT`) prints them for the scripts and the
//! Ansible plugin, so that nothing outside the Rust code spells a root's layout.
//!
//! ```text
//! ROOT/releases/<id>/        an unpacked release; <id>/venv -> ../../envs/<key>
//! ROOT/envs/<key>/           virtualenvs, shared by releases with equal keys
//! ROOT/envs/.store/          verified, unzipped wheels the envs link from
//! ROOT/shared/               paths that outlive releases, linked into each
//! ROOT/current               -> releases/<id>, replaced by rename
//! ROOT/history.jsonl         one event a line, rewritten atomically
//! ROOT/.lock                 serialises every change to the root
//! ROOT/incoming/             archives (and their signatures) on their way in
//! ROOT/bin/                  the door and the binaries it runs, sent by the controller
//! ROOT/run/                  the handover's state (the master it started)
//! ROOT/trusted               minisign public keys, one a line
//! ROOT/.fleet-lock/          the fleet's deploy lock (Ansible), on the lock host
//! ROOT/.restart-pending      a restart a crash cut off
//! ROOT/.package              the Debian package that owns the root, if one does
//! ```

use std::path::{Path, PathBuf};

/// Releases a Debian package's root keeps (`switch prune --keep`) when its settings file does
/// not say: what the shipped settings file says.
pub const PACKAGE_KEEP: usize = 5;

pub const RELEASES: &str = "releases";
pub const ENVS: &str = "envs";
/// In `envs/`.
pub const STORE: &str = ".store";
pub const SHARED: &str = "shared";
pub const CURRENT: &str = "current";
pub const HISTORY: &str = "history.jsonl";
pub const LOCK: &str = ".lock";
pub const INCOMING: &str = "incoming";
pub const BIN: &str = "bin";
pub const RUN: &str = "run";
pub const TRUSTED: &str = "trusted";
pub const FLEET_LOCK: &str = ".fleet-lock";
pub const RESTART_PENDING: &str = ".restart-pending";
pub const PACKAGE: &str = ".package";
/// In a release: the link to its env.
pub const VENV: &str = "venv";

/// The programs of `ROOT/bin` the controller sends: the door first.
pub const SHIPPED: &[&str] = &["wheelship-host", "bundle", "mkenv", "switch"];
/// What the door writes into `ROOT/bin` itself (it carries them): the gapless handover of a
/// gunicorn service, and its gunicorn settings.
pub const HANDOVER: &[&str] = &["handover", "handover.conf.py"];

/// Each entry with what it is, in the order of the table above (for `wheelship-host paths`).
pub const ENTRIES: &[(&str, &str)] = &[
    (RELEASES, "the unpacked releases"),
    (ENVS, "the virtualenvs, and their store"),
    (SHARED, "paths that outlive releases"),
    (CURRENT, "the live release (a symlink)"),
    (HISTORY, "the history of flips"),
    (LOCK, "the root's lock"),
    (INCOMING, "archives on their way in"),
    (BIN, "the door and the binaries it runs"),
    (RUN, "the handover's state"),
    (TRUSTED, "trusted public keys"),
    (FLEET_LOCK, "the fleet's deploy lock"),
    (RESTART_PENDING, "a restart a crash cut off"),
    (PACKAGE, "the Debian package that owns the root"),
];

/// A deploy root's paths.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn releases(&self) -> PathBuf {
        self.root.join(RELEASES)
    }
    pub fn release(&self, id: &str) -> PathBuf {
        self.releases().join(id)
    }
    pub fn envs(&self) -> PathBuf {
        self.root.join(ENVS)
    }
    pub fn shared(&self) -> PathBuf {
        self.root.join(SHARED)
    }
    pub fn current(&self) -> PathBuf {
        self.root.join(CURRENT)
    }
    pub fn history(&self) -> PathBuf {
        self.root.join(HISTORY)
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join(LOCK)
    }
    pub fn incoming(&self) -> PathBuf {
        self.root.join(INCOMING)
    }
    pub fn bin(&self) -> PathBuf {
        self.root.join(BIN)
    }
    pub fn run(&self) -> PathBuf {
        self.root.join(RUN)
    }
    /// Where a release's archive waits in `incoming/`: `<id>.tar.zst`.
    pub fn incoming_archive(&self, id: &str) -> PathBuf {
        self.incoming().join(format!("{id}.tar.zst"))
    }
    /// The paths, by name, as JSON (`wheelship-host paths`).
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("root".into(), self.root.display().to_string().into());
        for (name, _) in ENTRIES {
            let key = name.trim_start_matches('.').replace(['-', '.'], "_");
            m.insert(key, self.root.join(name).display().to_string().into());
        }
        serde_json::Value::Object(m)
    }
}
