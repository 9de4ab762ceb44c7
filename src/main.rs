//! The `jitmux` command: serve, import, manage users, or run a demo ([`jitmux::cli`]).

fn main() -> std::process::ExitCode {
    jitmux::cli::main()
}
