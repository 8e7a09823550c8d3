//! The `tally` binary: everything lives in the library; see `cli.rs`.

fn main() -> std::process::ExitCode {
    tally_collector::cli::main()
}
