//! Who may put a release live on a root, decided in one place for `bundle unpack` and `switch`.
//!
//! **The policy** of a root is the minisign public keys given as `--trust` plus those of
//! `ROOT/trusted` (one base64 key a line). Trust is configured as soon as either is there in
//! any form, and then it must yield at least one valid key: an empty file, one of comments
//! only, a directory, a symlink (dangling or not) or a file another user may write is an
//! error that names it, never "no policy". `ROOT` is found from the canonical path of the
//! releases directory, however it was spelled.
//!
//! **The record** of a release (`releases/<id>/.wheelship/verified.json`) is written by unpack
//! alone, after extraction (an archive that carries anything under that name is refused): the
//! archive's sha256, and, when it was verified, the signer's key id and the signature itself.
//! Its trusted comment (`wheelship release <id> sha256 <sha256>`) is signed by the key, so
//! `switch` checks the record against the policy in force with the key alone: a record copied
//! from another release, or written by hand, does not verify.
//!
//! **Replay.** A release id starts with its commit time (`YYYYMMDDTHHMMSSZ`); under a policy, a
//! release older than the newest one ever activated on the root (by `ROOT/history.jsonl`) is
//! refused unless the operator allows the downgrade. `switch revert` stays the way back.

use std::path::Path;

use anyhow::{anyhow, Result};
use minisign::{PublicKey, PublicKeyBox};
use serde::{Deserialize, Serialize};

use crate::fs::beneath::{Dir, Kind};
use crate::fs::owned::OwnedDir;
use crate::Hint;

/// The file of trusted keys in a root.
pub const TRUSTED_FILE: &str = crate::host::layout::TRUSTED;

/// Where unpack records what verified a release, inside the release.
pub const RECORD: &str = ".wheelship/verified.json";

/// Key files and signatures are small: anything larger is not one.
const MAX_KEY_FILE: u64 = 64 << 10;

/// A public key the policy trusts.
pub struct Key {
    /// minisign's key id: 16 upper-case hex digits.
    pub id: String,
    pub key: PublicKey,
    /// Where it came from, for messages (`--trust …`, `ROOT/trusted:3`).
    pub from: String,
}

/// minisign's key id: the 8 key-number bytes as a little-endian number, in upper-case hex.
pub fn key_id(keynum: &[u8]) -> String {
    let mut b = [0u8; 8];
    b.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(b))
}

/// A public key from its base64 line or the text of a `.pub` file.
pub fn parse_public(text: &str) -> Option<PublicKey> {
    let text = text.trim();
    if text.contains('\n') {
        PublicKeyBox::from_string(text).ok()?.into_public_key().ok()
    } else {
        PublicKey::from_base64(text).ok()
    }
}

/// The keys in force on a root; at least one.
pub struct Policy {
    pub keys: Vec<Key>,
}

impl Policy {
    /// The policy of `root`: the keys of `given` (each a `.pub` file or its base64 line) and of
    /// `ROOT/trusted`. `None` when neither configures anything; an error when either does and
    /// yields no valid key.
    pub fn load(root: &OwnedDir, given: &[String]) -> Result<Option<Policy>> {
        let mut keys = Vec::new();
        for t in given {
            keys.push(given_key(t)?);
        }
        if let Some(file) = trusted_file(root)? {
            keys.extend(file);
        }
        if keys.is_empty() && given.is_empty() {
            return Ok(None);
        }
        Ok(Some(Policy { keys }))
    }

    /// The trusted key whose key number is `keynum`.
    pub fn key(&self, keynum: &[u8]) -> Option<&Key> {
        self.keys.iter().find(|k| k.key.keynum() == keynum)
    }

    /// The trusted key ids, for messages.
    pub fn ids(&self) -> String {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        ids.join(", ")
    }
}

fn given_key(t: &str) -> Result<Key> {
    let p = Path::new(t);
    let key = if p.is_file() {
        let bytes = crate::fs::fsx::read_capped(p, MAX_KEY_FILE, "a key file")?;
        parse_public(&String::from_utf8_lossy(&bytes))
    } else {
        parse_public(t)
    };
    let key = key.ok_or_else(|| {
        anyhow!("--trust `{t}`: not a minisign public key (a .pub file, or its base64 line)")
    })?;
    Ok(Key {
        id: key_id(key.keynum()),
        key,
        from: format!("--trust `{t}`"),
    })
}

/// The keys of `ROOT/trusted`: `None` when nothing is there; an error for anything there that
/// is not a regular file of ours holding at least one key.
fn trusted_file(root: &OwnedDir) -> Result<Option<Vec<Key>>> {
    let dir: &Dir = root.dir();
    let shown = root.join(TRUSTED_FILE);
    let refuse = |why: &str| -> anyhow::Error {
        Hint::new(
            format!(
                "`{}` {why}: trust is configured there, and it must name at least one key",
                shown.display()
            ),
            "put one minisign public key a line in it (its base64 line), or remove it to trust no key",
        )
        .into()
    };
    match dir.kind(TRUSTED_FILE)? {
        None => return Ok(None),
        Some(Kind::File) => {}
        Some(Kind::Dir) => return Err(refuse("is a directory")),
        Some(Kind::Symlink) => {
            return Err(refuse(
                "is a symlink (keys are read from a regular file in the root only)",
            ))
        }
        Some(Kind::Other) => return Err(refuse("is not a regular file")),
    }
    let f = dir.open_file(TRUSTED_FILE)?;
    let meta = f
        .metadata()
        .map_err(|e| anyhow!("cannot read `{}`: {e}", shown.display()))?;
    {
        use std::os::unix::fs::MetadataExt;
        // Root's own file (a conffile) or ours; never one another user may write.
        let owner = if meta.uid() == 0 {
            rustix::process::geteuid().as_raw()
        } else {
            meta.uid()
        };
        crate::fs::owned::check_mode(owner, meta.mode(), &shown, "trusted-keys file")?;
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(refuse("is too large to be a list of keys"));
    }
    let text = String::from_utf8(dir.read(TRUSTED_FILE)?).map_err(|_| refuse("is not UTF-8"))?;
    let mut keys = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("untrusted comment:") {
            continue;
        }
        let key = PublicKey::from_base64(l)
            .map_err(|_| anyhow!("{}:{}: not a minisign public key", shown.display(), n + 1))?;
        keys.push(Key {
            id: key_id(key.keynum()),
            key,
            from: format!("{}:{}", shown.display(), n + 1),
        });
    }
    if keys.is_empty() {
        return Err(refuse(if text.trim().is_empty() {
            "is empty"
        } else {
            "holds no key (comments only)"
        }));
    }
    Ok(Some(keys))
}

/// The trusted comment of our signatures: what is signed, in words a person can check with
/// `minisign -V`.
pub fn comment(id: &str, sha256: &str) -> String {
    format!("wheelship release {id} sha256 {sha256}")
}

/// The release id and sha256 our trusted comment names, if it is ours.
pub fn comment_names(comment: &str) -> Option<(&str, &str)> {
    let rest = comment.strip_prefix("wheelship release ")?;
    let (id, sha) = rest.split_once(" sha256 ")?;
    Some((id, sha.trim()))
}

/// Whether a trusted comment that is not ours names release `id` as a whole word (minisign's
/// own, `timestamp:…\tfile:app-<id>.tar.zst\thashed`, names the archive, whose name ends in
/// the id): not preceded by a letter or digit, not followed by one or by `-`.
pub fn comment_names_release(comment: &str, id: &str) -> bool {
    !id.is_empty()
        && comment.match_indices(id).any(|(i, _)| {
            let before = comment[..i].chars().next_back();
            let after = comment[i + id.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// What unpack established about a release (`RECORD` in it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The archive it was extracted from.
    pub sha256: String,
    /// The key whose signature was verified, and the signature (`<archive>.minisig`'s text);
    /// both null when no policy was in force.
    pub verified_by: Option<String>,
    pub signature: Option<String>,
    /// BLAKE2b-512 of the archive (hex): what a minisign signature signs. With it, a signature
    /// whose trusted comment is not wheelship's (`minisign -S` on a signing machine) can be
    /// checked again against the archive it was verified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prehash: Option<String>,
}

impl Record {
    /// The record of a release, when it has one that reads.
    pub fn read(release: &Dir) -> Option<Record> {
        let bytes = release.read(RECORD).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the record satisfies `policy` for release `id`: its signature is by a trusted
    /// key, and its trusted comment, signed by that key, names this id and this sha256. The key
    /// id on success, the reason otherwise.
    pub fn satisfies(&self, id: &str, policy: &Policy) -> Result<String, String> {
        let Some(sig) = &self.signature else {
            return Err(
                "it was not verified when it was unpacked (no trust was configured then)".into(),
            );
        };
        let signed = Signed::parse(sig).ok_or("its recorded signature is malformed")?;
        let key = policy.key(&signed.keynum).ok_or_else(|| {
            format!(
                "it was signed by key {}, which is not trusted here (trusted: {})",
                key_id(&signed.keynum),
                policy.ids()
            )
        })?;
        if !signed.comment_verifies(&key.key) {
            return Err(format!(
                "its recorded signature does not verify with key {}",
                key.id
            ));
        }
        match comment_names(&signed.comment) {
            Some((sid, ssha)) if sid == id && ssha == self.sha256 => Ok(key.id.clone()),
            Some(_) => Err(format!(
                "its recorded signature is for another release (`{}`)",
                signed.comment
            )),
            // Another trusted comment (the minisign tool's own): it must name this release
            // (its archive's file name does), and the signature covers the archive's bytes,
            // whose BLAKE2b-512 unpack recorded as it verified them.
            None if !comment_names_release(&signed.comment, id) => Err(format!(
                "its recorded signature names another release (`{}`)",
                signed.comment
            )),
            None => match self.prehash.as_deref() {
                Some(p) if signature_verifies(sig, &key.key, p) => Ok(key.id.clone()),
                Some(_) => Err(format!(
                    "its recorded signature (`{}`) is not of the archive it was unpacked from",
                    signed.comment
                )),
                None => Err(format!(
                    "its record keeps no digest of the archive its signature (`{}`) is over",
                    signed.comment
                )),
            },
        }
    }
}

/// Whether `text` (a minisign signature) is `key`'s prehashed signature of data whose
/// BLAKE2b-512 is `prehash` (hex), its trusted comment included.
pub fn signature_verifies(text: &str, key: &PublicKey, prehash: &str) -> bool {
    match (
        Signed::parse(text),
        data_encoding::HEXLOWER.decode(prehash.as_bytes()),
    ) {
        (Some(s), Ok(digest)) => s.data_verifies(key, &digest),
        _ => false,
    }
}

/// BLAKE2b-512 of what `r` yields, hex: the digest a prehashed minisign signature signs.
pub fn prehash(mut r: impl std::io::Read) -> std::io::Result<String> {
    use blake2::Digest;
    let mut h = blake2::Blake2b512::new();
    std::io::copy(&mut r, &mut h)?;
    Ok(data_encoding::HEXLOWER.encode(&h.finalize()))
}

/// The parts of a minisign signature that say what was signed and by whom: the key number,
/// the signature of the data, the trusted comment and the signature over both
/// (<https://jedisct1.github.io/minisign/#signature-format>).
struct Signed {
    keynum: [u8; 8],
    sig: [u8; 64],
    comment: String,
    global: [u8; 64],
}

impl Signed {
    fn parse(text: &str) -> Option<Signed> {
        use data_encoding::BASE64;
        let mut lines = text.lines();
        lines.next()?.strip_prefix("untrusted comment:")?;
        let sig = BASE64.decode(lines.next()?.trim().as_bytes()).ok()?;
        let comment = lines.next()?.strip_prefix("trusted comment: ")?.trim();
        let global = BASE64.decode(lines.next()?.trim().as_bytes()).ok()?;
        // `ED`: the prehashed algorithm, the only one wheelship signs or accepts.
        if sig.len() != 74 || &sig[..2] != b"ED" || global.len() != 64 {
            return None;
        }
        Some(Signed {
            keynum: sig[2..10].try_into().ok()?,
            sig: sig[10..74].try_into().ok()?,
            comment: comment.to_string(),
            global: global.try_into().ok()?,
        })
    }

    /// The global signature: Ed25519 over the data's signature followed by the trusted comment.
    fn comment_verifies(&self, key: &PublicKey) -> bool {
        let mut msg = self.sig.to_vec();
        msg.extend_from_slice(self.comment.as_bytes());
        self.ed25519(key, &self.global, &msg)
    }

    /// The data's signature over `digest` (BLAKE2b-512 of the data: prehashed), and the
    /// global signature that binds the trusted comment to it.
    fn data_verifies(&self, key: &PublicKey, digest: &[u8]) -> bool {
        digest.len() == 64 && self.ed25519(key, &self.sig, digest) && self.comment_verifies(key)
    }

    fn ed25519(&self, key: &PublicKey, sig: &[u8; 64], msg: &[u8]) -> bool {
        let bytes = key.to_bytes();
        let (Ok(pk), Ok(sig)) = (
            ed25519_compact::PublicKey::from_slice(&bytes[10..42]),
            ed25519_compact::Signature::from_slice(sig),
        ) else {
            return false;
        };
        self.keynum == bytes[2..10] && pk.verify(msg, &sig).is_ok()
    }
}

/// The commit time a release id starts with (`YYYYMMDDTHHMMSSZ`), which sorts as time does.
pub fn commit_time(id: &str) -> Option<&str> {
    let t = id.get(..16)?;
    let b = t.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    (digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'Z').then_some(t)
}

/// How far in the future a release's commit time may be before it is refused: clocks of build
/// boxes and hosts disagree by seconds or minutes, not more.
pub const SKEW_SECS: i64 = 15 * 60;

/// Refuses release `id` when its commit time is later than now (and the skew): a release from
/// the future would make every real release after it look like a downgrade. `whose` says whose
/// clock reads now (`this build box`, `this host`).
pub fn check_not_future(id: &str, whose: &str) -> Result<()> {
    let Some(t) = commit_time(id).and_then(crate::time::from_compact) else {
        return Ok(());
    };
    let now = crate::time::now();
    if t > now + SKEW_SECS {
        return Err(Hint::new(
            format!(
                "release `{id}` is dated {}, later than {whose}'s clock ({}) by more than {} minutes: refusing a release from the future",
                crate::time::compact(t),
                crate::time::compact(now),
                SKEW_SECS / 60
            ),
            "a clock is wrong: the commit's date (`git log -1 --format=%cI`) or this machine's (`timedatectl`); fix it, then release again",
        )
        .into());
    }
    Ok(())
}

/// The newest release ever live on a root, and how new it counts: its commit time, but never
/// later than the time it went live (a release cannot have been made after it was live), so
/// that no release dated in the future can move the mark past what really happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Newest {
    pub id: String,
    /// Unix seconds.
    pub mark: i64,
}

/// The newest release that the history of `root` says was ever live.
pub fn newest_activated(root: &Path) -> Result<Option<Newest>> {
    let hist = crate::host::history::History::read(root)?;
    Ok(hist
        .activations()
        .filter_map(|(id, when)| {
            let made = commit_time(id).and_then(crate::time::from_compact)?;
            let live = crate::time::from_rfc3339(when).unwrap_or(made);
            Some(Newest {
                id: id.to_string(),
                mark: made.min(live),
            })
        })
        .max_by_key(|n| (n.mark, n.id.clone())))
}

/// Refuses release `id` when it is older than `newest` (the newest ever activated), unless the
/// downgrade is allowed. `flag` is the option that allows it.
pub fn check_not_older(id: &str, newest: Option<&Newest>, allowed: bool, flag: &str) -> Result<()> {
    let Some(newest) = newest else {
        return Ok(());
    };
    // No commit time to compare: it cannot be shown newer.
    let older = commit_time(id)
        .and_then(crate::time::from_compact)
        .is_none_or(|t| t < newest.mark);
    if older && id != newest.id && !allowed {
        return Err(Hint::new(
            format!(
                "release `{id}` is older than `{}`, the newest release ever live here: refusing a downgrade (a replayed old release?)",
                newest.id
            ),
            format!("to go back to a kept release use `switch revert --to ID`; to deploy an older one on purpose, add {flag}"),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_times() {
        assert_eq!(
            commit_time("20261126T093542Z-d058e624c812-3d0b540c7b12"),
            Some("20261126T093542Z")
        );
        assert_eq!(commit_time("v1"), None);
        assert_eq!(commit_time("2026112XT093542Z-x"), None);
        let (old, new) = ("20250101T000000Z-a-b", "20260101T000000Z-a-b");
        let mark = |id: &str| Newest {
            id: id.into(),
            mark: crate::time::from_compact(commit_time(id).unwrap()).unwrap(),
        };
        let (n_old, n_new) = (mark(old), mark(new));
        assert!(check_not_older(old, Some(&n_new), false, "--allow-downgrade").is_err());
        assert!(check_not_older(old, Some(&n_new), true, "--allow-downgrade").is_ok());
        assert!(check_not_older(new, Some(&n_old), false, "--allow-downgrade").is_ok());
        assert!(check_not_older("hand-made", Some(&n_new), false, "x").is_err());
        assert!(check_not_older(old, None, false, "x").is_ok());
    }

    /// Boundaries issue, finding 7: a release dated 2099 that once went live (before this
    /// check, or on a host whose clock ran ahead) counts as new as the day it went live, so
    /// every later real release passes; and a release from the future is refused outright.
    #[test]
    fn a_release_from_the_future_moves_no_mark() {
        let t = tempfile::tempdir().unwrap();
        let future = "20990101T000000Z-aaaaaaaaaaaa-bbbbbbbbbbbb";
        let line = |to: &str, time: &str| {
            format!(
                r#"{{"time":"{time}","action":"deploy","from":null,"to":"{to}","user":"u","rev":null,"env":null}}"#
            )
        };
        std::fs::write(
            t.path().join("history.jsonl"),
            format!("{}\n", line(future, "2026-12-01T10:00:00.000Z")),
        )
        .unwrap();
        let newest = newest_activated(t.path()).unwrap().unwrap();
        assert_eq!(
            newest.mark,
            crate::time::from_compact("20261201T100000Z").unwrap()
        );
        let later = "20261202T000000Z-cccccccccccc-dddddddddddd";
        assert!(check_not_older(later, Some(&newest), false, "x").is_ok());
        let earlier = "20261130T000000Z-cccccccccccc-dddddddddddd";
        assert!(check_not_older(earlier, Some(&newest), false, "x").is_err());
        let e = check_not_future(future, "this host")
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing a release from the future"), "{e}");
        assert!(check_not_future(later, "this host").is_ok());
    }

    #[test]
    fn our_comment_reads_back() {
        let c = comment("r1", "ab");
        assert_eq!(comment_names(&c), Some(("r1", "ab")));
        assert_eq!(comment_names("timestamp:1"), None);
    }
}

#[cfg(test)]
mod comment_tests {
    use super::comment_names_release as names;

    #[test]
    fn a_comment_names_a_release_only_as_a_whole_word() {
        let id = "20261208T003503Z-7c0f6482485b-08bec5cfa14a";
        assert!(names(
            &format!("timestamp:1\tfile:app-{id}.tar.zst\thashed"),
            id
        ));
        assert!(names(&format!("release {id}, approved"), id));
        assert!(names(id, id));
        assert!(!names("signed on the offline box", id));
        assert!(!names(&format!("{id}-x"), id));
        assert!(!names(&format!("x{id}"), id));
        assert!(!names("anything", ""));
    }
}
