//! `podgrant-sim serve`: run the simulated API server on a loopback port (HTTPS unless `--insecure-http`) and write a kubeconfig.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use podgrant_sim::{BearerToken, FaultPlan, Scenario, ServerLimits, Sim, SimServer};

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
    /// Serve on 127.0.0.1:<port> until interrupted: HTTPS with a CA made at start (written into
    /// the kubeconfig), or plain HTTP with --insecure-http.
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
        /// Serve plain HTTP instead of HTTPS.
        #[arg(long)]
        insecure_http: bool,
        /// Require `Authorization: Bearer TOKEN` on every request (visible in `ps`: prefer
        /// --token-file). Characters: A-Z a-z 0-9 - . _ ~ + / and trailing =.
        #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
        token: Option<String>,
        /// Like --token, read from a file (one trailing newline ignored).
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
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
        insecure_http,
        token,
        token_file,
    } = Cli::parse().cmd;
    let token = match (token, token_file) {
        (Some(t), _) => Some(BearerToken::new(t).context("--token")?),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("reading --token-file {}", p.display()))?;
            let t = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text);
            Some(BearerToken::new(t).with_context(|| format!("--token-file {}", p.display()))?)
        }
        (None, None) => None,
    };
    let scenario = match scenario {
        Some(p) => Some(Scenario::load(&p)?),
        None => None,
    };
    let mut builder = scenario
        .as_ref()
        .map(Scenario::builder)
        .unwrap_or_else(Sim::builder);
    if let Some(t) = token {
        builder = builder.bearer_token(t);
    }
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
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let server = if insecure_http {
        SimServer::start_with(&sim, addr, ServerLimits::default()).await?
    } else {
        SimServer::start_https_with(&sim, addr, ServerLimits::default()).await?
    };
    let kubeconfig = kubeconfig.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("podgrant-sim-{}.kubeconfig", server.addr().port()))
    });
    server.write_kubeconfig(&kubeconfig)?;
    println!("scheme: {}", server.scheme());
    println!("url: {}", server.url());
    println!(
        "auth: {}",
        if sim.bearer_token().is_some() {
            "bearer token (in the kubeconfig)"
        } else {
            "none"
        }
    );
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
