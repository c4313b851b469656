//! The maintainer scripts of a `bundle deb` package (`deb/postinst`, `deb/postrm`, with the
//! package's values put in; <https://www.debian.org/doc/debian-policy/ch-maintainerscripts.html>).
//! `postinst configure` hands everything to the host door (`wheelship-host package
//! configure`); `postrm purge` is plain sh (a postrm may rely only on essential packages), and
//! removes exactly the entries of the deploy root the package's deploys make, named by
//! `wheelship::host::layout`.

use wheelship::host::layout;

const POSTINST: &str = include_str!("deb/postinst");
const POSTRM: &str = include_str!("deb/postrm");

/// What `postrm purge` removes from a root the package owns: what its deploys made there.
/// `shared/` (the app's data) and `run/` (the service's) are not among them.
const PURGED: &[&str] = &[
    layout::RELEASES,
    layout::ENVS,
    layout::CURRENT,
    layout::HISTORY,
    layout::LOCK,
    layout::INCOMING,
    layout::RESTART_PENDING,
];

/// (name, text) of each script for package `pkg` at `version`, deploying `archive` (a file
/// name in /var/lib/wheelship/<pkg>/). The values are checked where they enter (a package
/// name, a version, a file name), so none can change a script's meaning.
pub fn scripts(pkg: &str, version: &str, archive: &str) -> Vec<(&'static str, String)> {
    let handover: Vec<String> = layout::HANDOVER
        .iter()
        .map(|n| format!("{}/{n}", layout::BIN))
        .collect();
    let entries = PURGED
        .iter()
        .map(|s| s.to_string())
        .chain(handover)
        .collect::<Vec<_>>()
        .join(" ");
    let fill = |t: &str| {
        t.replace("@PKG@", pkg)
            .replace("@VERSION@", version)
            .replace("@ARCHIVE@", archive)
            .replace("@ENTRIES@", &entries)
            .replace("@OWNER@", layout::PACKAGE)
            .replace("@BIN@", layout::BIN)
            .replace("@SHARED@", layout::SHARED)
    };
    vec![("postinst", fill(POSTINST)), ("postrm", fill(POSTRM))]
}
