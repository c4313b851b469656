use std::process::ExitCode;

fn main() -> ExitCode {
    match wheelship::cli::parse_args::<hashreq::Args>("hashreq") {
        Ok(args) => wheelship::cli::finish("hashreq", hashreq::run(args)),
        Err(code) => code,
    }
}
