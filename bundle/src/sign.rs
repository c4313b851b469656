//! Signed releases, in minisign's format (Ed25519; https://jedisct1.github.io/minisign/):
//! `pack --sign` writes `<archive>.minisig` beside the archive, `unpack` refuses an archive
//! that no trusted key signed before it extracts anything, and `keygen` makes a key pair for
//! those without the minisign tool. No key material ever reaches stdout, a message or the
//! document.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use minisign::{KeyPair, PublicKey, SecretKey, SecretKeyBox, SignatureBox};
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::hash::Hashing;
use wheelship::host::trust::{self, key_id, Policy};
use wheelship::Hint;

/// The environment variable that holds an encrypted secret key's password.
pub const PASSWORD_VAR: &str = "WHEELSHIP_SIGN_PASSWORD";

/// Key files and signatures are small: anything larger is not one.
const MAX_KEY_FILE: u64 = 64 << 10;

/// The signature file of an archive.
pub fn signature_path(archive: &Path) -> PathBuf {
    let mut p = archive.as_os_str().to_owned();
    p.push(".minisig");
    PathBuf::from(p)
}

/// The password of an encrypted key: `WHEELSHIP_SIGN_PASSWORD`, else asked on the terminal.
fn password(what: &str) -> Result<Option<String>> {
    if let Ok(p) = std::env::var(PASSWORD_VAR) {
        return Ok(Some(p));
    }
    if File::open("/dev/tty").is_err() {
        return Err(Hint::new(
            format!("{what} is encrypted and there is no terminal to ask its password on"),
            format!("set {PASSWORD_VAR}"),
        )
        .into());
    }
    Ok(None) // minisign asks on the terminal
}

/// Reads a secret key file, decrypting it if it must.
fn secret_key(path: &Path) -> Result<SecretKey> {
    let text = String::from_utf8(fsx::read_capped(path, MAX_KEY_FILE, "a key file")?)
        .map_err(|_| anyhow!("`{}` is not a minisign secret key", path.display()))?;
    let not_a_key = || anyhow!("`{}` is not a minisign secret key", path.display());
    SecretKeyBox::from_string(&text).map_err(|_| not_a_key())?;
    // An unencrypted key (no KDF) reads as it is. The minisign tool (0.11) leaves such a key's
    // checksum zero, which the minisign crate takes for a corrupt key: it is read from its
    // bytes instead. A wrong key cannot slip through: its signature verifies with no trusted key.
    let raw = text
        .lines()
        .nth(1)
        .and_then(|l| data_encoding::BASE64.decode(l.trim().as_bytes()).ok());
    if let Some(raw) = raw.filter(|r| r.len() == 158 && r[2..4] == [0, 0]) {
        return SecretKey::from_bytes(&raw).map_err(|_| not_a_key());
    }
    let shown = format!("the secret key `{}`", path.display());
    let pw = password(&shown)?;
    SecretKeyBox::from_string(&text)
        .and_then(|b| b.into_secret_key(pw))
        .map_err(|_| anyhow!("cannot decrypt {shown}: wrong password?"))
}

/// What a signature says and who made it.
pub struct Signed {
    pub path: PathBuf,
    pub key_id: String,
}

/// Signs `archive` (release `id`, whose bytes hash to `sha256`) with the secret key at `key`.
pub fn sign(archive: &Path, key: &Path, id: &str, sha256: &str) -> Result<Signed> {
    sign_file(
        archive,
        key,
        &trust::comment(id, sha256),
        "signature from wheelship bundle pack",
    )
}

/// Signs any file (`<file>.minisig`) with the trusted comment given.
pub fn sign_file(archive: &Path, key: &Path, trusted: &str, untrusted: &str) -> Result<Signed> {
    let sk = secret_key(key)?;
    let pk = PublicKey::from_secret_key(&sk)
        .map_err(|_| anyhow!("`{}` is not a usable secret key", key.display()))?;
    let data =
        File::open(archive).map_err(|e| anyhow!("cannot read `{}`: {e}", archive.display()))?;
    let sig = minisign::sign(Some(&pk), &sk, data, Some(trusted), Some(untrusted))
        .map_err(|e| anyhow!("cannot sign `{}`: {}", archive.display(), e))?;
    let path = signature_path(archive);
    fsx::write_atomic(&path, sig.into_string().as_bytes())?;
    Ok(Signed {
        path,
        key_id: key_id(pk.keynum()),
    })
}

/// What a verified signature established.
pub struct Verified {
    /// The signer's key id.
    pub signer: String,
    /// The trusted comment.
    pub comment: String,
    /// The sha256 of the bytes that were verified.
    pub sha256: String,
    /// BLAKE2b-512 of the same bytes (hex): what the signature signs.
    pub prehash: String,
    /// The signature's text, for the release's record.
    pub text: String,
}

/// Verifies `archive` against `<archive>.minisig` and the policy's keys, before anything is
/// extracted.
pub fn verify(archive: &Path, policy: &Policy) -> Result<Verified> {
    let keys = &policy.keys;
    let sig_path = signature_path(archive);
    if !sig_path.exists() {
        return Err(Hint::new(
            format!(
                "`{}` is not signed: `{}` is missing, and {} trusted key(s) are configured",
                archive.display(),
                sig_path.display(),
                keys.len()
            ),
            "sign it on the build box (`bundle pack --sign KEY`, `scripts/release --sign KEY`) and ship the .minisig with it",
        )
        .into());
    }
    let text = String::from_utf8(fsx::read_capped(&sig_path, MAX_KEY_FILE, "a signature")?)
        .map_err(|_| anyhow!("`{}` is not a minisign signature", sig_path.display()))?;
    let sig = SignatureBox::from_string(&text).map_err(|_| {
        anyhow!(
            "`{}` is not a minisign signature (malformed)",
            sig_path.display()
        )
    })?;
    let signer = key_id(sig.keynum());
    let Some(t) = policy.key(sig.keynum()) else {
        bail!(
            "`{}` is signed by key {signer}, which is not trusted here (trusted: {})",
            archive.display(),
            policy.ids()
        );
    };
    let (f, _) = fsx::open_regular(archive)?;
    // Read once, both digests as it is read: the BLAKE2b-512 the signature signs (prehashed
    // signatures are the only kind accepted) and the sha256 the bytes later extracted are held
    // to. The BLAKE2b-512 goes into the release's record, where a signature whose trusted
    // comment is not ours is checked again.
    let mut data = Hashing::new(f);
    let read = data.tally();
    let prehash = trust::prehash(&mut data).at("read", archive)?;
    if !trust::signature_verifies(&text, &t.key, &prehash) {
        bail!(
            "`{}`: the signature by key {signer} does not match the archive's bytes (changed after signing, or the signature of another archive)",
            archive.display()
        );
    }
    let sha256 = read.sha256();
    let comment = sig.trusted_comment().unwrap_or_default();
    Ok(Verified {
        signer,
        comment,
        sha256,
        prehash,
        text,
    })
}

/// Makes a key pair in minisign's format: `DIR/NAME.pub` and `DIR/NAME.key` (0600), the
/// secret key encrypted with a password unless `unencrypted`.
pub fn keygen(dir: &Path, name: &str, unencrypted: bool) -> Result<(PathBuf, PathBuf, String)> {
    let (pub_path, key_path) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    for p in [&pub_path, &key_path] {
        if p.exists() {
            bail!("`{}` exists: refusing to overwrite a key", p.display());
        }
    }
    let kp = if unencrypted {
        KeyPair::generate_unencrypted_keypair()
    } else {
        let pw = std::env::var(PASSWORD_VAR).ok();
        if pw.is_none() && File::open("/dev/tty").is_err() {
            return Err(Hint::new(
                "an encrypted key needs a password, and there is no terminal to ask it on",
                format!("set {PASSWORD_VAR}, or pass --unencrypted"),
            )
            .into());
        }
        KeyPair::generate_encrypted_keypair(pw)
    }
    .map_err(|e| anyhow!("cannot make a key pair: {e}"))?;
    let id = key_id(kp.pk.keynum());
    let pk_text = kp
        .pk
        .to_box()
        .map_err(|e| anyhow!("cannot encode the public key: {e}"))?
        .into_string();
    let sk_text = kp
        .sk
        .to_box(Some(&format!("wheelship secret key {id}")))
        .map_err(|e| anyhow!("cannot encode the secret key: {e}"))?
        .into_string();
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create `{}`: {e}", dir.display()))?;
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .map_err(|e| anyhow!("cannot write `{}`: {e}", key_path.display()))?;
        f.write_all(sk_text.as_bytes())?;
        f.sync_all()?;
    }
    fsx::write_atomic(&pub_path, pk_text.as_bytes())?;
    Ok((pub_path, key_path, id))
}
