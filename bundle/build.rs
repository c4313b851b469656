// Which tests need what from outside the workspace: see the included file.
include!("../tests/support/prereq_build.rs");
