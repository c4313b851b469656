//! `bundle unpack`: verify, extract into a staging directory (`extract`), fsync, rename into
//! place, record what verified it, and print the document it carries. Fails
//! closed on anything hostile or corrupt (the policy of PEP 706's `data` filter, https://peps.python.org/pep-0706/, stricter): the whole release is refused and
//! the staging directory removed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use wheelship::doc::{doc_path, Bundle, Release};
use wheelship::failpoint::point;
use wheelship::fs::beneath::{Dir, Kind};
use wheelship::fs::fsx;
use wheelship::fs::owned::{self, OwnedDir, STAGING, TMP};
use wheelship::host::trust::{self, Policy, Record, RECORD};
use wheelship::{Document, Hint, UsageError};

use crate::extract::{extract_into, peek_manifest, Limits};
use crate::{sign, Manifest, UnpackArgs, RESERVED};
use wheelship::fs::io::At;

pub fn run(a: UnpackArgs) -> Result<()> {
    let stdin_doc = Document::from_stdin()?;
    let bundle: Option<Bundle> = stdin_doc.section("bundle")?;
    let archive = match (&a.archive, &bundle) {
        (Some(p), _) => p.clone(),
        (None, Some(b)) => PathBuf::from(&b.path),
        (None, None) => {
            return Err(UsageError(
                "no archive: give ARCHIVE, or a document with a `bundle` section".into(),
            )
            .into())
        }
    };
    let archive = std::path::absolute(&archive)?;
    let expected = match bundle.as_ref().map(|b| b.sha256.as_str()) {
        None | Some("") => None,
        Some(s) => Some(
            wheelship::text::check_sha256(s)
                .map_err(|e| anyhow!("stdin: `bundle.sha256`: {e}"))?
                .to_string(),
        ),
    };
    // Only a regular file is an archive: a FIFO or a device would hang or never end.
    let size = fsx::open_regular(&archive)?.1;
    let releases = OwnedDir::create(&a.releases, "releases directory")?;
    // The root whose policy applies is the canonical parent, however RELEASES was spelled.
    let root = owned::parent_of(&releases, "deploy root")?;
    let policy = Policy::load(&root, &a.trust)?;
    let (expected, verified) = check_signature(policy.as_ref(), &root, &archive, expected)?;
    let _lock = releases.lock(
        Duration::from_secs(600),
        "another unpack into this directory",
    )?;
    releases.clean(&[STAGING]);

    let manifest = match peek_manifest(&archive) {
        Ok(m) => m,
        Err(e) => {
            // A file that is not what the document describes: say that, it is the cause.
            if let Some(want) = &expected {
                let (found, _) = fsx::sha256_file(&archive)?;
                if found != *want {
                    return Err(mismatch(&archive, want, &found));
                }
            }
            return Err(e);
        }
    };
    wheelship::host::trust::check_not_future(&manifest.id, "this host")
        .with_context(|| format!("refusing `{}`", archive.display()))?;
    if let (Some(v), Some(policy)) = (&verified, &policy) {
        check_signed_release(&archive, v, &manifest.id)?;
        crate::provenance::verify_beside(&archive, policy, &manifest.id, &v.sha256)?;
        // Replay: an old signed release is not put back over a newer one by dropping a file.
        let newest = trust::newest_activated(root.path())?;
        trust::check_not_older(
            &manifest.id,
            newest.as_ref(),
            a.allow_downgrade,
            "--allow-downgrade",
        )?;
    }
    let limits = Limits {
        max_bytes: a.max_bytes,
        max_entries: a.max_entries,
        max_ratio: a.max_ratio,
        max_memory: a.max_memory,
    };
    let record = place(
        releases.dir(),
        &manifest,
        &archive,
        &limits,
        expected.as_deref(),
        verified.as_ref(),
    )?;
    let doc = document(
        releases.dir(),
        &manifest,
        &stdin_doc,
        &archive,
        size,
        &record,
    )?;
    doc.write_stdout()
}

fn mismatch(archive: &Path, want: &str, found: &str) -> anyhow::Error {
    anyhow!(
        "`{}`: sha256 mismatch: the document says {want}, the file has {found}",
        archive.display()
    )
}

/// Under a policy, a signature by a trusted key over the archive's exact bytes admits it: the
/// release id and dates are the verified archive's own. When the trusted comment is ours
/// (`bundle pack --sign`), what it names must agree with them; any other must name the
/// release id, as `minisign -S`'s own does (`file:app-<id>.tar.zst`): the signed comment is
/// what ties the release's record to the signed bytes when switch checks it again.
fn check_signed_release(archive: &Path, v: &sign::Verified, id: &str) -> Result<()> {
    match trust::comment_names(&v.comment) {
        Some((signed_id, _)) if signed_id != id => bail!(
            "`{}`: signed by key {} as release `{signed_id}`, but it is release `{id}`",
            archive.display(),
            v.signer
        ),
        Some((_, sha)) if sha != v.sha256 => bail!(
            "`{}`: the signature's trusted comment names sha256 {sha}, the file has {}",
            archive.display(),
            v.sha256
        ),
        Some(_) => Ok(()),
        None if trust::comment_names_release(&v.comment, id) => Ok(()),
        None => Err(Hint::new(
            format!(
                "`{}`: the signature by key {} does not name release `{id}` (trusted comment `{}`)",
                archive.display(),
                v.signer,
                wheelship::text::shown(&v.comment, 200)
            ),
            "sign the archive under its own name (`minisign -S -m app-<id>.tar.zst`: its default trusted comment names the file), or with `bundle pack --sign`",
        )
        .into()),
    }
}

/// The release extracted into a staging directory and renamed into place (or, when it is
/// there, checked as the same), with its record: what the archive's sha256 was and what
/// verified it.
fn place(
    releases: &Dir,
    manifest: &Manifest,
    archive: &Path,
    limits: &Limits,
    expected: Option<&str>,
    verified: Option<&sign::Verified>,
) -> Result<Record> {
    let id = manifest.id.as_str();
    let record = |sha256: String| Record {
        id: id.to_string(),
        sha256,
        verified_by: verified.map(|v| v.signer.clone()),
        signature: verified.map(|v| v.text.clone()),
        prehash: verified.map(|v| v.prehash.clone()),
    };
    match releases.kind(id)? {
        None => {
            // One pass: the sha256 is computed while extracting into the staging directory,
            // which is thrown away if it does not match.
            let staging = wheelship::fs::temp::temp_name(STAGING);
            let res = extract_into(archive, releases, &staging, limits, manifest, expected)
                .and_then(|sha256| {
                    let r = record(sha256);
                    write_record(&releases.open_dir(&staging)?, &r)?;
                    Ok(r)
                });
            let record = match res {
                Ok(r) => r,
                Err(e) => {
                    let _ = releases.remove_all(&staging);
                    if let Some(want) = expected {
                        let (found, _) = fsx::sha256_file(archive)?;
                        if found != want {
                            return Err(mismatch(archive, want, &found));
                        }
                    }
                    return Err(e.context(format!("refusing `{}`", archive.display())));
                }
            };
            point("unpack-before-rename");
            releases.rename(&staging, releases, id)?;
            releases.sync()?;
            Ok(record)
        }
        Some(Kind::Dir) => {
            let sha256 = reuse(releases, id, archive, expected)?;
            let release = releases.open_dir(id)?;
            let had = Record::read(&release);
            // Verified now, or verified before: a run without trust never erases a record.
            match (verified, had) {
                (None, Some(had)) if had.sha256 == sha256 => Ok(had),
                _ => {
                    let r = record(sha256);
                    write_record(&release, &r)?;
                    Ok(r)
                }
            }
        }
        Some(_) => bail!(
            "`{}` exists and is not a directory: refusing it",
            releases.show(id).display()
        ),
    }
}

/// Writes (or replaces) the release's record, atomically and durably.
fn write_record(release: &Dir, r: &Record) -> Result<()> {
    let tmp = Path::new(RESERVED).join(wheelship::fs::temp::temp_name(TMP));
    let mut f = release.create_file(&tmp, 0o644)?;
    f.write_all(&serde_json::to_vec_pretty(r)?)
        .and_then(|()| f.sync_all())
        .at("write", release.show(&tmp))?;
    release.rename(&tmp, release, RECORD)?;
    release.open_dir(RESERVED)?.sync()
}

/// Signed releases: under a policy, nothing is extracted from an archive that none of its keys
/// signed, and what is extracted is held to the bytes whose signature was checked. The sha256
/// to hold the archive to, and what the verification established.
fn check_signature(
    policy: Option<&Policy>,
    root: &OwnedDir,
    archive: &Path,
    expected: Option<String>,
) -> Result<(Option<String>, Option<sign::Verified>)> {
    let Some(policy) = policy else {
        if wheelship::cli::progress::shown() {
            eprintln!(
                "bundle: no trusted key (--trust, or `{}`): the archive's signature is not checked",
                root.join(trust::TRUSTED_FILE).display()
            );
        }
        return Ok((expected, None));
    };
    let v = sign::verify(archive, policy)?;
    if let Some(e) = &expected {
        if *e != v.sha256 {
            bail!(
                "`{}`: sha256 mismatch: the document says {e}, the signed file has {}",
                archive.display(),
                v.sha256
            );
        }
    }
    Ok((Some(v.sha256.clone()), Some(v)))
}

/// Sections of the document that `bundle unpack` and the tools after it write: an archive's
/// document never supplies them (a hand-made one could claim `bundle.verified_by`, an `env`,
/// a `switch`). `bundle pack` leaves them out of what it embeds.
const NOT_CARRIED: &[&str] = &["bundle", "release", "env", "switch", "have", "thin", "deb"];

/// The document the archive carries, with the stdin document's other sections kept, the
/// lock's `dir` where its wheels now are, and the `bundle` and `release` sections, which
/// unpack writes from what it established itself.
fn document(
    releases: &Dir,
    manifest: &Manifest,
    stdin_doc: &Document,
    archive: &Path,
    size: u64,
    record: &Record,
) -> Result<Document> {
    let id = manifest.id.as_str();
    let final_dir = releases.show(id);
    let release = releases.open_dir(id)?;
    let carried = String::from_utf8(release.read(Path::new(RESERVED).join("document.json"))?)
        .with_context(|| format!("the document of `{}` is not UTF-8", final_dir.display()))?;
    // Unpacked or reused just now: a prune racing this deploy keeps it (switch prune --grace).
    if let Err(e) = release.touch(RESERVED) {
        wheelship::cli::warn(format_args!(
            "{e:#} (switch prune will not see it as in flight)"
        ));
    }
    let mut doc = Document::parse(&carried, "the release's document.json")?;
    for name in NOT_CARRIED {
        doc.remove(name);
    }
    for (k, v) in stdin_doc.sections() {
        if !doc.has(k) {
            doc.set_raw(k, v.clone());
        }
    }
    let mut doc = wheelship::host::carried::on_host(doc, &final_dir)?;
    // The build box's `bundle` section (from stdin) keeps what pack said; what unpack
    // establishes is its own.
    let given: Bundle = stdin_doc.section("bundle")?.unwrap_or_default();
    let bundle = Bundle {
        path: doc_path(archive)?,
        id: manifest.id.clone(),
        sha256: record.sha256.clone(),
        size,
        rev: Some(manifest.rev.clone()),
        name: Some(manifest.name.clone()),
        verified_by: record.verified_by.clone(),
        ..given
    };
    doc.set("bundle", &bundle)?;
    let release = Release {
        id: manifest.id.clone(),
        dir: doc_path(final_dir)?,
        name: Some(manifest.name.clone()),
        rev: Some(manifest.rev.clone()),
        extra: Default::default(),
    };
    doc.set("release", &release)?;
    Ok(doc)
}

/// Re-deploying: the release is there; the document's sha256 (or the file's) must be the one
/// it was unpacked from.
fn reuse(releases: &Dir, id: &str, archive: &Path, expected: Option<&str>) -> Result<String> {
    let sha256 = match expected {
        Some(s) => s.to_string(),
        None => fsx::sha256_file(archive)?.0,
    };
    let had = releases
        .read(Path::new(id).join(RESERVED).join("archive.sha256"))
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    if had != sha256 {
        return Err(Hint::new(
            format!(
                "`{}` exists but holds another archive (sha256 {had})",
                releases.show(id).display(),
            ),
            "remove it (it is not live) or check the archive",
        )
        .into());
    }
    Ok(sha256)
}
