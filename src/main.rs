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
/// of megabytes at once (a plan of 100,000 rooms: half a gigabyte), for which the kernel
/// zeroing fresh pages was a fifth of the CPU. For those:
/// - mimalloc commits its arenas up front, which lets the kernel back them with huge pages,
///   and keeps freed memory for reuse rather than giving it back to be faulted in again;
/// - glibc's malloc, which SQLite allocates through (the state's JSON pages, about half a
///   MiB each), takes blocks of up to 32 MiB (its most) from its heap and keeps its heap,
///   rather than mapping each block afresh and unmapping it when freed.
///
/// Together: that plan's wall time a fifth less, its system time a third, and reading the
/// live state alone half. These settings win over `MIMALLOC_*` and `MALLOC_*` variables in
/// the environment.
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
    if length == command_line.len() {
        // Longer than the buffer: `serve` could be past its end. The defaults stay.
        return;
    }
    // Any word `serve` keeps the defaults: `perch --log debug serve` is served, and a
    // command given a path named `serve` only forgoes the speed.
    let serving = command_line[..length]
        .split(|&byte| byte == 0)
        .skip(1)
        .any(|word| word == b"serve");
    if serving {
        return;
    }
    // SAFETY: mi_option_set only stores a value, which mimalloc reads when it next reserves
    // an arena or frees a page.
    unsafe {
        // 2: up front where the system overcommits (Linux's default), as mimalloc's own
        // default has it.
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 2);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
    #[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
    {
        const MIB: libc::c_int = 1024 * 1024;
        // SAFETY: mallopt only sets glibc's thresholds. It returns 1 when it took the value:
        // the mmap threshold is refused above 32 MiB on 64-bit systems.
        let taken = unsafe {
            [
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * MIB),
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * MIB),
                libc::mallopt(libc::M_TOP_PAD, 64 * MIB),
            ]
        };
        debug_assert_eq!(taken, [1, 1, 1], "glibc refused a malloc setting");
    }
}
