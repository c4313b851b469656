//! A lock of several targets (`wheelhouse --target … --target …`): the one for this
//! interpreter is installed.

use std::collections::HashSet;

use anyhow::Result;
use wheelship::doc::{Target, TargetLock, Wheelhouse};
use wheelship::python::interp::Interp;
use wheelship::python::names::WheelFilename;
use wheelship::Hint;

/// With `locks`, the first whose Python version is this interpreter's and whose every wheel
/// it can install becomes the lock (`wheels` and `target`); without, the lock as it is.
pub fn lock_for(mut wh: Wheelhouse, interp: &Interp) -> Result<Wheelhouse> {
    let Some(locks) = wh.locks.take() else {
        // One lock: it was resolved for one Python (markers, wheels): another minor version
        // is refused, naming both, as a document of several locks with none for it is.
        if let Some(t) = wh.target.as_ref().filter(|t| !version_fits(t, interp)) {
            let one = TargetLock {
                target: t.clone(),
                wheels: Vec::new(),
                extra: Default::default(),
            };
            return Err(Hint::new(
                format!(
                    "the document's lock is for {}, not for this interpreter (Python {}, `{}`)",
                    name(&one),
                    interp.version,
                    interp.base_executable
                ),
                "release it for this interpreter too: `scripts/release --target native --target py<X.Y>` on the build box (or `wheelhouse --target …`)",
            )
            .into());
        }
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

/// Whether the lock's Python (when it says) is this interpreter's minor version.
fn version_fits(t: &Target, interp: &Interp) -> bool {
    let xy = interp.xy();
    let version = t.python_version.as_deref().or(t.python.as_deref());
    version.is_none_or(|v| v == xy || v.starts_with(&format!("{xy}.")))
}

fn fits(l: &TargetLock, interp: &Interp) -> bool {
    let supported: HashSet<&str> = interp.tags.iter().map(String::as_str).collect();
    version_fits(&l.target, interp)
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
