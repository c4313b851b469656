//! Building an env: the venv layout written natively (no `python -m venv`, no ensurepip), then
//! each stored wheel spread into it as the wheel spec says, files linked from the store. Every
//! path is made beneath the env's own directory handle and read beneath the store's: nothing a
//! wheel names can reach outside them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use wheelship::beneath::{Dir, Dirs, Kind};
use wheelship::cli::io_reason;

use crate::interp::Interp;
use crate::wheel::{record_hash, Info};

/// How files come from the store: each mode falls back to the next when the file system
/// refuses it (reflink → hard link → copy), and stays there for the rest of the build.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum LinkMode {
    Unknown,
    Reflink,
    Hardlink,
    Copy,
}

pub struct Build<'a> {
    pub interp: &'a Interp,
    /// Where the env will live: absolute paths inside it (shebangs, activators) use this.
    pub final_path: PathBuf,
    /// Where it is built now: the temp directory, by handle.
    pub dirs: Dirs,
    pub mode: LinkMode,
    pub files: usize,
    /// Which file each installed path came from, to warn when two wheels write one path.
    owners: BTreeMap<PathBuf, String>,
    pub warnings: Vec<String>,
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
            files: 0,
            owners: BTreeMap::new(),
            warnings: Vec::new(),
            compile: true,
        }
    }

    fn site(&self) -> PathBuf {
        PathBuf::from(self.interp.purelib())
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
        let d = &mut self.dirs;
        write_new(d, Path::new("pyvenv.cfg"), cfg.as_bytes(), 0o644)?;
        write_new(d, Path::new("bin/activate"), activate.as_bytes(), 0o644)?;
        write_new(d, Path::new("bin/activate.fish"), fish.as_bytes(), 0o644)?;
        Ok(())
    }

    /// Where a member of the wheel goes, relative to the env root (PEP 427, "Spread"), and
    /// whether it is a `.data/scripts` file to rewrite.
    fn destination(&self, info: &Info, member: &str) -> Option<(PathBuf, bool)> {
        if member == format!("{}/RECORD", info.dist_info) {
            return None;
        }
        if let Some(rest) = member.strip_prefix(&format!("{}/", info.data_dir)) {
            let (key, path) = rest.split_once('/')?;
            return Some(match key {
                "purelib" | "platlib" => (self.site().join(path), false),
                "scripts" => (PathBuf::from("bin").join(path), true),
                "headers" => (
                    PathBuf::from("include/site")
                        .join(format!("python{}", self.interp.xy()))
                        .join(&info.name)
                        .join(path),
                    false,
                ),
                _ => (PathBuf::from(path), false),
            });
        }
        Some((self.site().join(member), false))
    }

    /// Spreads one stored wheel (its `files/` directory, by handle) into the env and writes its
    /// INSTALLER, REQUESTED and RECORD.
    pub fn install(
        &mut self,
        store: &Dir,
        info: &Info,
        file_name: &str,
        requested: bool,
    ) -> Result<()> {
        let site = self.site();
        let mut record: Vec<(String, String, String)> = Vec::new();
        let members: std::collections::HashSet<&str> =
            info.files.iter().map(|(m, _, _)| m.as_str()).collect();
        for (member, hash, size) in &info.files {
            let Some((dest, script)) = self.destination(info, member) else {
                continue;
            };
            // A `.pyc` the wheel ships for this interpreter (numpy < 2.3 does) gives way to
            // ours, compiled from its source by the interpreter itself, as every other `.pyc`
            // of the env: not linked, not in RECORD.
            if self.compile && shipped_pyc_of(member, &self.interp.cache_tag, &members) {
                continue;
            }
            let src = Path::new(member);
            if let Some(prev) = self.owners.insert(dest.clone(), file_name.to_string()) {
                self.warnings.push(format!(
                    "`{file_name}` overwrites `{}` from `{prev}`",
                    dest.display()
                ));
                let (dir, name) = self.dirs.parent(&dest)?;
                let _ = dir.remove_file(name);
            }
            let (h, s) = if script {
                self.write_script(store, src, &dest)?
            } else {
                link(&mut self.mode, store, src, &mut self.dirs, &dest)?;
                // The bytecode compiled in the store for this interpreter comes along.
                if self.compile && dest.starts_with(&site) && member.ends_with(".py") {
                    self.link_pyc(store, src, &dest)?;
                }
                (hash.clone(), size.to_string())
            };
            record.push((rel_to(&dest, &site), h, s));
            self.files += 1;
        }
        // On POSIX a gui script's launcher is the same as a console script's.
        for (name, target) in info.console_scripts.iter().chain(&info.gui_scripts) {
            let (h, s) = self.launcher(name, target)?;
            record.push((rel_to(&PathBuf::from("bin").join(name), &site), h, s));
        }
        let di = site.join(&info.dist_info);
        let mut extra = vec![("INSTALLER", b"wheelship\n".to_vec())];
        if requested {
            extra.push(("REQUESTED", Vec::new()));
        }
        for (name, content) in extra {
            let (h, s) = write_new(&mut self.dirs, &di.join(name), &content, 0o644)?;
            record.push((rel_to(&di.join(name), &site), h, s));
        }
        record.push((
            rel_to(&di.join("RECORD"), &site),
            String::new(),
            String::new(),
        ));
        record.sort();
        let mut csv = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        for row in &record {
            csv.serialize(row)?;
        }
        let text = csv
            .into_inner()
            .map_err(|e| anyhow!("RECORD: {}", e.error()))?;
        write_new(&mut self.dirs, &di.join("RECORD"), &text, 0o644)?;
        self.files += 3;
        Ok(())
    }

    fn link_pyc(&mut self, store: &Dir, src: &Path, dest: &Path) -> Result<()> {
        let stem = src
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let pyc = format!("{stem}.{}.pyc", self.interp.cache_tag);
        let from = src
            .parent()
            .unwrap_or(Path::new(""))
            .join("__pycache__")
            .join(&pyc);
        if store.kind(&from)? == Some(Kind::File) {
            let to = dest
                .parent()
                .unwrap_or(Path::new(""))
                .join("__pycache__")
                .join(&pyc);
            // A wheel may ship this `.pyc` itself (numpy < 2.3 does): ours, compiled from the
            // source by this interpreter, wins.
            let (dir, name) = self.dirs.parent(&to)?;
            if dir.kind(name)?.is_some() {
                dir.remove_file(name)?;
            }
            link(&mut self.mode, store, &from, &mut self.dirs, &to)?;
        }
        Ok(())
    }

    /// `.data/scripts`: a first line `#!python` (or `#!pythonw`) becomes the env's python;
    /// always a real copy, made executable.
    fn write_script(&mut self, store: &Dir, src: &Path, dest: &Path) -> Result<(String, String)> {
        let data = store.read(src)?;
        let out = if data.starts_with(b"#!python") {
            let rest = data
                .iter()
                .position(|&b| b == b'\n')
                .map_or(&[][..], |i| &data[i + 1..]);
            [self.shebang().as_bytes(), rest].concat()
        } else {
            data
        };
        write_new(&mut self.dirs, dest, &out, 0o755)
    }

    fn launcher(&mut self, name: &str, target: &str) -> Result<(String, String)> {
        let target = target.split('[').next().unwrap_or(target).trim();
        let (module, attr) = target.split_once(':').unwrap_or((target, ""));
        let (module, attr) = (module.trim(), attr.trim());
        let head = attr.split('.').next().unwrap_or(attr);
        let text = format!(
            "{}# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom {module} import {head}\nif __name__ == \"__main__\":\n    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n    sys.exit({attr}())\n",
            self.shebang()
        );
        self.files += 1;
        let dest = Path::new("bin").join(name);
        write_new(&mut self.dirs, &dest, text.as_bytes(), 0o755)
    }
}

/// Whether `member` is `<dir>/__pycache__/<stem>.<cache_tag>.pyc` and the wheel has
/// `<dir>/<stem>.py`: the bytecode mkenv compiles itself.
fn shipped_pyc_of(
    member: &str,
    cache_tag: &str,
    members: &std::collections::HashSet<&str>,
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
fn link(mode: &mut LinkMode, store: &Dir, src: &Path, dirs: &mut Dirs, dest: &Path) -> Result<()> {
    let (dir, name) = dirs.parent(dest)?;
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

/// Writes a new file beneath the env (never through a link into the store: whatever was there
/// is removed first) and returns its RECORD hash and size.
fn write_new(dirs: &mut Dirs, rel: &Path, data: &[u8], mode: u32) -> Result<(String, String)> {
    use std::os::unix::fs::PermissionsExt;
    let (dir, name) = dirs.parent(rel)?;
    if dir.kind(name)?.is_some() {
        dir.remove_file(name)?;
    }
    let mut f = dir.create_file(name, mode)?;
    let fail = |e: std::io::Error| {
        anyhow!(
            "cannot write `{}`: {}",
            dir.show(name).display(),
            io_reason(&e)
        )
    };
    f.write_all(data).map_err(fail)?;
    // The umask must not decide what a script's mode is.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    Ok((record_hash(&Sha256::digest(data)), data.len().to_string()))
}

/// A path in RECORD: relative to site-packages, `../../../bin/x` for what lies outside.
fn rel_to(dest: &Path, site: &Path) -> String {
    if let Ok(r) = dest.strip_prefix(site) {
        return r.display().to_string();
    }
    let up = site.components().count();
    let mut s = "../".repeat(up);
    s.push_str(&dest.display().to_string());
    s
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
