//! The `tally` binary: everything lives in the library; see `cli.rs`.

// Ingest allocates many short-lived strings per event and sled copies
// nodes on writes; glibc's malloc spent a quarter of the writer's time in
// profiles, mimalloc much less.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tally_collector::cli::main()
}
