//! What a lock is for: the `--python` interpreter (`native`), or a target named by its Python
//! and its platform tag (`py3.12-manylinux_2_28_x86_64`) with no interpreter of it here. A named
//! target has binary wheels only (an sdist is built on the build box, for the build box), and
//! its tags and marker environment are generated as packaging would on that host.

use std::collections::BTreeMap;

use anyhow::Result;
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder};
use wheelship::doc::Target;
use wheelship::python::interp::Interp;
use wheelship::UsageError;

/// One target of a fill.
#[derive(Debug, Clone)]
pub enum Spec {
    /// The `--python` interpreter (its probe).
    Native,
    /// A target named on the command line.
    Named(Named),
    /// pip's cross-target options (`--platform`, `--python-version`, …) as given: pip resolves.
    PipCross(PipCross),
}

/// `py3.12[.Z]-<platform tag>`: CPython of that version on a Linux with that tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub spec: String,
    pub major: u32,
    pub minor: u32,
    /// The patch level, when named: markers on `python_full_version` see X.Y.0 otherwise.
    pub patch: Option<u32>,
    pub libc: Libc,
    pub arch: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Libc {
    /// manylinux_2_N (PEP 600): glibc 2.N.
    Glibc(u32),
    /// musllinux_1_N (PEP 656): musl 1.N.
    Musl(u32),
}

/// pip's cross-target options, checked (exit 2 when malformed) but given to pip as they are.
#[derive(Debug, Clone, Default)]
pub struct PipCross {
    pub platforms: Vec<String>,
    pub python_version: Option<String>,
    pub implementation: Option<String>,
    pub abi: Vec<String>,
}

const ARCHES: [&str; 7] = [
    "x86_64", "aarch64", "i686", "armv7l", "ppc64le", "s390x", "riscv64",
];

impl Named {
    /// `py3.12-manylinux_2_28_x86_64`, `py3.11.9-musllinux_1_2_aarch64`,
    /// `cp3.12-manylinux2014_x86_64`.
    pub fn parse(s: &str) -> Result<Named, String> {
        let bad = |why: &str| {
            format!("--target `{s}` is not a target ({why}): give `native` or py<X.Y>-<platform tag>, like py3.12-manylinux_2_28_x86_64 or py3.11-musllinux_1_2_aarch64")
        };
        let (py, plat) = s.split_once('-').ok_or_else(|| bad("no `-`"))?;
        let version = py
            .strip_prefix("py")
            .or_else(|| py.strip_prefix("cp"))
            .ok_or_else(|| bad("it must start with py or cp"))?;
        let nums: Vec<Option<u32>> = version
            .split('.')
            .map(|p| {
                (!p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect();
        let (major, minor, patch) = match nums.as_slice() {
            [Some(3), Some(y)] => (3, *y, None),
            [Some(3), Some(y), Some(z)] => (3, *y, Some(*z)),
            _ => return Err(bad("the Python version must be 3.Y or 3.Y.Z")),
        };
        let (libc, arch) = platform(plat).ok_or_else(|| {
            bad("the platform must be manylinux_2_N_ARCH, manylinux2014_ARCH or musllinux_1_N_ARCH")
        })?;
        Ok(Named {
            spec: s.to_string(),
            major,
            minor,
            patch,
            libc,
            arch,
        })
    }

    pub fn python_version(&self) -> String {
        match self.patch {
            Some(z) => format!("{}.{}.{z}", self.major, self.minor),
            None => format!("{}.{}", self.major, self.minor),
        }
    }

    /// What `uv pip compile --python-platform` calls it, when uv knows it.
    pub fn uv_platform(&self) -> Option<String> {
        let a = self.arch.as_str();
        if !matches!(a, "x86_64" | "aarch64") {
            return None;
        }
        match self.libc {
            Libc::Glibc(17) => Some(format!("{a}-manylinux_2_17")),
            Libc::Glibc(n) if n == 28 || (31..=40).contains(&n) => {
                Some(format!("{a}-manylinux_2_{n}"))
            }
            Libc::Musl(2) => Some(format!("{a}-unknown-linux-musl")),
            _ => None,
        }
    }

    /// The interpreter such a host would have, as far as tags and markers go.
    pub fn interp(&self) -> Interp {
        let full = format!("{}.{}.{}", self.major, self.minor, self.patch.unwrap_or(0));
        let (libc, version) = match self.libc {
            Libc::Glibc(n) => ("glibc", format!("2.{n}")),
            Libc::Musl(n) => ("musl", format!("1.{n}")),
        };
        let bits = if matches!(self.arch.as_str(), "i686" | "armv7l") {
            32
        } else {
            64
        };
        let markers: BTreeMap<String, String> = [
            ("implementation_name", "cpython"),
            ("implementation_version", &full),
            ("os_name", "posix"),
            ("platform_machine", &self.arch),
            ("platform_python_implementation", "CPython"),
            ("platform_release", ""),
            ("platform_system", "Linux"),
            ("platform_version", ""),
            ("python_full_version", &full),
            ("python_version", &format!("{}.{}", self.major, self.minor)),
            ("sys_platform", "linux"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut i = Interp {
            implementation: "cpython".into(),
            version: full,
            version_info: (self.major, self.minor),
            cache_tag: format!("cpython-{}{}", self.major, self.minor),
            abiflags: String::new(),
            soabi: String::new(),
            platform: format!("linux-{}", self.arch),
            machine: self.arch.clone(),
            libc: (libc.into(), version),
            base_executable: String::new(),
            pointer_bits: bits,
            gil_disabled: false,
            paths: BTreeMap::new(),
            markers,
            tags: Vec::new(),
        };
        // Not `linux_<arch>`: a wheel built here is for here.
        i.tags = wheelship::python::interp::tags(&i)
            .into_iter()
            .filter(|t| !t.ends_with(&format!("-linux_{}", self.arch)))
            .collect();
        i
    }

    /// pip's cross-target options for the same target (when uv does not resolve it).
    pub fn pip_cross(&self) -> PipCross {
        let i = self.interp();
        let mut platforms: Vec<String> = Vec::new();
        for t in &i.tags {
            let p = t.rsplit('-').next().unwrap_or_default();
            if p != "any" && !platforms.iter().any(|q| q == p) {
                platforms.push(p.to_string());
            }
        }
        PipCross {
            platforms,
            python_version: Some(format!("{}.{}", self.major, self.minor)),
            implementation: Some("cp".into()),
            abi: vec![format!("cp{}{}", self.major, self.minor)],
        }
    }

    pub fn doc_target(&self, resolver: &str) -> Target {
        let i = self.interp();
        Target {
            native: false,
            spec: Some(self.spec.clone()),
            resolver: Some(resolver.into()),
            python_version: Some(self.python_version()),
            implementation: Some("cp".into()),
            abi: Some(vec![format!("cp{}{}", self.major, self.minor)]),
            platforms: Some(self.pip_cross().platforms),
            only_binary: Some(true),
            cache_tag: Some(i.cache_tag),
            markers: Some(i.markers),
            ..Target::default()
        }
    }
}

/// (libc, arch) of a Linux platform tag.
fn platform(p: &str) -> Option<(Libc, String)> {
    let arch_of = |rest: &str| ARCHES.contains(&rest).then(|| rest.to_string());
    if let Some(arch) = p.strip_prefix("manylinux2014_") {
        return Some((Libc::Glibc(17), arch_of(arch)?));
    }
    let (libc, rest): (fn(u32) -> Libc, &str) = if let Some(r) = p.strip_prefix("manylinux_2_") {
        (Libc::Glibc, r)
    } else if let Some(r) = p.strip_prefix("musllinux_1_") {
        (Libc::Musl, r)
    } else {
        return None;
    };
    let (n, arch) = rest.split_once('_')?;
    if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((libc(n.parse().ok()?), arch_of(arch)?))
}

impl PipCross {
    pub fn is_empty(&self) -> bool {
        self.platforms.is_empty()
            && self.python_version.is_none()
            && self.implementation.is_none()
            && self.abi.is_empty()
    }

    /// pip's options, binary wheels only.
    pub fn args(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .platforms
            .iter()
            .map(|p| format!("--platform={p}"))
            .collect();
        if let Some(pv) = &self.python_version {
            v.push(format!("--python-version={pv}"));
        }
        if let Some(i) = &self.implementation {
            v.push(format!("--implementation={i}"));
        }
        v.extend(self.abi.iter().map(|a| format!("--abi={a}")));
        v.push("--only-binary=:all:".into());
        v
    }

    /// In words, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.python_version {
            parts.push(format!("Python {v}"));
        }
        parts.extend(self.implementation.iter().cloned());
        parts.extend(self.abi.iter().cloned());
        parts.extend(self.platforms.iter().cloned());
        parts.join(", ")
    }

    pub fn doc_target(&self) -> Target {
        Target {
            native: false,
            resolver: Some("pip".into()),
            python_version: self.python_version.clone(),
            implementation: self.implementation.clone(),
            abi: Some(self.abi.clone()),
            platforms: Some(self.platforms.clone()),
            only_binary: Some(true),
            ..Target::default()
        }
    }

    /// The options, refused (exit 2) unless they have the shape of what they name: pip would
    /// answer `--python-version abc` with its usage and `--platform foo_bar` with a resolution
    /// failure.
    pub fn check(&self) -> Result<()> {
        let usage = |m: String| -> anyhow::Error { UsageError(m).into() };
        if let Some(v) = &self.python_version {
            let parts: Vec<&str> = v.split('.').collect();
            let digits =
                |p: &&str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
            if parts.is_empty() || parts.len() > 3 || !parts.iter().all(digits) {
                return Err(usage(format!(
                    "--python-version `{v}` is not a Python version (like 3.12 or 312)"
                )));
            }
        }
        for p in &self.platforms {
            if !is_platform_tag(p) {
                return Err(usage(format!(
                    "--platform `{p}` is not a platform tag (like manylinux_2_17_x86_64, musllinux_1_2_aarch64, linux_x86_64, macosx_11_0_arm64, win_amd64, any)"
                )));
            }
        }
        if let Some(i) = &self.implementation {
            if !matches!(i.as_str(), "cp" | "pp" | "ip" | "jy" | "py" | "gp") {
                return Err(usage(format!(
                    "--implementation `{i}` is not one of cp, pp, gp, ip, jy, py"
                )));
            }
        }
        for a in &self.abi {
            let ok = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(usage(format!(
                    "--abi `{a}` is not an ABI tag (like cp312, abi3, none)"
                )));
            }
        }
        Ok(())
    }
}

/// A platform tag as PEP 425/600/656 and pip spell them.
fn is_platform_tag(p: &str) -> bool {
    const ARCHES: [&str; 12] = [
        "x86_64",
        "i686",
        "aarch64",
        "armv7l",
        "ppc64le",
        "ppc64",
        "s390x",
        "riscv64",
        "loongarch64",
        "armv6l",
        "universal2",
        "arm64",
    ];
    let arch_ok = |rest: &str| ARCHES.contains(&rest);
    let versioned = |rest: &str| {
        // `<major>_<minor>_<arch>`
        let mut it = rest.splitn(3, '_');
        let (Some(a), Some(b), Some(arch)) = (it.next(), it.next(), it.next()) else {
            return false;
        };
        [a, b]
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            && (arch_ok(arch) || matches!(arch, "x86_64" | "intel" | "universal"))
    };
    match p {
        "any" | "win32" | "win_amd64" | "win_arm64" => true,
        _ => {
            if let Some(r) = p
                .strip_prefix("manylinux_")
                .or_else(|| p.strip_prefix("musllinux_"))
                .or_else(|| p.strip_prefix("macosx_"))
            {
                versioned(r)
            } else if let Some(r) = p
                .strip_prefix("manylinux1_")
                .or_else(|| p.strip_prefix("manylinux2010_"))
                .or_else(|| p.strip_prefix("manylinux2014_"))
                .or_else(|| p.strip_prefix("linux_"))
            {
                arch_ok(r)
            } else {
                false
            }
        }
    }
}

/// The PEP 508 marker environment of an interpreter's probe.
pub fn marker_env(i: &Interp) -> Result<MarkerEnvironment> {
    let m = |k: &str| i.markers.get(k).map_or("", String::as_str);
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: m("implementation_name"),
        implementation_version: m("implementation_version"),
        os_name: m("os_name"),
        platform_machine: m("platform_machine"),
        platform_python_implementation: m("platform_python_implementation"),
        platform_release: m("platform_release"),
        platform_system: m("platform_system"),
        platform_version: m("platform_version"),
        python_full_version: m("python_full_version"),
        python_version: m("python_version"),
        sys_platform: m("sys_platform"),
    })
    .map_err(|e| anyhow::anyhow!("the interpreter's marker environment: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = Named::parse("py3.12-manylinux_2_28_x86_64").unwrap();
        assert_eq!((t.major, t.minor, t.patch), (3, 12, None));
        assert_eq!(t.libc, Libc::Glibc(28));
        assert_eq!(t.uv_platform().as_deref(), Some("x86_64-manylinux_2_28"));
        let tags = t.interp().tags;
        assert_eq!(tags[0], "cp312-cp312-manylinux_2_28_x86_64");
        assert!(tags.contains(&"cp312-abi3-manylinux2014_x86_64".to_string()));
        assert!(tags.contains(&"py3-none-any".to_string()));
        assert!(!tags
            .iter()
            .any(|t| t.ends_with("linux_x86_64") && !t.contains("many")));
        let m = Named::parse("cp3.11.9-musllinux_1_2_aarch64").unwrap();
        assert_eq!(m.python_version(), "3.11.9");
        assert_eq!(
            m.uv_platform().as_deref(),
            Some("aarch64-unknown-linux-musl")
        );
        assert_eq!(m.interp().tags[0], "cp311-cp311-musllinux_1_2_aarch64");
        assert_eq!(
            Named::parse("py3.12-manylinux_2_5_x86_64")
                .unwrap()
                .uv_platform(),
            None
        );
        for bad in [
            "py3.12",
            "3.12-manylinux_2_28_x86_64",
            "py2.7-manylinux_2_28_x86_64",
            "py3.x-manylinux_2_28_x86_64",
            "py3.12-manylinux_2_28",
            "py3.12-win_amd64",
            "py3.12-manylinux_2_28_sparc",
        ] {
            assert!(Named::parse(bad).is_err(), "{bad}");
        }
    }
}
