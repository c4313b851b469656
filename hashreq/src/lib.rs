//! `hashreq`: parse pip requirement files the way pip 26 does and name what they mean with a
//! hash. See README.md and docs/hashreq.md for the canonical form.

mod decode;
pub mod lines;
mod marker;
mod options;
mod redact;
mod req;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::json;
use wheelship::cli::io_reason;
use wheelship::doc::{Entry, ReqOptions, Requirements};
use wheelship::Document;

use crate::lines::Expansion;
use crate::options::{LineOpts, SetOp};
use crate::redact::Redactor;

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
}

pub fn run(args: Args) -> Result<()> {
    let files = if args.files.is_empty() {
        vec![PathBuf::from("requirements.txt")]
    } else {
        args.files
    };
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let getenv = |name: &str| std::env::var(name).ok();
    let section = parse_files(&files, &cwd, &getenv)?;
    for w in &section.1 {
        eprintln!("hashreq: warning: {w}");
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

/// Parses the files in order and returns the section and the warnings for people.
pub fn parse_files(
    files: &[PathBuf],
    cwd: &Path,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<(Requirements, Vec<String>)> {
    let mut w = Walker {
        cwd: cwd.to_path_buf(),
        getenv,
        expansions: Vec::new(),
        files: Vec::new(),
        entries: Vec::new(),
        unpinned: Vec::new(),
        state: State::default(),
        warnings: Vec::new(),
    };
    for f in files {
        let shown = f.display().to_string();
        let abs = req::abspath(cwd, &shown);
        let real = std::fs::canonicalize(&abs)
            .map_err(|e| anyhow!("{shown}: cannot read requirements file: {}", io_reason(&e)))?;
        w.parse_file(&shown, &real, false, &mut vec![real.clone()])?;
    }
    w.finish()
}

#[derive(Default)]
struct State {
    index_url: Option<String>,
    extra_index_urls: Vec<String>,
    no_index: bool,
    find_links: Vec<String>,
    set_ops: Vec<SetOp>,
    prefer_binary: bool,
    require_hashes: bool,
    no_require_hashes: bool,
    trusted_hosts: Vec<String>,
    features: Vec<String>,
}

struct Walker<'a> {
    cwd: PathBuf,
    getenv: &'a dyn Fn(&str) -> Option<String>,
    expansions: Vec<Expansion>,
    files: Vec<PathBuf>,
    entries: Vec<Entry>,
    unpinned: Vec<(String, bool)>,
    state: State,
    warnings: Vec<String>,
}

impl Walker<'_> {
    fn redactor(&self) -> Redactor<'_> {
        Redactor::new(&self.expansions)
    }

    /// `shown` is the path as the user would write it (for messages), `real` its realpath.
    fn parse_file(
        &mut self,
        shown: &str,
        real: &Path,
        constraint: bool,
        stack: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let bytes = std::fs::read(real)
            .map_err(|e| anyhow!("{shown}: cannot read requirements file: {}", io_reason(&e)))?;
        let text = decode::decode(&bytes).map_err(|e| anyhow!("{shown}: {e}"))?;
        if !self.files.contains(&real.to_path_buf()) {
            self.files.push(real.to_path_buf());
        }
        let raw = lines::splitlines(&text);
        let joined = lines::join_lines(raw.into_iter().enumerate().map(|(i, l)| (i as u32 + 1, l)));
        for (n, line) in lines::ignore_comments(joined) {
            let getenv = self.getenv;
            let line = lines::expand_env(&line, getenv, &mut self.expansions);
            let at = |msg: String| anyhow!("{shown}:{n}: {msg}");
            let (args_str, opts_str) = lines::break_args_options(&line);
            let tokens = lines::shlex_split(&opts_str).map_err(|e| {
                at(format!(
                    "cannot split options `{}`: {e}",
                    self.redactor().clean(&opts_str)
                ))
            })?;
            let opts = options::parse(&tokens).map_err(|e| at(self.redactor().clean(&e)))?;
            // `--no-binary`/`--only-binary` act on pip's shared format control from any line.
            self.state.set_ops.extend(
                opts.set_ops
                    .iter()
                    .filter(|o| matches!(o, SetOp::NoBinary(_) | SetOp::OnlyBinary(_)))
                    .cloned(),
            );
            if !args_str.is_empty() {
                let parsed = req::parse_requirement(&args_str, &self.cwd)
                    .map_err(|e| at(self.redactor().clean(&e)))?;
                self.add_entry(parsed, shown, real, n, constraint, false, &opts);
            } else if let Some(e) = opts.editables.first() {
                let parsed =
                    req::parse_editable(e, &self.cwd).map_err(|e| at(self.redactor().clean(&e)))?;
                self.add_entry(parsed, shown, real, n, constraint, true, &opts);
            } else if let Some((path, nested)) = opts
                .requirements
                .first()
                .map(|p| (p, false))
                .or_else(|| opts.constraints.first().map(|p| (p, true)))
            {
                self.include(shown, real, n, path, nested, stack)?;
            } else {
                self.option_line(shown, real, n, &opts);
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        shown: &str,
        real: &Path,
        n: u32,
        path: &str,
        constraint: bool,
        stack: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let lower = path.to_ascii_lowercase();
        if lower.starts_with("http:") || lower.starts_with("https:") {
            return Err(wheelship::Hint::new(
                format!("{shown}:{n}: cannot include `{}`: remote requirement files are not read", self.redactor().clean(path)),
                "download it next to this file and include it by path, so that the hash is reproducible",
            )
            .into());
        }
        let local = if let Some(p) = lower.strip_prefix("file://") {
            path[path.len() - p.len()..].to_string()
        } else {
            path.to_string()
        };
        let dir = real.parent().unwrap_or(Path::new("/"));
        let target = req::abspath(dir, &local);
        let shown_dir = Path::new(shown).parent().unwrap_or(Path::new(""));
        let child_shown = if Path::new(&local).is_absolute() {
            local.clone()
        } else {
            shown_dir.join(&local).display().to_string()
        };
        let child_real = std::fs::canonicalize(&target).map_err(|e| {
            anyhow!(
                "{shown}:{n}: cannot read included file `{child_shown}`: {}",
                io_reason(&e)
            )
        })?;
        if let Some(i) = stack.iter().position(|p| *p == child_real) {
            let chain: Vec<String> = stack[i..]
                .iter()
                .chain(std::iter::once(&child_real))
                .map(|p| p.display().to_string())
                .collect();
            bail!(
                "{shown}:{n}: `{child_shown}` includes itself: {}",
                chain.join(" -> ")
            );
        }
        stack.push(child_real.clone());
        self.parse_file(&child_shown, &child_real, constraint, stack)?;
        stack.pop();
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_entry(
        &mut self,
        parsed: req::Parsed,
        shown: &str,
        real: &Path,
        n: u32,
        constraint: bool,
        editable: bool,
        opts: &LineOpts,
    ) {
        let red = Redactor::new(&self.expansions);
        if let Some(w) = &parsed.warning {
            self.warnings.push(format!("{shown}:{n}: {}", red.clean(w)));
        }
        let mut hashes = if editable {
            Vec::new()
        } else {
            opts.hashes.clone()
        };
        hashes.sort();
        hashes.dedup();
        let entry = Entry {
            name: parsed.name.clone(),
            specifier: parsed.specifier,
            extras: parsed.extras,
            marker: parsed.marker,
            hashes,
            url: parsed.url.map(|u| red.clean(&u)),
            file: real.display().to_string(),
            line: n,
            constraint,
            editable,
            config_settings: opts.config_settings.clone(),
            extra: Default::default(),
        };
        if !parsed.pinned {
            let label = parsed.name.unwrap_or_default();
            self.unpinned.push((label, constraint));
        }
        self.entries.push(entry);
    }

    /// pip's `handle_option_line`, replayed on our state.
    fn option_line(&mut self, shown: &str, real: &Path, n: u32, opts: &LineOpts) {
        let red = Redactor::new(&self.expansions);
        let s = &mut self.state;
        if !opts.hashes.is_empty() {
            self.warnings.push(format!(
                "{shown}:{n}: `--hash` without a requirement is ignored"
            ));
        }
        s.require_hashes |= opts.require_hashes;
        s.no_require_hashes |= opts.no_require_hashes;
        for f in &opts.features {
            if !s.features.contains(f) {
                s.features.push(f.clone());
            }
        }
        if opts.no_index {
            s.no_index = true;
            s.index_url = None;
            s.extra_index_urls.clear();
        }
        if let Some(i) = &opts.index_url {
            if !s.no_index {
                s.index_url = Some(red.clean(i));
                s.extra_index_urls.clear();
            }
        }
        if !s.no_index {
            s.extra_index_urls
                .extend(opts.extra_index_urls.iter().map(|u| red.clean(u)));
        }
        if let Some(value) = opts.find_links.first() {
            // Relative to the requirement file only if that path exists.
            let dir = real.parent().unwrap_or(Path::new("/"));
            let rel = dir.join(value);
            let v = if rel.exists() {
                req::abspath(dir, value).display().to_string()
            } else {
                value.clone()
            };
            s.find_links.push(red.clean(&v));
        }
        if opts.pre {
            s.set_ops.push(SetOp::AllReleases(":all:".into()));
        }
        s.set_ops.extend(
            opts.set_ops
                .iter()
                .filter(|o| matches!(o, SetOp::AllReleases(_) | SetOp::OnlyFinal(_)))
                .cloned(),
        );
        s.prefer_binary |= opts.prefer_binary;
        for h in &opts.trusted_hosts {
            if !s.trusted_hosts.contains(h) {
                s.trusted_hosts.push(h.clone());
            }
        }
    }

    fn finish(self) -> Result<(Requirements, Vec<String>)> {
        let s = self.state;
        let mut no_binary = Vec::new();
        let mut only_binary = Vec::new();
        let mut all_releases = Vec::new();
        let mut only_final = Vec::new();
        for op in &s.set_ops {
            match op {
                SetOp::NoBinary(v) => mutual_excludes(v, &mut no_binary, &mut only_binary),
                SetOp::OnlyBinary(v) => mutual_excludes(v, &mut only_binary, &mut no_binary),
                SetOp::AllReleases(v) => mutual_excludes(v, &mut all_releases, &mut only_final),
                SetOp::OnlyFinal(v) => mutual_excludes(v, &mut only_final, &mut all_releases),
            }
        }
        let options = ReqOptions {
            index_url: s.index_url,
            extra_index_urls: s.extra_index_urls,
            no_index: s.no_index,
            find_links: s.find_links,
            all_releases,
            only_final,
            no_binary,
            only_binary,
            prefer_binary: s.prefer_binary,
            require_hashes: s.require_hashes,
            no_require_hashes: s.no_require_hashes,
            trusted_hosts: s.trusted_hosts,
            use_features: s.features,
            extra: Default::default(),
        };
        let pinned_by_constraint: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.constraint && e.specifier.starts_with("=="))
            .filter_map(|e| e.name.as_deref())
            .collect();
        let mut unpinned: Vec<String> = self
            .unpinned
            .iter()
            .filter(|(n, c)| !c && !pinned_by_constraint.contains(&n.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        unpinned.sort();
        unpinned.dedup();
        let mut warnings = self.warnings;
        if !unpinned.is_empty() {
            warnings.push(format!(
                "not pinned with `==`: {} (the hash names the request, not what it resolves to)",
                unpinned.join(", ")
            ));
        }
        let hash = hash(&self.entries, &options);
        let section = Requirements {
            hash,
            files: self.files.iter().map(|p| p.display().to_string()).collect(),
            entries: self.entries,
            options,
            unpinned,
            extra: Default::default(),
        };
        Ok((section, warnings))
    }
}

/// pip's `FormatControl.handle_mutual_excludes` (and the same rule for release control).
fn mutual_excludes(value: &str, target: &mut Vec<String>, other: &mut Vec<String>) {
    let mut new: Vec<&str> = value.split(',').collect();
    while let Some(i) = new.iter().position(|v| *v == ":all:") {
        other.clear();
        target.clear();
        target.push(":all:".into());
        new.drain(..=i);
        if !new.contains(&":none:") {
            return;
        }
    }
    for name in new {
        if name == ":none:" {
            target.clear();
            continue;
        }
        let name = wheelship::names::canonicalize_name(name);
        other.retain(|o| *o != name);
        if !target.contains(&name) {
            target.push(name);
        }
    }
    target.sort();
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
    let form = json!({
        "form": CANONICAL_FORM,
        "requirements": set(false),
        "constraints": set(true),
        "options": {
            "index_url": o.index_url,
            "extra_index_urls": o.extra_index_urls,
            "no_index": o.no_index,
            "find_links": o.find_links,
            "all_releases": o.all_releases,
            "only_final": o.only_final,
            "no_binary": o.no_binary,
            "only_binary": o.only_binary,
            "prefer_binary": o.prefer_binary,
            "require_hashes": o.require_hashes,
            "no_require_hashes": o.no_require_hashes,
        },
    });
    form.to_string()
}

fn hash(entries: &[Entry], o: &ReqOptions) -> String {
    format!(
        "sha256:{}",
        wheelship::names::sha256_hex(canonical_form(entries, o).as_bytes())
    )
}
