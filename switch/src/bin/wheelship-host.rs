fn main() -> std::process::ExitCode {
    switch::host::main()
}
