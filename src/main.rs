use std::process::ExitCode;

// Loading and comparing large configurations allocates millions of small strings and maps;
// mimalloc does that markedly faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    perch::cli::main()
}

/// Runs [`commit_memory_up_front_unless_serving`] as the program is loaded, before Rust's
/// runtime makes its first allocation (the main thread's name) and with it mimalloc's first
/// arena: `main` is too late. The loader calls every function in `.init_array` in turn.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = {
    extern "C" fn set_allocator_options() {
        commit_memory_up_front_unless_serving();
    }
    set_allocator_options
};

/// mimalloc's `arena_eager_commit` and `purge_delay` (`mi_option_t` 4 and 15 in both its v2
/// and v3 headers; the bindings name no constants for them).
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
#[cfg(target_os = "linux")]
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The build commits arena memory as it is used and gives freed pages back
/// (`.cargo/config.toml`), which is what `perch serve` needs: an idle live stream then costs
/// 18 KiB rather than 28. Every other command is a short process that may allocate hundreds
/// of megabytes at once (a plan of 100,000 rooms: half a gigabyte). For those, arenas are
/// committed up front, which lets the kernel back them with huge pages, and freed memory is
/// kept for reuse rather than given back and faulted in again: for that plan, a tenth to a
/// fifth less wall time and half the system time (the kernel zeroing fresh pages was a fifth
/// of its CPU).
///
/// Decided before anything is allocated, since the first allocation reserves the first
/// arena (1 GiB) as the option then stands; so the command is read from
/// `/proc/self/cmdline` into a buffer on the stack, not through `std::env::args`.
#[cfg(target_os = "linux")]
fn commit_memory_up_front_unless_serving() {
    use std::io::Read as _;
    let mut command_line = [0_u8; 512];
    let Ok(mut file) = std::fs::File::open("/proc/self/cmdline") else {
        return;
    };
    let Ok(length) = file.read(&mut command_line) else {
        return;
    };
    // Any word `serve` keeps the default: `perch --log debug serve` is served, and a
    // command given a path named `serve` only forgoes the speed.
    let serving = command_line[..length]
        .split(|&byte| byte == 0)
        .skip(1)
        .any(|word| word == b"serve");
    if !serving {
        // SAFETY: mi_option_set only stores a value, which mimalloc reads when it next
        // reserves an arena or frees a page.
        unsafe {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 1);
            libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
        }
    }
}
