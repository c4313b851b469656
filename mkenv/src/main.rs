use std::process::ExitCode;

fn main() -> ExitCode {
    match wheelship::cli::parse_args::<mkenv::Args>("mkenv") {
        Ok(args) => wheelship::cli::finish("mkenv", mkenv::run(args)),
        Err(code) => code,
    }
}
