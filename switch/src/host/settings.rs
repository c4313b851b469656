//! A settings file: the door's options written one a line, `name = value`, so that a
//! package's conffile (or an operator) can set any option the door takes — switch's included —
//! without the package knowing them. `--settings FILE` on the door's command line stands for
//! those options, in the file's order, at that place (an option given after it adds to or
//! overrides what the file said).
//!
//! ```text
//! # /etc/wheelship/wsapp-web.conf
//! python = python3
//! check = curl -fsS http://127.0.0.1:8000/health
//! check-timeout = 60
//! keep = 5
//! allow-bad = no
//! ```
//!
//! A value is the rest of the line after `=`, trimmed, taken as it is (no quotes, no shell).
//! A flag takes `yes`/`no` (or `true`/`false`, `1`/`0`). The file decides what runs as the
//! deploying user: it must be a regular file owned by that user or root that no one else may
//! write, and at most 64 KiB.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::CommandFactory;
use wheelship::fs::io::At;
use wheelship::UsageError;

/// One setting: its name, value and line.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub line: usize,
}

const MAX: u64 = 64 << 10;

/// Reads and parses a settings file (its owner and mode checked, its size bounded).
pub fn read(path: &Path) -> Result<Vec<Setting>> {
    let path = &trusted_path(path)?;
    let (f, len) = wheelship::fs::fsx::open_regular(path)?;
    super::programs::check_runnable(&f, path, "the settings file")?;
    if len > MAX {
        bail!(
            "`{}` is larger than {MAX} bytes: not a settings file",
            path.display()
        );
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX), &mut text).at("read", path)?;
    parse(&text, path)
}

/// The settings file's path with its directories resolved, once each of them is one that only
/// root (or the user running the door) can change: the file's owner and mode are checked when
/// it is opened, but whoever may write a directory above it may put another file (or a link
/// to one) in its place. The file itself must not be a symlink.
fn trusted_path(path: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("`{}` names no file", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = parent.canonicalize().at("resolve", parent)?;
    let me = rustix::process::geteuid().as_raw();
    for d in dir.ancestors() {
        let m = std::fs::metadata(d).at("read", d)?;
        let owner_ok = m.uid() == 0 || m.uid() == me;
        let sticky_root = m.mode() & 0o1000 != 0 && m.uid() == 0;
        if !owner_ok || (m.mode() & 0o022 != 0 && !sticky_root) {
            bail!(
                "the settings file `{}`: its directory `{}` may be changed by another user (owner {}, mode {:04o}): a settings file lives where only root can replace it",
                path.display(),
                d.display(),
                m.uid(),
                m.mode() & 0o7777
            );
        }
    }
    let full = dir.join(name);
    if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!(
            "the settings file `{}` is a symlink: give the file itself",
            path.display()
        );
    }
    Ok(full)
}

/// The settings of `text` (read from `path`, for messages).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Setting>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let Some((name, value)) = line.split_once('=') else {
            bail!("{}: `{}` is not `name = value`", at(), line.escape_debug());
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!(
                "{}: `{}` is not a setting's name",
                at(),
                name.escape_debug()
            );
        }
        if value.chars().any(char::is_control) {
            bail!("{}: the value of `{name}` has a control character", at());
        }
        out.push(Setting {
            name: name.to_string(),
            value: value.to_string(),
            line: i + 1,
        });
    }
    Ok(out)
}

/// The command line with each `--settings FILE` replaced by the options it holds, checked
/// against the options of the subcommand they are given to.
pub fn expand(args: impl Iterator<Item = OsString>) -> Result<Vec<OsString>> {
    let args: Vec<OsString> = args.collect();
    let Some(sub) = args.get(1).and_then(|a| a.to_str()).map(str::to_string) else {
        return Ok(args);
    };
    if sub == "args" {
        // `wheelship-host args CMD …` expands CMD's line itself.
        return Ok(args);
    }
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        let file = match a.to_str() {
            Some("--settings") => Some(
                it.next()
                    .map(PathBuf::from)
                    .ok_or_else(|| UsageError("--settings needs FILE".into()))?,
            ),
            Some(s) if s.starts_with("--settings=") => Some(PathBuf::from(&s[11..])),
            _ => None,
        };
        match file {
            Some(f) => out.extend(options(&sub, &f, &read(&f)?)?),
            None => out.push(a),
        }
    }
    Ok(out)
}

/// The settings as options of the door's subcommand `sub`.
pub fn options(sub: &str, path: &Path, settings: &[Setting]) -> Result<Vec<OsString>> {
    let cmd = super::HostArgs::command();
    let sub_cmd = cmd
        .find_subcommand(sub)
        .ok_or_else(|| UsageError(format!("--settings is not for `{sub}`")))?;
    let mut out = Vec::new();
    for s in settings {
        let arg = sub_cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(s.name.as_str()) && s.name != "settings")
            .ok_or_else(|| {
                anyhow!(
                    "{}:{}: `{}` is not an option of `wheelship-host {sub}`",
                    path.display(),
                    s.line,
                    s.name
                )
            })?;
        let flag = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        if flag {
            match s.value.as_str() {
                "yes" | "true" | "1" => out.push(format!("--{}", s.name).into()),
                "no" | "false" | "0" | "" => {}
                v => bail!(
                    "{}:{}: `{}` is a flag: `yes` or `no`, not `{}`",
                    path.display(),
                    s.line,
                    s.name,
                    v.escape_debug()
                ),
            }
        } else if !s.value.is_empty() {
            out.push(format!("--{}", s.name).into());
            out.push(s.value.clone().into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_options_in_order() {
        let p = Path::new("/etc/x.conf");
        let s = parse(
            "# c\ncheck = curl -fsS http://h/x?a=b\nallow-bad = yes\ninsecure-allow-unverified = no\nkeep = 5\ncheck = true\n",
            p,
        )
        .unwrap();
        let o = options("deploy", p, &s).unwrap();
        let o: Vec<&str> = o.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            o,
            [
                "--check",
                "curl -fsS http://h/x?a=b",
                "--allow-bad",
                "--keep",
                "5",
                "--check",
                "true"
            ]
        );
    }

    #[test]
    fn what_is_not_a_setting_is_named_with_its_line() {
        let p = Path::new("/etc/x.conf");
        let e = options("deploy", p, &parse("\nnope = 1\n", p).unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/x.conf:2: `nope` is not an option of `wheelship-host deploy`"
        );
        assert!(parse("check\n", p).is_err());
        assert!(parse("Check = x\n", p).is_err());
        let e = options("deploy", p, &parse("allow-bad = maybe\n", p).unwrap()).unwrap_err();
        assert!(e.to_string().contains("is a flag"), "{e}");
    }
}
