// The build script of the tests crate (`tests/build.rs` includes it): every test that needs
// something from outside the workspace lives there, so the tool crates need no build script.
// A test whose prerequisite is missing is compiled as
// `#[ignore]`d with the reason, so a local `cargo test` shows it in its summary
// ("N ignored") instead of passing it silently. With `WHEELSHIP_REQUIRE_ALL=1` (what `.ci/run`
// sets, after providing everything) nothing is ignored: a missing prerequisite fails its test.
//
// | cfg                  | set unless                                              |
// | -------------------- | ------------------------------------------------------- |
// | `wheelship_no_pip26` | `WHEELSHIP_PIP_PYTHON` names a Python with pip >= 26     |
// | `wheelship_no_ssh`   | `WHEELSHIP_SSH_HOST` names the test sshd                 |
// | `wheelship_offline`  | `WHEELSHIP_ONLINE=1` (PyPI may be used)                  |
// | `wheelship_not_root` | the build runs as root (the tests mount tmpfs disks)     |
// | `wheelship_no_minisign` | the `minisign` tool is on PATH (Debian's `minisign`)  |
// | `wheelship_no_ansible` | `WHEELSHIP_ANSIBLE_PLAYBOOK` names an ansible-playbook   |
// | `wheelship_no_uv`    | `WHEELSHIP_UV` names a uv binary                          |
// | `wheelship_no_cyclonedx` | `WHEELSHIP_CYCLONEDX_PYTHON` names a Python with cyclonedx-python-lib and cyclonedx-bom |
// | `wheelship_no_pythons` | pyenv holds CPython 3.11 and 3.12 (`$PYENV_ROOT/versions`) |
// | `wheelship_no_strace` | `strace` is on PATH (SIGKILL at chosen syscalls)           |
// | `wheelship_no_debian` | dpkg-deb, dpkg-shlibdeps, apt-ftparchive, strip and lintian are on PATH |

/// Whether pyenv's versions directory holds a CPython of each minor version given.
fn pyenv_has(minors: &[&str]) -> bool {
    let root = std::env::var_os("PYENV_ROOT")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pyenv")));
    let names: Vec<String> = root
        .and_then(|r| std::fs::read_dir(r.join("versions")).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    minors.iter().all(|m| names.iter().any(|n| n.starts_with(m)))
}

fn main() {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let require_all = std::env::var_os("WHEELSHIP_REQUIRE_ALL").is_some_and(|v| v == "1");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let checks = [
        ("wheelship_no_pip26", set("WHEELSHIP_PIP_PYTHON")),
        ("wheelship_no_ssh", set("WHEELSHIP_SSH_HOST")),
        (
            "wheelship_offline",
            std::env::var_os("WHEELSHIP_ONLINE").is_some_and(|v| v == "1"),
        ),
        ("wheelship_not_root", root),
        ("wheelship_no_ansible", set("WHEELSHIP_ANSIBLE_PLAYBOOK")),
        ("wheelship_no_uv", set("WHEELSHIP_UV")),
        ("wheelship_no_cyclonedx", set("WHEELSHIP_CYCLONEDX_PYTHON")),
        (
            "wheelship_no_debian",
            ["dpkg-deb", "dpkg-shlibdeps", "apt-ftparchive", "strip", "lintian"]
                .iter()
                .all(|t| {
                    std::process::Command::new("sh")
                        .args(["-c", &format!("command -v {t}")])
                        .output()
                        .is_ok_and(|o| o.status.success())
                }),
        ),
        ("wheelship_no_pythons", pyenv_has(&["3.11.", "3.12."])),
        (
            "wheelship_no_strace",
            std::process::Command::new("strace")
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success()),
        ),
        (
            "wheelship_no_minisign",
            std::process::Command::new("minisign")
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success()),
        ),
    ];
    for (cfg, available) in checks {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if !available && !require_all {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    for var in [
        "WHEELSHIP_REQUIRE_ALL",
        "WHEELSHIP_PIP_PYTHON",
        "WHEELSHIP_SSH_HOST",
        "WHEELSHIP_ONLINE",
        "WHEELSHIP_ANSIBLE_PLAYBOOK",
        "WHEELSHIP_UV",
        "WHEELSHIP_CYCLONEDX_PYTHON",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
