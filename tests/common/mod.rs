//! What the end-to-end tests share: the scripts run with the workspace's binaries, releases
//! of the hermetic app, where `current` points, the test ssh host.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The workspace's binaries, next to this test's own directory.
pub fn bin_dir() -> PathBuf {
    for tool in ["hashreq", "wheelhouse", "mkenv", "bundle", "switch"] {
        testsupport::bin(tool);
    }
    testsupport::bin_dir()
}

pub fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    testsupport::script(name).args(args).envs(env).output()
}

pub fn ok(name: &str, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = script(name, args, env);
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: stdout is not the document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `scripts/release --offline` of the hermetic app of `dir` (`dir/app`, `dir/wheelhouse`,
/// out to `dir/dist`) with `extra` flags: the document.
pub fn release_offline(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let (app, wh, dist) = (dir.join("app"), dir.join("wheelhouse"), dir.join("dist"));
    let mut args = vec![
        "--offline",
        "--wheelhouse",
        wh.to_str().unwrap(),
        "--out",
        dist.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(app.to_str().unwrap());
    ok("release", &args, env)
}

/// `release_offline`, with the document saved as `dir/<name>.json` for `deploy`.
pub fn release_saved(
    dir: &Path,
    name: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Value, PathBuf) {
    let doc = release_offline(dir, extra, env);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, doc.to_string()).unwrap();
    (doc, file)
}

/// A deploy with no route to any index: the shipped wheels are all it may use.
pub const NO_INDEX: (&str, &str) = ("PIP_INDEX_URL", "http://127.0.0.1:9/simple");

pub fn current(root: &Path) -> String {
    std::fs::read_link(root.join("current"))
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

pub fn ssh_host(test: &str) -> Option<String> {
    let host = std::env::var("WHEELSHIP_SSH_HOST").ok();
    let reachable = host.as_ref().is_some_and(|h| {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5", h, "true"])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        reachable,
        "{test}: no ssh host (WHEELSHIP_SSH_HOST={host:?}); .ci/run starts one"
    );
    host
}

/// Stops a service the test started with ROOT/bin/handover (and kills the other processes it
/// names), whatever happened.
pub struct Stop(pub PathBuf, pub Vec<u32>);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = Command::new(self.0.join("bin/handover"))
            .args(["stop"])
            .arg(&self.0)
            .output();
        for pid in &self.1 {
            let _ = Command::new("kill").arg(pid.to_string()).output();
        }
    }
}
