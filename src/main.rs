use std::process::ExitCode;

/// mimalloc instead of glibc's malloc with `--features mimalloc` (off by default: see the
/// README's load benchmark for what it did to memory).
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
