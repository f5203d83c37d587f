//! The `vigil` command line; see [`vigil::cli`].

fn main() -> std::process::ExitCode {
    vigil::cli::main()
}
