//! The pipeline document (`docs/document.schema.json`): one JSON object whose sections are named
//! for the tool that writes them. A tool passes every section it does not own through untouched,
//! unknown keys included, and replaces its own section whole.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Read};

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Keys this version of wheelship does not know, kept so that they pass through.
pub type Extra = Map<String, Value>;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Document(Map<String, Value>);

impl Document {
    /// Reads the document from stdin. A terminal, or an empty stdin, is an empty document.
    pub fn from_stdin() -> Result<Self> {
        let stdin = io::stdin();
        if stdin.is_terminal() {
            return Ok(Document::default());
        }
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("stdin: cannot read the document")?;
        Document::parse(&text, "stdin")
    }

    /// Parses a document from text; `source` names where it came from in messages.
    pub fn parse(text: &str, source: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Ok(Document::default());
        }
        let value: Value =
            serde_json::from_str(text).with_context(|| format!("{source}: not a JSON document"))?;
        match value {
            Value::Object(map) => Ok(Document(map)),
            other => anyhow::bail!(
                "{source}: the document must be a JSON object, not {}",
                kind(&other)
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The raw value of a section.
    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// A section read as its type; an error names the section when its shape is wrong.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => T::deserialize(v)
                .map(Some)
                .with_context(|| format!("stdin: the `{name}` section is malformed")),
        }
    }

    /// Replaces a section whole (in place if it exists, else at the end).
    pub fn set<T: Serialize>(&mut self, name: &str, section: &T) -> Result<()> {
        let value = serde_json::to_value(section)
            .with_context(|| format!("cannot serialise the `{name}` section"))?;
        self.0.insert(name.to_string(), value);
        Ok(())
    }

    /// The sections in order, as raw values.
    pub fn sections(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }

    pub fn set_raw(&mut self, name: &str, value: Value) {
        self.0.insert(name.to_string(), value);
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.0.shift_remove(name)
    }

    /// The document as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a JSON map always serialises")
    }

    /// Writes the document as one JSON object and a newline on stdout: the only thing a tool
    /// ever writes there.
    pub fn write_stdout(&self) -> Result<()> {
        let mut text = self.to_json();
        text.push('\n');
        crate::cli::write_stdout(text.as_bytes())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `requirements`, written by `hashreq`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Requirements {
    /// `sha256:` + 64 lowercase hex over the canonical form (docs/hashreq.md).
    pub hash: String,
    /// Absolute paths of every file read, includes too, in the order first read.
    pub files: Vec<Utf8PathBuf>,
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub options: ReqOptions,
    /// Requirements that are not pinned with `==`/`===` or a URL: the hash names the request,
    /// not what it resolves to.
    #[serde(default)]
    pub unpinned: Vec<String>,
    /// `"pylock"` when the requirements are a lock file (PEP 751, pylock.toml): exact, never
    /// resolved again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylock: Option<PylockMeta>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Requirements {
    /// Whether the requirements came from a lock file.
    pub fn is_pylock(&self) -> bool {
        self.format.as_deref() == Some("pylock")
    }
}

/// `requirements.pylock`: the lock file's own fields, and which extras and groups were chosen.
/// <https://packaging.python.org/en/latest/specifications/pylock-toml/>
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PylockMeta {
    pub lock_version: String,
    pub environments: Vec<String>,
    pub requires_python: Option<String>,
    pub extras: Vec<String>,
    pub dependency_groups: Vec<String>,
    pub created_by: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `entries[].pylock_wheels`: a wheel a lock file names for a package.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PylockWheel {
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Absolute: a lock's paths are relative to the lock file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

/// One requirement line, as pip means it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// PEP 503 canonical name; null for an unnamed URL or path requirement.
    pub name: Option<String>,
    /// Canonical specifier set (sorted, comma-separated), `""` when there is none.
    pub specifier: String,
    /// Canonical extras (PEP 685), sorted and deduplicated.
    pub extras: Vec<String>,
    /// The marker in packaging's normal form, or null.
    pub marker: Option<String>,
    /// `algo:digest` values from `--hash`, sorted and deduplicated.
    pub hashes: Vec<String>,
    /// A direct reference (`name @ url`, a bare URL, or a local path as a `file:` URL), with
    /// any credentials replaced by `***`.
    #[serde(default)]
    pub url: Option<String>,
    /// The requirement file (absolute) and line it came from.
    pub file: Utf8PathBuf,
    pub line: u32,
    /// From a `-c` constraints file.
    #[serde(default)]
    pub constraint: bool,
    /// An `-e` editable requirement.
    #[serde(default)]
    pub editable: bool,
    /// `--config-settings KEY=VALUE` given on the line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_settings: BTreeMap<String, Vec<String>>,
    /// From a lock file: the package's `requires-python`, its wheels, and its other sources
    /// (tables as the lock wrote them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_python: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylock_wheels: Option<Vec<PylockWheel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylock_sdist: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylock_vcs: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylock_directory: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pylock_archive: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The options of the requirement files that affect resolution or the artifacts, after pip's
/// own rules for combining them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReqOptions {
    /// The primary index set by `-i`/`--index-url`; null leaves pip's own default.
    pub index_url: Option<String>,
    pub extra_index_urls: Vec<String>,
    pub no_index: bool,
    pub find_links: Vec<String>,
    /// `--pre` is folded into `all_releases: [":all:"]`, as pip 26 does.
    pub all_releases: Vec<String>,
    pub only_final: Vec<String>,
    pub no_binary: Vec<String>,
    pub only_binary: Vec<String>,
    pub prefer_binary: bool,
    pub require_hashes: bool,
    pub no_require_hashes: bool,
    /// Recorded, but not hashed: they do not change what is resolved.
    pub trusted_hosts: Vec<String>,
    pub use_features: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A path as the document holds it: absolute and UTF-8 (JSON strings are text). A path that is
/// not UTF-8 is an error naming it, where it would enter the document.
pub fn doc_path(path: impl Into<std::path::PathBuf>) -> Result<Utf8PathBuf> {
    let path = std::path::absolute(path.into()).context("cannot make a path absolute")?;
    Utf8PathBuf::from_path_buf(path).map_err(|p| {
        anyhow::anyhow!(
            "`{}`: not UTF-8, and a path in the document must be",
            p.display()
        )
    })
}

/// `wheelhouse`, the lock, written by `wheelhouse`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wheelhouse {
    pub dir: Utf8PathBuf,
    /// The lock; with several targets, the union of their locks (what DIR and an archive must
    /// hold).
    pub wheels: Vec<LockedWheel>,
    /// What the lock is for: this interpreter, or a cross target's tags.
    #[serde(default)]
    pub target: Option<Target>,
    /// With more than one `--target`: one lock per target; mkenv installs the one that
    /// matches its interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<Vec<TargetLock>>,
    /// The lock came from wheelhouse's cache (nothing in DIR or --find-links changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// `--prune`: the wheel files removed from DIR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LockedWheel {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `wheelhouse.locks[]`: the lock of one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetLock {
    pub target: Target,
    pub wheels: Vec<LockedWheel>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `wheelhouse.target`: the interpreter that resolved the lock (`native`), or the tags of a
/// cross target (`--python-version`, `--platform` …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub native: bool,
    /// The `--target` it was asked as (`py3.12-manylinux_2_28_x86_64`, `native`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    /// Which resolver locked it: `uv` or `pip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_binary: Option<bool>,
    /// The PEP 508 marker environment the lock was resolved for, where it is known (this
    /// interpreter's, or a named target's): the SBOM evaluates `Requires-Dist` markers with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `env`, written by `mkenv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Env {
    pub path: Utf8PathBuf,
    pub key: String,
    pub reused: bool,
    pub python: EnvPython,
    /// Wheels and files installed (0 when reused).
    #[serde(default)]
    pub wheels: usize,
    #[serde(default)]
    pub files: usize,
    /// Bytecode compiled (not `--no-compile`).
    #[serde(default)]
    pub compiled: bool,
    #[serde(default)]
    pub seconds: f64,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvPython {
    pub version: String,
    pub implementation: String,
    pub tag: String,
    /// The base interpreter the env's `python` runs.
    #[serde(default)]
    pub executable: Option<Utf8PathBuf>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `mkenv_gc`, written by `mkenv gc`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvGc {
    pub envs: Utf8PathBuf,
    /// Envs kept because a release under a `--releases` root links them.
    pub kept: Vec<String>,
    pub removed_envs: Vec<String>,
    pub removed_wheels: Vec<String>,
    pub dry_run: bool,
    /// `--verify`: how many stored wheels were rehashed (all were as stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<usize>,
    /// `--verify`: the kept envs that cannot run (their interpreter is gone or is another
    /// version now), each `KEY: why`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cannot_run: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `bundle`, written by `bundle pack` (and completed by `bundle unpack`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub path: Utf8PathBuf,
    pub id: String,
    pub sha256: String,
    pub size: u64,
    /// The git commit the release was exported from.
    #[serde(default)]
    pub rev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The zstd level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<BundleEntries>,
    /// `pack --sign`: the `<archive>.minisig` beside the archive, and the key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Utf8PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `pack`: the provenance statement beside the archive (`<archive>.intoto.json`, signed
    /// as `<archive>.intoto.json.minisig` with --sign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Utf8PathBuf>,
    /// `unpack`: the trusted key whose signature was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What the archive holds, counted by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BundleEntries {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub wheels: usize,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `deb`, written by `bundle deb`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deb {
    pub path: Utf8PathBuf,
    pub package: String,
    pub version: String,
    pub architecture: String,
    pub sha256: String,
    pub size: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `release`, written by `bundle unpack`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub dir: Utf8PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

// The `switch` section and what it holds, in a file of its own.
#[path = "doc_switch.rs"]
mod switch_section;
pub use switch_section::{Listed, Pruned, Switch, Would, WouldDeploy, WouldRevert};

/// `have`, written by `bundle have`: the wheels a host holds (in its releases), by sha256.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Have {
    pub wheels: Vec<HaveWheel>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaveWheel {
    pub sha256: String,
    pub size: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `thin`, written by `bundle thin`: the thin copy of an archive for one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thin {
    pub path: Utf8PathBuf,
    /// Its size, and the full archive's.
    pub size: u64,
    pub archive_size: u64,
    /// How many wheels the host had, so were left out.
    pub wheels_cut: usize,
    /// Whether sending it (and rebuilding the archive on the host) beats sending the archive:
    /// some wheels were cut and it is less than half the archive. The one place this is decided.
    #[serde(default)]
    pub worth: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `keygen`, written by `bundle keygen`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Keygen {
    pub public: Utf8PathBuf,
    pub secret: Utf8PathBuf,
    pub key_id: String,
    pub encrypted: bool,
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
#[path = "doc_tests.rs"]
mod tests;

#[cfg(test)]
mod fuzz_regressions {
    use super::Document;

    /// Inputs the fuzzer found (tests/fuzz/corpus/document/regression-*): what is written back
    /// reads back the same, numbers included.
    #[test]
    fn documents_round_trip() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fuzz/corpus/document");
        let mut seen = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let Ok(doc) = Document::parse(&text, "x") else {
                continue;
            };
            assert_eq!(
                Document::parse(&doc.to_json(), "x").unwrap(),
                doc,
                "{}",
                p.display()
            );
            seen += 1;
        }
        assert!(seen >= 2);
        let doc = Document::parse(r#"{"x":1.3333333333333335e+95,"y":0.1}"#, "x").unwrap();
        assert_eq!(doc.to_json(), r#"{"x":1.3333333333333335e+95,"y":0.1}"#);
    }
}
