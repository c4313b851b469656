//! A fleet on Ansible: the collection built and installed as Galaxy does, its playbooks run
//! against three inventory hosts that are the loopback sshd, each with its own root.

// A test that drives one scenario from start to end reads best as one function.
#![allow(clippy::too_many_lines)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use testsupport::{git, hermetic_app, python3_path, repo};

/// The ssh connections ansible.cfg's ControlPersist keeps open: closed when the test ends,
/// passed or not.
struct SshMasters(PathBuf);

impl Drop for SshMasters {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            let _ = Command::new("ssh")
                .arg("-o")
                .arg(format!("ControlPath={}", e.path().display()))
                .args(["-O", "exit", "wheelship-master"])
                .stdin(Stdio::null())
                .output();
        }
    }
}

fn galaxy_version(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("galaxy.yml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap()
        .trim()
        .to_string()
}

/// The collection as a user gets it: `ansible-galaxy collection build` of `ansible/`, then
/// `install` of the tarball into `into`.
fn install_collection(playbook: &str, into: &Path) {
    let galaxy = Path::new(playbook).with_file_name("ansible-galaxy");
    let built = into.with_extension("built");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&galaxy).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ansible-galaxy {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ansible_dir = repo().join("ansible");
    run(&[
        "collection".as_ref(),
        "build".as_ref(),
        ansible_dir.as_os_str(),
        "--output-path".as_ref(),
        built.as_os_str(),
    ]);
    let tarball = built.join(format!(
        "wheelship-deploy-{}.tar.gz",
        galaxy_version(&ansible_dir)
    ));
    run(&[
        "collection".as_ref(),
        "install".as_ref(),
        tarball.as_os_str(),
        "-p".as_ref(),
        into.as_os_str(),
    ]);
}

/// ansible-playbook with the collection's documented settings (ansible/ansible.cfg), its ssh
/// connections shared under `masters` (closed by [`SshMasters`] when the test ends).
fn ansible(playbook: &str, inv: &Path, book: &str, tmp: &Path, masters: &Path) -> Command {
    let collections = tmp.join("collections");
    if !collections.exists() {
        install_collection(playbook, &collections);
    }
    let mut c = Command::new(playbook);
    c.arg("-i")
        .arg(inv)
        .arg(format!(
            "wheelship.deploy.{}",
            book.trim_end_matches(".yml")
        ))
        .env("ANSIBLE_CONFIG", repo().join("ansible/ansible.cfg"))
        .env("ANSIBLE_COLLECTIONS_PATH", &collections)
        .env("ANSIBLE_SSH_CONTROL_PATH_DIR", masters)
        .env("WHEELSHIP_BIN", bin_dir())
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("ansible-tmp"))
        .env("XDG_CACHE_HOME", tmp.join("cache-home"));
    c
}

/// The playbooks against three inventory hosts that are the loopback sshd, each with
/// its own root: all live after a deploy; a rerun changes nothing; check mode changes nothing;
/// a failing check on the second host stops the roll (first on the new release, second back
/// on the old, third never touched); rollback of the first returns it.
#[test]
#[cfg_attr(
    any(wheelship_no_ssh, wheelship_no_ansible),
    ignore = "needs WHEELSHIP_SSH_HOST (the test sshd) and WHEELSHIP_ANSIBLE_PLAYBOOK (.ci/run provides both)"
)]
fn a_fleet_rolls_with_ansible() {
    let host = ssh_host("a_fleet_rolls_with_ansible").unwrap();
    let playbook = std::env::var("WHEELSHIP_ANSIBLE_PLAYBOOK")
        .expect("WHEELSHIP_ANSIBLE_PLAYBOOK: ansible-playbook from a venv (.ci/run makes one)");
    let t = tempfile::tempdir().unwrap();
    let (app, _) = hermetic_app(t.path());
    let cache = t.path().join("cache");
    let env = [("WHEELSHIP_CACHE", cache.to_str().unwrap())];
    let release = |v: &str| -> (PathBuf, String) {
        std::fs::write(
            app.join("app.py"),
            format!("import greeter\nprint(greeter.hello('fleet {v}'))\n"),
        )
        .unwrap();
        git(&app, &["commit", "-qam", v]);
        let doc = release_offline(t.path(), &[], &env);
        let f = t.path().join(format!("{v}.json"));
        std::fs::write(&f, doc.to_string()).unwrap();
        (f, doc["bundle"]["id"].as_str().unwrap().to_string())
    };
    let (v1, id1) = release("v1");
    let (v2, id2) = release("v2");
    let python = python3_path();
    let roots: Vec<PathBuf> = (1..=3).map(|i| t.path().join(format!("web{i}"))).collect();
    let inventory = t.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[web]\nweb1 wheelship_root={}\nweb2 wheelship_root={} wheelship_check='exit 1'\nweb3 wheelship_root={}\n\
             [web:vars]\nansible_host={host}\nansible_python_interpreter={}\nwheelship_check='venv/bin/python app.py | grep -q hello'\nwheelship_check_timeout=1\n",
            roots[0].display(),
            roots[1].display(),
            roots[2].display(),
            python
        ),
    )
    .unwrap();
    // web2's failing check applies only to the second roll; the first one deploys everywhere.
    let masters = SshMasters(t.path().join("cp"));
    let play = |book: &str, extra: &[&str], inv: &Path| -> (bool, String) {
        let out = ansible(&playbook, inv, book, t.path(), &masters.0)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let changed = |text: &str, h: &str| -> Option<u32> {
        text.lines()
            .find(|l| l.starts_with(h) && l.contains("changed="))
            .and_then(|l| l.split("changed=").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let first = t.path().join("first.ini");
    std::fs::write(
        &first,
        std::fs::read_to_string(&inventory)
            .unwrap()
            .replace(" wheelship_check='exit 1'", ""),
    )
    .unwrap();
    let rel = format!("wheelship_release={}", v1.display());
    let (ok1, text) = play("deploy.yml", &["-e", &rel], &first);
    assert!(ok1, "{text}");
    for r in &roots {
        assert_eq!(current(r), id1, "{text}");
    }
    // A rerun: nothing moves, nothing is copied again.
    let (ok2, text) = play("deploy.yml", &["-e", &rel], &first);
    assert!(ok2, "{text}");
    for h in ["web1", "web2", "web3"] {
        assert_eq!(changed(&text, h), Some(0), "{h}: {text}");
    }
    // Check mode (with diff): says what would change, changes nothing.
    let rel2 = format!("wheelship_release={}", v2.display());
    let (ok3, text) = play("deploy.yml", &["-e", &rel2, "--check", "--diff"], &first);
    assert!(ok3, "{text}");
    assert!(text.contains(&format!("+current: {id2}")), "{text}");
    for r in &roots {
        assert_eq!(current(r), id1);
        assert!(!r.join("releases").join(&id2).exists());
    }
    // v2 with web2's check failing: web1 moves, web2 is flipped back, web3 is never flipped.
    // (The archive is small: wheelship_thin_min=0 makes the thin copy anyway.)
    let (ok4, text) = play(
        "deploy.yml",
        &["-e", &rel2, "-e", "wheelship_thin_min=0", "-v"],
        &inventory,
    );
    assert!(!ok4, "{text}");
    // The hosts held v1's wheels, so only a thin copy went (made once, on the
    // controller) and each rebuilt the archive; the binaries, unchanged, did not go again.
    let thin_sent = format!(r#""sent": ["{id2}.tar.zst.thin""#);
    for h in ["web1", "web2", "web3"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("changed: [{h}]")) && l.contains(&thin_sent)),
            "{h}: {text}"
        );
    }
    assert_eq!(current(&roots[0]), id2, "{text}");
    assert_eq!(current(&roots[1]), id1, "{text}");
    // Staged everywhere first, flipped in batches: web3 holds v2, never flipped.
    assert_eq!(current(&roots[2]), id1, "{text}");
    assert!(roots[2].join("releases").join(&id2).is_dir(), "{text}");
    // Roll web1 back.
    let (ok5, text) = play("rollback.yml", &["--limit", "web1"], &inventory);
    assert!(ok5, "{text}");
    assert_eq!(current(&roots[0]), id1, "{text}");
    assert_eq!(changed(&text, "web1"), Some(1), "{text}");
    // Two deploys at once: one takes the fleet's lock, the other stops before it
    // touches a host and names the holder; every host ends on one release.
    let (v3, id3) = release("v3");
    let (v4, id4) = release("v4");
    let spawn = |doc: &Path| {
        ansible(&playbook, &first, "deploy.yml", t.path(), &masters.0)
            .args(["-e", &format!("wheelship_release={}", doc.display())])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(&v3), spawn(&v4));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (winner, loser, lost_id) = match (a.status.success(), b.status.success()) {
        (true, false) => (&id3, &b, &id4),
        (false, true) => (&id4, &a, &id3),
        _ => panic!(
            "one deploy must win and one lose:\n{}\n{}",
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout)
        ),
    };
    let lost = String::from_utf8_lossy(&loser.stdout);
    assert!(
        lost.contains("the fleet is being deployed") && lost.contains("is held by"),
        "{lost}"
    );
    for r in &roots {
        assert_eq!(&current(r), winner);
        assert!(
            !r.join("releases").join(lost_id).exists(),
            "the loser touched {}",
            r.display()
        );
    }
    assert!(
        !roots[0].join(".fleet-lock").exists(),
        "the lock was not given back"
    );
    // A dead controller's lock: named and kept until unlock.yml gives it back.
    std::fs::create_dir(roots[0].join(".fleet-lock")).unwrap();
    std::fs::write(
        roots[0].join(".fleet-lock/holder"),
        "ghost@gone deploying x since 2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    let (v5, id5) = release("v5");
    let rel5 = format!("wheelship_release={}", v5.display());
    let (ok6, text) = play("deploy.yml", &["-e", &rel5], &first);
    assert!(!ok6, "{text}");
    assert!(text.contains("is held by ghost@gone deploying x"), "{text}");
    for r in &roots {
        assert_eq!(&current(r), winner, "{text}");
    }
    let (ok7, text) = play("unlock.yml", &[], &first);
    assert!(ok7, "{text}");
    assert!(!roots[0].join(".fleet-lock").exists(), "{text}");
    // A canary, then the rest: two batches of the flip.
    let canary = r#"{"wheelship_serial": [1, "100%"]}"#;
    let (ok8, text) = play("deploy.yml", &["-e", &rel5, "-e", canary], &first);
    assert!(ok8, "{text}");
    assert_eq!(
        text.matches("PLAY [Flipped in batches]").count(),
        2,
        "{text}"
    );
    for r in &roots {
        assert_eq!(current(r), id5, "{text}");
    }
    // A host whose staging fails (no such interpreter for its env) is not flipped, and is
    // named; the others are.
    let (v6, id6) = release("v6");
    let broken = t.path().join("broken.ini");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&first).unwrap().replacen(
            &format!("web3 wheelship_root={}", roots[2].display()),
            &format!(
                "web3 wheelship_root={} wheelship_python=/nonexistent/python3",
                roots[2].display()
            ),
            1,
        ),
    )
    .unwrap();
    let rel6 = format!("wheelship_release={}", v6.display());
    let (ok9, text) = play("deploy.yml", &["-e", &rel6], &broken);
    assert!(!ok9, "{text}");
    assert!(text.contains("web3 was not flipped"), "{text}");
    assert_eq!(current(&roots[0]), id6, "{text}");
    assert_eq!(current(&roots[1]), id6, "{text}");
    assert_eq!(current(&roots[2]), id5, "{text}");
    assert!(!roots[0].join(".fleet-lock").exists(), "{text}");
}
