//! What two or more wheelship tools need, and only that: the pipeline document and its
//! stdin/stdout handling, the error-to-exit path, and Python packaging primitives.

pub mod beneath;
pub mod cli;
pub mod doc;
pub mod failpoint;
pub mod fsx;
pub mod hash;
pub mod history;
pub mod interp;
pub mod io;
pub mod lock;
pub mod names;
pub mod progress;
pub mod python;
pub mod root;
pub mod staged;
pub mod time;
pub mod trust;
pub mod work;

pub use cli::{Hint, UsageError};
pub use doc::Document;
