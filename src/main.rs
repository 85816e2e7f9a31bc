use std::process::ExitCode;

/// mimalloc instead of glibc's malloc with `--features mimalloc` (off by default: see the
/// README's load benchmark for what it did to memory).
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

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc"))))]
fn tune_allocator() {}
