use std::process::ExitCode;

// Loading and comparing large configurations allocates millions of small strings and maps;
// mimalloc does that markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    perch::cli::main()
}
