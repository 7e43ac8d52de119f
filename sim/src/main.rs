//! `podgrant-sim serve`: run the simulated API server on a loopback port and write a kubeconfig.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use podgrant_sim::{FaultPlan, Scenario, Sim};

#[derive(Parser)]
#[command(
    name = "podgrant-sim",
    about = "A simulated Kubernetes API server with fault injection"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve on 127.0.0.1:<port> until interrupted.
    Serve {
        /// Port (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Fault plan JSON file.
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Seed (overrides the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// Scenario JSON file, run from startup.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Where to write the kubeconfig (default: a file in the temp dir).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Event history window.
        #[arg(long, default_value_t = 10_000)]
        history_window: usize,
        /// Seconds between watch bookmarks.
        #[arg(long, default_value_t = 60)]
        bookmark_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let Cmd::Serve {
        port,
        faults,
        seed,
        scenario,
        kubeconfig,
        history_window,
        bookmark_seconds,
    } = Cli::parse().cmd;
    let scenario = match scenario {
        Some(p) => Some(Scenario::load(&p)?),
        None => None,
    };
    let mut builder = scenario
        .as_ref()
        .map(Scenario::builder)
        .unwrap_or_else(Sim::builder);
    if let Some(s) = seed {
        builder = builder.seed(s);
    }
    if let Some(p) = faults {
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("reading fault plan {}", p.display()))?;
        let plan = FaultPlan::from_json(&text)
            .with_context(|| format!("parsing fault plan {}", p.display()))?;
        builder = builder.faults(plan);
    }
    let sim = builder
        .history_window(history_window)
        .bookmark_interval(std::time::Duration::from_secs(bookmark_seconds))
        .try_build()?;
    let server = sim
        .serve_tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await?;
    let kubeconfig = kubeconfig.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("podgrant-sim-{}.kubeconfig", server.addr().port()))
    });
    sim.write_kubeconfig(&kubeconfig, &server.url())?;
    println!("url: {}", server.url());
    println!("kubeconfig: {}", kubeconfig.display());
    println!(
        "try: kubectl --kubeconfig {} get pods -A -w",
        kubeconfig.display()
    );
    if let Some(sc) = scenario {
        let sim = sim.clone();
        tokio::spawn(async move {
            if let Err(e) = sc.run(&sim).await {
                eprintln!("scenario failed: {e}");
            }
        });
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    drop(server);
    Ok(())
}
