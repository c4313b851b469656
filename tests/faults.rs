//! Faults across the workspace (issue "Hostile input and faults"): crashes at every failpoint
//! of bundle unpack, full disks under mkenv, bundle unpack and switch, and load: concurrent
//! deploys and reverts on one root, concurrent mkenv runs on one store.
//!
//! The full-disk tests mount a small tmpfs (they need root, as CI runs); elsewhere they are
//! ignored, and counted so in cargo's summary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use testsupport::{bin, lock, mkwheels, names, tool};

fn run(name: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    tool(name).args(args).stdin(stdin).envs(env).output()
}

fn ok(name: &str, args: &[&str], stdin: &str) -> Value {
    tool(name).args(args).stdin(stdin).ok()
}

/// A git repository with one committed file of `size` random bytes, packed without wheels.
fn release(dir: &Path, name: &str, size: usize) -> Value {
    let app = dir.join(name);
    std::fs::create_dir_all(&app).unwrap();
    let data: Vec<u8> = (0..size)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ (i as u8))
        .collect();
    std::fs::write(app.join("blob.bin"), data).unwrap();
    std::fs::write(app.join("app.py"), format!("NAME = '{name}'\n")).unwrap();
    testsupport::commit_all(&app, "x");
    ok(
        "bundle",
        &[
            "pack",
            "--repo",
            app.to_str().unwrap(),
            "--out",
            dir.join("dist").to_str().unwrap(),
            "--no-wheels",
            "--level",
            "1",
        ],
        "",
    )
}

/// A tmpfs of `kib` KiB, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, kib: u32, test: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                // 0755: a root another user may write is refused (tmpfs makes 1777).
                &format!("size={kib}k,nr_inodes=4000,mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .stderr(Stdio::null())
            .status();
        assert!(
            st.is_ok_and(|s| s.success()),
            "{test}: cannot mount a tmpfs (needs root, as CI runs)"
        );
        Some(SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_crash_at_any_step_of_unpack_leaves_no_half_release() {
    let t = tempfile::tempdir().unwrap();
    let r = release(t.path(), "app", 10_000);
    let rel = t.path().join("releases");
    for point in ["unpack-before-sync", "unpack-before-rename"] {
        let out = run(
            "bundle",
            &["unpack", "--releases", rel.to_str().unwrap()],
            &r.to_string(),
            &[("WHEELSHIP_FAILPOINT", point)],
        );
        assert!(!out.status.success(), "{point} did not fire");
        let finals: Vec<String> = names(&rel)
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(finals.is_empty(), "{point}: {finals:?}");
        // The next run cleans up and succeeds.
        let d = ok(
            "bundle",
            &["unpack", "--releases", rel.to_str().unwrap()],
            &r.to_string(),
        );
        assert!(Path::new(d["release"]["dir"].as_str().unwrap())
            .join("app.py")
            .is_file());
        assert!(
            names(&rel).iter().all(|n| !n.starts_with(".staging-")),
            "{:?}",
            names(&rel)
        );
        std::fs::remove_dir_all(d["release"]["dir"].as_str().unwrap()).unwrap();
    }
}

#[test]
#[cfg_attr(wheelship_not_root, ignore = "mounts a tmpfs: needs root (as CI runs)")]
fn full_disk_under_bundle_unpack() {
    let t = tempfile::tempdir().unwrap();
    let Some(_disk) = SmallDisk::mount(
        &t.path().join("disk"),
        3000,
        "full_disk_under_bundle_unpack",
    ) else {
        return;
    };
    let small = release(t.path(), "small", 100_000);
    let big = release(t.path(), "big", 4_000_000);
    let rel = t.path().join("disk/releases");
    let d = ok(
        "bundle",
        &["unpack", "--releases", rel.to_str().unwrap()],
        &small.to_string(),
    );
    let out = run(
        "bundle",
        &["unpack", "--releases", rel.to_str().unwrap()],
        &big.to_string(),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    // The previous release is whole; nothing of the new one is left.
    assert_eq!(
        names(&rel),
        vec![
            ".lock".to_string(),
            small["bundle"]["id"].as_str().unwrap().to_string()
        ]
    );
    assert_eq!(
        std::fs::metadata(Path::new(d["release"]["dir"].as_str().unwrap()).join("blob.bin"))
            .unwrap()
            .len(),
        100_000
    );
}

#[test]
#[cfg_attr(wheelship_not_root, ignore = "mounts a tmpfs: needs root (as CI runs)")]
fn full_disk_under_mkenv() {
    let t = tempfile::tempdir().unwrap();
    let Some(_disk) = SmallDisk::mount(&t.path().join("disk"), 2000, "full_disk_under_mkenv")
    else {
        return;
    };
    let small = mkwheels(
        &t.path().join("wh"),
        json!({"name": "small", "version": "1.0", "files": {"small/__init__.py": "X = 1\n"}}),
    );
    let blob: String = (0..3_000_000u32)
        .map(|i| char::from(b'a' + ((i.wrapping_mul(2654435761) >> 7) % 26) as u8))
        .collect();
    let big = mkwheels(
        &t.path().join("wh"),
        json!({"name": "big", "version": "1.0", "files": {"big/__init__.py": "", "big/data.txt": blob}}),
    );
    let envs = t.path().join("disk/envs");
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let out = run(
        "mkenv",
        &["--envs", envs.to_str().unwrap(), "--no-compile"],
        &lock(&small).to_string(),
        &env,
    );
    let first = testsupport::doc_of(&out);
    let out = run(
        "mkenv",
        &["--envs", envs.to_str().unwrap(), "--no-compile"],
        &lock(&[small[0].clone(), big[0].clone()]).to_string(),
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    // The message names the file it could not write.
    assert!(
        err.contains(&format!("`{}/.store/", envs.display())),
        "no path in: {err}"
    );
    let left: Vec<String> = names(&envs)
        .into_iter()
        .filter(|n| !n.starts_with(".lock") && n != ".store")
        .collect();
    assert_eq!(
        left,
        vec![first["env"]["key"].as_str().unwrap().to_string()],
        "nothing half-made under a final name"
    );
    assert!(names(&envs.join(".store"))
        .iter()
        .all(|n| !n.starts_with(".tmp-")));
    // The first env is intact and still reused.
    let again = run(
        "mkenv",
        &["--envs", envs.to_str().unwrap(), "--no-compile"],
        &lock(&small).to_string(),
        &env,
    );
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["env"]["reused"], true);
}

#[test]
#[cfg_attr(wheelship_not_root, ignore = "mounts a tmpfs: needs root (as CI runs)")]
fn full_disk_under_switch() {
    let t = tempfile::tempdir().unwrap();
    let Some(_disk) = SmallDisk::mount(&t.path().join("disk"), 600, "full_disk_under_switch")
    else {
        return;
    };
    let root = t.path().join("disk/srv");
    for id in ["a", "b"] {
        std::fs::create_dir_all(root.join("releases").join(id)).unwrap();
        std::fs::write(root.join("releases").join(id).join("app.py"), id).unwrap();
    }
    ok(
        "switch",
        &["--root", root.to_str().unwrap(), "--release", "a"],
        "",
    );
    // Fill the disk to the last block.
    let mut f = std::fs::File::create(t.path().join("disk/fill")).unwrap();
    use std::io::Write;
    let chunk = vec![7u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    drop(f);
    let out = run(
        "switch",
        &["--root", root.to_str().unwrap(), "--release", "b"],
        "",
        &[],
    );
    testsupport::failed_with(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap(),
        Path::new("releases/a"),
        "the previous state is intact"
    );
    assert!(
        names(&root).iter().all(|n| !n.contains(".tmp-")),
        "{:?}",
        names(&root)
    );
    // With room again, it works.
    std::fs::remove_file(t.path().join("disk/fill")).unwrap();
    let s = ok(
        "switch",
        &["--root", root.to_str().unwrap(), "--release", "b"],
        "",
    );
    assert_eq!(s["switch"]["previous"], "a");
}

#[test]
fn twenty_concurrent_deploys_and_reverts_on_one_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("srv");
    for id in ["r1", "r2", "r3", "r4"] {
        std::fs::create_dir_all(root.join("releases").join(id)).unwrap();
    }
    ok(
        "switch",
        &["--root", root.to_str().unwrap(), "--release", "r1"],
        "",
    );
    ok(
        "switch",
        &["--root", root.to_str().unwrap(), "--release", "r2"],
        "",
    );
    let children: Vec<_> = (0..20)
        .map(|i| {
            let mut c = Command::new(bin("switch"));
            c.arg("--root").arg(&root);
            if i % 4 == 3 {
                c.arg("revert");
            } else {
                c.args(["--release", ["r1", "r2", "r3", "r4"][i % 4]]);
            }
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // One chain of events; current is what the last one says.
    let hist: Vec<Value> = std::fs::read_to_string(root.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for w in hist.windows(2) {
        assert_eq!(w[1]["from"], w[0]["to"], "interleaved: {w:?}");
    }
    let cur = std::fs::read_link(root.join("current")).unwrap();
    assert_eq!(
        Path::new("releases").join(hist.last().unwrap()["to"].as_str().unwrap()),
        cur
    );
    assert!(names(&root).iter().all(|n| !n.contains(".tmp-")));
}

#[test]
fn ten_concurrent_mkenv_runs_on_one_store() {
    let t = tempfile::tempdir().unwrap();
    let wheels = mkwheels(
        &t.path().join("wh"),
        json!([
            {"name": "common", "version": "1.0", "files": {"common/__init__.py": "X = 1\n"}},
            {"name": "one", "version": "1.0", "files": {"one/__init__.py": ""}},
            {"name": "two", "version": "1.0", "files": {"two/__init__.py": ""}},
        ]),
    );
    let locks = [
        lock(&wheels[..2]),
        lock(&[wheels[0].clone(), wheels[2].clone()]),
        lock(&wheels),
    ];
    let envs = t.path().join("envs");
    let cache = t.path().join("cache");
    let children: Vec<_> = (0..10)
        .map(|i| {
            let mut c = Command::new(bin("mkenv"))
                .arg("--envs")
                .arg(&envs)
                .env("WHEELSHIP_CACHE", &cache)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(locks[i % 3].to_string().as_bytes())
                .unwrap();
            (i, c)
        })
        .collect();
    let mut built = 0;
    for (_, c) in children {
        let out = c.wait_with_output().unwrap();
        let v = testsupport::doc_of(&out);
        if v["env"]["reused"] == false {
            built += 1;
        }
        let py = Path::new(v["env"]["path"].as_str().unwrap()).join("bin/python");
        let st = Command::new(py)
            .args(["-c", "import common"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    assert_eq!(built, 3, "each of the three keys is built once");
    let finals: Vec<String> = names(&envs)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(finals.len(), 3);
    assert_eq!(
        names(&envs.join(".store")).len(),
        3,
        "each wheel stored once"
    );
}

/// Faults issue, finding 2: a deploy that waits for the root's lock while `mkenv gc` removes
/// the env it was about to link never goes live on a missing env: the env is checked under the
/// root's lock and the store's, and its absence is named.
#[test]
fn a_deploy_never_goes_live_on_an_env_gc_removed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("srv");
    let envs = root.join("envs");
    std::fs::create_dir_all(root.join("releases/r1")).unwrap();
    let wheels = mkwheels(
        &t.path().join("wh"),
        json!([{"name": "solo", "version": "1.0", "files": {"solo.py": "x = 1\n"}}]),
    );
    let built = ok(
        "mkenv",
        &["--envs", envs.to_str().unwrap(), "--no-compile"],
        &lock(&wheels).to_string(),
    );
    let env = built["env"]["path"].as_str().unwrap().to_string();
    // Another run holds the root's lock: this deploy waits for it.
    let holder = Command::new("flock")
        .arg(root.join(".lock"))
        .args(["sleep", "2"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let deploy = Command::new(bin("switch"))
        .args([
            "--root",
            root.to_str().unwrap(),
            "--release",
            "r1",
            "--env",
            &env,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Meanwhile no release links the env: gc removes it.
    ok(
        "mkenv",
        &[
            "--envs",
            envs.to_str().unwrap(),
            "gc",
            "--releases",
            root.join("releases").to_str().unwrap(),
            "--grace",
            "0",
        ],
        "",
    );
    assert!(!Path::new(&env).exists());
    let out = deploy.wait_with_output().unwrap();
    let _ = holder.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is gone") && err.contains("nothing flipped"),
        "{err}"
    );
    assert!(!root.join("current").exists());
    assert!(out.stdout.is_empty());
}

/// Faults issue, finding 5: a `.pyc` whose write came out short (CPython writes it with one
/// write() and ignores a short count: a full disk, a file size limit) is never recorded or
/// linked; the next run compiles it again, and the env imports it. A file size limit
/// (RLIMIT_FSIZE, which makes a write past it short) below the module's bytecode and above
/// every file the store writes cuts exactly that write.
#[test]
fn a_short_bytecode_write_is_never_recorded() {
    let t = tempfile::tempdir().unwrap();
    let body: String = (0..3000)
        .map(|i| format!("def f{i}(): return {i}\n"))
        .collect();
    let wheels = mkwheels(
        &t.path().join("wh"),
        json!({"name": "many", "version": "1.0", "files": {"many/__init__.py": "", "many/big.py": body}}),
    );
    let envs = t.path().join("envs");
    let cache = t.path().join("cache");
    let python = testsupport::python3_path();
    let cut = Command::new("prlimit")
        .arg("--fsize=120000")
        .arg(bin("mkenv"))
        .args(["--envs", envs.to_str().unwrap(), "--python", python])
        .env("WHEELSHIP_CACHE", &cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(lock(&wheels).to_string().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let said = String::from_utf8_lossy(&cut.stderr);
    assert!(said.contains("did not come out whole"), "{said}");
    let out = run(
        "mkenv",
        &["--envs", envs.to_str().unwrap(), "--python", python],
        &lock(&wheels).to_string(),
        &[("WHEELSHIP_CACHE", cache.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let py = Path::new(doc["env"]["path"].as_str().unwrap()).join("bin/python");
    let imported = Command::new(py)
        .args(["-c", "import many.big; assert many.big.f2999() == 2999"])
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
}

/// The short version of `bench/faults.py`: deploys, reverts and prunes through the host door,
/// each SIGKILLed (its whole process group) at a random moment, then run again: every rerun
/// succeeds, `current` is the release it should be, its env imports the app, and nothing
/// half-made is left.
#[test]
fn kill_9_at_random_points_of_the_door_leaves_a_root_the_next_run_makes_whole() {
    let t = tempfile::tempdir().unwrap();
    let text = faults_py(&["--runs", "25", "--seed", "3"], &t.path().join("work"));
    assert!(text.contains("25 runs"), "{text}");
}

/// `bench/faults.py ARGS` with its own work directory and this build's binaries: what it
/// printed, once it said that nothing was left broken.
fn faults_py(args: &[&str], work: &Path) -> String {
    let out = Command::new("python3")
        .arg(testsupport::repo().join("bench/faults.py"))
        .args(args)
        .arg("--work")
        .arg(work)
        .arg("--bin")
        .arg(testsupport::bin_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 broken"), "{text}");
    text
}

/// The short version of `bench/faults.py --mode syscalls`: SIGKILL (through `strace --inject`)
/// at the first, the last and one more call of each mutating syscall (rename, unlink, mkdir,
/// symlink, link, fsync, syncfs and their *at forms) that a deploy, a revert and a prune make;
/// each rerun makes the root whole.
#[test]
#[cfg_attr(wheelship_no_strace, ignore = "needs strace")]
fn sigkill_at_each_mutating_syscall_leaves_a_root_the_next_run_makes_whole() {
    let t = tempfile::tempdir().unwrap();
    let args = ["--mode", "syscalls", "--points", "3", "--seed", "5"];
    let text = faults_py(&args, &t.path().join("work"));
    // The deploy built an env (it stored and linked), and most runs were killed mid-step.
    assert!(
        text.contains("deploy: ") && text.contains("linkat"),
        "{text}"
    );
    let faulted: usize = text
        .split(" faulted mid-step")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(faulted >= 20, "{text}");
}

/// The short version of `bench/faults.py --mode disk`: the root's disk full (bytes, then
/// inodes) at points spread over what a deploy writes; with the space back, the rerun makes the
/// root whole.
#[test]
#[cfg_attr(wheelship_not_root, ignore = "mounts a tmpfs: needs root (as CI runs)")]
fn a_full_disk_at_each_point_of_a_deploy_leaves_a_root_the_next_run_makes_whole() {
    let t = tempfile::tempdir().unwrap();
    let args = ["--mode", "disk", "--points", "5", "--seed", "5"];
    faults_py(&args, &t.path().join("work"));
}
