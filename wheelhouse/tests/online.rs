//! A few tests that fetch real small packages from PyPI, then show that `--offline` works on
//! what was fetched. Without `WHEELSHIP_ONLINE=1` they are ignored (and counted so); with it,
//! an unreachable PyPI fails them.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

fn pypi_reachable(test: &str) -> bool {
    let ok = ("pypi.org", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
    assert!(
        ok,
        "{test}: pypi.org:443 cannot be reached (WHEELSHIP_ONLINE=1 says it can)"
    );
    ok
}

fn doc_for(dir: &Path, text: &str) -> String {
    std::fs::write(dir.join("requirements.txt"), text).unwrap();
    let exe = assert_cmd::cargo::cargo_bin("wheelhouse").with_file_name("hashreq");
    let o = std::process::Command::new(exe)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

fn wheelhouse(dir: &Path, args: &[&str], stdin: &str) -> Value {
    let out = Command::cargo_bin("wheelhouse")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .env("WHEELSHIP_CACHE", dir.join("cache"))
        .write_stdin(stdin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wheelhouse {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["wheelhouse"].clone()
}

fn names(s: &Value) -> Vec<String> {
    s["wheels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{}=={}",
                w["name"].as_str().unwrap(),
                w["version"].as_str().unwrap()
            )
        })
        .collect()
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
