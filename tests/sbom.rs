//! Every release carries a CycloneDX SBOM and has SLSA provenance beside it, checked
//! with independent tools: the CycloneDX project's Python library (its strict JSON validator)
//! and `cyclonedx-py environment` on the deployed env, and the minisign tool for the
//! provenance's signature.

// One scenario, from the release to the deployed env, reads best as one function.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testsupport::{commit_all, hermetic_app, mkwheels, tool};

fn cdx_python() -> String {
    std::env::var("WHEELSHIP_CYCLONEDX_PYTHON").expect("WHEELSHIP_CYCLONEDX_PYTHON")
}

fn release(app: &Path, wh: &Path, out: &Path, key: &Path) -> Value {
    testsupport::script("release")
        .args(["--offline", "--wheelhouse"])
        .args([wh])
        .args(["--out"])
        .args([out])
        .args(["--sign"])
        .args([key])
        .args([app])
        .ok()
}

fn sbom_of(path: &Path) -> Vec<u8> {
    let out = tool("bundle")
        .args(["sbom".as_ref(), path.as_os_str()])
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// (name, version) of each component of a CycloneDX SBOM.
fn components(sbom: &Value) -> BTreeSet<(String, String)> {
    sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_lowercase(),
                c["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
#[cfg_attr(
    any(wheelship_no_cyclonedx, wheelship_no_minisign),
    ignore = "needs WHEELSHIP_CYCLONEDX_PYTHON (cyclonedx-python-lib and cyclonedx-bom) and the minisign tool (.ci/run provides both)"
)]
fn every_release_says_what_is_in_it_and_where_it_came_from() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    let (app, wh) = hermetic_app(p);
    // A wheel with a PEP 639 license and an SBOM of its own (PEP 770).
    mkwheels(
        &wh,
        json!({"name": "licensed", "version": "2.0", "meta": ["License-Expression: MIT OR Apache-2.0"],
               "files": {"licensed/__init__.py": "", "licensed-2.0.dist-info/sboms/vendored.cdx.json": "{}"}}),
    );
    // A server that needs a project by bare name, another behind an extra nobody asks for,
    // and a third only on a Python this target is not; licenses by classifier and by id.
    mkwheels(
        &wh,
        json!([
            {"name": "server", "version": "1.0",
             "requires": ["pkgbase", "proctitle ; extra == 'proctitle'", "oldcompat ; python_version < '3.0'"],
             "extras": ["proctitle"],
             "meta": ["License: UNKNOWN", "Classifier: License :: OSI Approved :: MIT License"],
             "files": {"server/__init__.py": ""}},
            {"name": "pkgbase", "version": "1.0", "meta": ["License: mpl-2.0"], "files": {"pkgbase/__init__.py": ""}},
            {"name": "proctitle", "version": "1.0", "files": {"proctitle/__init__.py": ""}},
            {"name": "oldcompat", "version": "1.0", "files": {"oldcompat/__init__.py": ""}},
        ]),
    );
    std::fs::write(
        app.join("requirements.txt"),
        "greeter==1.0\nlicensed==2.0\nserver==1.0\nproctitle==1.0\noldcompat==1.0\n",
    )
    .unwrap();
    commit_all(&app, "with licensed");
    let keys = tool("bundle")
        .args(["keygen", "--unencrypted", "--name", "ci", "--dir"])
        .args([p.join("keys")])
        .ok();
    let key = PathBuf::from(keys["keygen"]["secret"].as_str().unwrap());
    let public = PathBuf::from(keys["keygen"]["public"].as_str().unwrap());
    let doc = release(&app, &wh, &p.join("dist"), &key);
    let archive = PathBuf::from(doc["bundle"]["path"].as_str().unwrap());
    let sha = doc["bundle"]["sha256"].as_str().unwrap();

    // The SBOM, inside the archive: valid CycloneDX 1.6 by the CycloneDX project's validator.
    let bytes = sbom_of(&archive);
    std::fs::write(p.join("sbom.cdx.json"), &bytes).unwrap();
    let check = "from cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\nimport sys\ne = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\nsys.exit(str(e) if e else 0)\n";
    let v = testsupport::run(cdx_python())
        .args([
            "-c".as_ref(),
            check.as_ref(),
            p.join("sbom.cdx.json").as_os_str(),
        ])
        .output();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    let sbom: Value = serde_json::from_slice(&bytes).unwrap();
    let c = &sbom["metadata"]["component"];
    assert_eq!(c["name"], "app");
    assert_eq!(c["version"], doc["bundle"]["id"]);
    assert!(c["properties"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "wheelship:commit", "value": doc["bundle"]["rev"]})));
    assert_eq!(
        components(&sbom),
        BTreeSet::from([
            ("colors".into(), "1.0".into()),
            ("greeter".into(), "1.0".into()),
            ("licensed".into(), "2.0".into()),
            ("oldcompat".into(), "1.0".into()),
            ("pkgbase".into(), "1.0".into()),
            ("proctitle".into(), "1.0".into()),
            ("server".into(), "1.0".into()),
        ])
    );
    let comps = sbom["components"].as_array().unwrap();
    let by = |n: &str| comps.iter().find(|c| c["name"] == n).unwrap().clone();
    for w in doc["wheelhouse"]["wheels"].as_array().unwrap() {
        let c = by(w["name"].as_str().unwrap());
        assert_eq!(c["hashes"][0]["content"], w["sha256"]);
        assert_eq!(
            c["purl"],
            format!(
                "pkg:pypi/{}@{}?file_name={}",
                w["name"].as_str().unwrap(),
                w["version"].as_str().unwrap(),
                w["file"].as_str().unwrap()
            )
        );
    }
    let licensed = by("licensed");
    assert_eq!(
        licensed["licenses"],
        json!([{"expression": "MIT OR Apache-2.0"}])
    );
    assert!(licensed["externalReferences"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("#licensed-2.0.dist-info%2Fsboms%2Fvendored.cdx.json"));
    // The graph: the app asked for greeter and licensed; greeter needs colors.
    let deps = sbom["dependencies"].as_array().unwrap();
    let on = |r: &Value| -> Vec<Value> {
        deps.iter().find(|d| d["ref"] == *r).unwrap()["dependsOn"]
            .as_array()
            .unwrap()
            .clone()
    };
    let purls =
        |names: &[&str]| -> Vec<Value> { names.iter().map(|n| by(n)["purl"].clone()).collect() };
    assert_eq!(
        on(&c["bom-ref"]),
        purls(&["greeter", "licensed", "oldcompat", "proctitle", "server"])
    );
    // Markers evaluated for the lock's target, extras only where asked, bare names kept.
    assert_eq!(on(&by("server")["purl"]), purls(&["pkgbase"]));
    assert_eq!(
        by("server")["licenses"],
        json!([{"license": {"id": "MIT"}}])
    );
    assert_eq!(
        by("pkgbase")["licenses"],
        json!([{"license": {"id": "MPL-2.0"}}])
    );
    // The target the lock was made for is said.
    assert!(c["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "wheelship:target"
            && p["value"]
                .as_str()
                .unwrap()
                .starts_with("native, cpython 3.")));
    assert_eq!(
        on(&by("greeter")["purl"]),
        vec![by("colors")["purl"].clone()]
    );
    // The same release, the same SBOM: packed again from the same document.
    let mut input = doc.clone();
    input.as_object_mut().unwrap().remove("bundle");
    let again = tool("bundle")
        .args(["pack", "--repo"])
        .args([&app])
        .args(["--out"])
        .args([p.join("dist2")])
        .stdin(input.to_string())
        .ok();
    assert_eq!(again["bundle"]["id"], doc["bundle"]["id"]);
    assert_eq!(again["bundle"]["sha256"], doc["bundle"]["sha256"]);
    assert_eq!(
        sbom_of(Path::new(again["bundle"]["path"].as_str().unwrap())),
        bytes
    );

    // The provenance beside the archive: about it, naming the commit and every wheel, signed.
    let prov_path = PathBuf::from(doc["bundle"]["provenance"].as_str().unwrap());
    let prov: Value = serde_json::from_slice(&std::fs::read(&prov_path).unwrap()).unwrap();
    assert_eq!(prov["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(prov["subject"][0]["digest"]["sha256"], sha);
    assert_eq!(
        prov["subject"][0]["name"],
        archive.file_name().unwrap().to_str().unwrap()
    );
    let resolved = prov["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(resolved[0]["digest"]["gitCommit"], doc["bundle"]["rev"]);
    for w in doc["wheelhouse"]["wheels"].as_array().unwrap() {
        assert!(resolved
            .iter()
            .any(|r| r["name"] == w["file"] && r["digest"]["sha256"] == w["sha256"]));
    }
    let m = testsupport::run("minisign")
        .args([
            "-V".as_ref(),
            "-p".as_ref(),
            public.as_os_str(),
            "-m".as_ref(),
            prov_path.as_os_str(),
        ])
        .output();
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));

    // Unpacked under a trust policy (the provenance verified), built, and seen by cyclonedx-py.
    let unpacked = tool("bundle")
        .args(["unpack", "--trust"])
        .args([&public])
        .args(["--releases"])
        .args([p.join("srv/releases")])
        .stdin(doc.to_string())
        .ok();
    let dir = PathBuf::from(unpacked["release"]["dir"].as_str().unwrap());
    assert_eq!(sbom_of(&dir), bytes);
    let env = tool("mkenv")
        .args(["--envs"])
        .args([p.join("srv/envs")])
        .args(["--no-compile", "--python", testsupport::python3_path()])
        .stdin(unpacked.to_string())
        .ok();
    let env_python = Path::new(env["env"]["path"].as_str().unwrap()).join("bin/python");
    let theirs = testsupport::run(cdx_python().replace("/bin/python", "/bin/cyclonedx-py"))
        .args([
            "environment".as_ref(),
            "--of".as_ref(),
            "JSON".as_ref(),
            env_python.as_os_str(),
        ])
        .output();
    assert!(
        theirs.status.success(),
        "{}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    let theirs: Value = serde_json::from_slice(&theirs.stdout).unwrap();
    assert_eq!(components(&theirs), components(&sbom));

    // A provenance changed after signing is refused by unpack under the policy.
    let mut forged = prov.clone();
    forged["predicate"]["buildDefinition"]["externalParameters"]["rev"] = json!("0".repeat(40));
    std::fs::write(&prov_path, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
    let out = tool("bundle")
        .args(["unpack", "--trust"])
        .args([&public])
        .args(["--releases"])
        .args([p.join("srv2/releases")])
        .stdin(doc.to_string())
        .output();
    let err = testsupport::failed_with(&out, 1);
    assert!(
        err.contains(".intoto.json") && err.contains("does not match"),
        "{err}"
    );
    assert!(!p
        .join("srv2/releases")
        .join(doc["bundle"]["id"].as_str().unwrap())
        .exists());
}
