//! What pip does with a wheel's scripts and entry points that mkenv does too
//! (`pip/_internal/operations/install/wheel.py`): setuptools' own launchers are left out, and
//! `pip`/`easy_install` entry points are made for the interpreter of the env.

use crate::wheel::Info;

/// pip's `is_entrypoint_wrapper`: a `.data/scripts` file named for one of the wheel's entry
/// points, as setuptools wrote its own launchers (`EP`, `EP.exe`, `EP-script.py`, `EP.pya`; the
/// suffix in any case). pip 26 keeps `EP-script.pyw`, and so does mkenv.
pub(crate) fn is_entrypoint_wrapper(dest: &str, info: &Info) -> bool {
    let name = dest.rsplit('/').next().unwrap_or(dest);
    let lower = name.to_ascii_lowercase();
    let stem = if lower.ends_with(".exe") || lower.ends_with(".pya") {
        &name[..name.len() - 4]
    } else if lower.ends_with("-script.py") {
        &name[..name.len() - 10]
    } else {
        name
    };
    info.console_scripts
        .iter()
        .chain(&info.gui_scripts)
        .any(|(ep, _)| ep == stem)
}

/// pip's console scripts for a wheel (`get_console_script_specs`, with `ENSUREPIP_OPTIONS`
/// unset: mkenv does not read it): a `pip` entry point gives `pip`, `pipX` and `pipX.Y` for
/// this interpreter and an `easy_install` one `easy_install` and `easy_install-X.Y`, and the
/// versions the wheel was built with (`pip3.8`, `easy_install-2.6`) go; the rest as written.
pub(crate) fn console_scripts(eps: &[(String, String)], xy: &str) -> Vec<(String, String)> {
    let major = xy.split('.').next().unwrap_or(xy);
    let versioned_pip = |n: &str| {
        n.strip_prefix("pip").is_some_and(|v| {
            let mut parts = v.splitn(2, '.');
            let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            v.is_empty()
                || (parts.next().is_some_and(all_digits) && parts.next().is_none_or(all_digits))
        })
    };
    let versioned_easy = |n: &str| {
        n == "easy_install"
            || n.strip_prefix("easy_install-").is_some_and(|v| {
                v.split_once('.').is_some_and(|(a, b)| {
                    [a, b]
                        .iter()
                        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
                })
            })
    };
    let mut out = Vec::new();
    let mut rest: Vec<(String, String)> = eps.to_vec();
    if let Some(t) = eps.iter().find(|(n, _)| n == "pip").map(|(_, t)| t.clone()) {
        for n in ["pip".to_string(), format!("pip{major}"), format!("pip{xy}")] {
            out.push((n, t.clone()));
        }
        rest.retain(|(n, _)| !versioned_pip(n));
    }
    if let Some(t) = eps
        .iter()
        .find(|(n, _)| n == "easy_install")
        .map(|(_, t)| t.clone())
    {
        for n in ["easy_install".to_string(), format!("easy_install-{xy}")] {
            out.push((n, t.clone()));
        }
        rest.retain(|(n, _)| !versioned_easy(n));
    }
    out.extend(rest);
    out
}

#[cfg(test)]
mod pip_rules {
    use super::console_scripts;

    #[test]
    fn versioned_entry_points_are_this_pythons() {
        let eps = |names: &[&str]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|n| (n.to_string(), "m:f".to_string()))
                .collect()
        };
        let names =
            |v: Vec<(String, String)>| -> Vec<String> { v.into_iter().map(|(n, _)| n).collect() };
        assert_eq!(
            names(console_scripts(
                &eps(&[
                    "pip",
                    "pip3.8",
                    "pip2",
                    "easy_install",
                    "easy_install-2.6",
                    "pipx",
                    "tool"
                ]),
                "3.11"
            )),
            [
                "pip",
                "pip3",
                "pip3.11",
                "easy_install",
                "easy_install-3.11",
                "pipx",
                "tool"
            ]
        );
        // Without the unversioned one, the versioned ones stay as written (pip's rule).
        assert_eq!(
            names(console_scripts(&eps(&["pip3.8"]), "3.11")),
            ["pip3.8"]
        );
    }
}
