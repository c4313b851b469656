//! Reading requirement files as pip does: each file's lines decoded, joined, stripped of
//! comments and expanded, then parsed (requirements, includes, options), with pip's own rules
//! for combining options across files.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use camino::Utf8PathBuf;
use wheelship::cli::io_reason;
use wheelship::doc::{Entry, ReqOptions, Requirements};
use wheelship::fs::fsx;

use crate::lines::Expansion;
use crate::options::{LineOpts, SetOp};
use crate::redact::Redactor;
use crate::{decode, lines, options, req};

/// Parses the files in order and returns the section and the warnings for people.
pub fn parse_files(
    files: &[PathBuf],
    cwd: &Path,
    getenv: &dyn Fn(&str) -> Option<String>,
    max_file_size: u64,
) -> Result<(Requirements, Vec<String>)> {
    let mut w = Walker {
        max_file_size,
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
        let src = Source {
            recorded: recorded(&real, &shown)?,
            shown,
            real: real.clone(),
        };
        w.parse_file(&src, false, &mut vec![real])?;
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

/// How deep `-r`/`-c` includes may nest (pip has no limit of its own but Python's recursion
/// limit; a chain this deep is a mistake or an attack).
const MAX_INCLUDE_DEPTH: usize = 100;

/// A requirement file being read: how the user would name it (messages), its realpath (to read
/// it and resolve what it includes), and the path the document records: the realpath, unless
/// the way to it went through `${VAR}`, whose value is never shown.
struct Source {
    shown: String,
    real: PathBuf,
    recorded: Utf8PathBuf,
}

/// The path the document records for a requirement file: text in JSON, so UTF-8.
pub(crate) fn recorded(path: &Path, shown: &str) -> Result<Utf8PathBuf> {
    Utf8PathBuf::from_path_buf(path.to_path_buf()).map_err(|p| {
        anyhow!(
            "{shown}: `{}` is not UTF-8, and the document records it",
            p.display()
        )
    })
}

/// The `-r`/`-c` path of an option line, and whether it is a constraints file.
fn include_of(opts: &LineOpts) -> Option<(&String, bool)> {
    opts.requirements
        .first()
        .map(|p| (p, false))
        .or_else(|| opts.constraints.first().map(|p| (p, true)))
}

struct Walker<'a> {
    max_file_size: u64,
    cwd: PathBuf,
    getenv: &'a dyn Fn(&str) -> Option<String>,
    expansions: Vec<Expansion>,
    files: Vec<Utf8PathBuf>,
    entries: Vec<Entry>,
    unpinned: Vec<(String, bool)>,
    state: State,
    warnings: Vec<String>,
}

impl Walker<'_> {
    fn redactor(&self) -> Redactor<'_> {
        Redactor::new(&self.expansions)
    }

    /// Reads and parses one requirement file, as pip does: each line with `${VAR}` expanded
    /// first (`docs/hashreq.md` says what is shown and hashed of a variable).
    fn parse_file(
        &mut self,
        src: &Source,
        constraint: bool,
        stack: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let shown = src.shown.as_str();
        let bytes =
            fsx::read_capped(&src.real, self.max_file_size, "--max-file-size").map_err(|e| {
                anyhow!(
                    "{shown}: cannot read requirements file: {}",
                    self.redactor().clean(&format!("{e:#}"))
                )
            })?;
        let text = decode::decode(&bytes).map_err(|e| anyhow!("{shown}: {e}"))?;
        if !self.files.contains(&src.recorded) {
            self.files.push(src.recorded.clone());
        }
        let raw = lines::splitlines(&text);
        let joined = lines::join_lines(raw.into_iter().enumerate().map(|(i, l)| (i as u32 + 1, l)));
        for (n, line) in lines::ignore_comments(joined) {
            // pip's `expand_env_variables`: after comments are stripped, before parsing.
            let getenv = self.getenv;
            let line = lines::expand_env(&line, getenv, &mut self.expansions);
            let at = |msg: String| anyhow!("{shown}:{n}: {msg}");
            let opts = self.line_options(&line).map_err(at)?;
            let (args_str, _) = lines::break_args_options(&line);
            // `--no-binary`/`--only-binary` act on pip's shared format control from any line.
            self.state.set_ops.extend(
                opts.set_ops
                    .iter()
                    .filter(|o| matches!(o, SetOp::NoBinary(_) | SetOp::OnlyBinary(_)))
                    .cloned(),
            );
            let clean = |m: String| at(self.redactor().clean(&m));
            if !args_str.is_empty() {
                let parsed = req::parse_requirement(&args_str, &self.cwd).map_err(clean)?;
                self.add_entry(parsed, src, n, constraint, false, &opts);
            } else if let Some(e) = opts.editables.first() {
                let parsed = req::parse_editable(e, &self.cwd).map_err(clean)?;
                self.add_entry(parsed, src, n, constraint, true, &opts);
            } else if let Some((path, nested)) = include_of(&opts) {
                // Read where pip reads; recorded and shown with secret values as written.
                let written = self.redactor().clean(path);
                self.include(src, n, &written, &path.clone(), nested, stack)?;
            } else {
                self.option_line(src, n, &opts);
            }
        }
        Ok(())
    }

    /// The options of a line (after its requirement, if any), with nothing secret in an error.
    fn line_options(&self, line: &str) -> Result<LineOpts, String> {
        let (_, opts_str) = lines::break_args_options(line);
        let tokens = lines::shlex_split(&opts_str).map_err(|e| {
            format!(
                "cannot split options `{}`: {e}",
                self.redactor().clean(&opts_str)
            )
        })?;
        options::parse(&tokens).map_err(|e| self.redactor().clean(&e))
    }

    /// Follows `-r`/`-c` `path` (as written) to `real_path` (with `${VAR}` expanded).
    fn include(
        &mut self,
        src: &Source,
        n: u32,
        path: &str,
        real_path: &str,
        constraint: bool,
        stack: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let shown = src.shown.as_str();
        let lower = real_path.to_ascii_lowercase();
        if lower.starts_with("http:") || lower.starts_with("https:") {
            return Err(wheelship::Hint::new(
                format!("{shown}:{n}: cannot include `{}`: remote requirement files are not read", self.redactor().clean(path)),
                "download it next to this file and include it by path, so that the hash is reproducible",
            )
            .into());
        }
        let local = |p: &str| match p.to_ascii_lowercase().strip_prefix("file://") {
            Some(rest) => p[p.len() - rest.len()..].to_string(),
            None => p.to_string(),
        };
        let (written, local_real) = (local(path), local(real_path));
        let dir = src.real.parent().unwrap_or(Path::new("/"));
        let target = req::abspath(dir, &local_real);
        let shown_dir = Path::new(shown).parent().unwrap_or(Path::new(""));
        let child_shown = if Path::new(&written).is_absolute() {
            written.clone()
        } else {
            shown_dir.join(&written).display().to_string()
        };
        if stack.len() >= MAX_INCLUDE_DEPTH {
            bail!(
                "{shown}:{n}: cannot include `{child_shown}`: includes nest deeper than {MAX_INCLUDE_DEPTH} files"
            );
        }
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
                .map(|p| self.redactor().clean(&p.display().to_string()))
                .collect();
            bail!(
                "{shown}:{n}: `{child_shown}` includes itself: {}",
                chain.join(" -> ")
            );
        }
        // Where the path went through `${VAR}`, the document records it as written.
        let recorded = if written == local_real && src.recorded.as_std_path() == src.real {
            child_real.clone()
        } else {
            req::abspath(
                src.recorded
                    .parent()
                    .map_or(Path::new("/"), |p| p.as_std_path()),
                &written,
            )
        };
        let child = Source {
            recorded: crate::walk::recorded(&recorded, &child_shown)?,
            shown: child_shown,
            real: child_real.clone(),
        };
        stack.push(child_real);
        self.parse_file(&child, constraint, stack)?;
        stack.pop();
        Ok(())
    }

    fn add_entry(
        &mut self,
        parsed: req::Parsed,
        src: &Source,
        n: u32,
        constraint: bool,
        editable: bool,
        opts: &LineOpts,
    ) {
        let red = Redactor::new(&self.expansions);
        if let Some(w) = &parsed.warning {
            self.warnings
                .push(format!("{}:{n}: {}", src.shown, red.clean(w)));
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
            specifier: red.clean(&parsed.specifier),
            extras: parsed.extras,
            marker: parsed.marker.map(|m| red.clean(&m)),
            hashes,
            url: parsed.url.map(|u| red.clean(&u)),
            file: src.recorded.clone(),
            line: n,
            constraint,
            editable,
            config_settings: opts.config_settings.clone(),
            ..Entry::default()
        };
        if !parsed.pinned {
            let label = parsed.name.unwrap_or_default();
            self.unpinned.push((label, constraint));
        }
        self.entries.push(entry);
    }

    /// pip's `handle_option_line`, replayed on our state.
    fn option_line(&mut self, src: &Source, n: u32, opts: &LineOpts) {
        let shown = &src.shown;
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
            let dir = src.real.parent().unwrap_or(Path::new("/"));
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
        let red = Redactor::new(&self.expansions);
        let hash = crate::hash(&self.entries, &options, &|form| red.digests(form));
        let section = Requirements {
            hash,
            files: self.files,
            entries: self.entries,
            options,
            unpinned,
            ..Requirements::default()
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
        let name = wheelship::python::names::canonicalize_name(name);
        other.retain(|o| *o != name);
        if !target.contains(&name) {
            target.push(name);
        }
    }
    target.sort();
}
