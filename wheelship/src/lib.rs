//! What two or more wheelship tools need, and only that, by concern:
//!
//! - [`doc`]: the pipeline document and its sections, read from stdin and written to stdout;
//! - [`cli`]: the error-to-exit path, stdout, messages and progress;
//! - [`fs`]: the file system: paths resolved beneath a directory handle, atomic writes, staged
//!   directories, locks, I/O errors that name their path, directories we own, temp names;
//! - [`python`]: Python packaging names, the interpreter probe and what it says of a target;
//! - [`host`]: a deploy root on a host: its layout, its history, its trust policy;
//! - [`text`]: values from outside held to the shape of where they go;
//! - [`hash`], [`time`], [`work`] (all cores), [`failpoint`] (crash tests).

pub mod cli;
pub mod doc;
pub mod failpoint;
pub mod fs;
pub mod hash;
pub mod host;
pub mod python;
pub mod text;
pub mod time;
pub mod work;

pub use cli::{Hint, UsageError};
pub use doc::Document;
