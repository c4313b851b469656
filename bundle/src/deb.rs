//! `bundle deb`: a release as a Debian package whose maintainer scripts deploy it through the
//! same verified `bundle unpack | mkenv | switch` (the host door, `wheelship-host`), so envs are
//! shared by lock across package versions and a downgrade is a flip. The package holds the
//! archive (and its signature) and a conffile with the deploy's settings; the same release
//! gives the same bytes (every mtime is the release's commit time, owners root, entries sorted).
//! Format: <https://manpages.debian.org/bookworm/dpkg-dev/deb.5.en.html>; policy:
//! <https://www.debian.org/doc/debian-policy/>.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use md5::Digest as _;
use wheelship::doc::{doc_path, Bundle, Deb, Wheelhouse};
use wheelship::fs::io::At;
use wheelship::python::names::WheelFilename;
use wheelship::{Document, UsageError};

use crate::DebArgs;

/// What a package is made of, decided from the document and the command line.
struct Package {
    name: String,
    version: String,
    arch: String,
    depends: String,
    description: String,
    maintainer: String,
    root: String,
    /// The release's commit time: every mtime.
    time: i64,
    archive: PathBuf,
    signature: Option<PathBuf>,
}

pub fn run(a: DebArgs) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    let bundle: Bundle = doc.section("bundle")?.ok_or_else(|| {
        UsageError(
            "no `bundle` section: pipe in the document `bundle pack` (or scripts/release) printed"
                .into(),
        )
    })?;
    let wh: Option<Wheelhouse> = doc.section("wheelhouse")?;
    let p = plan(&a, &bundle, wh.as_ref())?;
    std::fs::create_dir_all(&a.out).at("create", &a.out)?;
    let file = format!("{}_{}_{}.deb", p.name, p.version, p.arch);
    let out = a.out.join(&file);
    let (sha256, size) = write(&p, &out)?;
    doc.set(
        "deb",
        &Deb {
            path: doc_path(std::fs::canonicalize(&out).at("open", &out)?)?,
            package: p.name,
            version: p.version,
            architecture: p.arch,
            sha256,
            size,
            extra: Default::default(),
        },
    )?;
    doc.write_stdout()
}

fn plan(a: &DebArgs, b: &Bundle, wh: Option<&Wheelhouse>) -> Result<Package> {
    let name = match &a.package {
        Some(n) => n.clone(),
        None => b
            .name
            .as_deref()
            .map(|n| n.to_ascii_lowercase().replace('_', "-"))
            .ok_or_else(|| UsageError("the release has no name: give --package NAME".into()))?,
    };
    if !valid_package(&name) {
        return Err(UsageError(format!(
            "`{name}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; two or more, starting with a letter or digit): give --package NAME"
        ))
        .into());
    }
    let root = a.root.clone().unwrap_or_else(|| format!("/srv/{name}"));
    // The root goes into the maintainer scripts and the conffile as it is.
    let safe = |c: u8| c.is_ascii_alphanumeric() || b"/._+-".contains(&c);
    if !root.starts_with('/') || root == "/" || !root.bytes().all(safe) || root.contains("/../") {
        return Err(UsageError(format!(
            "--root `{root}` must be an absolute path of letters, digits and `/._+-`"
        ))
        .into());
    }
    for (flag, v) in [
        ("--maintainer", &a.maintainer),
        ("--description", &a.description),
    ] {
        if v.as_deref()
            .is_some_and(|v| v.trim().is_empty() || v.chars().any(char::is_control))
        {
            return Err(UsageError(format!("{flag} must be one line of text")).into());
        }
    }
    let (version, time) = version(&b.id)?;
    let archive = PathBuf::from(b.path.as_str());
    let signature = b.signature.as_ref().map(|s| PathBuf::from(s.as_str()));
    let python = python_depends(wh)?;
    let tools = format!("{} (>= {})", a.tools, env!("CARGO_PKG_VERSION"));
    Ok(Package {
        description: a
            .description
            .clone()
            .unwrap_or_else(|| format!("release of the {name} application, deployed by wheelship")),
        maintainer: a.maintainer.clone().unwrap_or_else(default_maintainer),
        root,
        arch: architecture(wh)?,
        depends: format!("{tools}, {python}"),
        name,
        version,
        time,
        archive,
        signature,
    })
}

/// Debian policy 5.6.1: at least two characters, `[a-z0-9][a-z0-9+.-]+`.
fn valid_package(n: &str) -> bool {
    n.len() >= 2
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
}

/// `20261201T223653Z-2c8bb311d226-6dbe79fe5e13` → `20261201.223653+2c8bb311d226.6dbe79fe5e13`:
/// the commit time first, so a later release sorts later under `dpkg --compare-versions`; no
/// `-` (a native package), no epoch. And the commit time itself.
fn version(id: &str) -> Result<(String, i64)> {
    let parts: Vec<&str> = id.split('-').collect();
    let hex = |s: &str| s.len() == 12 && s.bytes().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [time, rev, content] if hex(rev) && hex(content) => {
            let t = wheelship::time::from_compact(time)
                .ok_or_else(|| anyhow!("release `{id}`: `{time}` is not a commit time"))?;
            Ok((
                format!("{}.{}+{rev}.{content}", &time[..8], &time[9..15]),
                t,
            ))
        }
        _ => {
            bail!("release `{id}` is not an id `bundle pack` makes (<commit time>-<rev>-<content>)")
        }
    }
}

/// `all` when every wheel is pure; else the one Debian architecture its wheels are for.
fn architecture(wh: Option<&Wheelhouse>) -> Result<String> {
    let mut archs: Vec<&'static str> = Vec::new();
    for w in wh.iter().flat_map(|w| &w.wheels) {
        let f = WheelFilename::parse(&w.file).map_err(|e| anyhow!("the lock names {e}"))?;
        for p in &f.platform {
            if p == "any" {
                continue;
            }
            let arch = [
                ("x86_64", "amd64"),
                ("aarch64", "arm64"),
                ("i686", "i386"),
                ("armv7l", "armhf"),
                ("ppc64le", "ppc64el"),
                ("s390x", "s390x"),
                ("riscv64", "riscv64"),
            ]
            .iter()
            .find(|(py, _)| p.ends_with(&format!("_{py}")))
            .map(|(_, deb)| *deb)
            .ok_or_else(|| anyhow!("`{}` is not for a Linux architecture Debian has", w.file))?;
            if !archs.contains(&arch) {
                archs.push(arch);
            }
        }
    }
    match archs.as_slice() {
        [] => Ok("all".into()),
        [one] => Ok((*one).into()),
        many => bail!(
            "the lock has wheels for {}: a package is for one architecture (lock one target per package)",
            many.join(" and ")
        ),
    }
}

/// `python3 (>= 3.X), python3 (<< 3.X+1)` for the Python the lock was made for.
fn python_depends(wh: Option<&Wheelhouse>) -> Result<String> {
    let mut xy: Vec<(u32, u32)> = Vec::new();
    let targets = wh.into_iter().flat_map(|w| {
        w.target
            .iter()
            .chain(w.locks.iter().flatten().map(|l| &l.target))
    });
    for t in targets {
        let v = t
            .python
            .as_deref()
            .or(t.python_version.as_deref())
            .unwrap_or("");
        let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
        if let (Some(Some(x)), Some(Some(y))) = (it.next(), it.next()) {
            if !xy.contains(&(x, y)) {
                xy.push((x, y));
            }
        }
    }
    xy.sort();
    match (xy.first(), xy.last()) {
        (Some((x, lo)), Some((_, hi))) => Ok(format!(
            "python3 (>= {x}.{lo}), python3 (<< {x}.{})",
            hi + 1
        )),
        _ => Ok("python3".into()),
    }
}

fn default_maintainer() -> String {
    match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(n), Ok(e)) if !n.is_empty() && !e.is_empty() => format!("{n} <{e}>"),
        _ => "wheelship <wheelship@example.invalid>".into(),
    }
}

/// One member of a tar: its path (relative, without `./`), mode and bytes or source file.
enum Body {
    Bytes(Vec<u8>),
    File(PathBuf),
}

struct Entry {
    path: String,
    mode: u32,
    body: Option<Body>,
}

fn dir(path: &str) -> Entry {
    Entry {
        path: path.into(),
        mode: 0o755,
        body: None,
    }
}

fn file(path: &str, mode: u32, body: Body) -> Entry {
    Entry {
        path: path.into(),
        mode,
        body: Some(body),
    }
}

/// The package written to a temp name in `out`'s directory, then renamed: (sha256, size).
fn write(p: &Package, out: &Path) -> Result<(String, u64)> {
    let data = data_entries(p)?;
    let (md5sums, installed) = md5sums(&data, p)?;
    let control = control_entries(p, &md5sums, installed);
    let dir = out.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(wheelship::fs::temp::TMP)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .at("create a file in", dir)?;
    {
        let control_gz = tar_gz(&control, p.time, 9)?;
        // The archive inside is zstd already: gzip's fastest level is as small, and quick.
        let data_gz = tar_gz(&data, p.time, 1)?;
        let mut ar = ar::Builder::new(tmp.as_file_mut());
        member(&mut ar, "debian-binary", b"2.0\n", p.time)?;
        member(&mut ar, "control.tar.gz", &control_gz, p.time)?;
        member(&mut ar, "data.tar.gz", &data_gz, p.time)?;
    }
    tmp.as_file()
        .sync_all()
        .context("cannot sync the package")?;
    let (sha, size) = wheelship::fs::fsx::sha256_file(tmp.path())?;
    tmp.persist(out)
        .map_err(|e| anyhow!("cannot write `{}`: {}", out.display(), e.error))?;
    Ok((sha, size))
}

fn member(
    ar: &mut ar::Builder<&mut std::fs::File>,
    name: &str,
    data: &[u8],
    time: i64,
) -> Result<()> {
    let mut h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
    h.set_mtime(time.max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o100644);
    ar.append(&h, data).context("cannot write the package")
}

/// The files the package installs.
fn data_entries(p: &Package) -> Result<Vec<Entry>> {
    let lib = format!("var/lib/wheelship/{}", p.name);
    let doc = format!("usr/share/doc/{}", p.name);
    let archive_name = p
        .archive
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| anyhow!("`{}` is not an archive path", p.archive.display()))?;
    wheelship::text::check_file_name(&archive_name).map_err(|e| anyhow!("{e}"))?;
    std::fs::metadata(&p.archive).about("the archive", &p.archive)?;
    let mut v = vec![
        dir("etc"),
        dir("etc/default"),
        file(
            &format!("etc/default/{}", p.name),
            0o644,
            Body::Bytes(defaults(p).into_bytes()),
        ),
        dir("usr"),
        dir("usr/share"),
        dir("usr/share/doc"),
        dir(&doc),
        file(
            &format!("{doc}/changelog.gz"),
            0o644,
            Body::Bytes(gz(changelog(p).as_bytes(), 9)?),
        ),
        file(
            &format!("{doc}/copyright"),
            0o644,
            Body::Bytes(copyright(p).into_bytes()),
        ),
        dir("var"),
        dir("var/lib"),
        dir("var/lib/wheelship"),
        dir(&lib),
        file(
            &format!("{lib}/{archive_name}"),
            0o644,
            Body::File(p.archive.clone()),
        ),
    ];
    if let Some(sig) = &p.signature {
        v.push(file(
            &format!("{lib}/{archive_name}.minisig"),
            0o644,
            Body::File(sig.clone()),
        ));
    }
    v.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(v)
}

/// `md5sums` (every file but the conffile) and the installed size in KiB.
fn md5sums(data: &[Entry], p: &Package) -> Result<(String, u64)> {
    let conffile = format!("etc/default/{}", p.name);
    let mut sums = String::new();
    let mut bytes = 0u64;
    for e in data {
        let Some(body) = &e.body else { continue };
        let mut h = md5::Md5::new();
        match body {
            Body::Bytes(b) => {
                h.update(b);
                bytes += b.len() as u64;
            }
            Body::File(f) => {
                let mut r = std::fs::File::open(f).about("", f)?;
                bytes += std::io::copy(&mut r, &mut h).about("read", f)?;
            }
        }
        if e.path != conffile {
            sums.push_str(&format!(
                "{}  {}\n",
                wheelship::hash::hex(&h.finalize()),
                e.path
            ));
        }
    }
    Ok((sums, bytes.div_ceil(1024) + data.len() as u64))
}

fn control_entries(p: &Package, md5sums: &str, installed: u64) -> Vec<Entry> {
    let control = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {}\nInstalled-Size: {installed}\nDepends: {}\nSection: misc\nPriority: optional\nDescription: {}\n {} is deployed from its wheelship release archive: installing or upgrading\n the package runs bundle unpack, mkenv and switch on {} with the settings\n of /etc/default/{} (the archive's signature is checked when keys are set).\n",
        p.name, p.version, p.arch, p.maintainer, p.depends, p.description, p.name, p.root, p.name
    );
    let archive = p
        .archive
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let scripts = crate::deb_scripts::scripts(&p.name, &p.version, &archive, &p.root);
    let mut v = vec![
        file(
            "conffiles",
            0o644,
            Body::Bytes(format!("/etc/default/{}\n", p.name).into_bytes()),
        ),
        file("control", 0o644, Body::Bytes(control.into_bytes())),
        file("md5sums", 0o644, Body::Bytes(md5sums.as_bytes().to_vec())),
    ];
    for (name, text) in scripts {
        v.push(file(name, 0o755, Body::Bytes(text.into_bytes())));
    }
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

/// The conffile: the deploy's settings, read by the maintainer scripts.
fn defaults(p: &Package) -> String {
    format!(
        "# The deploy of {name} (read by its maintainer scripts on install and upgrade).\n\
         # The root the release goes live in.\n\
         WHEELSHIP_ROOT={root}\n\
         # The interpreter of the env.\n\
         WHEELSHIP_PYTHON=python3\n\
         # switch --restart and --check (empty: none), and --check-timeout in seconds.\n\
         WHEELSHIP_RESTART=\n\
         WHEELSHIP_CHECK=\n\
         WHEELSHIP_CHECK_TIMEOUT=60\n\
         # Keep this many releases (switch prune --keep); empty: all.\n\
         WHEELSHIP_KEEP=5\n\
         # minisign public keys (their base64 lines, space-separated) one of which must have\n\
         # signed the archive; empty: ROOT/trusted alone decides.\n\
         WHEELSHIP_TRUST=\n",
        name = p.name,
        root = p.root
    )
}

fn changelog(p: &Package) -> String {
    format!(
        "{} ({}) unstable; urgency=medium\n\n  * Release {} of {}.\n\n -- {}  {}\n",
        p.name,
        p.version,
        p.version,
        p.name,
        p.maintainer,
        wheelship::time::rfc2822(p.time)
    )
}

fn copyright(p: &Package) -> String {
    let year = wheelship::time::civil(p.time).0;
    format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {}\n\nFiles: *\nCopyright: {year} the authors of {}\nLicense: other\n The license of the application is its authors'; see its source.\n",
        p.name, p.name
    )
}

fn gz(data: &[u8], level: u32) -> Result<Vec<u8>> {
    // No name and mtime 0 in the gzip header: the same input gives the same bytes.
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).context("gzip")?;
    e.finish().context("gzip")
}

/// A tar (GNU format, `./`-prefixed paths, owners root, the given mtime), gzipped.
fn tar_gz(entries: &[Entry], time: i64, level: u32) -> Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(level));
    let mut t = tar::Builder::new(gz);
    let mut root = tar::Header::new_gnu();
    head(&mut root, 0o755, 0, time, tar::EntryType::Directory);
    t.append_data(&mut root, "./", std::io::empty())
        .context("tar")?;
    for e in entries {
        let mut h = tar::Header::new_gnu();
        match &e.body {
            None => {
                head(&mut h, e.mode, 0, time, tar::EntryType::Directory);
                t.append_data(&mut h, format!("./{}/", e.path), std::io::empty())
            }
            Some(Body::Bytes(b)) => {
                head(
                    &mut h,
                    e.mode,
                    b.len() as u64,
                    time,
                    tar::EntryType::Regular,
                );
                t.append_data(&mut h, format!("./{}", e.path), b.as_slice())
            }
            Some(Body::File(f)) => {
                let r = std::fs::File::open(f).about("", f)?;
                let len = r.metadata().about("", f)?.len();
                head(&mut h, e.mode, len, time, tar::EntryType::Regular);
                t.append_data(&mut h, format!("./{}", e.path), r)
            }
        }
        .context("tar")?;
    }
    t.into_inner().context("tar")?.finish().context("gzip")
}

fn head(h: &mut tar::Header, mode: u32, size: u64, time: i64, kind: tar::EntryType) {
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(time.max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("root");
    let _ = h.set_groupname("root");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        for ok in ["app", "my-app", "a1", "web.app+x"] {
            assert!(valid_package(ok), "{ok}");
        }
        for bad in ["a", "App", "-app", "my_app", "", "a b"] {
            assert!(!valid_package(bad), "{bad}");
        }
        let (v, t) = version("20261201T223653Z-2c8bb311d226-6dbe79fe5e13").unwrap();
        assert_eq!(v, "20261201.223653+2c8bb311d226.6dbe79fe5e13");
        assert_eq!(t, 1_796_164_613);
        assert!(version("20261201T223653Z-2c8bb311d226").is_err());
        assert!(version("20261301T223653Z-2c8bb311d226-6dbe79fe5e13").is_err());
    }
}
