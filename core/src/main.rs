//! `podgrant`: the binary. `podgrant run` watches the cluster and keeps MySQL grants in step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use podgrant_core::engine::{Engine, EngineConfig};
use podgrant_core::http::{serve_with, HttpConfig, HttpState};
use podgrant_core::leader::LeaseConfig;
use podgrant_core::store::memory::MemoryStore;
use podgrant_core::store::mysql::MysqlStore;
use podgrant_core::store::GrantStore;
use podgrant_core::tenancy::{load_policy, url_user, Tenancy};
use podgrant_core::validate::Policy;
use podgrant_core::watch::WatchConfig;

#[derive(Parser, Debug)]
#[command(
    name = "podgrant",
    version,
    about = "MySQL grants for the pods behind each Kubernetes Service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the engine: watch Services, Pods and Secrets; keep MySQL accounts in step.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum StoreKind {
    /// MySQL 8 / MariaDB 10.11 at --mysql-url.
    Mysql,
    /// In memory: a dry run that touches no database (for trying podgrant against a cluster).
    Memory,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum TenancyMode {
    /// A namespace may use only the user and database names assigned to it (the default).
    On,
    /// Any namespace may use any name: for single-tenant clusters only.
    Off,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Kubeconfig file; without it, the in-cluster config or $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "PODGRANT_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (with --kubeconfig).
    #[arg(long, env = "PODGRANT_CONTEXT")]
    context: Option<String>,
    /// mysql://user:password@host:port/db (the password is never logged).
    #[arg(long, env = "PODGRANT_MYSQL_URL", hide_env_values = true)]
    mysql_url: Option<String>,
    /// Where grants are kept.
    #[arg(long, env = "PODGRANT_STORE", value_enum, default_value_t = StoreKind::Mysql)]
    store: StoreKind,
    /// Schema of podgrant's ledger table.
    #[arg(long, env = "PODGRANT_LEDGER_SCHEMA", default_value = "podgrant")]
    ledger_schema: String,
    /// Only this namespace (default: all).
    #[arg(long, env = "PODGRANT_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the /metrics, /healthz, /readyz and /debug/pprof endpoint.
    #[arg(long, env = "PODGRANT_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Lease used for leader election.
    #[arg(long, env = "PODGRANT_LEASE_NAME", default_value = "podgrant")]
    lease_name: String,
    /// Namespace of the Lease.
    #[arg(long, env = "PODGRANT_LEASE_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity (default: hostname-pid).
    #[arg(long, env = "PODGRANT_IDENTITY")]
    identity: Option<String>,
    /// Lease duration.
    #[arg(long, env = "PODGRANT_LEASE_DURATION", value_parser = humantime::parse_duration, default_value = "15s")]
    lease_duration: Duration,
    /// Run without leader election (only ever one replica!).
    #[arg(long, env = "PODGRANT_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Wait this long after a change for more before reconciling.
    #[arg(long, env = "PODGRANT_DEBOUNCE", value_parser = humantime::parse_duration, default_value = "250ms")]
    debounce: Duration,
    /// Full reconcile against MySQL at least this often.
    #[arg(long, env = "PODGRANT_RESYNC", value_parser = humantime::parse_duration, default_value = "5m")]
    resync: Duration,
    /// Privileges Services may ask for (repeatable; replaces the default allowlist).
    #[arg(
        long = "allow-privilege",
        env = "PODGRANT_ALLOW_PRIVILEGES",
        value_delimiter = ','
    )]
    allow_privilege: Vec<String>,
    /// Tenancy policy file (JSON): names assigned to namespaces, reserved users and accounts.
    #[arg(long, env = "PODGRANT_POLICY")]
    policy: Option<PathBuf>,
    /// `off` lets any namespace use any user and database name (single-tenant clusters).
    #[arg(long, env = "PODGRANT_TENANCY", value_enum, default_value_t = TenancyMode::On)]
    tenancy: TenancyMode,
    /// Label selector for the pods watch (pods outside it are never granted).
    #[arg(long, env = "PODGRANT_POD_SELECTOR")]
    pod_selector: Option<String>,
    /// A watch shorter than this with no events is a failure (backed off).
    #[arg(long, env = "PODGRANT_WATCH_MIN_HEALTHY", value_parser = humantime::parse_duration, default_value = "1s")]
    watch_min_healthy: Duration,
    /// Log format.
    #[arg(long, env = "PODGRANT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Give up on the cluster or MySQL at startup after this long.
    #[arg(long, env = "PODGRANT_CONNECT_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    connect_timeout: Duration,
    /// HTTP endpoint: a request head must arrive within this long of connecting or of the
    /// previous response (also the keep-alive idle limit).
    #[arg(long, env = "PODGRANT_HTTP_HEADER_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5s")]
    http_header_timeout: Duration,
    /// HTTP endpoint: close a connection with no bytes moving and no request being handled.
    #[arg(long, env = "PODGRANT_HTTP_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    http_idle_timeout: Duration,
    /// HTTP endpoint: concurrent connections; more are refused at once (503). Lowered at start
    /// to half the descriptors left after a reserve of 128 for the engine.
    #[arg(long, env = "PODGRANT_HTTP_MAX_CONNECTIONS", default_value_t = 64)]
    http_max_connections: usize,
    /// How often /readyz's MySQL probe runs (a ping on a pooled connection).
    #[arg(long, env = "PODGRANT_MYSQL_PROBE_INTERVAL", value_parser = humantime::parse_duration, default_value = "2s")]
    mysql_probe_interval: Duration,
}

impl RunArgs {
    fn http_config(&self) -> anyhow::Result<HttpConfig> {
        for (flag, d) in [
            ("--http-header-timeout", self.http_header_timeout),
            ("--http-idle-timeout", self.http_idle_timeout),
            ("--mysql-probe-interval", self.mysql_probe_interval),
        ] {
            if d.is_zero() {
                bail!("{flag} must be longer than 0");
            }
        }
        if self.http_max_connections == 0 {
            bail!("--http-max-connections must be at least 1");
        }
        Ok(HttpConfig {
            header_read_timeout: self.http_header_timeout,
            idle_timeout: self.http_idle_timeout,
            max_connections: self.http_max_connections,
        })
    }
}

/// Probes MySQL every `interval` for `/readyz`; logs only the transitions.
async fn probe_mysql(
    store: Arc<MysqlStore>,
    metrics: Arc<podgrant_core::metrics::Metrics>,
    interval: Duration,
) {
    let mut reachable = true;
    loop {
        let probe = tokio::time::timeout(interval.max(Duration::from_secs(1)), store.ping()).await;
        let now = matches!(probe, Ok(Ok(())));
        metrics.endpoint.set_store_reachable(now);
        if now != reachable {
            match probe {
                Ok(Ok(())) => tracing::info!("MySQL reachable again; /readyz follows"),
                Ok(Err(e)) => tracing::warn!(error = %e, "MySQL unreachable; /readyz answers 503"),
                Err(_) => tracing::warn!(?interval, "MySQL probe timed out; /readyz answers 503"),
            }
            reachable = now;
        }
        tokio::time::sleep(interval).await;
    }
}

/// `mysql://user:secret@host/db` → `mysql://user:***@host/db`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".into();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map(|(u, _)| u).unwrap_or(userinfo);
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

/// The password part of a URL, to scrub it from any error text.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let pw = userinfo.split_once(':')?.1;
    (!pw.is_empty()).then(|| pw.to_string())
}

fn scrub(text: String, secret: Option<&str>) -> String {
    match secret {
        Some(s) => text.replace(s, "***"),
        None => text,
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn kube_client(args: &RunArgs) -> anyhow::Result<kube::Client> {
    let cfg = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            let opts = kube::config::KubeConfigOptions {
                context: args.context.clone(),
                ..Default::default()
            };
            let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .with_context(|| format!("bad kubeconfig {}", path.display()))?;
            cfg
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes config (in-cluster or ~/.kube/config); pass --kubeconfig")?,
    };
    // The API server's Retry-After on 429/503 is kept through kube's error path.
    let client = kube::client::ClientBuilder::try_from(cfg)
        .context("cannot build a Kubernetes client")?
        .with_layer(&podgrant_core::retry_after::RetryAfterLayer)
        .build();
    let v = tokio::time::timeout(args.connect_timeout, client.apiserver_version())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the Kubernetes API server did not answer within {:?}",
                args.connect_timeout
            )
        })?
        .map_err(|e| anyhow::anyhow!("cannot reach the Kubernetes API server: {e}"))?;
    tracing::info!(version = %v.git_version, "connected to the Kubernetes API server");
    Ok(client)
}

fn engine_config(args: &RunArgs) -> anyhow::Result<EngineConfig> {
    let mut policy = Policy::default().with_ledger_schema(&args.ledger_schema);
    if !args.allow_privilege.is_empty() {
        policy = policy
            .with_allowed_privileges(&args.allow_privilege)
            .map_err(|e| anyhow::anyhow!("--allow-privilege: {e}"))?;
    }
    let mut tenancy = match &args.policy {
        Some(path) => load_policy(path)?,
        None => Tenancy::default(),
    };
    tenancy.enforced = args.tenancy == TenancyMode::On;
    if !tenancy.enforced {
        tracing::warn!(
            "--tenancy=off: ANY namespace may claim ANY MySQL user and database name (including another team's); use only on a single-tenant cluster"
        );
        if !tenancy.assignments.is_empty() {
            tracing::warn!("--tenancy=off: the policy's namespace assignments are ignored (its reserved entries still apply)");
        }
    } else {
        tracing::info!(
            policy = args
                .policy
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none (namespace prefix rule)".into()),
            namespaces = tenancy.assignments.len(),
            "tenancy enforced"
        );
    }
    policy = policy.with_tenancy(tenancy);
    // The engine's own login can never be claimed by a Service.
    if let Some(user) = args.mysql_url.as_deref().and_then(url_user) {
        policy = policy.with_reserved_user(&user);
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "podgrant".into());
        format!("{host}-{}", std::process::id())
    });
    let mut lease = LeaseConfig::new(&args.lease_name, &args.lease_namespace, &identity);
    lease.lease_duration = args.lease_duration;
    lease.renew_deadline = args.lease_duration.mul_f64(2.0 / 3.0);
    lease.retry_period = args.lease_duration / 7;
    if args.debounce > Duration::from_secs(600) {
        bail!("--debounce {:?} is longer than 10 minutes", args.debounce);
    }
    Ok(EngineConfig {
        policy,
        namespace: args.namespace.clone(),
        debounce: args.debounce,
        resync_interval: args.resync,
        watch: WatchConfig {
            min_healthy: args.watch_min_healthy,
            pod_label_selector: args.pod_selector.clone(),
            ..WatchConfig::default()
        },
        leader: (!args.no_leader_election).then_some(lease),
        identity,
        seed: std::process::id() as u64,
        store_timeout: Some(Duration::from_secs(120)),
        ..EngineConfig::default()
    })
}

async fn run_engine<S: GrantStore>(
    client: kube::Client,
    store: Arc<S>,
    config: EngineConfig,
    listen: SocketAddr,
    http_config: HttpConfig,
    on_metrics: impl FnOnce(&Arc<podgrant_core::metrics::Metrics>),
) -> anyhow::Result<()> {
    let engine = Engine::new(client, store, config);
    let metrics = engine.metrics();
    on_metrics(&metrics);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, "serving /metrics /healthz /readyz /debug/pprof/profile");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let http = tokio::spawn(serve_with(
        listener,
        HttpState::new(metrics),
        http_config,
        async move {
            let _ = http_stop.wait_for(|s| *s).await;
        },
    ));
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let result = engine.run(shutdown).await;
    let _ = stop_tx.send(true);
    let _ = http.await;
    result.map_err(anyhow::Error::from)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = engine_config(&args)?;
    let http_config = args.http_config()?;
    let mysql_url = match args.store {
        StoreKind::Mysql => Some(args.mysql_url.clone().ok_or_else(|| {
            anyhow::anyhow!("--mysql-url (or PODGRANT_MYSQL_URL) is required with --store mysql")
        })?),
        StoreKind::Memory => None,
    };
    if let Some(url) = &mysql_url {
        tracing::info!(mysql = %redact_url(url), "MySQL");
    }
    match mysql_url {
        None => {
            let client = kube_client(&args).await?;
            tracing::warn!("--store memory: dry run, no database is touched");
            run_engine(
                client,
                Arc::new(MemoryStore::new()),
                config,
                args.listen,
                http_config,
                |_| {},
            )
            .await
        }
        Some(url) => {
            let store = connect_mysql(&url, &args.ledger_schema, args.connect_timeout)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(scrub(format!("{e:#}"), url_password(&url).as_deref()))
                })?;
            let client = kube_client(&args).await?;
            let store = Arc::new(store);
            let probe_store = store.clone();
            let interval = args.mysql_probe_interval;
            run_engine(client, store, config, args.listen, http_config, |m| {
                tokio::spawn(probe_mysql(probe_store, m.clone(), interval));
            })
            .await
        }
    }
}

async fn connect_mysql(url: &str, schema: &str, timeout: Duration) -> anyhow::Result<MysqlStore> {
    match tokio::time::timeout(timeout, MysqlStore::connect(url, schema)).await {
        Ok(Ok(store)) => {
            tracing::info!(server = %store.server(), ledger = %schema, "connected to MySQL");
            Ok(store)
        }
        Ok(Err(e)) => bail!("cannot use MySQL at {}: {e}", redact_url(url)),
        Err(_) => bail!(
            "MySQL at {} did not answer within {timeout:?}",
            redact_url(url)
        ),
    }
}

fn main() {
    let cli = Cli::parse();
    let Command::Run(args) = cli.command;
    init_logs(args.log_format);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podgrant: error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("podgrant: error: {msg}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("mysql://root:s3cr%40t@db:3306/test"),
            "mysql://root:***@db:3306/test"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1:3306/test"),
            "mysql://root@127.0.0.1:3306/test"
        );
        assert_eq!(redact_url("mysql://a:b:c@h"), "mysql://a:***@h");
        assert_eq!(redact_url("garbage"), "<unparsable URL>");
        assert_eq!(url_password("mysql://u:pw@h/db").as_deref(), Some("pw"));
        assert_eq!(url_password("mysql://u@h/db"), None);
        assert_eq!(scrub("x pw y".into(), Some("pw")), "x *** y");
        assert_eq!(
            url_user("mysql://pg_admin:pw@h/db").as_deref(),
            Some("pg_admin")
        );
        assert_eq!(
            url_user("mysql://pg%2Eadm@h:3306").as_deref(),
            Some("pg.adm")
        );
        assert_eq!(url_user("mysql://h/db"), None);
    }
}
