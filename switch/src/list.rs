//! `switch list`: the releases of a root, most recently activated first, with their env, their
//! commit and who signed them; a table for a person on a terminal.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use wheelship::doc::{self, doc_path, Switch};
use wheelship::fs::beneath::Kind;
use wheelship::host::history::History;
use wheelship::host::layout;
use wheelship::host::trust::Record;

use crate::root::{check_id, DeployRoot};
use crate::RESERVED;

pub(crate) struct Listed {
    pub id: String,
    pub env: Option<PathBuf>,
    pub last: Option<(usize, String)>,
    bad: bool,
    rev: Option<String>,
    verified_by: Option<String>,
}

/// The releases in `releases/`: real directories only (a link there is not a release).
pub(crate) fn releases(root: &DeployRoot, hist: &History) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    if root.handle()?.kind(layout::RELEASES)?.is_none() {
        return Ok(out);
    }
    let dir = root.releases_dir()?;
    for (name, kind) in dir.entries()? {
        let Some(id) = name.to_str().map(str::to_string) else {
            continue;
        };
        if id.starts_with('.') || kind != Kind::Dir || check_id(&id).is_err() {
            continue;
        }
        let env = dir.read_link(Path::new(&id).join("venv")).ok().map(|t| {
            let p = root.release(&id).join(t);
            fs::canonicalize(&p).unwrap_or(p)
        });
        let release = dir.open_dir(&id)?;
        let rev = release
            .read(Path::new(RESERVED).join("release.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|m| m["rev"].as_str().map(str::to_string));
        out.push(Listed {
            last: hist.last_activation(&id),
            bad: hist.is_bad(&id),
            env,
            rev,
            verified_by: Record::read(&release).and_then(|r| r.verified_by),
            id,
        });
    }
    // Most recently activated first, by the history's order; never-activated ones last.
    out.sort_by(|a, b| {
        b.last
            .as_ref()
            .map(|l| l.0)
            .cmp(&a.last.as_ref().map(|l| l.0))
            .then(a.id.cmp(&b.id))
    });
    Ok(out)
}

pub(crate) fn list(root: &DeployRoot) -> Result<Switch> {
    let hist = History::read(&root.dir)?;
    let current = root.current_id()?;
    let rels = releases(root, &hist)?;
    let previous = current
        .as_deref()
        .and_then(|c| hist.previous(c, |r| root.is_release(r)));
    let listed = rels
        .iter()
        .map(|r| {
            Ok(doc::Listed {
                id: r.id.clone(),
                current: current.as_deref() == Some(r.id.as_str()),
                env: r.env.clone().map(doc_path).transpose()?,
                last_activated: r.last.as_ref().map(|l| l.1.clone()),
                bad: r.bad,
                rev: r.rev.clone(),
                verified_by: r.verified_by.clone(),
                cannot_run: r
                    .env
                    .as_deref()
                    .and_then(wheelship::python::env_interp::dead)
                    .map(|d| d.to_string()),
                extra: Default::default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Switch {
        releases: Some(listed),
        ..root.section(current, previous)?
    })
}

/// `switch list` for a person: one release a line, the live one starred.
pub(crate) fn table(s: &Switch) -> String {
    let mut out = format!("releases of {}\n", s.root);
    for r in s.releases.iter().flatten() {
        let mark = if r.current { "*" } else { " " };
        let last = r.last_activated.as_deref().unwrap_or("never live");
        let rev = r.rev.as_deref().map_or("", |r| &r[..r.len().min(12)]);
        let signed = r
            .verified_by
            .as_deref()
            .map_or("unsigned".to_string(), |k| format!("signed by {k}"));
        let bad = if r.bad { "  BAD" } else { "" };
        let dead = r
            .cannot_run
            .as_deref()
            .map_or(String::new(), |why| format!("  CANNOT RUN: {why}"));
        out.push_str(&format!(
            "{mark} {}  {last}  commit {rev}  {signed}{bad}{dead}\n",
            r.id
        ));
    }
    if s.releases.as_ref().is_none_or(Vec::is_empty) {
        out.push_str("  (none)\n");
    }
    out
}
