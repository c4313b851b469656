//! How a controller opens the door on a host: the one command line (for ssh, or Ansible's
//! connection) that checks, before anything of the host's runs, that ROOT, ROOT/bin and the
//! door were written by nobody but the deploying user or root — every directory on the way to
//! ROOT too, where a root-owned sticky one (`/tmp`) is allowed — and then runs the door. When
//! the controller has sent the door itself (an upload directory), that one runs, once its
//! sha256 is the one the plan named. Written here once; `scripts/deploy`, `scripts/rollback` and
//! the Ansible plugin ask `wheelship-host remote` for it.

use std::path::Path;

use anyhow::Result;
use wheelship::host::layout;

/// The opener: POSIX sh, run as `sh -c OPENER wheelship-host ROOT MODE UPLOADS SHA256 MKDIR
/// ARGS...`. MODE `facts` answers for a host without a root or a door (`fresh`); UPLOADS is a
/// directory the controller sent files into ("" for none); SHA256 the door's, when it is
/// among them; MKDIR a name to create in ROOT/incoming for the next uploads ("" for none).
/// Exit 3: refused, with the reason on stderr.
const OPENER: &str = r#"set -u
me=$(id -u)
refuse() { printf 'wheelship-host: %s\n' "$*" >&2; exit 3; }
safe() {
    if [ "$2" != ancestor ] && [ -L "$1" ]; then refuse "\`$1\` is a symlink: refusing to run anything from it"; fi
    s=$(stat -L -c '%u %a' -- "$1") || refuse "cannot inspect \`$1\`"
    u=${s% *}; m=${s#* }
    if [ "$u" != "$me" ] && [ "$u" != 0 ]; then
        refuse "\`$1\` is owned by uid $u, not by this user (uid $me) or root: refusing to run anything from it"
    fi
    if [ $((0$m & 022)) -ne 0 ]; then
        if [ "$2" != ancestor ] || [ "$u" != 0 ] || [ $((0$m & 01000)) -eq 0 ]; then
            refuse "\`$1\` is writable by other users (mode $m): refusing to run anything from it"
        fi
    fi
}
r=$1 mode=$2 up=$3 sum=$4 mk=$5
shift 5
umask 022
if { [ -n "$mk" ] || [ -n "$up" ]; } && [ ! -e "$r" ]; then mkdir -p -- "$r" || exit 1; fi
if [ -e "$r" ] && [ ! -d "$r" ]; then
    printf 'wheelship-host: `%s` on this host is not a directory (a file is there): it cannot be a root\n' "$r" >&2; exit 1
fi
if ! real=$(cd -P -- "$r" 2>/dev/null && pwd -P); then
    if [ "$mode" = facts ]; then printf '{"arch":"%s","fresh":true}\n' "$(uname -m)"; exit 0; fi
    printf 'wheelship-host: `%s` does not exist on this host\n' "$r" >&2; exit 1
fi
p=$real
while [ "$p" != / ]; do p=$(dirname -- "$p"); safe "$p" ancestor; done
safe "$real" root
if [ -n "$mk" ]; then
    mkdir -p -- "$real/@INCOMING@" && safe "$real/@INCOMING@" dir && mkdir -m 0700 -- "$real/@INCOMING@/$mk" || exit 1
fi
door=$real/@BIN@/@DOOR@
if [ -n "$up" ] && [ -f "$up/@DOOR@" ]; then
    safe "$up" dir
    printf '%s  %s\n' "$sum" "$up/@DOOR@" | sha256sum -c --status - \
        || refuse "\`$up/@DOOR@\` is not the door the controller sent (sha256)"
    door=$up/@DOOR@
elif [ ! -e "$door" ]; then
    if [ "$mode" = facts ]; then printf '{"arch":"%s","fresh":true}\n' "$(uname -m)"; exit 0; fi
    refuse "no wheelship door in \`$real/@BIN@\`: a deploy sends it"
else
    safe "$real/@BIN@" dir
fi
safe "$door" door
exec "$door" "$@"
"#;

/// A word quoted for a POSIX shell: `'...'`, each `'` as `'\''`.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the opener is asked to do besides running the door.
#[derive(Default)]
pub struct Opening<'a> {
    /// `facts`: a host without a root or a door answers as a fresh host.
    pub facts: bool,
    /// A directory of files the controller sent.
    pub uploads: Option<&'a str>,
    /// The sha256 of the door among the uploads.
    pub door_sha256: Option<&'a str>,
    /// A directory to make in ROOT/incoming for the next uploads.
    pub make_uploads: Option<&'a str>,
}

/// The command line (one string, for a remote shell) that opens the door on ROOT and runs it
/// with `args`.
pub fn command(root: &Path, o: &Opening, args: &[String]) -> Result<String> {
    let script = OPENER
        .replace("@INCOMING@", layout::INCOMING)
        .replace("@BIN@", layout::BIN)
        .replace("@DOOR@", layout::SHIPPED[0]);
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("`{}` is not UTF-8: refusing it", root.display()))?;
    let mut words = vec![
        "sh".to_string(),
        "-c".to_string(),
        quote(&script),
        "wheelship-host".to_string(),
        quote(root),
        quote(if o.facts { "facts" } else { "run" }),
        quote(o.uploads.unwrap_or("")),
        quote(o.door_sha256.unwrap_or("")),
        quote(o.make_uploads.unwrap_or("")),
    ];
    words.extend(args.iter().map(|a| quote(a)));
    Ok(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        for s in ["plain", "it's", "$(id) `x` \"q\" \\ ;|&", "a\nb", ""] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
