//! The `switch` section of the document: what is live, what a dry run would do, the releases
//! as `list` shows them, what `prune` removed.

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use super::Extra;

/// `switch`, written by every `switch` command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    pub root: Utf8PathBuf,
    /// The live release after the command; null when nothing is live.
    pub current: Option<String>,
    /// What `revert` would go back to (or, after a revert, what was live).
    pub previous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// `--dry-run` of deploy and revert: what would be done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would: Option<Would>,
    /// `list`: every release, most recently activated first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releases: Option<Vec<Listed>>,
    /// `prune`: what was (or, with --dry-run, would be) removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Pruned>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `switch.would`: what a `--dry-run` deploy or revert would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Would {
    Deploy(WouldDeploy),
    Revert(WouldRevert),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WouldDeploy {
    pub activate: String,
    pub from: Option<String>,
    pub env: Option<Utf8PathBuf>,
    pub shared: Vec<String>,
    pub before: Vec<String>,
    pub restart: Vec<String>,
    pub check: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WouldRevert {
    pub revert: String,
    pub from: Option<String>,
    pub restart: Vec<String>,
    pub check: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub id: String,
    pub current: bool,
    pub env: Option<Utf8PathBuf>,
    pub last_activated: Option<String>,
    pub bad: bool,
    /// The commit the release was packed from (its `.wheelship/release.json`).
    #[serde(default)]
    pub rev: Option<String>,
    /// The key whose signature `bundle unpack` verified (its record); null when unverified.
    #[serde(default)]
    pub verified_by: Option<String>,
    /// Why its env cannot run (its interpreter is gone, or is another version now); absent
    /// when it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cannot_run: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pruned {
    pub releases: Vec<String>,
    pub envs: Vec<Utf8PathBuf>,
    #[serde(flatten)]
    pub extra: Extra,
}
