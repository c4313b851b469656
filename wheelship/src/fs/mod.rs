//! The file system as every tool uses it: paths resolved beneath a directory handle
//! ([`beneath`]), atomic and direct writes ([`fsx`]), directories made under a temp name and
//! renamed into place ([`staged`]), locks ([`lock`]), I/O errors that name their path ([`io`]),
//! directories wheelship owns ([`owned`]), the names of temp siblings ([`temp`]).

pub mod beneath;
pub mod fsx;
pub mod io;
pub mod lock;
pub mod owned;
pub mod staged;
pub mod temp;
