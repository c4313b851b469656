//! What a run is asked to lock: the targets (--target, --targets-from, pip's cross options),
//! who resolves each (uv or pip), and what the lock says of each.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use wheelship::doc::Target;
use wheelship::fs::io::At;
use wheelship::python::interp::Interp;
use wheelship::UsageError;

use crate::target::{Named, PipCross, Spec};
use crate::{resolve, uv, Resolver, Source};

/// One target and who resolves it.
pub struct Job {
    pub spec: Spec,
    pub uv: bool,
}

/// The targets asked for: --target and --targets-from, pip's cross options, or `native`.
pub fn targets(
    given: &[String],
    from: Option<&Path>,
    cross: PipCross,
    python: &str,
) -> Result<Vec<Spec>> {
    let mut names = given.to_vec();
    if let Some(f) = from {
        let text = fs::read_to_string(f).about("--targets-from", f)?;
        names.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    if !cross.is_empty() {
        if !names.is_empty() {
            return Err(UsageError(
                "--target and pip's cross-target options (--platform, --python-version, --implementation, --abi) do not go together: give the target as py<X.Y>-<platform tag>".into(),
            )
            .into());
        }
        return Ok(vec![Spec::PipCross(cross)]);
    }
    if names.is_empty() {
        return Ok(vec![Spec::Native]);
    }
    let mut specs: Vec<Spec> = Vec::new();
    for n in &names {
        let s = if n == "native" {
            Spec::Native
        } else if !n.contains('-') && n.starts_with("py") {
            // `py3.12`: that Python on this host's platform (the --python interpreter's), the
            // next interpreter a distribution upgrade brings. Its version is checked as given.
            Named::parse(&format!("{n}-manylinux_2_17_x86_64"))
                .map_err(|e| UsageError(e.replace("-manylinux_2_17_x86_64", "")))?;
            let named = format!("{n}-{}", platform_here(python)?);
            Spec::Named(Named::parse(&named).map_err(UsageError)?)
        } else {
            Spec::Named(Named::parse(n).map_err(UsageError)?)
        };
        if specs.iter().any(|t| t.name() == s.name()) {
            return Err(UsageError(format!("--target `{n}` is given twice")).into());
        }
        specs.push(s);
    }
    Ok(specs)
}

/// The platform tag of the `python` interpreter's host: `manylinux_2_36_x86_64`.
fn platform_here(python: &str) -> Result<String> {
    let i = wheelship::python::interp::Interp::probe(python)?;
    let (libc, version) = (&i.libc.0, &i.libc.1);
    let minor = version.split('.').nth(1).unwrap_or("0");
    match libc.as_str() {
        "glibc" => Ok(format!("manylinux_2_{minor}_{}", i.machine)),
        "musl" => Ok(format!("musllinux_1_{minor}_{}", i.machine)),
        _ => Err(UsageError(format!(
            "`{python}` runs on neither glibc nor musl: name the target's platform (py<X.Y>-<platform tag>)"
        ))
        .into()),
    }
}

impl Spec {
    /// `native`, the --target as given, or pip's options in words.
    pub fn name(&self) -> String {
        match self {
            Spec::Native => "native".into(),
            Spec::Named(n) => n.spec.clone(),
            Spec::PipCross(x) => x.describe(),
        }
    }
}

/// Who resolves each target: uv when it is there and can say both the request and the target
/// (or must, with --resolver uv), else pip.
pub fn jobs(
    specs: &[Spec],
    resolver: Resolver,
    have_uv: bool,
    source: &Source,
) -> Result<Vec<Job>> {
    let not_for_uv = source.not_for_uv();
    let mut jobs = Vec::new();
    for spec in specs {
        let target_why = match spec {
            Spec::Native => None,
            Spec::Named(n) if n.uv_platform().is_none() => Some(format!(
                "uv has no --python-platform for `{}` (it knows manylinux_2_17, 2_28 and 2_31 to 2_40 and musllinux_1_2, on x86_64 and aarch64)",
                n.spec
            )),
            Spec::Named(_) => None,
            Spec::PipCross(_) => Some("pip's cross-target options are for pip".into()),
        };
        let why = target_why.or_else(|| not_for_uv.clone());
        let uv = match (resolver, have_uv, &why) {
            (Resolver::Pip, _, _) => false,
            (Resolver::Uv, false, _) => {
                return Err(UsageError(
                    "--resolver uv: no uv found (give --uv PATH, or put uv on PATH)".into(),
                )
                .into())
            }
            (Resolver::Uv, true, Some(w)) => {
                return Err(UsageError(format!("--resolver uv: {w}")).into())
            }
            (_, true, None) => true,
            _ => false,
        };
        jobs.push(Job {
            spec: spec.clone(),
            uv,
        });
    }
    Ok(jobs)
}

/// What uv is told of a target, and its tags and markers.
/// `exe`: the interpreter's own path (`sys.executable`), not a shim that finds it.
pub fn uv_job(spec: &Spec, exe: &str) -> Result<resolve::Job> {
    Ok(match spec {
        Spec::Native => resolve::Job {
            python: uv::Python::Interpreter(exe.to_string()),
            interp: Interp::probe(exe)?,
            can_build: true,
            describe: "this interpreter".into(),
        },
        Spec::Named(n) => resolve::Job {
            python: uv::Python::Named {
                version: n.python_version(),
                platform: n.uv_platform().expect("checked when the jobs were made"),
            },
            interp: n.interp(),
            can_build: false,
            describe: n.spec.clone(),
        },
        Spec::PipCross(_) => unreachable!("pip's cross options are pip's"),
    })
}

/// The `--python` interpreter's identity, for the lock's `target`.
pub fn native_target(python: &str) -> Result<Target> {
    let probe = concat!(
        "import json, os, platform, sys, sysconfig\n",
        wheelship::markers_py!(),
        r#"print(json.dumps({"native": True, "python": platform.python_version(), "implementation": sys.implementation.name,
  "cache_tag": sys.implementation.cache_tag, "platform": sysconfig.get_platform(), "executable": sys.executable,
  "markers": markers}))"#
    );
    let found = wheelship::python::probe::probe(python, probe)?;
    serde_json::from_value(found).context("the interpreter's probe answered in an unknown shape")
}

pub fn doc_target(spec: &Spec, native: Option<&Target>, by_uv: bool) -> Target {
    let resolver = if by_uv { "uv" } else { "pip" };
    let mut t = match spec {
        Spec::Native => native.cloned().unwrap_or_default(),
        Spec::Named(n) => n.doc_target(resolver),
        Spec::PipCross(x) => x.doc_target(),
    };
    t.resolver = Some(resolver.into());
    if let Spec::Native = spec {
        t.spec = Some("native".into());
    }
    t
}
