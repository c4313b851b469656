//! A release's Debian package on its host: what its `postinst` runs (`wheelship-host package
//! configure`), so that every decision of a package's deploy is made here, in one place, with
//! the tools' checks, and not in a maintainer script.
//!
//! - The package is `wsapp-<name>`: app packages live in their own namespace and can
//!   never take the name of another package.
//! - Its settings are `/etc/wheelship/<package>.conf` (the tools' package owns
//!   `/etc/wheelship/`): `root = DIR`, `purge-shared = yes|no`, and any option of the door.
//! - Its state is `/var/lib/wheelship/<package>/` (the package ships its archive there): the
//!   root it deployed to (for `postrm purge`, when the settings are gone), the version whose
//!   configure failed, the probe cache (nothing in a user's home).
//! - A root records the package that owns it (`ROOT/.package`); another package refuses it.
//! - A downgrade dpkg was asked for passes replay protection (`--allow-downgrade`), said; a
//!   version whose configure failed and is configured again by the operator (`dpkg --configure
//!   -a`, `apt-get -f install`) may go live if its check now passes (`--allow-bad`), said.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use wheelship::fs::owned::OwnedDir;
use wheelship::host::layout;
use wheelship::{Document, Hint};

use super::settings::{self, Setting};

/// Every app package's name starts with this.
pub const PREFIX: &str = "wsapp-";
/// Where the packages' settings live.
pub const ETC: &str = "/etc/wheelship";
/// Where each package's state lives.
pub const STATE: &str = "/var/lib/wheelship";

#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    #[command(subcommand)]
    pub cmd: PackageCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum PackageCmd {
    /// postinst configure: deploy the package's release with its settings
    Configure {
        /// The package (wsapp-<name>)
        #[arg(value_name = "PACKAGE")]
        package: String,
        /// The version being configured
        #[arg(value_name = "VERSION")]
        version: String,
        /// The release archive the package ships
        #[arg(value_name = "ARCHIVE")]
        archive: PathBuf,
        /// The version configured before (dpkg's second argument)
        #[arg(long, value_name = "VERSION")]
        old_version: Option<String>,
    },
    /// postinst triggered (the package's dpkg trigger on the system's python3 fired): every
    /// kept release's env rebuilt for the interpreter now there, offline, and the service
    /// handed over, with the package's settings (`wheelship-host rebuild`)
    Triggered {
        /// The package (wsapp-<name>)
        #[arg(value_name = "PACKAGE")]
        package: String,
    },
}

/// A package name of an app: the prefix, then a Debian package name's characters.
pub fn check_package(p: &str) -> Result<&str> {
    let rest = p.strip_prefix(PREFIX).ok_or_else(|| {
        anyhow!(
            "`{}` is not an app package of wheelship (they are named `{PREFIX}<name>`)",
            p.escape_debug()
        )
    })?;
    let ok = !rest.is_empty()
        && rest.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && rest
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c));
    if !ok {
        bail!("`{}` is not a Debian package name", p.escape_debug());
    }
    Ok(rest)
}

/// A Debian version (deb-version(7)): a digit first, then letters, digits and `.+~:-`.
fn check_version(v: &str) -> Result<()> {
    let ok = v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~:-".contains(&c));
    if !ok {
        bail!("`{}` is not a Debian version", v.escape_debug());
    }
    Ok(())
}

pub fn run(a: &PackageArgs) -> Result<()> {
    match &a.cmd {
        PackageCmd::Configure {
            package,
            version,
            archive,
            old_version,
        } => configure(package, version, archive, old_version.as_deref()),
        PackageCmd::Triggered { package } => triggered(package),
    }
}

/// `postinst triggered`: the root's envs rebuilt for the interpreter the settings name (by
/// default `python3`, which just changed), with the package's service settings.
fn triggered(package: &str) -> Result<()> {
    let app = check_package(package)?;
    let s = settings_of(package, app)?;
    let st = state(package)?;
    std::env::set_var("WHEELSHIP_CACHE", st.join("cache"));
    std::env::remove_var("WHEELSHIP_BIN");
    // Only a root this package deployed to: one that names it (`configure` claimed it). A
    // settings file naming another package's root, or a root nothing deployed, is left alone.
    let owner = match std::fs::symlink_metadata(&s.root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => OwnedDir::open(&s.root, "root")?
            .dir()
            .read(layout::PACKAGE)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()),
    };
    match owner.as_deref() {
        Some(p) if p == package => {}
        None => {
            eprintln!(
                "{package}: nothing of this package is deployed in `{}`: nothing to rebuild",
                s.root.display()
            );
            return Ok(());
        }
        Some(other) => bail!(
            "the root `{}` belongs to package `{}`: `{package}`'s trigger does not rebuild it",
            s.root.display(),
            wheelship::text::shown(other, 100)
        ),
    }
    eprintln!(
        "{package}: the system's Python changed (dpkg trigger): rebuilding the envs of `{}` for the interpreter now here",
        s.root.display()
    );
    let mut argv: Vec<std::ffi::OsString> = vec!["wheelship-host".into(), "rebuild".into()];
    argv.push(s.root.clone().into());
    argv.extend(settings::options("rebuild", &s.path, &s.options)?);
    let args = match <super::HostArgs as clap::Parser>::try_parse_from(argv) {
        Ok(super::HostArgs {
            cmd: super::HostCmd::Rebuild(f),
        }) => f,
        Ok(_) => unreachable!("parsed as rebuild"),
        Err(e) => bail!(
            "{}: {}",
            s.path.display(),
            e.render().to_string().trim_end()
        ),
    };
    super::steps::rebuild_doc(&args).map(|_| ())
}

/// What the settings file says, the door's options apart from the package's own.
struct Settings {
    root: PathBuf,
    purge_shared: bool,
    options: Vec<Setting>,
    path: PathBuf,
}

fn settings_of(package: &str, app: &str) -> Result<Settings> {
    let path = Path::new(ETC).join(format!("{package}.conf"));
    let all = if path.exists() {
        settings::read(&path)?
    } else {
        Vec::new()
    };
    let mut s = Settings {
        root: PathBuf::from(format!("/srv/{app}")),
        purge_shared: false,
        options: Vec::new(),
        path,
    };
    for one in all {
        let at = || format!("{}:{}", s.path.display(), one.line);
        match one.name.as_str() {
            "root" => {
                let r = PathBuf::from(&one.value);
                if !r.is_absolute() || r.parent().is_none() {
                    bail!(
                        "{}: root `{}` is not an absolute path below /",
                        at(),
                        one.value
                    );
                }
                s.root = r;
            }
            "purge-shared" => s.purge_shared = matches!(one.value.as_str(), "yes" | "true" | "1"),
            _ => s.options.push(one),
        }
    }
    Ok(s)
}

/// The state directory of `package`, created (0755, root's).
fn state(package: &str) -> Result<OwnedDir> {
    OwnedDir::create(&Path::new(STATE).join(package), "package state directory")
}

/// `ROOT/.package` names `package`: written when the root has none, else it must be this one.
fn claim(root: &OwnedDir, package: &str) -> Result<()> {
    match root.dir().read(layout::PACKAGE) {
        Ok(had) => {
            let had = String::from_utf8_lossy(&had).trim().to_string();
            if had != package {
                return Err(Hint::new(
                    format!(
                        "the root `{}` belongs to package `{}`: refusing to deploy `{package}` there",
                        root.path().display(),
                        wheelship::text::shown(&had, 100)
                    ),
                    format!("give `{package}` a root of its own (`root = DIR` in /etc/wheelship/{package}.conf)"),
                )
                .into());
            }
            Ok(())
        }
        Err(_) if root.dir().kind(layout::PACKAGE)?.is_none() => wheelship::fs::fsx::write_atomic(
            &root.join(layout::PACKAGE),
            format!("{package}\n").as_bytes(),
        ),
        Err(e) => Err(e),
    }
}

/// Whether dpkg orders `a` before `b`.
fn older(a: &str, b: &str) -> Result<bool> {
    let st = Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .context("cannot run `dpkg --compare-versions`")?;
    Ok(st.success())
}

/// What a package's deploy takes when its settings leave it out: the `keep` the shipped
/// settings file says, so that releases do not pile up for ever under an operator's own file.
fn defaults(options: &[Setting]) -> Vec<std::ffi::OsString> {
    if options.iter().any(|o| o.name == "keep") {
        return Vec::new();
    }
    let keep = layout::PACKAGE_KEEP.to_string();
    vec!["--keep".into(), keep.into()]
}

fn configure(package: &str, version: &str, archive: &Path, old: Option<&str>) -> Result<()> {
    let app = check_package(package)?;
    check_version(version)?;
    if let Some(o) = old {
        check_version(o)?;
    }
    let s = settings_of(package, app)?;
    let st = state(package)?;
    // The probe cache of mkenv, and anything else a tool caches, under the package's state:
    // a package writes nothing into a user's home.
    std::env::set_var("WHEELSHIP_CACHE", st.join("cache"));
    // The programs are the tools package's, beside this door: an operator's `WHEELSHIP_BIN`
    // (a checkout's build, in the shell that ran `apt-get`) does not reach a package's deploy.
    std::env::remove_var("WHEELSHIP_BIN");
    let root = OwnedDir::create(&s.root, "root")?;
    claim(&root, package)?;
    wheelship::fs::fsx::write_atomic(
        &st.join("root"),
        format!("{}\n", root.path().display()).as_bytes(),
    )?;
    let purge = st.join("purge-shared");
    if s.purge_shared {
        wheelship::fs::fsx::write_atomic(&purge, b"yes\n")?;
    } else {
        let _ = std::fs::remove_file(&purge);
    }
    let mut argv: Vec<std::ffi::OsString> = vec!["wheelship-host".into(), "deploy".into()];
    argv.push(root.path().into());
    argv.push(archive.into());
    argv.extend(settings::options("deploy", &s.path, &s.options)?);
    argv.extend(defaults(&s.options));
    if let Some(old) = old.filter(|o| older(version, o).unwrap_or(false)) {
        eprintln!(
            "{package}: {old} to {version} is a downgrade, as asked: allowed (--allow-downgrade)"
        );
        argv.push("--allow-downgrade".into());
    }
    let failed = st.join("failed");
    let failed_before = std::fs::read_to_string(&failed).is_ok_and(|v| v.trim() == version);
    if failed_before {
        eprintln!("{package}: {version} failed to configure before and is configured again: it may go live if its check passes now (--allow-bad)");
        argv.push("--allow-bad".into());
    }
    let args = match <super::HostArgs as clap::Parser>::try_parse_from(argv) {
        Ok(super::HostArgs {
            cmd: super::HostCmd::Deploy(d),
        }) => d,
        Ok(_) => unreachable!("parsed as deploy"),
        Err(e) => bail!(
            "{}: {}",
            s.path.display(),
            e.render().to_string().trim_end()
        ),
    };
    match super::steps::deploy_doc(&args, true, Document::default()) {
        Ok(_) => {
            let _ = std::fs::remove_file(&failed);
            Ok(())
        }
        Err(e) => {
            wheelship::fs::fsx::write_atomic(&failed, format!("{version}\n").as_bytes())?;
            Err(e.context(format!(
                "{version} did not go live; once the cause is fixed, `dpkg --configure -a` tries it again"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_keeps_what_its_shipped_settings_say_when_the_operators_leave_keep_out() {
        assert_eq!(
            defaults(&[]),
            vec![std::ffi::OsString::from("--keep"), "5".into()]
        );
        let keep = Setting {
            name: "keep".into(),
            value: "2".into(),
            line: 3,
        };
        assert!(defaults(&[keep]).is_empty());
    }
}
