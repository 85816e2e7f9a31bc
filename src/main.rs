use std::process::ExitCode;

fn main() -> ExitCode {
    match partner_gateway::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("partner-gateway: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
