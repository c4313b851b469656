//! The host's door, `wheelship-host`, which `scripts/deploy` (here and over ssh),
//! `scripts/rollback`, the Ansible plugin and a package's maintainer scripts run. Its commands,
//! one after another on a local root: stage then flip is a deploy, revert goes back, list says
//! what is live, a failing step is named, a bad thin copy tells the caller to send the archive
//! whole.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use testsupport::{failed_with, hermetic_app, repo};

fn host(args: &[&str], stdin: &str, cwd: &Path) -> Output {
    testsupport::script("wheelship-host")
        .args(args)
        .cwd(cwd)
        .stdin(stdin)
        .output()
}

fn release(dir: &Path, app: &Path, wh: &Path) -> Value {
    testsupport::run(repo().join("scripts/release"))
        .args([
            "--offline",
            "--wheelhouse",
            wh.to_str().unwrap(),
            "--out",
            "dist",
        ])
        .args([app])
        .cwd(dir)
        .env("WHEELSHIP_BIN", testsupport::bin_dir())
        .ok()
}

#[test]
fn the_host_door_stages_flips_reverts_and_names_what_failed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (app, wh) = hermetic_app(d);
    let v1 = release(d, &app, &wh);
    let root = d.join("srv");
    let root_s = root.to_str().unwrap();
    let archive = v1["bundle"]["path"].as_str().unwrap();
    // deploy = stage, then flip.
    let staged = testsupport::doc_of(&host(&["stage", root_s, archive], &v1.to_string(), d));
    assert!(staged.get("switch").is_none(), "staging flips nothing");
    assert!(!root.join("current").exists());
    assert!(staged["env"]["path"].is_string());
    let live = testsupport::doc_of(&host(
        &["flip", root_s, "--keep", "3"],
        &staged.to_string(),
        d,
    ));
    assert_eq!(live["switch"]["current"], v1["bundle"]["id"]);
    // A second release through deploy; revert goes back; list says what is live.
    std::fs::write(app.join("app.py"), "print('v2')\n").unwrap();
    testsupport::git(&app, &["commit", "-qam", "v2"]);
    let v2 = release(d, &app, &wh);
    let out = host(
        &["deploy", root_s, v2["bundle"]["path"].as_str().unwrap()],
        &v2.to_string(),
        d,
    );
    assert_eq!(
        testsupport::doc_of(&out)["switch"]["current"],
        v2["bundle"]["id"]
    );
    let back = testsupport::doc_of(&host(&["revert", root_s], "", d));
    assert_eq!(back["switch"]["current"], v1["bundle"]["id"]);
    let list = testsupport::doc_of(&host(&["list", root_s], "", d));
    assert_eq!(list["switch"]["current"], v1["bundle"]["id"]);
    assert_eq!(list["switch"]["releases"].as_array().unwrap().len(), 2);
    // A failing step is named, and is the last word.
    let err = failed_with(&host(&["deploy", root_s, "/nonexistent.tar.zst"], "", d), 1);
    let last = format!("wheelship-host: step 'bundle unpack' failed on {root_s} (see above)\n");
    assert!(err.ends_with(&last), "{err}");
    // A thin copy that is not one: the `thick` step fails by name, and the door's exit status
    // (75) tells the caller to send the archive whole; the uploads are gone either way.
    // --uploads names only an upload directory of this root: any other directory (the root
    // itself, a typo for /usr/bin) is refused and left as it is.
    for elsewhere in [root.clone(), d.join("precious")] {
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(elsewhere.join("keep.txt"), b"data").unwrap();
        let out = host(
            &["deploy", root_s, "--uploads", elsewhere.to_str().unwrap()],
            &v2.to_string(),
            d,
        );
        let err = failed_with(&out, 1);
        assert!(
            err.contains("is not an upload directory of this root"),
            "{err}"
        );
        assert!(elsewhere.join("keep.txt").is_file(), "{err}");
    }
    let up = root.join("incoming/.tmp-uploads");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::set_permissions(&up, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(up.join("x.tar.zst.thin"), b"not a thin copy").unwrap();
    let out = host(
        &["deploy", root_s, "--uploads", up.to_str().unwrap()],
        &v2.to_string(),
        d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("step 'bundle thick' failed"), "{err}");
    assert!(err.contains("send it whole"), "{err}");
    assert!(!up.exists());
    // Usage: exit 2, nothing done.
    for bad in [
        &["deploy"][..],
        &["nonsense", root_s],
        &["deploy", root_s, archive, "--keep", "x"],
    ] {
        let out = host(bad, "", d);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
    let out = host(&["--version"], "", d);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wheelship-host (wheelship) "));
}

/// Every option switch takes for a deploy or a revert (the list read from `switch --help`) is
/// accepted, with the same meaning, by every caller of the door: scripts/deploy,
/// scripts/rollback, the Ansible plugin's `options` and a package's settings file. None of them
/// declares switch's options again: a new one needs no change there.
#[test]
fn every_switch_option_reaches_every_caller() {
    let t = testsupport::Fixture::new();
    let options = switch_options();
    for (flag, value) in &options {
        let mut args = vec![flag.as_str()];
        args.extend(value);
        // scripts/deploy: the options are checked before the (missing) document is read.
        let out = testsupport::script("deploy")
            .args(["missing.json", t.join("srv").to_str().unwrap()])
            .args(&args)
            .cwd(t.p())
            .output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "deploy {flag}: {err}");
        assert!(err.contains("does not exist"), "deploy {flag}: {err}");
        // scripts/rollback: every option of a revert (a revert has no --before).
        if flag != "--before" {
            let out = testsupport::script("rollback")
                .args([t.join("nowhere").to_str().unwrap()])
                .args(&args)
                .cwd(t.p())
                .output();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "rollback {flag}: {err}");
        }
        // A package's settings file: `name = value`, or `name = yes` for a flag.
        let conf = t.join("pkg.conf");
        std::fs::write(
            &conf,
            format!("{} = {}\n", &flag[2..], value.unwrap_or("yes")),
        )
        .unwrap();
        testsupport::tool("wheelship-host")
            .args(["args", "deploy", "/srv/x", "--settings"])
            .args([&conf])
            .ok_text();
    }
    // A settings file is read only where no other user can replace it: not in a directory
    // another user owns or others may write, and not through a symlink.
    use std::os::unix::fs::PermissionsExt;
    let open = t.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::write(open.join("pkg.conf"), "check = true\n").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let link = t.join("link.conf");
    std::os::unix::fs::symlink(t.join("pkg.conf"), &link).unwrap();
    for (conf, why) in [
        (open.join("pkg.conf"), "may be changed by another user"),
        (link, "is a symlink"),
    ] {
        let out = testsupport::tool("wheelship-host")
            .args(["args", "deploy", "/srv/x", "--settings"])
            .args([&conf])
            .output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(why), "{err}");
    }
}

/// The options of the door that `switch --help` lists, each with a value it takes.
fn switch_options() -> Vec<(String, Option<&'static str>)> {
    let help = testsupport::tool("switch").args(["--help"]).ok_text();
    let door_fills = [
        "--root",
        "--release",
        "--env",
        "--init",
        "--help",
        "--version",
    ];
    let mut options = Vec::new();
    for line in help.lines() {
        // An option's own line (a wrapped description is indented further).
        let indent = line.len() - line.trim_start().len();
        let Some(rest) = line.trim_start().strip_prefix("--").filter(|_| indent <= 6) else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        let flag = format!("--{name}");
        if door_fills.contains(&flag.as_str()) {
            continue;
        }
        let value = rest.contains('<').then(|| {
            if rest.contains("<SECS>") || rest.contains("<N>") {
                "5"
            } else if rest.contains("<PUBKEY>") {
                "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"
            } else {
                "true"
            }
        });
        options.push((flag, value));
    }
    assert!(options.len() >= 12, "{options:?}");
    options
}

/// The Ansible plugin's `options`, by name, turn into the same arguments of the door.
#[test]
#[cfg_attr(
    wheelship_no_ansible,
    ignore = "needs WHEELSHIP_ANSIBLE_PLAYBOOK (an ansible-playbook; .ci/run provides it)"
)]
fn every_switch_option_reaches_the_ansible_plugin() {
    let options = switch_options();
    let playbook = std::env::var("WHEELSHIP_ANSIBLE_PLAYBOOK").expect("WHEELSHIP_ANSIBLE_PLAYBOOK");
    let python = Path::new(&playbook).with_file_name("python");
    let opts: serde_json::Map<String, Value> = options
        .iter()
        .map(|(f, v)| {
            let v = v.map_or(Value::Bool(true), |v| Value::String(v.into()));
            (f[2..].replace('-', "_"), v)
        })
        .collect();
    let out = testsupport::run(&python)
        .args([
            "-c",
            "import importlib.util, json, sys\nspec = importlib.util.spec_from_file_location('p', sys.argv[1])\nm = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(m)\nprint(json.dumps(m.door_args({'options': json.loads(sys.argv[2])}, 'deploy')))",
        ])
        .args([repo().join("ansible/plugins/action/wheelship.py")])
        .args([Value::Object(opts).to_string()])
        .ok();
    let argv: Vec<String> = serde_json::from_value(out).unwrap();
    for (flag, _) in &options {
        assert!(argv.contains(flag), "{flag} not in {argv:?}");
    }
    testsupport::tool("wheelship-host")
        .args(["args", "deploy", "/srv/x"])
        .args(&argv)
        .ok_text();
}

/// The one command every caller opens the door with (`wheelship-host remote`) runs nothing
/// another user could have written: a door planted in a ROOT/bin others may write, one owned by
/// another user, and a directory on the way to ROOT that others may write are refused (exit
/// 3) before anything of the host runs; a root-owned sticky ancestor (`/tmp`) is fine.
#[test]
fn the_opener_refuses_what_others_could_write() {
    use std::os::unix::fs::PermissionsExt;
    let t = testsupport::Fixture::new();
    let root = t.join("srv");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let pwned = t.join("pwned");
    let door = root.join("bin/wheelship-host");
    std::fs::write(
        &door,
        format!("#!/bin/sh\ntouch {}\necho '{{}}'\n", pwned.display()),
    )
    .unwrap();
    std::fs::set_permissions(&door, std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = |root: &Path| {
        let cmd = testsupport::tool("wheelship-host")
            .args(["remote"])
            .args([root])
            .args(["--", "list"])
            .args([root])
            .ok_text();
        std::process::Command::new("bash")
            .args(["-c", cmd.trim()])
            .output()
            .unwrap()
    };
    // As it should be: the door runs.
    let ok = open(&root);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(pwned.exists());
    std::fs::remove_file(&pwned).unwrap();
    let refused = |why: &str| {
        let out = open(&root);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{why}: {err}");
        assert!(err.contains(why), "{why}: {err}");
        assert!(!pwned.exists(), "{why}: the planted door ran");
    };
    std::fs::set_permissions(root.join("bin"), std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("is writable by other users");
    std::fs::set_permissions(root.join("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(t.p(), std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("is writable by other users");
    std::fs::set_permissions(t.p(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0) {
        std::os::unix::fs::chown(&door, Some(65534), None).unwrap();
        refused("is owned by uid 65534");
    }
    // A host without a root or a door answers `facts` as a fresh host, and nothing else.
    let fresh = t.join("fresh");
    let cmd = testsupport::tool("wheelship-host")
        .args(["remote"])
        .args([&fresh])
        .args(["--", "facts"])
        .args([&fresh])
        .ok_text();
    let out = std::process::Command::new("bash")
        .args(["-c", cmd.trim()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""fresh":true"#));
    assert!(!fresh.exists(), "facts created nothing");
}
