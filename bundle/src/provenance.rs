//! Where a release came from, beside its archive: `<archive>.intoto.json`, an in-toto
//! Statement v1 whose predicate is SLSA Provenance v1 — the archive by name and sha256 as its
//! subject, `bundle pack` and its parameters as the build, the commit and every wheel (by
//! sha256) as resolved dependencies, the builder and the times. `pack --sign` signs it like
//! the archive; `unpack` under a trust policy verifies it when it is there.
//! <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>,
//! <https://slsa.dev/spec/v1.0/provenance>.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use wheelship::fs::fsx;

use crate::Manifest;

pub const STATEMENT: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE: &str = "https://slsa.dev/provenance/v1";
/// What `buildType` names: wheelship's release build, version 1 of its parameters.
pub const BUILD_TYPE: &str =
    "https://github.com/wheelship/wheelship/blob/main/docs/provenance.md#release-v1";

/// Provenance files are small; a larger one is not one.
const MAX: u64 = 16 << 20;

pub fn path_of(archive: &Path) -> PathBuf {
    let mut p = archive.as_os_str().to_owned();
    p.push(".intoto.json");
    PathBuf::from(p)
}

/// The trusted comment of its signature: the release and the archive it is about.
pub fn comment(id: &str, archive_sha256: &str) -> String {
    format!("wheelship provenance of {id} sha256 {archive_sha256}")
}

/// What the build was, for the statement.
pub struct Build<'a> {
    pub archive: &'a Path,
    pub sha256: &'a str,
    pub manifest: &'a Manifest,
    pub repository: Option<String>,
    pub wheels: &'a [(String, String, u64)],
    /// The sdist each wheel built on the build box came from, by the wheel's sha256.
    pub sources: &'a std::collections::BTreeMap<String, serde_json::Value>,
    pub level: i32,
    pub no_wheels: bool,
    pub started: String,
}

/// Writes `<archive>.intoto.json` (atomically): its path.
pub fn write(b: &Build) -> Result<PathBuf> {
    let name = b
        .archive
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| anyhow!("`{}` is not a file", b.archive.display()))?;
    let m = b.manifest;
    let mut deps = vec![json!({
        "uri": match &b.repository {
            Some(r) => format!("git+{r}@{}", m.rev),
            None => format!("git:{}", m.rev),
        },
        "digest": {"gitCommit": m.rev, "gitTree": m.tree},
    })];
    for (file, sha, _) in b.wheels {
        let mut d = json!({"name": file, "digest": {"sha256": sha}});
        if let Ok(w) = wheelship::python::names::WheelFilename::parse(file) {
            let name = wheelship::python::names::canonicalize_name(&w.name);
            d["uri"] = json!(crate::sbom::purl(&name, &w.version, file));
            // Built here from an sdist: the source it was built from is an input too.
            if let Some(b) = b.sources.get(sha) {
                let sdist = b["file"].as_str().unwrap_or_default();
                let mut s = json!({
                    "name": sdist,
                    "uri": crate::sbom::purl(&name, &w.version, sdist),
                    "digest": {"sha256": b["sha256"]},
                    "annotations": {"builtInto": file},
                });
                if let Some(url) = b["url"].as_str() {
                    s["downloadLocation"] = json!(url);
                }
                deps.push(d);
                deps.push(s);
                continue;
            }
        }
        deps.push(d);
    }
    let statement = json!({
        "_type": STATEMENT,
        "subject": [{"name": name, "digest": {"sha256": b.sha256}}],
        "predicateType": PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "repository": b.repository,
                    "rev": m.rev,
                    "name": m.name,
                    "level": b.level,
                    "noWheels": b.no_wheels,
                },
                "internalParameters": {"wheelship": env!("CARGO_PKG_VERSION")},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": format!("urn:wheelship:bundle-pack:{}", env!("CARGO_PKG_VERSION"))},
                "metadata": {
                    "invocationId": invocation(&m.id),
                    "startedOn": b.started,
                    "finishedOn": wheelship::time::now_rfc3339(),
                },
            },
        },
    });
    let path = path_of(b.archive);
    let mut text = serde_json::to_vec_pretty(&statement)?;
    text.push(b'\n');
    fsx::write_atomic(&path, &text)?;
    Ok(path)
}

/// Who packed where, and which release: `user@host:id`, without the parts that are unknown.
fn invocation(id: &str) -> String {
    let user = std::env::var("USER").unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    invocation_of(user.trim(), host.trim(), id)
}

fn invocation_of(user: &str, host: &str, id: &str) -> String {
    let at = match (user.is_empty(), host.is_empty()) {
        (false, false) => format!("{user}@{host}:"),
        (true, false) => format!("{host}:"),
        (false, true) => format!("{user}@"),
        (true, true) => String::new(),
    };
    format!("{at}{id}")
}

/// Reads a statement and checks that it is about the archive whose sha256 is `sha256`.
pub fn check(path: &Path, sha256: &str) -> Result<()> {
    let text = fsx::read_capped(path, MAX, "a provenance statement")?;
    let v: Value = serde_json::from_slice(&text)
        .map_err(|e| anyhow!("`{}` is not JSON: {e}", path.display()))?;
    if v["_type"] != STATEMENT || v["predicateType"] != PREDICATE {
        bail!(
            "`{}` is not an in-toto statement of SLSA provenance",
            path.display()
        );
    }
    let about = v["subject"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["digest"]["sha256"] == sha256));
    if !about {
        bail!(
            "`{}` is the provenance of another archive (its subject is not sha256 {sha256})",
            path.display()
        );
    }
    Ok(())
}

/// Under a trust policy, a signed provenance beside an archive must verify: signed by a
/// trusted key for this release and archive, and about that archive. One without a signature
/// (the archive signed with the minisign tool, say) is not verified, and that is said: the
/// archive's own signature is what lets the release in.
pub fn verify_beside(
    archive: &Path,
    policy: &wheelship::host::trust::Policy,
    id: &str,
    sha256: &str,
) -> Result<()> {
    let path = path_of(archive);
    if !path.exists() {
        return Ok(());
    }
    if !crate::sign::signature_path(&path).exists() {
        eprintln!(
            "bundle: warning: `{}` is not signed: the provenance is not verified",
            path.display()
        );
        return Ok(());
    }
    let v = crate::sign::verify(&path, policy)?;
    if v.comment != comment(id, sha256) {
        bail!(
            "`{}`: its signature's trusted comment is `{}`, not that of release {id}'s archive",
            path.display(),
            v.comment
        );
    }
    check(&path, sha256)
}

/// The repository's URL (`remote.origin.url`), credentials removed, when it has one.
pub fn repository(repo: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(repo)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let url = String::from_utf8(out.stdout).ok()?.trim().to_string();
    wheelship::text::url_without_userinfo(&url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn invocation_has_no_empty_parts() {
        assert_eq!(super::invocation_of("ci", "web1", "r1"), "ci@web1:r1");
        assert_eq!(super::invocation_of("", "web1", "r1"), "web1:r1");
        assert_eq!(super::invocation_of("ci", "", "r1"), "ci@r1");
        assert_eq!(super::invocation_of("", "", "r1"), "r1");
    }
}
