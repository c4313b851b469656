//! A few tests that fetch real small packages from PyPI, then show that `--offline` works on
//! what was fetched. Without `WHEELSHIP_ONLINE=1` they are ignored (and counted so); with it,
//! an unreachable PyPI fails them.

use std::path::Path;

use serde_json::Value;
use testsupport::{hashreq_doc as doc_for, pinned as names};

fn pypi_reachable(test: &str) -> bool {
    eprintln!("{test}: fetches from PyPI");
    testsupport::assert_pypi_reachable();
    true
}

fn wheelhouse(dir: &Path, args: &[&str], stdin: &str) -> Value {
    let doc = testsupport::tool("wheelhouse")
        .cwd(dir)
        .args(args)
        .env("WHEELSHIP_CACHE", dir.join("cache"))
        .stdin(stdin)
        .ok();
    doc["wheelhouse"].clone()
}

#[test]
#[cfg_attr(
    wheelship_offline,
    ignore = "uses PyPI: set WHEELSHIP_ONLINE=1 (.ci/run does)"
)]
fn online_fill_then_offline() {
    if !pypi_reachable("online_fill_then_offline") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // requests pulls in its dependencies: the closure comes from the real metadata.
    let doc = doc_for(t.path(), "requests==2.32.3\ncertifi==2024.8.30\ncharset-normalizer==3.4.0\nidna==3.10\nurllib3==2.2.3\n");
    let online = wheelhouse(t.path(), &["--dir", "wh"], &doc);
    assert_eq!(
        names(&online),
        [
            "certifi==2024.8.30",
            "charset-normalizer==3.4.0",
            "idna==3.10",
            "requests==2.32.3",
            "urllib3==2.2.3"
        ]
    );
    let offline = wheelhouse(t.path(), &["--dir", "wh", "--offline", "--no-cache"], &doc);
    assert_eq!(offline["wheels"], online["wheels"]);
    // An unchanged rerun answers from the cache.
    assert_eq!(wheelhouse(t.path(), &["--dir", "wh"], &doc)["cached"], true);
}

#[test]
#[cfg_attr(
    wheelship_offline,
    ignore = "uses PyPI: set WHEELSHIP_ONLINE=1 (.ci/run does)"
)]
fn online_cross_target_for_another_python() {
    if !pypi_reachable("online_cross_target_for_another_python") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let doc = doc_for(t.path(), "MarkupSafe==2.1.5\n");
    let cross = [
        "--dir",
        "wh",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
        "--platform",
        "manylinux_2_17_x86_64",
    ];
    let s = wheelhouse(t.path(), &cross, &doc);
    assert_eq!(names(&s), ["markupsafe==2.1.5"]);
    let file = s["wheels"][0]["file"].as_str().unwrap();
    assert!(
        file.contains("-cp312-cp312-") && file.contains("manylinux"),
        "{file}"
    );
    let mut off = cross.to_vec();
    off.extend(["--offline", "--no-cache"]);
    assert_eq!(wheelhouse(t.path(), &off, &doc)["wheels"], s["wheels"]);
}
