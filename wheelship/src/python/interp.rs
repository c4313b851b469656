//! The target interpreter (mkenv builds for it, wheelhouse locks for it): one probe (cached by
//! executable path and mtime), its marker environment, and the ordered list of wheel tags it
//! supports (PEP 425, PEP 600), generated as `packaging.tags.sys_tags()` does.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

/// Python that sets `markers` to the interpreter's PEP 508 marker environment
/// (https://peps.python.org/pep-0508/#environment-markers); it needs `os`, `platform`, `sys`.
#[macro_export]
macro_rules! markers_py {
    () => {
        r#"iv = sys.implementation.version
impl_version = "%d.%d.%d" % iv[:3] + ("" if iv.releaselevel == "final" else iv.releaselevel[0] + str(iv.serial))
markers = {
  "implementation_name": sys.implementation.name, "implementation_version": impl_version,
  "os_name": os.name, "platform_machine": platform.machine(),
  "platform_python_implementation": platform.python_implementation(),
  "platform_release": platform.release(), "platform_system": platform.system(),
  "platform_version": platform.version(), "python_full_version": platform.python_version(),
  "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}
"#
    };
}

const PROBE: &str = concat!(
    r#"import json, os, platform, re, struct, subprocess, sys, sysconfig
def musl_version(exe):
    # As packaging's _musllinux: the ELF interpreter of the executable, if it is musl's
    # loader, prints "musl libc (arch)" and "Version X.Y.Z" on stderr.
    try:
        with open(exe, "rb") as f:
            ident = f.read(16)
            if ident[:4] != b"\x7fELF":
                return None
            bits, end = (64 if ident[4] == 2 else 32), ("<" if ident[5] == 1 else ">")
            if bits == 64:
                f.seek(32); phoff, = struct.unpack(end + "Q", f.read(8))
                f.seek(54); phentsize, phnum = struct.unpack(end + "HH", f.read(4))
            else:
                f.seek(28); phoff, = struct.unpack(end + "I", f.read(4))
                f.seek(42); phentsize, phnum = struct.unpack(end + "HH", f.read(4))
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                if bits == 64:
                    ptype, _, offset, _, _, filesz = struct.unpack(end + "IIQQQQ", f.read(40))
                else:
                    ptype, offset, _, _, filesz = struct.unpack(end + "IIIII", f.read(20))
                if ptype == 3:
                    f.seek(offset)
                    ld = f.read(filesz).rstrip(b"\0").decode()
                    break
            else:
                return None
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    if "musl" not in ld:
        return None
    err = subprocess.run([ld], stderr=subprocess.PIPE, text=True).stderr
    lines = [l.strip() for l in err.splitlines() if l.strip()]
    m = re.match(r"Version (\d+)\.(\d+)", lines[1]) if len(lines) > 1 and lines[0][:4] == "musl" else None
    return "%s.%s" % m.groups() if m else None
scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "posix_prefix"
base = {"base": "/@", "platbase": "/@", "installed_base": "/@", "installed_platbase": "/@"}
paths = {k: os.path.relpath(v, "/@") for k, v in sysconfig.get_paths(scheme=scheme, vars=base).items()}
libc = platform.libc_ver()
musl = musl_version(sys.executable)
"#,
    markers_py!(),
    r#"if musl:
    libc = ("musl", musl)
print(json.dumps({
  "implementation": sys.implementation.name,
  "version": platform.python_version(),
  "version_info": list(sys.version_info[:2]),
  "cache_tag": sys.implementation.cache_tag,
  "abiflags": getattr(sys, "abiflags", ""),
  "soabi": sysconfig.get_config_var("SOABI") or "",
  "platform": sysconfig.get_platform(),
  "machine": platform.machine(),
  "libc": [libc[0], libc[1]],
  "base_executable": os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
  "pointer_bits": 64 if sys.maxsize > 2**32 else 32,
  "gil_disabled": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
  "paths": paths,
  "markers": markers,
}))"#
);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interp {
    pub implementation: String,
    pub version: String,
    pub version_info: (u32, u32),
    pub cache_tag: String,
    pub abiflags: String,
    pub soabi: String,
    pub platform: String,
    pub machine: String,
    pub libc: (String, String),
    pub base_executable: String,
    pub pointer_bits: u32,
    pub gil_disabled: bool,
    pub paths: BTreeMap<String, String>,
    /// The PEP 508 marker environment (https://peps.python.org/pep-0508/#environment-markers).
    #[serde(default)]
    pub markers: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Interp {
    pub fn probe(python: &str) -> Result<Interp> {
        let v = crate::python::probe::probe(python, PROBE)?;
        let mut i: Interp = serde_json::from_value(v)
            .map_err(|e| anyhow!("unexpected probe of `{python}`: {e}"))?;
        i.tags = tags(&i);
        Ok(i)
    }

    /// `python3.11`
    pub fn xy(&self) -> String {
        format!("{}.{}", self.version_info.0, self.version_info.1)
    }

    /// `cp311`
    pub fn tag(&self) -> String {
        format!(
            "{}{}{}",
            short(&self.implementation),
            self.version_info.0,
            self.version_info.1
        )
    }

    pub fn purelib(&self) -> &str {
        self.paths
            .get("purelib")
            .map_or("lib/python3/site-packages", |s| s.as_str())
    }
}

fn short(implementation: &str) -> &str {
    match implementation {
        "cpython" => "cp",
        "pypy" => "pp",
        "ironpython" => "ip",
        "jython" => "jy",
        other => other,
    }
}

/// The platform tags, best first, as packaging 26 orders them: `linux_arch` (a wheel built on
/// this machine), then `manylinux_2_Y_arch` from the glibc version down with the legacy
/// aliases, or on musl `musllinux_X_Y_arch` from the musl version down (PEP 600, PEP 656).
fn platforms(i: &Interp) -> Vec<String> {
    let plat = i.platform.replace(['-', '.', ' '], "_");
    let Some(arch) = plat.strip_prefix("linux_") else {
        return vec![plat];
    };
    // A 32-bit interpreter on a 64-bit kernel.
    let arch = match (arch, i.pointer_bits) {
        ("x86_64", 32) => "i686",
        ("aarch64", 32) => "armv8l",
        (a, _) => a,
    };
    // armv8l runs armv7l code too.
    let archs: &[&str] = if arch == "armv8l" {
        &["armv8l", "armv7l"]
    } else {
        std::slice::from_ref(&arch)
    };
    let mut out: Vec<String> = archs.iter().map(|a| format!("linux_{a}")).collect();
    let mut version = i.libc.1.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    match i.libc.0.as_str() {
        "glibc" if major == 2 => {
            let lowest = if archs.iter().any(|a| matches!(*a, "x86_64" | "i686")) {
                5
            } else {
                17
            };
            for arch in archs {
                for m in (lowest..=minor).rev() {
                    out.push(format!("manylinux_2_{m}_{arch}"));
                    let legacy = match m {
                        17 if matches!(
                            *arch,
                            "x86_64"
                                | "i686"
                                | "aarch64"
                                | "armv7l"
                                | "ppc64"
                                | "ppc64le"
                                | "s390x"
                        ) =>
                        {
                            Some("manylinux2014")
                        }
                        12 if matches!(*arch, "x86_64" | "i686") => Some("manylinux2010"),
                        5 if matches!(*arch, "x86_64" | "i686") => Some("manylinux1"),
                        _ => None,
                    };
                    if let Some(l) = legacy {
                        out.push(format!("{l}_{arch}"));
                    }
                }
            }
        }
        "musl" => {
            for arch in archs {
                for m in (0..=minor).rev() {
                    out.push(format!("musllinux_{major}_{m}_{arch}"));
                }
            }
        }
        _ => {}
    }
    out
}

/// `packaging.tags.sys_tags()`: the interpreter's own tags, then the compatible ones.
pub fn tags(i: &Interp) -> Vec<String> {
    let plats = platforms(i);
    let (major, minor) = i.version_info;
    let mut out = Vec::new();
    if i.implementation == "cpython" {
        let interp = format!("cp{major}{minor}");
        let threading = if i.gil_disabled { "t" } else { "" };
        let debug = if i.abiflags.contains('d') { "d" } else { "" };
        let abi = format!("cp{major}{minor}{threading}{debug}");
        for p in &plats {
            out.push(format!("{interp}-{abi}-{p}"));
        }
        let abi3 = major == 3 && minor >= 2 && !i.gil_disabled;
        if abi3 {
            for p in &plats {
                out.push(format!("{interp}-abi3-{p}"));
            }
        }
        for p in &plats {
            out.push(format!("{interp}-none-{p}"));
        }
        if abi3 {
            for m in (2..minor).rev() {
                for p in &plats {
                    out.push(format!("cp{major}{m}-abi3-{p}"));
                }
            }
        }
    } else {
        let interp = format!("{}{major}{minor}", short(&i.implementation));
        let abi = i.soabi.replace(['-', '.'], "_");
        for a in [abi.as_str(), "none"].into_iter().filter(|a| !a.is_empty()) {
            for p in &plats {
                out.push(format!("{interp}-{a}-{p}"));
            }
        }
    }
    // compatible_tags
    let mut pys = vec![format!("py{major}{minor}"), format!("py{major}")];
    for m in (0..minor).rev() {
        pys.push(format!("py{major}{m}"));
    }
    for py in &pys {
        for p in &plats {
            out.push(format!("{py}-none-{p}"));
        }
    }
    out.push(format!("{}-none-any", i.tag()));
    for py in &pys {
        out.push(format!("{py}-none-any"));
    }
    out
}
