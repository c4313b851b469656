//! What a release holds, as a CycloneDX 1.6 SBOM (`.wheelship/sbom.cdx.json` in the archive,
//! so the archive's sha256 and signature cover it): the app as `metadata.component`, one
//! component per locked wheel (its purl, the lock's sha256, the license its metadata declares,
//! the SBOMs it ships under `.dist-info/sboms/` (PEP 770) referenced), and the dependency graph
//! from the wheels' `Requires-Dist` as far as the lock resolves it. The same release gives the
//! same bytes: the only time in it is the commit's.
//! <https://cyclonedx.org/docs/1.6/json/>, <https://peps.python.org/pep-0770/>,
//! <https://github.com/package-url/purl-spec>.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use wheelship::python::names::{canonicalize_name, WheelFilename};

use crate::sbom_graph::{self, Environments, Requires};
use crate::Manifest;

/// METADATA is small; a larger one is not read (its wheel is still listed).
const MAX_METADATA: u64 = 4 << 20;

/// What the SBOM says of one wheel, from its file.
struct WheelInfo {
    name: String,
    version: String,
    file: String,
    sha256: String,
    licenses: Vec<Value>,
    requires: Vec<Requires>,
    sboms: Vec<String>,
}

/// What the lock was resolved for (the document's `wheelhouse` section): each target's marker
/// environment, where it is known; the target described for the SBOM's readers.
pub struct Targets {
    pub envs: Environments,
    pub properties: Vec<Value>,
    /// The sdist each wheel built on the build box came from (`built_from` of its lock
    /// entry), by the wheel's sha256.
    pub sources: BTreeMap<String, Value>,
}

impl Targets {
    pub fn of(wh: Option<&wheelship::doc::Wheelhouse>) -> Targets {
        let sources: BTreeMap<String, Value> = wh
            .into_iter()
            .flat_map(|w| {
                w.wheels
                    .iter()
                    .chain(w.locks.iter().flatten().flat_map(|l| &l.wheels))
            })
            .filter_map(|w| Some((w.sha256.clone(), w.extra.get("built_from")?.clone())))
            .filter(|(_, b)| b["file"].is_string() && b["sha256"].is_string())
            .collect();
        let targets: Vec<&wheelship::doc::Target> = match wh {
            Some(w) => match &w.locks {
                Some(locks) => locks.iter().map(|l| &l.target).collect(),
                None => w.target.iter().collect(),
            },
            None => Vec::new(),
        };
        if targets.is_empty() {
            return Targets {
                envs: vec![None],
                properties: Vec::new(),
                sources,
            };
        }
        let envs = targets
            .iter()
            .map(|t| t.markers.as_ref().and_then(environment))
            .collect();
        let mut properties = Vec::new();
        for t in targets {
            let python = t.python.as_ref().or(t.python_version.as_ref());
            let platforms = t
                .platforms
                .clone()
                .unwrap_or_else(|| t.platform.iter().cloned().collect());
            let text = [
                t.spec.clone().unwrap_or_else(|| "native".into()),
                format!(
                    "{} {}",
                    t.implementation.as_deref().unwrap_or("python"),
                    python.map_or("", String::as_str)
                )
                .trim()
                .to_string(),
                platforms.join(" "),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
            properties.push(json!({"name": "wheelship:target", "value": text}));
        }
        Targets {
            envs,
            properties,
            sources,
        }
    }
}

/// A recorded marker environment as pep508_rs takes it; `None` when it lacks a field.
fn environment(m: &BTreeMap<String, String>) -> Option<pep508_rs::MarkerEnvironment> {
    let g = |k: &str| m.get(k).map(String::as_str);
    pep508_rs::MarkerEnvironment::try_from(pep508_rs::MarkerEnvironmentBuilder {
        implementation_name: g("implementation_name")?,
        implementation_version: g("implementation_version")?,
        os_name: g("os_name")?,
        platform_machine: g("platform_machine")?,
        platform_python_implementation: g("platform_python_implementation")?,
        platform_release: g("platform_release")?,
        platform_system: g("platform_system")?,
        platform_version: g("platform_version")?,
        python_full_version: g("python_full_version")?,
        python_version: g("python_version")?,
        sys_platform: g("sys_platform")?,
    })
    .ok()
}

/// The projects the requirements asked for (hashreq's entries, not its constraints) that the
/// lock has, with the extras each was asked with; every locked project without requirements.
fn asked(
    reqs: Option<&Value>,
    by_name: &BTreeMap<&str, String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut asked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    match reqs.and_then(|r| r["entries"].as_array()) {
        Some(entries) => {
            for e in entries.iter().filter(|e| e["constraint"] != true) {
                let Some(n) = e["name"].as_str().map(canonicalize_name) else {
                    continue;
                };
                if !by_name.contains_key(n.as_str()) {
                    continue;
                }
                let extras = e["extras"].as_array().into_iter().flatten();
                asked
                    .entry(n)
                    .or_default()
                    .extend(extras.filter_map(|x| x.as_str()).map(canonicalize_name));
            }
        }
        None => asked.extend(by_name.keys().map(|k| (k.to_string(), BTreeSet::new()))),
    }
    asked
}

/// The SBOM of a release: its JSON bytes.
pub fn sbom(
    m: &Manifest,
    wheel_dir: &Path,
    wheels: &[(String, String, u64)],
    reqs: Option<&Value>,
    targets: &Targets,
) -> Result<Vec<u8>> {
    let mut infos: Vec<WheelInfo> = wheels
        .iter()
        .map(|(file, sha, _)| info(&wheel_dir.join(file), file, sha))
        .collect::<Result<_>>()?;
    infos.sort_by(|a, b| (&a.name, &a.file).cmp(&(&b.name, &b.file)));
    let purl = |w: &WheelInfo| purl(&w.name, &w.version, &w.file);
    let by_name: BTreeMap<&str, String> =
        infos.iter().map(|w| (w.name.as_str(), purl(w))).collect();
    let components: Vec<Value> = infos
        .iter()
        .map(|w| component(w, &purl(w), targets.sources.get(&w.sha256)))
        .collect();
    let app_ref = format!("release:{}", m.id);
    let asked = asked(reqs, &by_name);
    let requires: BTreeMap<String, Vec<Requires>> = infos
        .iter()
        .map(|w| (w.name.clone(), w.requires.clone()))
        .collect();
    let edges = sbom_graph::graph(&requires, &asked, &targets.envs);
    let mut dependencies = vec![json!({
        "ref": app_ref,
        "dependsOn": asked.keys().map(|n| by_name[n.as_str()].clone()).collect::<Vec<_>>(),
    })];
    for w in &infos {
        let on: Vec<String> = edges
            .get(&w.name)
            .into_iter()
            .flatten()
            .filter_map(|n| by_name.get(n.as_str()).cloned())
            .collect();
        dependencies.push(json!({"ref": purl(w), "dependsOn": on}));
    }
    let mut properties = vec![
        json!({"name": "wheelship:release", "value": m.id}),
        json!({"name": "wheelship:commit", "value": m.rev}),
        json!({"name": "wheelship:tree", "value": m.tree}),
    ];
    properties.extend(targets.properties.iter().cloned());
    let doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial(&m.id),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(m.commit_time),
            "tools": {"components": [{
                "type": "application",
                "name": "wheelship",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "application",
                "bom-ref": app_ref,
                "name": m.name,
                "version": m.id,
                "properties": properties,
            },
        },
        "components": components,
        "dependencies": dependencies,
    });
    let mut out = serde_json::to_vec_pretty(&doc)?;
    out.push(b'\n');
    Ok(out)
}

/// The SBOM's place in an archive and in a release directory.
pub const PATH: &str = ".wheelship/sbom.cdx.json";

/// An SBOM is small; a larger one is not ours.
const MAX_SBOM: u64 = 64 << 20;

/// `bundle sbom ARCHIVE|RELEASE_DIR`: the SBOM, as it is, on stdout.
pub fn print(a: crate::SbomArgs) -> Result<()> {
    let mut p = a.path.clone();
    let mut want = None;
    if p.extension().is_some_and(|e| e == "json") {
        // A release's document, as the other subcommands take it: its archive, as described.
        let text = wheelship::fs::fsx::read_capped(&p, 64 << 20, "a document's size")?;
        let doc =
            wheelship::Document::parse(&String::from_utf8_lossy(&text), &p.display().to_string())?;
        let b: wheelship::doc::Bundle = doc.section("bundle")?.ok_or_else(|| {
            anyhow!("`{}` has no `bundle` section: give the document `bundle pack` printed, an archive or a release directory", p.display())
        })?;
        want = Some((b.sha256.clone(), b.size));
        p = std::path::PathBuf::from(b.path.as_str());
    }
    let p = &p;
    let meta = std::fs::metadata(p).with_context(|| format!("cannot read `{}`", p.display()))?;
    if let (Some((sha, size)), false) = (&want, meta.is_dir()) {
        let (got, n) = wheelship::fs::fsx::sha256_file(p)?;
        if &got != sha || n != *size {
            anyhow::bail!(
                "`{}` is not the archive the document describes (its sha256 or size differ)",
                p.display()
            );
        }
    }
    let bytes = if meta.is_dir() {
        let d = wheelship::fs::beneath::Dir::open(p)?;
        d.read(PATH).with_context(|| {
            format!(
                "`{}` has no SBOM (a release packed before wheelship made them?)",
                p.display()
            )
        })?
    } else {
        from_archive(p)?
    };
    wheelship::cli::write_stdout(&bytes)
}

/// The SBOM member of an archive, read without extracting anything else. The archive's
/// entries are sorted after its manifest, so the search stops past the SBOM's name.
fn from_archive(p: &Path) -> Result<Vec<u8>> {
    let (mut t, _) = crate::extract::decoder(p)?;
    let bad = |e: anyhow::Error| anyhow!("`{}` is not a release archive: {e:#}", p.display());
    for m in crate::members::members(&mut t, 1 << 20).map_err(bad)? {
        let m = m.map_err(bad)?;
        let path = m.path;
        if path == PATH.as_bytes() {
            let mut out = Vec::new();
            m.entry
                .take(MAX_SBOM + 1)
                .read_to_end(&mut out)
                .map_err(|e| bad(e.into()))?;
            if out.len() as u64 > MAX_SBOM {
                anyhow::bail!(
                    "`{}`: its SBOM is larger than {MAX_SBOM} bytes",
                    p.display()
                );
            }
            return Ok(out);
        }
        if path.as_slice() > PATH.as_bytes() && path.as_slice() != b".wheelship/release.json" {
            break;
        }
    }
    anyhow::bail!(
        "`{}` has no SBOM (packed before wheelship made them?)",
        p.display()
    )
}

/// A wheel's component; one built on the build box from an sdist names it as its ancestor
/// (CycloneDX pedigree: the source file, its purl and sha256, where it was downloaded).
fn component(w: &WheelInfo, purl: &str, built_from: Option<&Value>) -> Value {
    let mut c = json!({
        "type": "library",
        "bom-ref": purl,
        "name": w.name,
        "version": w.version,
        "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": w.sha256}],
        "properties": [{"name": "wheelship:wheel", "value": w.file}],
    });
    if !w.licenses.is_empty() {
        c["licenses"] = json!(w.licenses);
    }
    if let Some(b) = built_from {
        let file = b["file"].as_str().unwrap_or_default();
        let mut sdist = json!({
            "type": "library",
            "name": w.name,
            "version": w.version,
            "purl": self::purl(&w.name, &w.version, file),
            "hashes": [{"alg": "SHA-256", "content": b["sha256"]}],
            "properties": [{"name": "wheelship:sdist", "value": file}],
        });
        if let Some(url) = b["url"].as_str() {
            sdist["externalReferences"] = json!([{"type": "distribution", "url": url}]);
        }
        c["pedigree"] = json!({"ancestors": [sdist]});
    }
    if !w.sboms.is_empty() {
        c["externalReferences"] = w
            .sboms
            .iter()
            .map(|s| {
                json!({
                    "type": "bom",
                    "url": format!(".wheelship/wheels/{}#{}", percent(&w.file), percent(s)),
                    "comment": "an SBOM the wheel ships (PEP 770)",
                })
            })
            .collect();
    }
    c
}

/// The wheel's name, version, license, requirements and shipped SBOMs, from its METADATA.
fn info(path: &Path, file: &str, sha256: &str) -> Result<WheelInfo> {
    let parsed = WheelFilename::parse(file).map_err(|e| anyhow!("{e}"))?;
    let f =
        std::fs::File::open(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let name = canonicalize_name(&parsed.name);
    // A wheel whose zip cannot be read (mkenv refuses it, unpack does not open it) is still
    // listed, by its file name and hash, without what its metadata would have said.
    let Ok(mut z) = zip::ZipArchive::new(f) else {
        return Ok(WheelInfo {
            name,
            version: parsed.version,
            file: file.to_string(),
            sha256: sha256.to_string(),
            licenses: Vec::new(),
            requires: Vec::new(),
            sboms: Vec::new(),
        });
    };
    let dist_info = format!("{}-{}.dist-info/", parsed.name, parsed.version);
    let sboms: Vec<String> = z
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.to_string()))
        .filter(|n| n.starts_with(&dist_info) && n[dist_info.len()..].starts_with("sboms/"))
        .filter(|n| !n.ends_with('/'))
        .collect();
    let mut text = String::new();
    if let Ok(m) = z.by_name(&format!("{dist_info}METADATA")) {
        m.take(MAX_METADATA)
            .read_to_string(&mut text)
            .with_context(|| format!("`{file}`: METADATA is not UTF-8"))?;
    }
    let fields = headers(&text);
    let get = |k: &'static str| {
        fields
            .iter()
            .filter(move |(f, _)| f.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let licenses = sbom_graph::licenses(
        &get("License-Expression").collect::<Vec<_>>(),
        get("License").next(),
        &get("Classifier").collect::<Vec<_>>(),
    );
    let mut requires: Vec<Requires> = get("Requires-Dist")
        .filter_map(sbom_graph::requires)
        .collect();
    requires.sort();
    requires.dedup();
    let sboms = {
        let mut s = sboms;
        s.sort();
        s
    };
    Ok(WheelInfo {
        name,
        version: parsed.version,
        file: file.to_string(),
        sha256: sha256.to_string(),
        licenses,
        requires,
        sboms,
    })
}

/// The header fields of METADATA (RFC 822 style, up to the first blank line).
fn headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// A UUID (the form of RFC 9562's version 8, custom) from the release id: the same release,
/// the same serial number.
fn serial(id: &str) -> String {
    let h = wheelship::hash::sha256_hex(format!("wheelship-sbom\n{id}").as_bytes());
    let mut b: Vec<char> = h[..32].chars().collect();
    b[12] = '8';
    b[16] = ['8', '9', 'a', 'b'][usize::from(b[16].to_digit(16).unwrap_or(0) as u8 & 3)];
    let s: String = b.into_iter().collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &s[..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

fn rfc3339(t: i64) -> String {
    let (y, mo, d, h, mi, s) = wheelship::time::civil(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// A wheel's package URL (https://github.com/package-url/purl-spec, its PyPI type): the
/// canonical name, the version, the file.
pub fn purl(name: &str, version: &str, file: &str) -> String {
    format!(
        "pkg:pypi/{name}@{}?file_name={}",
        percent(version),
        percent(file)
    )
}

/// Percent-encoding for a purl qualifier or a URL fragment: what is not unreserved.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        let s = serial("20261201T223653Z-2c8bb311d226-6dbe79fe5e13");
        assert_eq!(s, serial("20261201T223653Z-2c8bb311d226-6dbe79fe5e13"));
        assert_eq!(s.len(), "urn:uuid:".len() + 36);
        assert_eq!(&s[9 + 14..9 + 15], "8");
        assert_eq!(percent("a b+c"), "a%20b%2Bc");
    }
}
