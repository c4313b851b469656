//! The controller's one decision of what a host needs sent, from the hosts' facts (what
//! `wheelship-host facts` printed on each) and the release's document:
//!
//! - the programs (the door, `bundle`, `mkenv`), stripped, by sha256: each one whose sha256
//!   differs from the host's (or that the host lacks);
//! - the release: nothing to a host whose `incoming/` has its archive; a thin copy (without the wheels
//!   every such host holds) when `bundle thin` says it is worth it, with the whole archive as
//!   the fallback when the host cannot rebuild it; else the whole archive;
//! - the archive's signature and provenance, when they are beside it.
//!
//! The archive is taken only as its document describes it (its name, size and sha256,
//! checked on the one file opened), before anything is sent. The plan is a JSON document;
//! `scripts/deploy` and the Ansible plugin only carry it out.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wheelship::doc::{Bundle, HaveWheel};
use wheelship::fs::io::At;
use wheelship::host::layout;
use wheelship::Document;

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The hosts' facts: a JSON object of host name to what `wheelship-host facts` printed there
    #[arg(long, value_name = "FILE")]
    pub facts: PathBuf,
    /// The directory of this controller's wheelship binaries (the release build)
    #[arg(long, value_name = "DIR")]
    pub bin: PathBuf,
    /// The archive to deploy when there is no document (a bare `.tar.zst`)
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Where the thin copy is written [default: no thin copy]
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// The smallest archive a thin copy is made for
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub thin_min: u64,
    /// Always send the whole archive
    #[arg(long)]
    pub full: bool,
    /// Send no archive: the hosts get it elsewhere (an artifact server)
    #[arg(long)]
    pub no_archive: bool,
    /// Plan a rollback instead: every host to one release, --to or the one the fleet was on
    /// before (the previous release of the hosts on the newest one, which the others must
    /// already be on); refused, naming the hosts, when they disagree
    #[arg(long, conflicts_with_all = ["archive", "full", "no_archive"])]
    pub rollback: bool,
    /// With --rollback: the release every host goes back to
    #[arg(long, value_name = "ID", requires = "rollback")]
    pub to: Option<String>,
}

/// One file the plan may send: where it is here, and what it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct File {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// What one host gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Host {
    /// The names of `files` to send (their upload names), in order.
    pub send: Vec<String>,
    /// What to send instead of the thin copy when the host cannot rebuild the archive.
    pub fallback: Vec<String>,
    /// Whether the release still has to be staged there (it is neither unpacked nor live).
    pub stage: bool,
    /// Whether the door runs from the uploads (it is among them).
    pub door_sent: bool,
    /// A rollback: the release this host goes back to (none when it is on it already).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_to: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Plan {
    /// The release, when known.
    pub release: Option<String>,
    /// Every file a host may be sent, by upload name.
    pub files: BTreeMap<String, File>,
    /// The sha256 of the door the controller sends.
    pub door_sha256: String,
    pub hosts: BTreeMap<String, Host>,
    /// The thin copy, when one was made: how many wheels it leaves out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thin: Option<ThinMade>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThinMade {
    pub name: String,
    pub wheels_cut: usize,
    pub archive_size: u64,
}

pub fn run(a: &PlanArgs) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    let text = wheelship::fs::fsx::read_capped(&a.facts, 64 << 20, "the facts file")?;
    let facts: BTreeMap<String, Value> = serde_json::from_slice(&text)
        .with_context(|| format!("`{}`: not an object of hosts' facts", a.facts.display()))?;
    let plan = plan(a, &doc, &facts)?;
    doc.set("plan", &plan)?;
    doc.write_stdout()
}

/// The release's archive as the document describes it: name `<…><id>.tar.zst`, its size and
/// sha256, read through the one file opened. Without a document, the archive given.
fn archive(a: &PlanArgs, doc: &Document) -> Result<Option<(String, File)>> {
    let bundle: Option<Bundle> = doc.section("bundle")?;
    let (path, want) = match (&bundle, &a.archive) {
        (Some(b), _) => (PathBuf::from(b.path.as_str()), Some(b)),
        (None, Some(p)) => (p.clone(), None),
        (None, None) => return Ok(None),
    };
    if let Some(b) = want {
        wheelship::text::check_file_name(&b.id).map_err(|_| {
            anyhow!(
                "bundle.id `{}` is not a safe release id (letters, digits, `.`, `_`, `-`)",
                b.id.escape_debug()
            )
        })?;
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("`{}` is not an archive's path", path.display()))?;
    wheelship::text::check_file_name(name).map_err(|_| {
        anyhow!(
            "`{}` is not a safe archive name (letters, digits, `.`, `_`, `-`): refusing to send it",
            name.escape_debug()
        )
    })?;
    if let Some(b) = want {
        if !name.ends_with(&format!("{}.tar.zst", b.id)) {
            bail!(
                "`{}` is not the archive of release {} that the document describes (its name does not end in `{}.tar.zst`)",
                path.display(),
                b.id,
                b.id
            );
        }
    } else if !name.ends_with(".tar.zst") {
        bail!("`{}` is not a release archive (`.tar.zst`)", path.display());
    }
    let (f, _) = wheelship::fs::fsx::open_regular(&path)?;
    let (sha256, size) = wheelship::hash::sha256_reader(f).at("read", &path)?;
    let upload = match want {
        Some(b) => {
            if !name.ends_with(&format!("{}.tar.zst", b.id)) || size != b.size || sha256 != b.sha256
            {
                bail!(
                    "`{}` is not the archive of release {} that the document describes (its name, size or sha256 differ)",
                    path.display(),
                    b.id
                );
            }
            // On the host the archive is named by the release id.
            format!("{}.tar.zst", b.id)
        }
        None => name.to_string(),
    };
    Ok(Some((upload, File { path, sha256, size })))
}

/// The whole decision.
pub fn plan(a: &PlanArgs, doc: &Document, facts: &BTreeMap<String, Value>) -> Result<Plan> {
    if a.rollback {
        return rollback(a.to.as_deref(), facts);
    }
    let mut p = Plan::default();
    let arch = rustix::system::uname()
        .machine()
        .to_string_lossy()
        .to_string();
    let other: Vec<String> = facts
        .iter()
        .filter(|(_, f)| f["arch"].as_str() != Some(arch.as_str()))
        .map(|(h, f)| format!("{h} is {}", f["arch"].as_str().unwrap_or("unknown")))
        .collect();
    if !other.is_empty() {
        bail!(
            "{} and this controller is {arch}: install the wheelship binaries of each host's architecture in ROOT/bin there",
            other.join(", ")
        );
    }
    for (name, file) in super::ship::shipped(&a.bin)? {
        p.files.insert(name, file);
    }
    p.door_sha256 = p.files[layout::SHIPPED[0]].sha256.clone();
    let release = if a.no_archive { None } else { archive(a, doc)? };
    p.release = match doc.section::<Bundle>("bundle")? {
        Some(b) => Some(b.id),
        None => release
            .as_ref()
            .map(|(n, _)| n.trim_end_matches(".tar.zst").to_string()),
    };
    let needing: Vec<&String> = facts
        .iter()
        .filter(|(_, f)| !has_release(f, p.release.as_deref()))
        .map(|(h, _)| h)
        .collect();
    let thin = match (&release, &a.scratch) {
        (Some((name, file)), Some(scratch)) if !a.full && file.size >= a.thin_min => {
            thin_copy(a, doc, name, &file.path, scratch, &needing, facts)?
        }
        _ => None,
    };
    if let Some((name, file)) = &release {
        p.files.insert(name.clone(), file.clone());
        for suffix in [".minisig", ".intoto.json", ".intoto.json.minisig"] {
            let beside = PathBuf::from(format!("{}{suffix}", file.path.display()));
            if beside.is_file() {
                let (sha256, size) = wheelship::fs::fsx::sha256_file(&beside)?;
                p.files.insert(
                    format!("{name}{suffix}"),
                    File {
                        path: beside,
                        sha256,
                        size,
                    },
                );
            }
        }
    }
    if let Some((made, thin_file, _)) = &thin {
        p.files.insert(made.name.clone(), thin_file.clone());
        p.thin = Some(made.clone());
    }
    for (h, f) in facts {
        let host = host_plan(
            &p,
            f,
            release.as_ref().map(|(n, _)| n.as_str()),
            thin.as_ref(),
            h,
        );
        p.hosts.insert(h.clone(), host);
    }
    Ok(p)
}

/// Whether a host has the release unpacked or live.
fn has_release(f: &Value, release: Option<&str>) -> bool {
    let live = f["list"]["switch"]["current"].as_str();
    f["staged"].as_bool() == Some(true) || (release.is_some() && live == release)
}

fn host_plan(
    p: &Plan,
    f: &Value,
    archive: Option<&str>,
    thin: Option<&(ThinMade, File, Vec<String>)>,
    host: &str,
) -> Host {
    let mut h = Host::default();
    for name in layout::SHIPPED {
        if f["bin"][name].as_str() != Some(p.files[*name].sha256.as_str()) {
            h.send.push(name.to_string());
        }
    }
    h.door_sent = h.send.iter().any(|n| n == layout::SHIPPED[0]);
    h.stage = !has_release(f, p.release.as_deref());
    let Some(archive) = archive else {
        return h;
    };
    // The archive the door unpacks waits in ROOT/incoming: nothing to send when it is there.
    if f["archived"].as_bool() == Some(true) {
        return h;
    }
    let beside: Vec<String> = p
        .files
        .keys()
        .filter(|k| k.starts_with(archive) && k.len() > archive.len() && !k.ends_with(".thin"))
        .cloned()
        .collect();
    match thin {
        Some((made, _, hosts)) if hosts.iter().any(|x| x == host) => {
            h.send.push(made.name.clone());
            h.fallback.push(archive.to_string());
        }
        _ => h.send.push(archive.to_string()),
    }
    h.send.extend(beside);
    h
}

/// The thin copy for the wheels every host that needs the release and holds releases has,
/// when `bundle thin` says it is worth sending: its upload name, file, and the hosts it is for.
fn thin_copy(
    a: &PlanArgs,
    doc: &Document,
    name: &str,
    archive: &Path,
    scratch: &Path,
    needing: &[&String],
    facts: &BTreeMap<String, Value>,
) -> Result<Option<(ThinMade, File, Vec<String>)>> {
    let holders: Vec<(&String, Vec<HaveWheel>)> = needing
        .iter()
        .filter_map(|h| {
            let wheels = &facts[*h]["have"]["have"]["wheels"];
            serde_json::from_value::<Vec<HaveWheel>>(wheels.clone())
                .ok()
                .filter(|w| !w.is_empty())
                .map(|w| (*h, w))
        })
        .collect();
    if holders.is_empty() || doc.section::<Bundle>("bundle")?.is_none() {
        return Ok(None);
    }
    let mut common: BTreeMap<String, u64> = holders[0]
        .1
        .iter()
        .map(|w| (w.sha256.clone(), w.size))
        .collect();
    for (_, w) in &holders[1..] {
        common.retain(|sha, _| w.iter().any(|x| &x.sha256 == sha));
    }
    std::fs::create_dir_all(scratch).at("create", scratch)?;
    let have = scratch.join("have.json");
    let wheels: Vec<Value> = common
        .iter()
        .map(|(s, n)| serde_json::json!({"sha256": s, "size": n}))
        .collect();
    std::fs::write(
        &have,
        serde_json::json!({"have": {"wheels": wheels}}).to_string(),
    )
    .at("write", &have)?;
    let thin_name = format!("{name}.thin");
    let out = scratch.join(&thin_name);
    let thin = bundle_thin(&a.bin.join("bundle"), &have, &out, archive, doc)?;
    if !thin.worth {
        return Ok(None);
    }
    let (sha256, size) = wheelship::fs::fsx::sha256_file(&out)?;
    let hosts = holders.iter().map(|(h, _)| (*h).clone()).collect();
    let made = ThinMade {
        name: thin_name,
        wheels_cut: thin.wheels_cut,
        archive_size: thin.archive_size,
    };
    Ok(Some((
        made,
        File {
            path: out,
            sha256,
            size,
        },
        hosts,
    )))
}

fn live(f: &Value) -> Option<&str> {
    f["list"]["switch"]["current"].as_str()
}

/// The one release a fleet goes back to: `to`, else the previous release of the hosts on the
/// newest release live (by commit time), which every other host must already be on.
fn rollback(to: Option<&str>, facts: &BTreeMap<String, Value>) -> Result<Plan> {
    let target = match to {
        Some(t) => {
            wheelship::text::check_file_name(t).map_err(|e| anyhow!("--to: {e}"))?;
            t.to_string()
        }
        None => fleet_previous(facts)?,
    };
    let mut p = Plan {
        release: Some(target.clone()),
        ..Plan::default()
    };
    for (h, f) in facts {
        let host = Host {
            revert_to: (live(f) != Some(target.as_str())).then(|| target.clone()),
            ..Host::default()
        };
        p.hosts.insert(h.clone(), host);
    }
    Ok(p)
}

fn fleet_previous(facts: &BTreeMap<String, Value>) -> Result<String> {
    let newest = facts
        .values()
        .filter_map(live)
        .max_by_key(|id| (wheelship::host::trust::commit_time(id).unwrap_or(""), *id))
        .ok_or_else(|| anyhow!("no host has a release live: nothing to roll back"))?;
    let previous: Vec<(&String, Option<&str>)> = facts
        .iter()
        .filter(|(_, f)| live(f) == Some(newest))
        .map(|(h, f)| (h, f["list"]["switch"]["previous"].as_str()))
        .collect();
    let target = match previous.first() {
        Some((_, Some(t))) if previous.iter().all(|(_, p)| *p == Some(*t)) => t.to_string(),
        _ => {
            let said: Vec<String> = previous
                .iter()
                .map(|(h, p)| format!("{h} would go back to {}", p.unwrap_or("nothing")))
                .collect();
            bail!(
                "the hosts on {newest} do not agree where to go back: {}; name the release with --to (wheelship_to)",
                said.join(", ")
            );
        }
    };
    let astray: Vec<String> = facts
        .iter()
        .filter(|(_, f)| live(f) != Some(newest) && live(f) != Some(target.as_str()))
        .map(|(h, f)| format!("{h} is on {}", live(f).unwrap_or("nothing")))
        .collect();
    if !astray.is_empty() {
        bail!(
            "the fleet would go back to {target} from {newest}, but {}: name the release with --to (wheelship_to)",
            astray.join(", ")
        );
    }
    Ok(target)
}

/// `bundle thin --have HAVE --out OUT ARCHIVE` of the controller's build, on `doc`: its `thin`
/// section.
fn bundle_thin(
    bundle: &Path,
    have: &Path,
    out: &Path,
    archive: &Path,
    doc: &Document,
) -> Result<wheelship::doc::Thin> {
    let mut child = Command::new(bundle)
        .arg("thin")
        .arg("--have")
        .arg(have)
        .arg("--out")
        .arg(out)
        .arg(archive)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .at("run", bundle)?;
    std::io::Write::write_all(
        &mut child.stdin.take().expect("piped"),
        doc.to_json().as_bytes(),
    )
    .at("write to", bundle)?;
    let mut text = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut text)
        .at("read from", bundle)?;
    if !child.wait().at("run", bundle)?.success() {
        bail!("step 'bundle thin' failed (see above)");
    }
    Document::parse(&text, "bundle thin")?
        .section("thin")?
        .ok_or_else(|| anyhow!("bundle thin printed no `thin` section"))
}
