use std::process::ExitCode;

/// mimalloc instead of glibc's malloc (the default feature; `--no-default-features` builds with
/// glibc's): see the README's "Memory after a burst" and load benchmark for both, measured.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    tune_allocator();
    let result = partner_gateway::cli::run();
    partner_gateway::logs::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: a stderr that cannot be written must not turn exit 1 into a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "partner-gateway: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// glibc's malloc gives memory back (README "Memory after a burst"): allocations of 4 MiB and
/// more (large request bodies) get their own mapping, unmapped when freed; a fixed threshold
/// also stops glibc from raising it to the largest block freed so far, which kept every later
/// large body in the heap. Smaller bodies stay in the heaps and their pages are reused from one
/// request to the next, so glibc must not trim a heap's free top on every `free` either (its
/// default, above 128 KiB): a 256 KiB mmap threshold and the default trimming each made every
/// 1 MiB request fault in fresh zeroed pages (+20 % and +7 % CPU per request). What is left
/// in the heaps is trimmed once the gateway is quiet (`partner_gateway::memory`).
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
fn tune_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 4 * 1024 * 1024;
    const TRIM_THRESHOLD: libc::c_int = 64 * 1024 * 1024;
    // SAFETY: mallopt takes two integers and is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
    partner_gateway::memory::set_give_back(|| {
        // SAFETY: malloc_trim takes an integer and locks each arena itself.
        unsafe { libc::malloc_trim(0) };
    });
}

/// mimalloc reads its options from the environment at its first allocation, which comes before
/// `main`: this runs earlier still (an `.init_array` entry, before any thread or allocation of
/// ours). Arenas committed as they are used, not eagerly, are what lets RSS fall back after a
/// burst (`benches/load/run.sh --memory`: 31 MiB against 62 MiB); an operator's own setting
/// of the variable wins.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
#[used]
#[link_section = ".init_array"]
static MIMALLOC_OPTIONS: extern "C" fn() = {
    extern "C" fn set_options() {
        // SAFETY: setenv with two NUL-terminated literals, before any other thread exists; it
        // allocates with libc's malloc, not with the Rust allocator it configures.
        unsafe { libc::setenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr(), c"0".as_ptr(), 0) };
    }
    set_options
};

/// mimalloc frees memory back to the system lazily, when a thread later allocates or frees
/// again: an idle gateway would keep a burst's pages. `mi_collect(true)` at the first quiet
/// second after requests (see `partner_gateway::memory`) purges them.
#[cfg(feature = "mimalloc")]
fn tune_allocator() {
    partner_gateway::memory::set_give_back(|| {
        // SAFETY: mi_collect takes a flag and synchronises with the allocator itself.
        unsafe { libmimalloc_sys::mi_collect(true) };
    });
}

#[cfg(all(
    not(feature = "mimalloc"),
    not(all(target_os = "linux", target_env = "gnu"))
))]
fn tune_allocator() {}
