//! The `vlm-server` binary.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vlm_server::{Args, RunningServer};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut server = RunningServer::start(&args).await?;
    server.ready().await?;
    tracing::info!("listening on http://{}", server.addr);
    server.wait().await
}
