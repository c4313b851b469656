//! Switches under load drop no request (a short run of bench/load.py: the example app under
//! gunicorn, handed over by the handover the door puts in ROOT/bin). Uses PyPI for the app's
//! wheels.

use serde_json::Value;
use testsupport::repo;

#[test]
#[cfg_attr(
    wheelship_offline,
    ignore = "uses PyPI: set WHEELSHIP_ONLINE=1 (.ci/run does)"
)]
fn online_switches_under_load_fail_no_request() {
    testsupport::assert_pypi_reachable();
    let t = tempfile::tempdir().unwrap();
    // A code change, a new dependency, a broken release, a rollback, a second rollback.
    let out = testsupport::run("python3")
        .args([repo().join("bench/load.py")])
        .args(["--clients", "3", "--switches", "5", "--json", "--bin"])
        .args([testsupport::bin_dir()])
        .args(["--work".as_ref(), t.path().join("load").as_os_str()])
        .output();
    let text = String::from_utf8_lossy(&out.stdout);
    let r: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "bench/load.py printed no result ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(r["requests"].as_u64().unwrap() > 100, "{r}");
    assert_eq!(r["failures"], 0, "{r}");
    assert_eq!(r["broken_served"], 0, "{r}");
    let steps: Vec<(String, bool, String, String)> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["ok"].as_bool().unwrap(),
                s["current"].as_str().unwrap().to_string(),
                s["answers"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expect = [
        ("deploy v2", true, "v2"),
        ("deploy v3", true, "v3"),
        ("deploy v4", false, "v3"),
        ("rollback", true, "v2"),
        ("rollback", true, "v3"),
    ];
    assert_eq!(steps.len(), expect.len(), "{r}");
    for ((step, ok, current, answers), (want_step, want_ok, want)) in steps.iter().zip(expect) {
        assert_eq!((step.as_str(), *ok), (want_step, want_ok), "{r}");
        assert_eq!((current.as_str(), answers.as_str()), (want, want), "{r}");
    }
    assert!(out.status.success(), "{r}");
    // Nothing left running on its root: no master recorded itself as alive.
    let masters = t.path().join("load/srv/run/masters");
    let left: Vec<_> = std::fs::read_dir(&masters)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
