use std::process::ExitCode;

fn main() -> ExitCode {
    match wheelship::cli::parse_args::<bundle::Args>("bundle") {
        Ok(args) => wheelship::cli::finish("bundle", bundle::run(args)),
        Err(code) => code,
    }
}
