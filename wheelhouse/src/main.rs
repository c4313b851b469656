use std::process::ExitCode;

fn main() -> ExitCode {
    match wheelship::cli::parse_args::<wheelhouse::Args>("wheelhouse") {
        Ok(args) => wheelship::cli::finish("wheelhouse", wheelhouse::run(args)),
        Err(code) => code,
    }
}
