//! `bundle deb`: a release as a Debian package whose maintainer scripts deploy it through the
//! same verified `bundle unpack | mkenv | switch` (the host door, `wheelship-host`), so envs are
//! shared by lock across package versions and a downgrade is a flip. The package holds the
//! archive (and its signature) and a conffile with the deploy's settings; the same release
//! gives the same bytes (every mtime is the release's commit time, owners root, entries sorted).
//! Format: <https://manpages.debian.org/bookworm/dpkg-dev/deb.5.en.html>; policy:
//! <https://www.debian.org/doc/debian-policy/>.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use md5::Digest as _;
use wheelship::doc::{doc_path, Bundle, Deb, Wheelhouse};
use wheelship::fs::io::At;
use wheelship::python::names::WheelFilename;
use wheelship::{Document, UsageError};

use crate::deb_format::{dir, file, gz, member, read_body, tar_gz, Body, Entry};
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
    /// The archive, opened once and checked against the document: what the package carries.
    archive: std::fs::File,
    archive_name: String,
    /// Its signature, `<archive>.minisig`, when there is one (checked to be a signature).
    signature: Option<Vec<u8>>,
    /// The Pythons the release is locked for (3, 11): its dpkg trigger's interests.
    pythons: Vec<(u32, u32)>,
}

/// Every app package's name starts with this (the door's `package` commands expect it).
const PREFIX: &str = "wsapp-";
/// The longest app name: lintian wants a package's file name (`<package>_<version>_<arch>.deb`,
/// the arch counted as its longest, `kfreebsd-amd64`) within 80 characters.
const MAX_APP: usize = 80 - (PREFIX.len() + 1 + VERSION_LEN + 1 + 14 + 4);
/// `20261201.223653+6dbe79fe5e13`.
const VERSION_LEN: usize = 28;
/// A minisign signature is a few hundred bytes.
const SIGNATURE_MAX: u64 = 4096;

pub fn run(a: DebArgs) -> Result<()> {
    let mut doc = Document::from_stdin()?;
    let bundle: Bundle = doc.section("bundle")?.ok_or_else(|| {
        UsageError(
            "no `bundle` section: pipe in the document `bundle pack` (or scripts/release) printed"
                .into(),
        )
    })?;
    let wh: Option<Wheelhouse> = doc.section("wheelhouse")?;
    let asked = Asked {
        package: a.package.as_deref(),
        maintainer: a.maintainer.as_deref(),
        description: a.description.as_deref(),
        root: a.root.as_deref(),
        tools: &a.tools,
    };
    let p = plan(&asked, &bundle, wh.as_ref())?;
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

/// What the operator asked of the package, each checked by [`plan`]: its name, the control
/// file's maintainer and description, the root it deploys to, the tools package it needs.
struct Asked<'a> {
    package: Option<&'a str>,
    maintainer: Option<&'a str>,
    description: Option<&'a str>,
    root: Option<&'a str>,
    tools: &'a str,
}

/// The package a release becomes, from what was asked and what the document proves.
fn plan(a: &Asked, b: &Bundle, wh: Option<&Wheelhouse>) -> Result<Package> {
    let app = match a.package {
        Some(n) => n.strip_prefix(PREFIX).unwrap_or(n).to_string(),
        None => b
            .name
            .as_deref()
            .map(|n| n.to_ascii_lowercase().replace('_', "-"))
            .ok_or_else(|| UsageError("the release has no name: give --package NAME".into()))?,
    };
    let name = format!("{PREFIX}{app}");
    if app.len() > MAX_APP {
        return Err(UsageError(format!(
            "`{app}` is longer than {MAX_APP} characters: the package's file name would pass the 80 that lintian allows; give a shorter --package NAME"
        ))
        .into());
    }
    if !valid_package(&app) {
        return Err(UsageError(format!(
            "`{app}` is not a Debian package name (lowercase letters, digits, `+`, `-`, `.`; two or more, starting with a letter or digit): give --package NAME"
        ))
        .into());
    }
    let root = a.root.map_or_else(|| format!("/srv/{app}"), str::to_string);
    // The root goes into the settings file as it is.
    let safe = |c: u8| c.is_ascii_alphanumeric() || b"/._+-".contains(&c);
    if !root.starts_with('/') || root == "/" || !root.bytes().all(safe) || root.contains("/../") {
        return Err(UsageError(format!(
            "--root `{root}` must be an absolute path of letters, digits and `/._+-`"
        ))
        .into());
    }
    let line = |what: &str, v: &str| -> Result<String> {
        wheelship::text::one_line(what, v, 200)
            .map(str::to_string)
            .map_err(|e| {
                UsageError(format!("{e}: it would become a field of the control file")).into()
            })
    };
    let maintainer = match a.maintainer {
        Some(m) => line("--maintainer", m)?,
        None => default_maintainer(&line)?,
    };
    let description = match a.description {
        Some(d) => line("--description", d)?,
        None => format!("release of {app}, deployed by wheelship"),
    };
    let (version, time) = version(&b.id)?;
    let (archive, archive_name) = archive(b)?;
    let signature = signature(b)?;
    let pythons = pythons(wh);
    let python = python_depends(&pythons);
    let tools = format!("{} (>= {})", a.tools, env!("CARGO_PKG_VERSION"));
    Ok(Package {
        description,
        maintainer,
        root,
        arch: architecture(wh)?,
        depends: format!("{tools}, {python}"),
        name,
        version,
        time,
        archive,
        archive_name,
        signature,
        pythons,
    })
}

/// The archive exactly as the document describes it: its name ends in the release id, and the
/// one file opened has the size and sha256 the document says. Nothing else of this box can be
/// packaged by a document.
fn archive(b: &Bundle) -> Result<(std::fs::File, String)> {
    use std::io::{Seek, SeekFrom};
    let path = std::path::Path::new(b.path.as_str());
    wheelship::text::check_file_name(&b.id).map_err(|e| anyhow!("bundle.id: {e}"))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            n.ends_with(&format!("{}.tar.zst", b.id)) && wheelship::text::check_file_name(n).is_ok()
        })
        .ok_or_else(|| {
            anyhow!(
                "`{}` is not the archive of release {}: its name is not `<name>-{}.tar.zst`",
                path.display(),
                b.id,
                b.id
            )
        })?
        .to_string();
    let (mut f, _) = wheelship::fs::fsx::open_regular(path)?;
    let (sha256, size) = wheelship::hash::sha256_reader(&mut f).about("the archive", path)?;
    if sha256 != b.sha256 || size != b.size {
        bail!(
            "`{}` is not the archive the document describes (sha256 {sha256}, {size} bytes; the document says {}, {} bytes)",
            path.display(),
            b.sha256,
            b.size
        );
    }
    f.seek(SeekFrom::Start(0)).about("the archive", path)?;
    Ok((f, name))
}

/// The archive's signature: `<archive>.minisig` beside it, never another path the document
/// names, and only what parses as a minisign signature (a key file, say, is refused).
fn signature(b: &Bundle) -> Result<Option<Vec<u8>>> {
    let derived = format!("{}.minisig", b.path);
    if let Some(named) = &b.signature {
        if named.as_str() != derived {
            bail!(
                "bundle.signature `{named}` is not the archive's signature (`{derived}`): refusing to package it"
            );
        }
    }
    let path = std::path::Path::new(&derived);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = wheelship::fs::fsx::read_capped(path, SIGNATURE_MAX, "a signature's size")?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow!("`{derived}` is not a minisign signature"))?;
    minisign::SignatureBox::from_string(text)
        .map_err(|e| anyhow!("`{derived}` is not a minisign signature: {e}"))?;
    Ok(Some(bytes))
}

/// Debian policy 5.6.1: at least two characters, `[a-z0-9][a-z0-9+.-]+`.
fn valid_package(n: &str) -> bool {
    n.len() >= 2
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
}

/// `20261201T223653Z-2c8bb311d226-6dbe79fe5e13` → `20261201.223653+6dbe79fe5e13`: the commit
/// time first, so a later release sorts later under `dpkg --compare-versions`, then the
/// release's content (which names its tree, wheels and document: the rev adds nothing); no `-`
/// (a native package), no epoch. And the commit time itself.
fn version(id: &str) -> Result<(String, i64)> {
    let parts: Vec<&str> = id.split('-').collect();
    let hex = |s: &str| s.len() == 12 && s.bytes().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [time, rev, content] if hex(rev) && hex(content) => {
            let t = wheelship::time::from_compact(time)
                .ok_or_else(|| anyhow!("release `{id}`: `{time}` is not a commit time"))?;
            let v = format!("{}.{}+{content}", &time[..8], &time[9..15]);
            debug_assert_eq!(v.len(), VERSION_LEN);
            Ok((v, t))
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
/// The Python versions (X, Y) the release's locks are for, sorted.
fn pythons(wh: Option<&Wheelhouse>) -> Vec<(u32, u32)> {
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
    xy
}

/// The Depends on python3 the locks allow: apt upgrades the system's Python only to a
/// version the release carries a lock for.
fn python_depends(xy: &[(u32, u32)]) -> String {
    match (xy.first(), xy.last()) {
        (Some((x, lo)), Some((_, hi))) => {
            format!("python3 (>= {x}.{lo}), python3 (<< {x}.{})", hi + 1)
        }
        _ => "python3".into(),
    }
}

/// The dpkg trigger (deb-triggers(5)): a file trigger on the system's `python3` and on each
/// locked `python3.X`, which their packages install, upgrade or remove, so that dpkg runs
/// `postinst triggered` (the envs rebuilt for the interpreter now there) after an
/// interpreter upgrade.
fn triggers(xy: &[(u32, u32)]) -> String {
    let mut out = String::from("interest-noawait /usr/bin/python3\n");
    for (x, y) in xy {
        out.push_str(&format!("interest-noawait /usr/bin/python{x}.{y}\n"));
    }
    out
}

/// `$DEBFULLNAME <$DEBEMAIL>`, each held to one line where it enters, else wheelship's.
fn default_maintainer(line: &dyn Fn(&str, &str) -> Result<String>) -> Result<String> {
    match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(n), Ok(e)) if !n.is_empty() && !e.is_empty() => Ok(format!(
            "{} <{}>",
            line("DEBFULLNAME", &n)?,
            line("DEBEMAIL", &e)?
        )),
        _ => Ok("wheelship <wheelship@example.invalid>".into()),
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

/// The conffile: the deploy's settings, where the tools' package owns the directory.
fn conffile(p: &Package) -> String {
    format!("etc/wheelship/{}.conf", p.name)
}

/// The files the package installs.
fn data_entries(p: &Package) -> Result<Vec<Entry<'_>>> {
    let lib = format!("var/lib/wheelship/{}", p.name);
    let doc = format!("usr/share/doc/{}", p.name);
    let mut v = vec![
        dir("etc"),
        dir("etc/wheelship"),
        file(&conffile(p), 0o644, Body::Bytes(defaults(p).into_bytes())),
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
            &format!("{lib}/{}", p.archive_name),
            0o644,
            Body::File(&p.archive),
        ),
    ];
    if let Some(sig) = &p.signature {
        v.push(file(
            &format!("{lib}/{}.minisig", p.archive_name),
            0o644,
            Body::Bytes(sig.clone()),
        ));
    }
    v.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(v)
}

/// `md5sums` (every file but the conffile) and the installed size in KiB.
fn md5sums(data: &[Entry<'_>], p: &Package) -> Result<(String, u64)> {
    let conf = conffile(p);
    let mut sums = String::new();
    let mut bytes = 0u64;
    for e in data {
        let Some(body) = &e.body else { continue };
        let mut h = md5::Md5::new();
        bytes += read_body(body, &mut h)?;
        if e.path != conf {
            sums.push_str(&format!(
                "{}  {}\n",
                wheelship::hash::hex(&h.finalize()),
                e.path
            ));
        }
    }
    Ok((sums, bytes.div_ceil(1024) + data.len() as u64))
}

fn control_entries<'a>(p: &Package, md5sums: &str, installed: u64) -> Vec<Entry<'a>> {
    let extended = wrap(
        &format!(
            "{} is deployed from its wheelship release archive: installing or upgrading the package runs bundle unpack, mkenv and switch through wheelship-host on {} with the settings of /etc/wheelship/{}.conf (the archive's signature is checked when keys are set).",
            p.name, p.root, p.name
        ),
        " ",
    );
    let control = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: {}\nInstalled-Size: {installed}\nDepends: {}\nSection: misc\nPriority: optional\nDescription: {}\n{extended}",
        p.name, p.version, p.arch, p.maintainer, p.depends, p.description
    );
    let scripts = crate::deb_scripts::scripts(&p.name, &p.version, &p.archive_name);
    let mut v = vec![
        file(
            "conffiles",
            0o644,
            Body::Bytes(format!("/{}\n", conffile(p)).into_bytes()),
        ),
        file("control", 0o644, Body::Bytes(control.into_bytes())),
        file("md5sums", 0o644, Body::Bytes(md5sums.as_bytes().to_vec())),
        file(
            "triggers",
            0o644,
            Body::Bytes(triggers(&p.pythons).into_bytes()),
        ),
    ];
    for (name, text) in scripts {
        v.push(file(name, 0o755, Body::Bytes(text.into_bytes())));
    }
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v
}

/// `text` in lines of at most 79 columns, each starting with `indent` (a control file's
/// extended description, a changelog's entry); a word longer than a line has a line of its own.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > 79 {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// The conffile: the deploy's settings, read by the door (`wheelship-host package
/// configure`): the root, and any option the door takes, one a line.
fn defaults(p: &Package) -> String {
    format!(
        "# The deploy of {name}, read by wheelship-host on every install and upgrade.\n\
         # One setting a line, `name = value`: the root, `purge-shared`, and any option of\n\
         # `wheelship-host deploy` (its --help), every option switch takes among them.\n\
         #\n\
         # The root the release goes live in.\n\
         root = {root}\n\
         # The interpreter of the env.\n\
         python = python3\n\
         # Keep this many releases (switch prune --keep).\n\
         keep = {keep}\n\
         # `dpkg --purge` removes the releases, envs and history; ROOT/shared too with yes.\n\
         purge-shared = no\n\
         # The service around a flip (each may be given several times: all run, in order):\n\
         # restart = systemctl restart app\n\
         # check = curl -fsS http://127.0.0.1:8000/health\n\
         # check-timeout = 60\n\
         # minisign public keys (their base64 lines) one of which must have signed the archive:\n\
         # trust = RWQ...\n",
        name = p.name,
        root = p.root,
        keep = wheelship::host::layout::PACKAGE_KEEP
    )
}

fn changelog(p: &Package) -> String {
    format!(
        "{} ({}) unstable; urgency=medium\n\n{}\n -- {}  {}\n",
        p.name,
        p.version,
        wrap(&format!("* Release {} of {}.", p.version, p.name), "  ").trim_end(),
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
        assert_eq!(v, "20261201.223653+6dbe79fe5e13");
        assert_eq!(t, 1_796_164_613);
        assert!(version("20261201T223653Z-2c8bb311d226").is_err());
        assert!(version("20261301T223653Z-2c8bb311d226-6dbe79fe5e13").is_err());
    }
}
