//! Python as the tools meet it: packaging names and wheel file names ([`names`]), the
//! interpreter probe ([`probe`]) and what it says of a target: tags and markers ([`interp`]).

pub mod env_interp;
pub mod interp;
pub mod names;
pub mod probe;

/// Runs `f`, a parse of an outsider's text by pep508_rs, where a panic is an answer (`None`)
/// and prints nothing: pep508_rs 0.9.2 panics on some inputs (found by fuzzing hashreq).
pub fn quiet_catch<T>(f: impl FnOnce() -> T) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    std::panic::set_hook(hook);
    r
}
