use std::process::ExitCode;

fn main() -> ExitCode {
    match wheelship::cli::parse_args::<switch::Args>("switch") {
        Ok(args) => wheelship::cli::finish("switch", switch::run(args)),
        Err(code) => code,
    }
}
