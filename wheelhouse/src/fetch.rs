//! Bringing the chosen files into DIR: a file already there is checked against its sha256, one
//! in a --find-links directory is copied, one on an index is downloaded (all at once, in
//! parallel), an sdist is built into a wheel once (kept in wheelship's cache by the sdist's
//! sha256). Nothing gets its name in DIR before its sha256 is the one the resolver reported.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use wheelship::fs::fsx;
use wheelship::fs::io::At;
use wheelship::python::names::WheelFilename;

use crate::pip::{self, Config};
use crate::uv::{Artifact, Location};

/// Downloads with the build box's interpreter (urllib: its proxies from `https_proxy` and
/// `no_proxy`, the certificates of `PIP_CERT` or `SSL_CERT_FILE`), eight at a time, one name
/// lookup per host, `PIP_DEFAULT_TIMEOUT` seconds (60) to connect and between reads. Reads
/// `{"items": [{"url", "dest", "auth", "size"}]}` on stdin (after its start: it is started before
/// it is needed); prints one JSON line per failure. The server is not trusted: credentials go
/// only to the origin they were given for (a redirect to another origin drops them; urllib
/// would copy them along), a redirect from https to http is refused, a body never grows past
/// the size the lock gives (plus one byte, to notice), and each file has a total deadline.
const DOWNLOAD: &str = r#"import concurrent.futures, json, os, socket, ssl, sys, threading, time, urllib.parse, urllib.request
# One name lookup per host, shared by the threads: a resolver that drops one of many parallel
# queries stalls a connection for its whole timeout (5 s with glibc's defaults).
lookup, seen, lock = socket.getaddrinfo, {}, threading.Lock()
def getaddrinfo(*a, **k):
    key = (a, tuple(sorted(k.items())))
    with lock:
        if key not in seen:
            seen[key] = lookup(*a, **k)
        return seen[key]
socket.getaddrinfo = getaddrinfo
def origin(url):
    u = urllib.parse.urlsplit(url)
    return (u.scheme, u.hostname, u.port or {"https": 443, "http": 80}.get(u.scheme))
class Redirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(req.full_url).scheme == "https" and urllib.parse.urlsplit(newurl).scheme != "https":
            raise urllib.error.URLError("redirected from https to %s: refused" % urllib.parse.urlsplit(newurl).scheme)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and origin(newurl) != origin(req.full_url):
            new.remove_header("Authorization")
            new.unredirected_hdrs.pop("Authorization", None)
        return new
cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or None
ctx = ssl.create_default_context(cafile=cafile)
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), Redirect())
try:
    timeout = float(os.environ.get("PIP_DEFAULT_TIMEOUT") or 60)
except ValueError:
    timeout = 60.0
job = json.load(sys.stdin)
class Refused(Exception):
    pass
def get(item):
    size = item.get("size")
    # The whole file at 64 KiB/s at worst, and never less than ten read timeouts.
    deadline = time.monotonic() + max(10 * timeout, (size or 0) / 65536)
    for attempt in range(3):
        try:
            req = urllib.request.Request(item["url"], headers={"User-Agent": "wheelship-wheelhouse"})
            if item["auth"]:
                req.add_unredirected_header("Authorization", "Basic " + item["auth"])
            with opener.open(req, timeout=timeout) as r, open(item["dest"], "wb") as f:
                got = 0
                while True:
                    b = r.read(1 << 20)
                    if not b:
                        break
                    got += len(b)
                    if size is not None and got > size:
                        raise Refused("the server sent more than the %d bytes the lock gives: stopped" % size)
                    if time.monotonic() > deadline:
                        raise Refused("not done within its deadline: stopped")
                    f.write(b)
            return None
        except Refused as e:
            return {"url": item["url"], "error": str(e)}
        except Exception as e:
            err = "%s: %s" % (type(e).__name__, e)
            if getattr(e, "code", 0) in (401, 403, 404) or "refused" in str(e):
                break
    return {"url": item["url"], "error": err}
with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
    for failed in pool.map(get, job["items"]):
        if failed:
            print(json.dumps(failed), flush=True)
"#;

/// What the fill has to bring, and where it stands.
pub struct Dirs<'a> {
    pub dir: &'a Path,
    /// Scratch inside DIR (its filesystem: files are renamed out of it).
    pub work: &'a Path,
    /// The build box's interpreter as named (its pip builds sdists), and its executable
    /// (downloads).
    pub python: &'a str,
    pub exe: &'a str,
    pub downloader: &'a std::sync::Mutex<Downloader>,
    /// The local directories a resolver may name files in (canonical): DIR, --find-links,
    /// `PIP_FIND_LINKS`.
    pub local: &'a [PathBuf],
}

impl Dirs<'_> {
    /// A file the resolver names on this machine, refused unless it is directly in one of
    /// the local directories (an index's page could name any path).
    fn local(&self, p: &Path) -> Result<PathBuf> {
        let real = std::fs::canonicalize(p).about("a file the resolver names", p)?;
        match real.parent() {
            Some(parent) if self.local.iter().any(|d| d == parent) => Ok(real),
            _ => bail!(
                "the resolver names `{}`, which is not in the wheel directory or a --find-links directory: refusing it",
                p.display()
            ),
        }
    }
}

/// The downloading interpreter, started before it is needed: its start (~0.1 s: Python, ssl,
/// the certificates) overlaps the resolution. Killed when dropped unused.
pub struct Downloader(Option<Child>);

impl Downloader {
    pub fn start(exe: &str) -> Downloader {
        Downloader(spawn(exe).ok())
    }

    /// Not started (offline: nothing is downloaded).
    pub fn none() -> Downloader {
        Downloader(None)
    }

    fn take(&mut self, exe: &str) -> Result<Child> {
        match self.0.take() {
            Some(c) => Ok(c),
            None => spawn(exe),
        }
    }
}

impl Drop for Downloader {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(exe: &str) -> Result<Child> {
    std::process::Command::new(exe)
        .args(["-I", "-c", DOWNLOAD])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .at("run the interpreter", Path::new(exe))
}

/// Makes DIR hold every wheel of `wheels` (by file name; each once) with the sha256 given, and
/// returns each file's (sha256, size).
pub fn wheels(d: &Dirs, wheels: &[&Artifact]) -> Result<BTreeMap<String, (String, u64)>> {
    let mut unique: BTreeMap<&str, &Artifact> = BTreeMap::new();
    for w in wheels {
        if let Some(other) = unique.insert(&w.file, w) {
            if other.sha256 != w.sha256 {
                bail!(
                    "two files named `{}` with different sha256 ({} and {}): refusing both",
                    w.file,
                    other.sha256,
                    w.sha256
                );
            }
        }
    }
    let list: Vec<&Artifact> = unique.into_values().collect();
    // What DIR already holds is hashed (on every core) before anything is fetched.
    let present = wheelship::work::map(list.len(), wheelship::work::cores(), |i| {
        let p = d.dir.join(&list[i].file);
        if p.symlink_metadata().is_err() {
            return Ok(None);
        }
        fsx::sha256_file(&p).map(Some)
    })?;
    crate::timing("hashed what DIR holds");
    let mut done = BTreeMap::new();
    let mut download = Vec::new();
    for (a, have) in list.iter().zip(present) {
        match have {
            Some((sha, size)) if sha == a.sha256 => {
                done.insert(a.file.clone(), (sha, size));
            }
            Some((sha, _)) => bail!(
                "`{}` is not the file the resolver names `{}` (its sha256 is {sha}, not {}): remove it from the wheelhouse, or use another --dir",
                d.dir.join(&a.file).display(),
                a.file,
                a.sha256
            ),
            None => match &a.at {
                Location::Local(p) => {
                    let p = d.local(p)?;
                    let got = fsx::copy_in(&p, d.dir, &a.file, Some(&a.sha256))?;
                    done.insert(a.file.clone(), got);
                }
                Location::Url(u) => download.push((*a, u.as_str())),
            },
        }
    }
    if !download.is_empty() {
        for (file, got) in fetch_all(d, &download)? {
            done.insert(file, got);
        }
    }
    fsx::fsync_dir(d.dir)?;
    Ok(done)
}

/// Downloads into the scratch directory, then each file, its sha256 and size checked, renamed
/// into DIR.
fn fetch_all(d: &Dirs, items: &[(&Artifact, &str)]) -> Result<Vec<(String, (String, u64))>> {
    let stage = d.work.join("download");
    std::fs::create_dir_all(&stage).at("create", &stage)?;
    let auth = credentials();
    let job = serde_json::json!({
        "items": items.iter().map(|(a, u)| serde_json::json!({
            "url": u,
            "dest": stage.join(&a.file),
            "auth": auth_for(&auth, u),
            "size": a.size,
        })).collect::<Vec<_>>(),
    });
    let mut child = d
        .downloader
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take(d.exe)?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(job.to_string().as_bytes())
        .context("cannot hand the downloads to the interpreter")?;
    drop(stdin);
    let n = items.len();
    let status = move || {
        let have = std::fs::read_dir(&stage).map_or(0, |r| r.count());
        format!("{have} of {n} files")
    };
    let out = pip::wait_watched(child, &format!("downloading {n} files"), &status)?;
    let failed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| {
            format!(
                "{}: {}",
                redact(v["url"].as_str().unwrap_or("")),
                v["error"].as_str().unwrap_or("")
            )
        })
        .collect();
    if !failed.is_empty() || !out.status.success() {
        let mut why = failed.join("\n  ");
        if why.is_empty() {
            why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        }
        return Err(wheelship::Hint::new(
            format!(
                "cannot download {} of {n} files:\n  {why}",
                failed.len().max(1)
            ),
            "check the network or the index URL, or lock from the wheelhouse alone with --offline",
        )
        .into());
    }
    let stage = d.work.join("download");
    let mut got = Vec::new();
    for (a, u) in items {
        let p = stage.join(&a.file);
        let (sha, size) = fsx::sha256_file(&p)?;
        if sha != a.sha256 || a.size.is_some_and(|s| s != size) {
            bail!(
                "`{}` from {} has sha256 {sha} ({size} bytes), the resolver said {}: refusing it",
                a.file,
                redact(u),
                a.sha256
            );
        }
        std::fs::rename(&p, d.dir.join(&a.file)).at("move into the wheelhouse", &p)?;
        got.push((a.file.clone(), (sha, size)));
    }
    Ok(got)
}

/// Index URLs with credentials (the requirements', pip's and uv's settings): (scheme://host
/// [:port], base64 of user:password).
fn credentials() -> Vec<(String, String)> {
    let mut urls: Vec<String> = Vec::new();
    for k in [
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "UV_INDEX_URL",
        "UV_DEFAULT_INDEX",
        "UV_EXTRA_INDEX_URL",
        "UV_INDEX",
    ] {
        if let Ok(v) = std::env::var(k) {
            urls.extend(
                v.split([' ', ','])
                    .map(|u| u.rsplit_once('=').map_or(u, |(_, u)| u).to_string()),
            );
        }
    }
    let mut out = Vec::new();
    for u in urls {
        let Some((scheme, rest)) = u.split_once("://") else {
            continue;
        };
        let authority = rest.split('/').next().unwrap_or("");
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if !userinfo.contains("***") {
                let Ok(userinfo) = crate::uv::percent_decode(userinfo) else {
                    continue;
                };
                let auth = data_encoding::BASE64.encode(userinfo.as_bytes());
                out.push((format!("{scheme}://{host}"), auth));
            }
        }
    }
    out
}

fn auth_for(auth: &[(String, String)], url: &str) -> Option<String> {
    auth.iter()
        .find(|(origin, _)| {
            url.strip_prefix(origin.as_str())
                .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        })
        .map(|(_, a)| a.clone())
}

fn redact(url: &str) -> String {
    wheelship::text::redact_userinfo(url)
}

/// Wheels built from sdists, kept by the sdist's sha256.
fn built_cache(sdist_sha: &str) -> Option<PathBuf> {
    wheelship::python::probe::cache_dir().map(|d| d.join("built").join(sdist_sha))
}

/// Which sdist a wheel was built from, by the wheel's sha256: written when it is built (or
/// taken from the cache), read for every lock, so that a release names the source its wheel
/// came from whatever run built it. The cache is the user's own (`WHEELSHIP_CACHE`).
fn built_index(wheel_sha: &str) -> Option<PathBuf> {
    wheelship::text::check_sha256(wheel_sha).ok()?;
    wheelship::python::probe::cache_dir()
        .map(|d| d.join("built-from").join(format!("{wheel_sha}.json")))
}

/// What [`built_index`] says of a wheel: `{"file", "sha256", "url"}` of its sdist.
pub fn built_from(wheel_sha: &str) -> Option<serde_json::Value> {
    let path = built_index(wheel_sha)?;
    parse_built(&fsx::read_capped(&path, 64 << 10, "a cache entry").ok()?)
}

/// A [`built_index`] entry, when it holds what it must.
fn parse_built(bytes: &[u8]) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    // It goes into the lock, the SBOM and the provenance: a file name, a sha256, a URL of
    // one line (or none).
    let file_ok = wheelship::text::check_file_name(v["file"].as_str()?).is_ok();
    let sha_ok = wheelship::text::check_sha256(v["sha256"].as_str()?).is_ok();
    let url_ok = v["url"].is_null()
        || v["url"]
            .as_str()
            .is_some_and(|u| u.len() <= 4096 && !u.chars().any(char::is_control));
    (file_ok && sha_ok && url_ok).then_some(v)
}

/// Records that the wheel whose sha256 is `wheel_sha` was built from `sdist` (best effort).
fn record_built(wheel_sha: &str, sdist: &Artifact, url: &str) {
    let Some(path) = built_index(wheel_sha) else {
        return;
    };
    // A local sdist's path is the build box's: not a fact of the release (pack keeps those
    // out, so that two boxes make the same archive).
    let url = Some(url)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .and_then(wheelship::text::url_without_userinfo);
    let v = serde_json::json!({
        "file": sdist.file,
        "sha256": sdist.sha256,
        "url": url,
    });
    if let Some(d) = path.parent() {
        if std::fs::create_dir_all(d).is_ok() {
            let _ = fsx::write_atomic(&path, v.to_string().as_bytes());
        }
    }
}

/// The wheel of `sdist` for the interpreter whose tags are `tags`: from wheelship's cache, or
/// built with `pip wheel --no-deps` (pip's configuration applies: the build's own requirements
/// come from the index), its sdist checked against the sha256. Returns the wheel's file name
/// in DIR and its (sha256, size).
pub fn build(
    d: &Dirs,
    name: &str,
    sdist: &Artifact,
    tags: &[String],
) -> Result<(String, (String, u64))> {
    let fits = |file: &str| {
        WheelFilename::parse(file)
            .map(|f| f.tags().iter().any(|t| tags.contains(t)))
            .unwrap_or(false)
    };
    let cache = built_cache(&sdist.sha256);
    if let Some(c) = &cache {
        if let Ok(rd) = std::fs::read_dir(c) {
            for e in rd.flatten() {
                let file = e.file_name().to_string_lossy().to_string();
                if fits(&file) {
                    let got = fsx::copy_in(&e.path(), d.dir, &file, None)?;
                    record_built(&got.0, sdist, &sdist_url(d, sdist)?);
                    return Ok((file, got));
                }
            }
        }
    }
    let stage = d.work.join(format!("build-{}", sdist.sha256));
    std::fs::create_dir_all(&stage).at("create", &stage)?;
    let url = sdist_url(d, sdist)?;
    let req = stage.join("requirement.txt");
    std::fs::write(
        &req,
        format!("{name} @ {url} --hash=sha256:{}\n", sdist.sha256),
    )
    .at("write", &req)?;
    let log = stage.join("pip.log");
    let mut c = pip::command(d.python, Config::User);
    c.arg("--log")
        .arg(&log)
        .args(["wheel", "--no-deps", "--require-hashes", "--wheel-dir"])
        .arg(&stage)
        .arg("-r")
        .arg(&req);
    let out = pip::run_watched(
        c,
        &format!("building `{name}` from its sdist"),
        &String::new,
    )?;
    if !out.status.success() {
        return Err(pip::failure(
            &out,
            &pip::Failed {
                what: "pip wheel",
                dir: d.dir,
                offline: false,
                target: None,
                python: None,
                log: Some(&log),
                reqs: None,
            },
        ));
    }
    let built = std::fs::read_dir(&stage)
        .at("read", &stage)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|f| f.ends_with(".whl"))
        .ok_or_else(|| anyhow!("pip built no wheel of `{name}` from {}", redact(&url)))?;
    if !fits(&built) {
        bail!(
            "pip built `{built}` from the sdist of `{name}`, which this interpreter cannot install"
        );
    }
    let from = stage.join(&built);
    if let Some(c) = &cache {
        // Best effort: a cache that cannot be written costs the next fill a build.
        if std::fs::create_dir_all(c).is_ok() {
            let _ = fsx::copy_in(&from, c, &built, None);
        }
    }
    let got = fsx::copy_in(&from, d.dir, &built, None)?;
    record_built(&got.0, sdist, &url);
    Ok((built, got))
}

fn sdist_url(d: &Dirs, sdist: &Artifact) -> Result<String> {
    Ok(match &sdist.at {
        Location::Url(u) => u.clone(),
        Location::Local(p) => format!("file://{}", d.local(p)?.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_entry_of_what_a_wheel_was_built_from_is_held_to_its_shape() {
        let sha = "a".repeat(64);
        let ok = format!(r#"{{"file": "x-1.0.tar.gz", "sha256": "{sha}", "url": null}}"#);
        assert!(parse_built(ok.as_bytes()).is_some());
        for bad in [
            format!(r#"{{"file": "../x.tar.gz", "sha256": "{sha}", "url": null}}"#),
            format!(
                r#"{{"file": "x
Replaces: y", "sha256": "{sha}", "url": null}}"#
            ),
            r#"{"file": "x-1.0.tar.gz", "sha256": "nothex", "url": null}"#.to_string(),
            format!(r#"{{"file": "x-1.0.tar.gz", "sha256": "{sha}", "url": "https://h/[2J"}}"#),
            "not json".to_string(),
        ] {
            assert!(parse_built(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_local_file_must_be_in_a_local_directory() {
        let t = tempfile::tempdir().unwrap();
        let ok = t.path().join("ok");
        std::fs::create_dir(&ok).unwrap();
        std::fs::write(ok.join("a.whl"), "x").unwrap();
        std::fs::write(t.path().join("b.whl"), "x").unwrap();
        std::os::unix::fs::symlink(t.path().join("b.whl"), ok.join("c.whl")).unwrap();
        let ok = std::fs::canonicalize(&ok).unwrap();
        let downloader = std::sync::Mutex::new(Downloader::none());
        let d = Dirs {
            dir: &ok,
            work: &ok,
            python: "python3",
            exe: "python3",
            downloader: &downloader,
            local: std::slice::from_ref(&ok),
        };
        assert!(d.local(&ok.join("a.whl")).is_ok());
        assert!(d.local(&t.path().join("b.whl")).is_err());
        // A symlink out of it is where it points.
        assert!(d.local(&ok.join("c.whl")).is_err());
        assert!(d.local(&ok.join("../b.whl")).is_err());
    }

    #[test]
    fn credentials_go_only_to_their_origin() {
        let auth = vec![("https://idx.example:8443".to_string(), "dTpw".to_string())];
        assert_eq!(
            auth_for(&auth, "https://idx.example:8443/files/a.whl").as_deref(),
            Some("dTpw")
        );
        assert_eq!(auth_for(&auth, "https://idx.example:8443.evil/a.whl"), None);
        assert_eq!(auth_for(&auth, "https://idx.example/a.whl"), None);
        assert_eq!(
            redact("https://u:p@h.example/x/a.whl"),
            "https://***@h.example/x/a.whl"
        );
    }

    /// Boundaries issue, finding 10: the downloader does not trust the server. Credentials go
    /// to their origin only (a redirect to another origin drops them), a redirect from https
    /// to http is refused, and an endless body stops one byte past the size the lock gives.
    #[test]
    fn downloads_do_not_trust_the_server() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("auth.log");
        // Two origins on loopback: 127.0.0.1 redirects to 127.0.0.2, which logs what
        // Authorization it got; /endless never ends.
        let server = format!(
            r#"import http.server, sys, threading
log = {log:?}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:%d/file" % other.server_address[1])
            self.end_headers(); return
        if self.path == "/file":
            with open(log, "a") as f: f.write("auth=%s\n" % self.headers.get("Authorization"))
            self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
            self.wfile.write(b"abc"); return
        if self.path == "/endless":
            self.send_response(200); self.end_headers()
            try:
                while True: self.wfile.write(b"x" * 65536)
            except OSError: return
other = http.server.ThreadingHTTPServer(("127.0.0.2", 0), H)
first = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=other.serve_forever, daemon=True).start()
print(first.server_address[1], flush=True)
first.serve_forever()
"#
        );
        let mut srv = std::process::Command::new("python3")
            .args(["-c", &server])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(srv.stdout.take().unwrap()),
            &mut port,
        )
        .unwrap();
        let port = port.trim();
        let job = serde_json::json!({"items": [
            {"url": format!("http://127.0.0.1:{port}/redirect"), "dest": t.path().join("a"), "auth": "dTpw", "size": 3},
            {"url": format!("http://127.0.0.1:{port}/endless"), "dest": t.path().join("b"), "auth": null, "size": 100000},
        ]});
        let mut dl = std::process::Command::new("python3")
            .args(["-c", DOWNLOAD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        dl.stdin
            .take()
            .unwrap()
            .write_all(job.to_string().as_bytes())
            .unwrap();
        let out = dl.wait_with_output().unwrap();
        let _ = srv.kill();
        let _ = srv.wait();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(std::fs::read(t.path().join("a")).unwrap(), b"abc");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "auth=None\n");
        assert!(
            said.contains("more than the 100000 bytes the lock gives"),
            "{said}"
        );
        assert!(std::fs::metadata(t.path().join("b")).unwrap().len() <= 100000);
    }
}
