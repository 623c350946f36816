//! The `sdt` binary; see [`sdt::cli`] for the commands and exit statuses.

fn main() -> std::process::ExitCode {
    sdt::cli::main()
}
