//! `hashreq`: parse pip requirement files the way pip 26 does and name what they mean with a
//! hash. See README.md and docs/hashreq.md for the canonical form.

mod decode;
pub mod lines;
mod marker;
mod options;
mod pylock;
mod redact;
mod req;
mod walk;

pub use walk::parse_files;

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use serde_json::json;
use wheelship::cli::io_reason;
use wheelship::doc::{Entry, ReqOptions};
use wheelship::Document;

/// Version of the canonical form that the hash covers; bump it when the form changes.
pub const CANONICAL_FORM: &str = "wheelship-requirements-v1";

/// Parse pip requirement files and hash what they mean.
///
/// Reads the document on stdin (an empty stdin or a terminal is an empty document), adds the
/// `requirements` section and writes the document on stdout. Follows `-r`/`-c` includes
/// relative to the including file. The hash does not change with line order, comments,
/// whitespace, name spelling or extras/specifier order; it changes with any pin, specifier,
/// marker, extra, `--hash`, URL, constraint or resolution option.
///
/// Exit status: 0 success, 1 a file could not be read or parsed, 2 usage.
#[derive(Debug, Parser)]
#[command(name = "hashreq", version, max_term_width = 100)]
pub struct Args {
    /// Requirement files to read, in order [default: requirements.txt]
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Print only the 64 hex digits of the hash and a newline instead of the document (for
    /// Makefiles: `ENV := envs/$(shell hashreq --print-hash)`); stdin is not read
    #[arg(long)]
    pub print_hash: bool,

    /// Refuse a requirement file (or an included one) larger than this; only regular files are
    /// read (a FIFO or a device is refused)
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    pub max_file_size: u64,

    /// How to read FILE: `pylock` for a PEP 751 lock file (chosen by itself for files named
    /// `pylock.toml` or `pylock.<name>.toml`), `requirements` for pip's format
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,

    /// With a lock file: select this extra (repeatable)
    #[arg(long, value_name = "NAME")]
    pub extra: Vec<String>,

    /// With a lock file: select this dependency group (repeatable) [default: the lock's
    /// `default-groups`]
    #[arg(long, value_name = "NAME")]
    pub group: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Format {
    Auto,
    Requirements,
    Pylock,
}

pub fn run(args: Args) -> Result<()> {
    let files = if args.files.is_empty() {
        vec![PathBuf::from("requirements.txt")]
    } else {
        args.files
    };
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let getenv = |name: &str| std::env::var(name).ok();
    let lock = match args.format {
        Format::Pylock => true,
        Format::Requirements => false,
        Format::Auto => files.iter().any(|f| pylock::is_pylock_name(f)),
    };
    let section = if lock {
        let [f] = files.as_slice() else {
            return Err(wheelship::UsageError(
                "a lock file (pylock.toml) is read alone, not with other files".into(),
            )
            .into());
        };
        let shown = f.display().to_string();
        let real = std::fs::canonicalize(req::abspath(&cwd, &shown))
            .map_err(|e| anyhow!("{shown}: cannot read the lock file: {}", io_reason(&e)))?;
        (
            pylock::read(&real, &shown, &args.extra, &args.group, args.max_file_size)?,
            Vec::new(),
        )
    } else {
        if !args.extra.is_empty() || !args.group.is_empty() {
            return Err(wheelship::UsageError(
                "--extra and --group select from a lock file (pylock.toml)".into(),
            )
            .into());
        }
        parse_files(&files, &cwd, &getenv, args.max_file_size)?
    };
    for w in &section.1 {
        wheelship::cli::warn(format_args!("{w}"));
    }
    let section = section.0;
    if args.print_hash {
        let hex = section.hash.trim_start_matches("sha256:");
        return wheelship::cli::write_stdout(format!("{hex}\n").as_bytes());
    }
    let mut doc = Document::from_stdin()?;
    doc.set("requirements", &section)?;
    doc.write_stdout()
}

/// The canonical form (docs/hashreq.md) and its SHA-256. Requirements and constraints are
/// each a sorted set of entries that leave out where they were written; options keep the
/// order pip gives them meaning by (index URLs, find-links).
pub fn canonical_form(entries: &[Entry], o: &ReqOptions) -> String {
    let entry_key = |e: &Entry| {
        json!([
            e.editable,
            e.name,
            e.extras,
            e.specifier,
            e.url,
            e.marker,
            e.hashes,
            e.config_settings
        ])
        .to_string()
    };
    let set = |constraint: bool| {
        let mut v: Vec<String> = entries
            .iter()
            .filter(|e| e.constraint == constraint)
            .map(entry_key)
            .collect();
        v.sort();
        v.dedup();
        v
    };
    // Structs, not a JSON map: their fields serialise in the order written here, whatever
    // serde_json's `preserve_order` feature says, so the canonical bytes are what this reads.
    #[derive(serde::Serialize)]
    struct Form<'a> {
        form: &'a str,
        requirements: Vec<String>,
        constraints: Vec<String>,
        options: Options<'a>,
    }
    #[derive(serde::Serialize)]
    struct Options<'a> {
        index_url: &'a Option<String>,
        extra_index_urls: &'a [String],
        no_index: bool,
        find_links: &'a [String],
        all_releases: &'a [String],
        only_final: &'a [String],
        no_binary: &'a [String],
        only_binary: &'a [String],
        prefer_binary: bool,
        require_hashes: bool,
        no_require_hashes: bool,
    }
    let form = Form {
        form: CANONICAL_FORM,
        requirements: set(false),
        constraints: set(true),
        options: Options {
            index_url: &o.index_url,
            extra_index_urls: &o.extra_index_urls,
            no_index: o.no_index,
            find_links: &o.find_links,
            all_releases: &o.all_releases,
            only_final: &o.only_final,
            no_binary: &o.no_binary,
            only_binary: &o.only_binary,
            prefer_binary: o.prefer_binary,
            require_hashes: o.require_hashes,
            no_require_hashes: o.no_require_hashes,
        },
    };
    serde_json::to_string(&form).expect("the canonical form always serialises")
}

/// The hash of the canonical form, every variable in it as its `${NAME}`, with a digest of
/// each such variable's value (`digests`): never a value itself.
pub(crate) fn hash(
    entries: &[Entry],
    o: &ReqOptions,
    digests: &dyn Fn(&str) -> Vec<(String, String)>,
) -> String {
    let mut form = canonical_form(entries, o);
    for (name, digest) in digests(&form) {
        form.push_str(&format!("\n${{{name}}} sha256:{digest}"));
    }
    format!("sha256:{}", wheelship::hash::sha256_hex(form.as_bytes()))
}
