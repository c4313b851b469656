//! Python packaging names.

/// PEP 503 normalised name: runs of `-`, `_` and `.` become one `-`, and the result is
/// lowercased. `Django_REST.framework` gives `django-rest-framework`.
pub fn canonicalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// A file name that is a lock file: `pylock.toml` or `pylock.<name>.toml`.
pub fn is_pylock_name(path: &std::path::Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name == "pylock.toml"
        || name
            .strip_prefix("pylock.")
            .and_then(|r| r.strip_suffix(".toml"))
            .is_some_and(|mid| !mid.is_empty() && !mid.contains('.'))
}

/// The rule of PEP 751's file names, for messages.
pub const PYLOCK_NAMES: &str = "`pylock.toml` or `pylock.<name>.toml` (a name without dots; PEP 751, https://packaging.python.org/en/latest/specifications/pylock-toml/)";

/// A valid project name (PEP 508): ASCII letters and digits, with `.`, `_` and `-` only
/// between them.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_examples() {
        assert_eq!(
            canonicalize_name("Django_REST.framework"),
            "django-rest-framework"
        );
        assert_eq!(canonicalize_name("Foo__Bar--baz..qux"), "foo-bar-baz-qux");
        assert_eq!(canonicalize_name("foo"), "foo");
    }

    #[test]
    fn valid_names() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("zope.interface"));
        assert!(!is_valid_name("café"));
        assert!(!is_valid_name("-foo"));
        assert!(!is_valid_name("foo_"));
        assert!(!is_valid_name(""));
    }
}

/// A wheel file name (the binary distribution format spec):
/// `{name}-{version}(-{build})?-{python}-{abi}-{platform}.whl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelFilename {
    /// As written in the file name (escaped: `-` never appears in it).
    pub name: String,
    pub version: String,
    pub build: Option<String>,
    pub python: Vec<String>,
    pub abi: Vec<String>,
    pub platform: Vec<String>,
}

impl WheelFilename {
    pub fn parse(file: &str) -> Result<Self, String> {
        let stem = file.strip_suffix(".whl").ok_or_else(|| {
            format!("`{file}` is not a wheel file name: it does not end in `.whl`")
        })?;
        let parts: Vec<&str> = stem.split('-').collect();
        let bad = |why: &str| format!("`{file}` is not a valid wheel file name: {why}");
        let (name, version, build, tags) = match parts.as_slice() {
            [n, v, py, abi, plat] => (*n, *v, None, [*py, *abi, *plat]),
            [n, v, b, py, abi, plat] => {
                if !b.starts_with(|c: char| c.is_ascii_digit()) {
                    return Err(bad("the build tag must start with a digit"));
                }
                (*n, *v, Some(b.to_string()), [*py, *abi, *plat])
            }
            _ => return Err(bad("expected 5 or 6 `-`-separated parts")),
        };
        if !is_valid_name(name) {
            return Err(bad("invalid project name"));
        }
        if version.is_empty() || tags.iter().any(|t| t.is_empty()) {
            return Err(bad("empty version or tag"));
        }
        let split = |t: &str| t.split('.').map(str::to_string).collect::<Vec<_>>();
        Ok(WheelFilename {
            name: name.to_string(),
            version: version.to_string(),
            build,
            python: split(tags[0]),
            abi: split(tags[1]),
            platform: split(tags[2]),
        })
    }

    /// Every `python-abi-platform` tag the compressed tag sets expand to.
    pub fn tags(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.python {
            for a in &self.abi {
                for pl in &self.platform {
                    out.push(format!("{p}-{a}-{pl}"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod wheel_tests {
    use super::*;

    #[test]
    fn parses_and_expands() {
        let w = WheelFilename::parse("Foo_Bar-1.2.3-1abc-py2.py3-none-any.whl").unwrap();
        assert_eq!(canonicalize_name(&w.name), "foo-bar");
        assert_eq!(w.version, "1.2.3");
        assert_eq!(w.build.as_deref(), Some("1abc"));
        assert_eq!(w.tags(), ["py2-none-any", "py3-none-any"]);
    }

    #[test]
    fn refuses_bad_names() {
        assert!(WheelFilename::parse("foo-1.0.tar.gz").is_err());
        assert!(WheelFilename::parse("foo-1.0-py3-none.whl").is_err());
        assert!(WheelFilename::parse("foo-1.0-x-py3-none-any.whl").is_err());
    }
}
