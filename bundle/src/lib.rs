//! `bundle`: pack the committed tree, the locked wheels and the document into one reproducible
//! `.tar.zst`, and unpack such an archive safely into a releases directory.
//!
//! Inside the archive, the app's tree sits at the root and wheelship's files in one reserved
//! directory:
//!
//! ```text
//! .wheelship/release.json     the first entry: id, name, rev, commit time, tree
//! .wheelship/document.json    the document the release was built from
//! .wheelship/wheels/*.whl     exactly the locked wheels
//! <the git tree at REV>
//! ```

mod deb;
mod deb_format;
mod deb_scripts;
#[doc(hidden)]
pub mod extract; // public for the fuzz targets (tests/fuzz)
pub mod members;
mod pack;
mod provenance;
mod sbom;
mod sbom_graph;
pub mod sign;
mod thin;
mod tree;
mod unpack;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

/// The directory of a release that belongs to wheelship, not to the app.
pub const RESERVED: &str = wheelship::host::carried::RESERVED;

/// The files of `RESERVED` that an archive carries (`bundle pack` writes them, with the
/// wheels in `wheels/`); everything else there is written by `bundle unpack` alone.
pub const ARCHIVE_OWNED: &[&str] = &["release.json", "document.json", "sbom.cdx.json"];

/// `.wheelship/release.json`: what the release is, readable before the rest is extracted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub rev: String,
    pub tree: String,
    pub commit_time: i64,
}

/// Pack the reproducible release tarball, and unpack it safely.
///
/// `pack` (on the build box) turns the committed tree, the locked wheels and the document into
/// one reproducible `.tar.zst`, signed with `--sign`; `unpack` (on the host) verifies it (its
/// sha256, and its signature under a trust policy) and extracts it into RELEASES/<id>, failing
/// closed on anything hostile. `have`, `thin` and `thick` ship only what a host lacks; `keygen`
/// makes a signing key pair. Each reads the document on stdin and writes it, with its section,
/// on stdout.
///
/// Exit status: 0 success; 1 the work failed (bad input, a verification that failed, an I/O
/// error; the message names the file); 2 usage.
#[derive(Debug, Parser)]
#[command(name = "bundle", version, max_term_width = 100)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Pack the git tree at REV, the locked wheels and the document into
    /// OUT/<name>-<id>.tar.zst; add the `bundle` section.
    ///
    /// The same tree, wheels and document give the same bytes, whatever the mtimes, umask,
    /// user, cwd or thread count. Exit status: 0 success, 1 the work failed, 2 usage.
    Pack(PackArgs),
    /// Verify and extract an archive into RELEASES/<id>; print the document it carries, with
    /// `wheelhouse.dir` pointing at its wheels, plus the `release` section.
    ///
    /// Fails closed on a hostile or corrupt archive: nothing is written outside a staging
    /// directory, which is removed. Exit status: 0 success, 1 the work failed, 2 usage.
    Unpack(UnpackArgs),
    /// Make a signing key pair in minisign's format (for those without the minisign tool):
    /// DIR/NAME.pub (give it to the hosts) and DIR/NAME.key (keep it on the build box), the
    /// secret key encrypted with a password (WHEELSHIP_SIGN_PASSWORD, else asked) unless
    /// --unencrypted. Prints a `keygen` section with the paths and the key id.
    Keygen(KeygenArgs),
    /// List the wheels this host holds in its releases (each release's `.wheelship/wheels`, as
    /// its document names them), by sha256: prints the document with a `have` section, which
    /// `bundle thin` reads.
    Have(HaveArgs),
    /// Make a thin copy of ARCHIVE for a host: without the wheels its `have` section lists.
    /// `bundle thick` on that host makes the full archive again from it, byte for byte.
    /// Prints the document with a `thin` section (the copy's path and size).
    Thin(ThinArgs),
    /// Make the full archive again from a thin copy and the wheels of this host's releases,
    /// each checked against its sha256. The release's document on stdin says what the result
    /// must be (its `bundle` id, sha256, size, level): a thin copy that says otherwise is
    /// refused before anything is written, the output never grows past that size, and a
    /// result without that sha256 is not kept (exit 1: send the full archive). Prints the
    /// document with `bundle.path` at the rebuilt archive, `OUT/<id>.tar.zst`.
    Thick(ThickArgs),
    /// Make a Debian package of the release: OUT/<package>_<version>_<arch>.deb holding the
    /// archive (and its signature) and /etc/default/<package>, whose postinst deploys it
    /// through `wheelship-host` (unpack | mkenv | switch) on install and upgrade; add the `deb`
    /// section. The same release gives the same bytes. Exit status: 0, 1, 2 usage.
    Deb(DebArgs),
    /// Print the SBOM of a release (CycloneDX 1.6 JSON, `.wheelship/sbom.cdx.json`) from its
    /// archive or its unpacked directory. Exit status: 0, 1 (none, or not an archive), 2 usage.
    Sbom(SbomArgs),
}

#[derive(Debug, clap::Args)]
pub struct SbomArgs {
    /// The archive, or the release's directory
    #[arg(value_name = "ARCHIVE|RELEASE_DIR")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DebArgs {
    /// Where the package goes
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,
    /// The app's name in the package's: `wsapp-NAME` (app packages live in their own
    /// namespace, so that one never replaces another package) [default: the release's name,
    /// lowercase, `_` as `-`]
    #[arg(long, value_name = "NAME")]
    pub package: Option<String>,
    /// The Maintainer field [default: $DEBFULLNAME <$DEBEMAIL>, else wheelship's]
    #[arg(long, value_name = "NAME <EMAIL>")]
    pub maintainer: Option<String>,
    /// The synopsis of the Description field [default: "release of the <package> application,
    /// deployed by wheelship"]
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// The default root of the deploy, in /etc/wheelship/<package>.conf [default: /srv/NAME]
    #[arg(long, value_name = "DIR")]
    pub root: Option<String>,
    /// The package of the wheelship tools it depends on (scripts/install --deb makes it)
    #[arg(long, default_value = "wheelship", value_name = "NAME")]
    pub tools: String,
}

/// `bundle pack`'s zstd level when none is given.
pub const DEFAULT_LEVEL: i32 = 10;

#[derive(Debug, clap::Args)]
pub struct HaveArgs {
    /// The releases directory
    #[arg(long, default_value = "releases", value_name = "DIR")]
    pub releases: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ThinArgs {
    /// What the host has: a document with its `have` section (the output of `bundle have`)
    #[arg(long, value_name = "FILE")]
    pub have: PathBuf,
    /// Where the thin copy goes
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The zstd level ARCHIVE was packed with [default: the document's `bundle.level`, else 10]
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22), value_name = "N")]
    pub level: Option<i32>,
    /// The full archive
    #[arg(value_name = "ARCHIVE")]
    pub archive: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ThickArgs {
    /// The releases directory whose wheels fill the copy in
    #[arg(long, default_value = "releases", value_name = "DIR")]
    pub releases: PathBuf,
    /// The directory the full archive is written to, as `<id>.tar.zst` (temp files a killed
    /// run left there are removed)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Refuse to rebuild an archive (or a tar stream) larger than this
    #[arg(long, default_value_t = 8 << 30, value_name = "BYTES")]
    pub max_bytes: u64,
    /// The thin copy
    #[arg(value_name = "THIN")]
    pub thin: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where the two files go
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// The files' name: NAME.pub and NAME.key
    #[arg(long, default_value = "wheelship", value_name = "NAME")]
    pub name: String,
    /// Write the secret key without a password
    #[arg(long)]
    pub unencrypted: bool,
}

#[derive(Debug, clap::Args)]
pub struct PackArgs {
    /// Directory for the archive
    #[arg(long, default_value = "dist", value_name = "DIR")]
    pub out: PathBuf,
    /// The git repository of the app
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// The commit to pack (never uncommitted or untracked files)
    #[arg(long, default_value = "HEAD", value_name = "REV")]
    pub rev: String,
    /// The release name [default: the repository directory's name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// zstd compression level (1-22)
    #[arg(long, default_value_t = DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22), value_name = "N")]
    pub level: i32,
    /// zstd worker threads [default: the number of CPUs]; the output does not depend on it
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Pack without wheels (no `wheelhouse` lock needed)
    #[arg(long)]
    pub no_wheels: bool,
    /// Sign the archive with this minisign secret key: writes `<archive>.minisig`, whose
    /// trusted comment names the release id and the archive's sha256. An encrypted key's
    /// password comes from WHEELSHIP_SIGN_PASSWORD, else the terminal
    #[arg(long, value_name = "SECKEY")]
    pub sign: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct UnpackArgs {
    /// The releases directory
    #[arg(long, default_value = "releases", value_name = "DIR")]
    pub releases: PathBuf,
    /// Refuse an archive that expands to more than this many bytes
    #[arg(long, default_value_t = 8 << 30, value_name = "BYTES")]
    pub max_bytes: u64,
    /// Refuse an archive with more than this many entries
    #[arg(long, default_value_t = 500_000, value_name = "N")]
    pub max_entries: u64,
    /// Refuse an archive that expands more than this many times its compressed size (past the
    /// first 64 MiB)
    #[arg(long, default_value_t = 200, value_name = "RATIO")]
    pub max_ratio: u64,
    /// Refuse an archive whose entries need more than this many bytes of bookkeeping (about
    /// 48 an entry, plus each symlink's path and target)
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    pub max_memory: u64,
    /// Trust this minisign public key (a .pub file, or its base64 line; repeatable), added to
    /// those of the `trusted` file of the root (the canonical parent of RELEASES: ROOT/trusted,
    /// one base64 key a line). Trust is configured as soon as either is there; it must then
    /// yield a key, and an archive without a valid `<archive>.minisig` by one of them, whose
    /// trusted comment names the release and its sha256 (what `pack --sign` writes), is
    /// refused before anything is extracted
    #[arg(long, value_name = "PUBKEY")]
    pub trust: Vec<String>,
    /// Under a trust policy, unpack a signed release older (by commit time) than the newest
    /// release ever live on this root. Without it such a release is refused: an old, signed
    /// but vulnerable release cannot be put back by dropping its file in `incoming/`
    #[arg(long)]
    pub allow_downgrade: bool,
    /// The archive [default: the document's `bundle.path`]
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Cmd::Pack(a) => pack::run(a),
        Cmd::Unpack(a) => unpack::run(a),
        Cmd::Keygen(a) => keygen(a),
        Cmd::Have(a) => thin::have(a),
        Cmd::Thin(a) => thin::thin(a),
        Cmd::Thick(a) => thin::thick(a),
        Cmd::Deb(a) => deb::run(a),
        Cmd::Sbom(a) => sbom::print(a),
    }
}

fn keygen(a: KeygenArgs) -> Result<()> {
    let mut doc = wheelship::Document::from_stdin()?;
    let (public, secret, id) = sign::keygen(&a.dir, &a.name, a.unencrypted)?;
    doc.set(
        "keygen",
        &wheelship::doc::Keygen {
            public: wheelship::doc::doc_path(public)?,
            secret: wheelship::doc::doc_path(secret)?,
            key_id: id,
            encrypted: !a.unencrypted,
            extra: Default::default(),
        },
    )?;
    doc.write_stdout()
}
