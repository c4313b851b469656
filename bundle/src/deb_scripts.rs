//! The maintainer scripts of a `bundle deb` package (`deb/postinst`, `deb/postrm`, with the
//! package's values put in; <https://www.debian.org/doc/debian-policy/ch-maintainerscripts.html>).
//! Each is idempotent: `dpkg --configure -a` runs `postinst configure` again, which deploys the
//! same release again (a reused unpack, a reused env, no flip).

const POSTINST: &str = include_str!("deb/postinst");
const POSTRM: &str = include_str!("deb/postrm");

/// (name, text) of each script for package `pkg` at `version`, deploying `archive` (a file
/// name in /var/lib/wheelship/<pkg>/) to the default root `root`. The values are checked
/// where they enter (a package name, a version, a file name, an absolute path of safe
/// characters), so none can change a script's meaning.
pub fn scripts(pkg: &str, version: &str, archive: &str, root: &str) -> Vec<(&'static str, String)> {
    let fill = |t: &str| {
        t.replace("@PKG@", pkg)
            .replace("@VERSION@", version)
            .replace("@ARCHIVE@", archive)
            .replace("@ROOT@", root)
    };
    vec![("postinst", fill(POSTINST)), ("postrm", fill(POSTRM))]
}
