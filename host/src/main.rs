fn main() -> std::process::ExitCode {
    plugboard_host::runtime::cli::main()
}
