//! Python as the tools meet it: packaging names and wheel file names ([`names`]), the
//! interpreter probe ([`probe`]) and what it says of a target: tags and markers ([`interp`]).

pub mod interp;
pub mod names;
pub mod probe;
