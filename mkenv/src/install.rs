//! Building an env: the venv layout written natively (no `python -m venv`, no ensurepip), then
//! each stored wheel spread into it as the wheel spec says, files linked from the store. Every
//! path is made beneath the env's own directory handle and read beneath the store's: nothing a
//! wheel names can reach outside them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use rustix::io::Errno;
use wheelship::cli::io_reason;
use wheelship::fs::beneath::{Dir, Dirs};

use crate::interp::Interp;
use crate::wheel::Info;
use wheelship::fs::io::At;

/// How files come from the store: each mode falls back to the next when the file system
/// refuses it (reflink → hard link → copy), and stays there for the rest of the build.
#[derive(Clone, Copy, PartialEq, Debug)]
#[repr(u8)]
pub enum LinkMode {
    Unknown = 0,
    Reflink = 1,
    Hardlink = 2,
    Copy = 3,
}

impl LinkMode {
    /// The mode a `u8` holds (modes only move forward: Unknown → Reflink → Hardlink → Copy).
    pub fn from_u8(v: u8) -> LinkMode {
        match v {
            0 => LinkMode::Unknown,
            1 => LinkMode::Reflink,
            2 => LinkMode::Hardlink,
            _ => LinkMode::Copy,
        }
    }
}

pub struct Build<'a> {
    pub interp: &'a Interp,
    /// Where the env will live: absolute paths inside it (shebangs, activators) use this.
    pub final_path: PathBuf,
    /// Where it is built now: the temp directory, by handle.
    pub dirs: Dirs,
    pub mode: LinkMode,
    /// Link the `.pyc` files compiled in the store.
    pub compile: bool,
}

impl<'a> Build<'a> {
    pub fn new(interp: &'a Interp, final_path: PathBuf, root: Dir) -> Self {
        Build {
            interp,
            final_path,
            dirs: Dirs::new(root),
            mode: LinkMode::Unknown,
            compile: true,
        }
    }

    pub(crate) fn site(&self) -> PathBuf {
        PathBuf::from(self.interp.purelib())
    }

    pub(crate) fn site_str(&self) -> &str {
        self.interp.purelib()
    }

    fn python(&self) -> PathBuf {
        self.final_path.join("bin").join("python")
    }

    /// A `#!` line for scripts: the env's python, or the `/bin/sh` polyglot when the path is
    /// too long for the kernel or has a space.
    fn shebang(&self) -> String {
        let py = self.python().display().to_string();
        if py.len() + 2 > 127 || py.contains(' ') {
            format!("#!/bin/sh\n'''exec' \"{py}\" \"$0\" \"$@\"\n' '''\n")
        } else {
            format!("#!{py}\n")
        }
    }

    /// pyvenv.cfg, bin/python* links, site-packages, lib64, activators.
    pub fn layout(&mut self, key: &str) -> Result<()> {
        let i = self.interp;
        let xy = i.xy();
        for d in ["bin", "include"] {
            self.dirs.dir(Path::new(d))?;
        }
        let site = self.site();
        self.dirs.dir(&site)?;
        let root = self.dirs.root();
        if i.pointer_bits == 64 && root.kind("lib64")?.is_none() && site.starts_with("lib") {
            root.symlink("lib", "lib64")?;
        }
        let base = Path::new(&i.base_executable);
        root.symlink(base, "bin/python")?;
        for alias in ["python3".to_string(), format!("python{xy}")] {
            root.symlink("python", Path::new("bin").join(alias))?;
        }
        let home = base.parent().unwrap_or(Path::new("/"));
        let cfg = format!(
            "home = {}\ninclude-system-site-packages = false\nversion = {}\nimplementation = {}\nexecutable = {}\nmkenv = {}\nkey = {key}\n",
            home.display(),
            i.version,
            i.implementation,
            base.display(),
            env!("CARGO_PKG_VERSION"),
        );
        let env = self.final_path.display().to_string();
        let prompt = &key[..12.min(key.len())];
        let activate = ACTIVATE_SH
            .replace("@ENV@", &env)
            .replace("@PROMPT@", prompt);
        let fish = ACTIVATE_FISH
            .replace("@ENV@", &env)
            .replace("@PROMPT@", prompt);
        let root = self.dirs.root();
        write_file(root, Path::new("pyvenv.cfg"), cfg.as_bytes(), 0o644)?;
        write_file(root, Path::new("bin/activate"), activate.as_bytes(), 0o644)?;
        write_file(root, Path::new("bin/activate.fish"), fish.as_bytes(), 0o644)?;
        Ok(())
    }

    /// Where a member of the wheel goes, relative to the env root (PEP 427, "Spread"), and
    /// whether it is a `.data/scripts` file to rewrite. Paths are text: a wheel's member names
    /// are UTF-8, and the plan compares thousands of them.
    pub(crate) fn destination(&self, info: &Info, member: &str) -> Option<(String, bool)> {
        let site = self.interp.purelib();
        if member.strip_prefix(&info.dist_info) == Some("/RECORD") {
            return None;
        }
        if let Some(rest) = member
            .strip_prefix(&info.data_dir)
            .and_then(|r| r.strip_prefix('/'))
        {
            let (key, path) = rest.split_once('/')?;
            return Some(match key {
                "purelib" | "platlib" => (format!("{site}/{path}"), false),
                "scripts" => (format!("bin/{path}"), true),
                "headers" => (
                    format!(
                        "include/site/python{}/{}/{path}",
                        self.interp.xy(),
                        info.name
                    ),
                    false,
                ),
                _ => (path.to_string(), false),
            });
        }
        Some((format!("{site}/{member}"), false))
    }

    /// A `.data/scripts` file as installed: a first line `#!python` (or `#!pythonw`) becomes
    /// the env's python.
    pub fn script(&self, data: &[u8]) -> Vec<u8> {
        if !data.starts_with(b"#!python") {
            return data.to_vec();
        }
        let rest = data
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&[][..], |i| &data[i + 1..]);
        [self.shebang().as_bytes(), rest].concat()
    }

    /// The launcher of an entry point `module:attr` (extras ignored).
    pub fn launcher(&self, target: &str) -> Vec<u8> {
        let target = target.split('[').next().unwrap_or(target).trim();
        let (module, attr) = target.split_once(':').unwrap_or((target, ""));
        let (module, attr) = (module.trim(), attr.trim());
        let head = attr.split('.').next().unwrap_or(attr);
        format!(
            "{}# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {head}\nif __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit({attr}())\n",
            self.shebang()
        )
        .into_bytes()
    }
}

/// Whether `member` is `<dir>/__pycache__/<stem>.<cache_tag>.pyc` and the wheel has
/// `<dir>/<stem>.py`: the bytecode mkenv compiles itself.
pub(crate) fn shipped_pyc_of<S: std::hash::BuildHasher>(
    member: &str,
    cache_tag: &str,
    members: &std::collections::HashSet<&str, S>,
) -> bool {
    let Some(stem) = member.strip_suffix(&format!(".{cache_tag}.pyc")) else {
        return false;
    };
    let (dir, stem) = stem.rsplit_once('/').unwrap_or(("", stem));
    let parent = match dir.strip_suffix("__pycache__") {
        Some(p) if p.is_empty() || p.ends_with('/') => p,
        _ => return false,
    };
    members.contains(format!("{parent}{stem}.py").as_str())
}

/// Makes `dest` (beneath the env) the file `src` of the store: a reflink where the file system
/// allows it, else a hard link, else a copy.
pub(crate) fn link(
    mode: &mut LinkMode,
    store: &Dir,
    src: &Path,
    dir: &Dir,
    name: &std::ffi::OsStr,
    optional: bool,
) -> Result<()> {
    // An optional file the store does not have is skipped: found out by the hard link itself
    // (the common case), or asked first when the file is cloned or copied.
    if optional && matches!(*mode, LinkMode::Reflink | LinkMode::Copy) && store.kind(src)?.is_none()
    {
        return Ok(());
    }
    if matches!(*mode, LinkMode::Unknown | LinkMode::Reflink) {
        match reflink(store, src, dir, name) {
            Ok(()) => {
                *mode = LinkMode::Reflink;
                return Ok(());
            }
            Err(_) if *mode == LinkMode::Unknown => *mode = LinkMode::Hardlink,
            Err(e) => return Err(e),
        }
    }
    if *mode == LinkMode::Hardlink {
        match store.hard_link_raw(src, dir, Path::new(name)) {
            Ok(()) => return Ok(()),
            Err(Errno::NOENT) if optional => return Ok(()),
            // Another file system, or one that refuses hard links: copy from now on.
            Err(Errno::XDEV) | Err(Errno::PERM) | Err(Errno::MLINK) => *mode = LinkMode::Copy,
            Err(e) => {
                return Err(anyhow!(
                    "cannot link `{}` to `{}`: {}",
                    store.show(src).display(),
                    dir.show(name).display(),
                    io_reason(&e.into())
                ))
            }
        }
    }
    let mut from = store.open_file(src)?;
    let perm = from.metadata()?.permissions();
    let mut to = dir.create_file(name, 0o600)?;
    let fail = |e: std::io::Error| {
        anyhow!(
            "cannot copy `{}` to `{}`: {}",
            store.show(src).display(),
            dir.show(name).display(),
            io_reason(&e)
        )
    };
    std::io::copy(&mut from, &mut to).map_err(fail)?;
    to.set_permissions(perm).map_err(fail)?;
    Ok(())
}

fn reflink(store: &Dir, src: &Path, dir: &Dir, name: &std::ffi::OsStr) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let s = store.open_file(src)?;
    let mode = s.metadata()?.permissions().mode() & 0o777;
    let d = dir.create_file(name, mode)?;
    match rustix::fs::ioctl_ficlone(&d, &s) {
        Ok(()) => Ok(()),
        Err(e) => {
            drop(d);
            let _ = dir.remove_file(name);
            Err(anyhow!("cannot reflink: {e}"))
        }
    }
}

/// Writes a new file beneath the env (a fresh directory: nothing is there yet), its mode as
/// given whatever the umask.
pub(crate) fn write_file(root: &Dir, rel: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = root.create_file(rel, mode)?;
    f.write_all(data).at("write", root.show(rel))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .at("write", root.show(rel))?;
    Ok(())
}

/// A path in RECORD: relative to site-packages, `../../../bin/x` for what lies outside.
pub(crate) fn rel_to(dest: &str, site: &str) -> String {
    if let Some(r) = dest.strip_prefix(site).and_then(|r| r.strip_prefix('/')) {
        return r.to_string();
    }
    let up = site.split('/').filter(|c| !c.is_empty()).count();
    format!("{}{dest}", "../".repeat(up))
}

const ACTIVATE_SH: &str = r#"# Source this file from bash or zsh: `. bin/activate`. Written by mkenv.
deactivate () {
    if [ -n "${_OLD_VIRTUAL_PATH:-}" ]; then
        PATH="$_OLD_VIRTUAL_PATH"; export PATH; unset _OLD_VIRTUAL_PATH
    fi
    if [ -n "${_OLD_VIRTUAL_PYTHONHOME:-}" ]; then
        PYTHONHOME="$_OLD_VIRTUAL_PYTHONHOME"; export PYTHONHOME; unset _OLD_VIRTUAL_PYTHONHOME
    fi
    if [ -n "${_OLD_VIRTUAL_PS1:-}" ]; then
        PS1="$_OLD_VIRTUAL_PS1"; export PS1; unset _OLD_VIRTUAL_PS1
    fi
    unset VIRTUAL_ENV VIRTUAL_ENV_PROMPT
    hash -r 2>/dev/null
    if [ "${1:-}" != "nondestructive" ]; then
        unset -f deactivate
    fi
}
deactivate nondestructive
VIRTUAL_ENV="@ENV@"
VIRTUAL_ENV_PROMPT="(@PROMPT@) "
export VIRTUAL_ENV VIRTUAL_ENV_PROMPT
_OLD_VIRTUAL_PATH="$PATH"
PATH="$VIRTUAL_ENV/bin:$PATH"
export PATH
if [ -n "${PYTHONHOME:-}" ]; then
    _OLD_VIRTUAL_PYTHONHOME="$PYTHONHOME"; unset PYTHONHOME
fi
if [ -z "${VIRTUAL_ENV_DISABLE_PROMPT:-}" ]; then
    _OLD_VIRTUAL_PS1="${PS1:-}"; PS1="$VIRTUAL_ENV_PROMPT${PS1:-}"; export PS1
fi
hash -r 2>/dev/null
"#;

const ACTIVATE_FISH: &str = r#"# Source this file from fish: `source bin/activate.fish`. Written by mkenv.
function deactivate -d "leave the env"
    if set -q _OLD_VIRTUAL_PATH
        set -gx PATH $_OLD_VIRTUAL_PATH
        set -e _OLD_VIRTUAL_PATH
    end
    if set -q _OLD_VIRTUAL_PYTHONHOME
        set -gx PYTHONHOME $_OLD_VIRTUAL_PYTHONHOME
        set -e _OLD_VIRTUAL_PYTHONHOME
    end
    set -e VIRTUAL_ENV
    set -e VIRTUAL_ENV_PROMPT
    if test "$argv[1]" != "nondestructive"
        functions -e deactivate
    end
end
deactivate nondestructive
set -gx VIRTUAL_ENV "@ENV@"
set -gx VIRTUAL_ENV_PROMPT "(@PROMPT@) "
set -gx _OLD_VIRTUAL_PATH $PATH
set -gx PATH "$VIRTUAL_ENV/bin" $PATH
if set -q PYTHONHOME
    set -gx _OLD_VIRTUAL_PYTHONHOME $PYTHONHOME
    set -e PYTHONHOME
end
"#;
