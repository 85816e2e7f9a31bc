use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match partner_gateway::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("partner-gateway: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
