//! Failpoints for crash-injection tests: when `WHEELSHIP_FAILPOINT` names a point, the process
//! dies on the spot (SIGABRT: no destructor, no cleanup), as a `kill -9` would leave it.
//! `WHEELSHIP_FAILPOINT=list` prints each point reached on stderr, so tests can enumerate them.

pub fn point(name: &str) {
    if let Some(v) = std::env::var_os("WHEELSHIP_FAILPOINT") {
        if v == "list" {
            eprintln!("failpoint: {name}");
        } else if v == name {
            std::process::abort();
        }
    }
}
