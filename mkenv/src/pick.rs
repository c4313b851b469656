//! A lock of several targets (`wheelhouse --target … --target …`): the one for this
//! interpreter is installed.

use std::collections::HashSet;

use anyhow::Result;
use wheelship::doc::{TargetLock, Wheelhouse};
use wheelship::python::interp::Interp;
use wheelship::python::names::WheelFilename;
use wheelship::Hint;

/// With `locks`, the first whose Python version is this interpreter's and whose every wheel
/// it can install becomes the lock (`wheels` and `target`); without, the lock as it is.
pub fn lock_for(mut wh: Wheelhouse, interp: &Interp) -> Result<Wheelhouse> {
    let Some(locks) = wh.locks.take() else {
        return Ok(wh);
    };
    match locks.iter().find(|l| fits(l, interp)) {
        Some(l) => {
            wh.wheels = l.wheels.clone();
            wh.target = Some(l.target.clone());
            Ok(wh)
        }
        None => {
            let names: Vec<String> = locks.iter().map(name).collect();
            Err(Hint::new(
                format!(
                    "none of the {} locks of the document is for this interpreter (Python {}, {}, {} {}): {}",
                    locks.len(),
                    interp.version,
                    interp.platform,
                    interp.libc.0,
                    interp.libc.1,
                    names.join(", ")
                ),
                "add its target to the release: `wheelhouse --target py<X.Y>-<platform tag>` (or `--target native` on a box like it)",
            )
            .into())
        }
    }
}

fn fits(l: &TargetLock, interp: &Interp) -> bool {
    let xy = interp.xy();
    let version = l
        .target
        .python_version
        .as_deref()
        .or(l.target.python.as_deref());
    let version_ok = version.is_none_or(|v| v == xy || v.starts_with(&format!("{xy}.")));
    let supported: HashSet<&str> = interp.tags.iter().map(String::as_str).collect();
    version_ok
        && l.wheels.iter().all(|w| {
            WheelFilename::parse(&w.file)
                .is_ok_and(|f| f.tags().iter().any(|t| supported.contains(t.as_str())))
        })
}

fn name(l: &TargetLock) -> String {
    match (&l.target.spec, &l.target.python) {
        (Some(s), Some(p)) if s == "native" => format!("native (Python {p})"),
        (Some(s), _) => s.clone(),
        (None, _) => format!(
            "Python {}",
            l.target.python_version.as_deref().unwrap_or("?")
        ),
    }
}
