//! `perimeter`: the one binary. `serve` runs the control plane; the client commands drive its
//! API for people who would rather not hand-write JSON.

mod client;
mod creds_serve;
mod embedded;
mod gateway;
mod logwriter;
mod process;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the control plane's request path is allocation-heavy (row decoding, JSON) on many
/// threads at once, where the system allocator contends; measured with the API benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "perimeter",
    version,
    about = "Egress and ingress perimeter controls for data platforms",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (REST API, store, reconciler).
    Serve(serve::ServeArgs),
    /// Run a gateway (data plane): the egress proxy, enforcing the policy pulled from the
    /// control plane.
    Gateway(Box<gateway::GatewayArgs>),
    #[command(flatten)]
    Client(client::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A gateway on one thread runs a current-thread runtime: the same single thread without
    // the work-stealing scheduler's cross-thread wakeups.
    let mut builder = match &cli.command {
        Command::Gateway(args) if args.worker_threads.is_some_and(|n| n <= 1) => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Command::Gateway(args) = &cli.command
        && let Some(n) = args.worker_threads.filter(|n| *n > 1)
    {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perimeter: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Gateway(args) => gateway::run(*args).await,
            Command::Client(cmd) => client::run(cmd).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("perimeter: {e:#}");
            ExitCode::from(1)
        }
    }
}
