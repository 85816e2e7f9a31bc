use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: less CPU per request, and freed memory goes back to the
/// system after a burst (see the README's load benchmark).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match partner_gateway::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("partner-gateway: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
