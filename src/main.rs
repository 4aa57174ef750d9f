//! The `gazette` binary: parses the command line and hands over to the library.

/// mimalloc instead of the system allocator: reading posts, rendering and
/// sending allocate many short-lived strings on several threads, where
/// glibc's malloc measured slower (docs/src/internals/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gazette::main()
}
