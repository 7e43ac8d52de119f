//! A real MySQL/MariaDB for tests, hermetically: `MYSQL_URL`, else the local server, else a self-started `mariadbd`, else Docker, else skipped loudly — or failed, under `PODGRANT_REQUIRE=mysql`.
//!
//! Order (issue 4): `MYSQL_URL` (it must answer `SELECT 1`); else the machine's own server at
//! [`LOCAL_URL`] if it answers; else a `mariadbd`/`mysqld` found on `PATH` (or `/usr/sbin`),
//! started in a temporary datadir listening only on a unix socket (about 3 s here); else a
//! MySQL 8 container when a Docker daemon answers *and* the `mysql:8` image is already present
//! (nothing is ever pulled: this machine's network is loopback only) — with the cargo feature
//! `testcontainers` started by testcontainers' MySQL 8 module (`mysql:8.1`, async runner, port
//! bound on 127.0.0.1 only), without it by the Docker CLI; else [`provide`] returns
//! `None` after printing a loud `SKIPPED` line — a test must then say it was skipped, never pass
//! silently. `PODGRANT_TEST_MYSQL=url|local|spawn|docker|skip` forces one provider.
//!
//! No skip to green (issue 8): when `PODGRANT_REQUIRE` (see [`crate::require`]) contains
//! `mysql`, "no server" is [`MysqlError::Required`], never `None` ([`on_missing`] decides).
//! This file is the one provider for every crate: `core/tests/mysql_store.rs` includes it by
//! path (`core` must not depend on the harness), so it uses only `crate::require` (included
//! alongside) and crates both have.
//!
//! The URL is printed without its password (there is none for the spawned server).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Env var that forces a provider: `url`, `local`, `spawn`, `docker`, `skip`.
pub const FORCE_ENV: &str = "PODGRANT_TEST_MYSQL";

/// How long a spawned server may take to answer.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The container held by a [`TestMysql`] (testcontainers removes it on drop); none without the feature.
#[cfg(feature = "testcontainers")]
type Container =
    testcontainers_modules::testcontainers::ContainerAsync<testcontainers_modules::mysql::Mysql>;
#[cfg(not(feature = "testcontainers"))]
type Container = std::convert::Infallible;

/// Errors while providing a server.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    #[error("{FORCE_ENV}={0:?}: expected url, local, spawn, docker or skip")]
    BadForce(String),
    #[error("{FORCE_ENV}=url but MYSQL_URL is not set")]
    NoUrl,
    #[error("no mariadbd or mysqld on PATH or in /usr/sbin")]
    NoServerBinary,
    #[error("no Docker daemon answers, or the mysql:8 image is not present locally")]
    NoDocker,
    #[error("running {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {detail}")]
    Failed { what: String, detail: String },
    #[error("server did not answer within {deadline:?}: {detail}")]
    NotReady { deadline: Duration, detail: String },
    /// `PODGRANT_REQUIRE` contains `mysql` and no server is available: a failure, not a skip.
    #[error("{0}")]
    Required(String),
    /// `PODGRANT_REQUIRE` is malformed.
    #[error("{0}")]
    Require(String),
}

/// Which provider supplied the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// `MYSQL_URL` from the environment.
    Url,
    /// The machine's own server at [`LOCAL_URL`].
    Local,
    /// A server this process started from this binary, in a temp datadir.
    Spawned { binary: PathBuf },
    /// A MySQL 8 container: started by testcontainers' MySQL 8 module with the cargo feature
    /// `testcontainers`, else by the Docker CLI.
    Docker { container: String },
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Url => write!(f, "MYSQL_URL"),
            Provider::Local => write!(f, "the local server"),
            Provider::Spawned { binary } => write!(f, "spawned {}", binary.display()),
            Provider::Docker { container } if cfg!(feature = "testcontainers") => {
                write!(f, "testcontainers MySQL 8 container {container}")
            }
            Provider::Docker { container } => write!(f, "docker container {container}"),
        }
    }
}

/// A server for one test (or one run). A spawned server or container is stopped on drop.
pub struct TestMysql {
    url: String,
    provider: Provider,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    /// Held for the server's lifetime (testcontainers path only).
    container: Option<Container>,
}

impl std::fmt::Debug for TestMysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestMysql")
            .field("url", &redact(&self.url))
            .field("provider", &self.provider)
            .finish()
    }
}

impl TestMysql {
    /// The connection URL (may carry a password from `MYSQL_URL`: never log it, use [`TestMysql::redacted_url`]).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The URL with any password replaced by `***`.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
    pub fn provider(&self) -> &Provider {
        &self.provider
    }
    /// The datadir of a spawned server.
    pub fn datadir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("data"))
    }
}

impl Drop for TestMysql {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The testcontainers path: dropping the container removes it.
        let _ = self.container.take();
        #[cfg(not(feature = "testcontainers"))]
        if let Provider::Docker { container } = &self.provider {
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Replaces the password of a `mysql://user:pass@host/…` URL with `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// What the provider reads from the environment, as data (so the decision is testable without
/// touching the process's environment).
#[derive(Debug, Clone, Default)]
pub struct ProviderEnv {
    /// [`FORCE_ENV`], if set and non-empty.
    pub force: Option<String>,
    /// `MYSQL_URL`, if set and non-empty.
    pub mysql_url: Option<String>,
    /// `PODGRANT_REQUIRE` (see [`crate::require`]).
    pub required: crate::require::Required,
}

impl ProviderEnv {
    /// Reads [`FORCE_ENV`], `MYSQL_URL` and `PODGRANT_REQUIRE`; a malformed `PODGRANT_REQUIRE` is an error.
    pub fn from_env() -> Result<ProviderEnv, MysqlError> {
        let var = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
        Ok(ProviderEnv {
            force: var(FORCE_ENV),
            mysql_url: var("MYSQL_URL"),
            required: crate::require::Required::from_env()
                .map_err(|e| MysqlError::Require(e.to_string()))?,
        })
    }
}

/// The machine's own server, tried after `MYSQL_URL` and before spawning one.
pub const LOCAL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// How long probing a URL may take.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// Provides a server by the documented order, printing which one was used. `Ok(None)` means
/// skipped (already printed loudly); the caller must report the test as skipped. When
/// `PODGRANT_REQUIRE` contains `mysql`, a missing server is [`MysqlError::Required`] instead.
pub async fn provide(test: &str) -> Result<Option<TestMysql>, MysqlError> {
    provide_with(test, &ProviderEnv::from_env()?).await
}

/// [`provide`] over an explicit environment.
///
/// Order: `MYSQL_URL` (it must answer); else [`LOCAL_URL`] if it answers; else a spawned
/// `mariadbd`; else Docker. `PODGRANT_TEST_MYSQL=url|local|spawn|docker|skip` forces one.
pub async fn provide_with(test: &str, env: &ProviderEnv) -> Result<Option<TestMysql>, MysqlError> {
    let got = match env.force.as_deref() {
        Some("url") => {
            let url = env.mysql_url.clone().ok_or(MysqlError::NoUrl)?;
            from_url(url, Provider::Url).await
        }
        Some("local") => from_url(LOCAL_URL.to_string(), Provider::Local).await,
        Some("spawn") => Ok(spawn().await?),
        Some("docker") => Ok(docker().await?),
        Some("skip") => Err(format!("{FORCE_ENV}=skip")),
        Some(other) => return Err(MysqlError::BadForce(other.to_string())),
        None => match &env.mysql_url {
            Some(url) => from_url(url.clone(), Provider::Url).await,
            None => match from_url(LOCAL_URL.to_string(), Provider::Local).await {
                Ok(m) => Ok(m),
                Err(_) => match spawn().await {
                    Ok(m) => Ok(m),
                    Err(MysqlError::NoServerBinary) => match docker().await {
                        Ok(m) => Ok(m),
                        Err(MysqlError::NoDocker) => Err(
                            "MYSQL_URL unset, nothing answers at 127.0.0.1:3306, no mariadbd/mysqld, no Docker daemon with mysql:8"
                                .to_string(),
                        ),
                        Err(e) => return Err(e),
                    },
                    Err(e) => return Err(e),
                },
            },
        },
    };
    match got {
        Ok(m) => {
            eprintln!(
                "[{test}] MySQL provider: {} ({})",
                m.provider,
                m.redacted_url()
            );
            Ok(Some(m))
        }
        Err(reason) => {
            on_missing(test, &reason, &env.required)?;
            Ok(None)
        }
    }
}

/// The decision for a missing server ([`crate::require::decide`]): a loud skip (printed here), or
/// [`MysqlError::Required`] when `PODGRANT_REQUIRE` contains `mysql`.
pub fn on_missing(
    test: &str,
    reason: &str,
    required: &crate::require::Required,
) -> Result<(), MysqlError> {
    use crate::require::{decide, Component, Verdict};
    match decide(Component::Mysql, reason, required) {
        Verdict::Skip(msg) => {
            eprintln!("\n*** [{test}] SKIPPED: no MySQL: {msg} ***\n");
            Ok(())
        }
        Verdict::Fail(msg) => Err(MysqlError::Required(msg)),
    }
}

/// A server at `url` if it answers `SELECT 1` within [`PROBE_DEADLINE`]; else why not (password redacted).
async fn from_url(url: String, provider: Provider) -> Result<TestMysql, String> {
    use mysql_async::prelude::Queryable;
    let probe = async {
        let opts = mysql_async::Opts::from_url(&url).map_err(|e| e.to_string())?;
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| e.to_string())?;
        conn.query_drop("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.disconnect().await;
        Ok::<(), String>(())
    };
    let answer = match tokio::time::timeout(PROBE_DEADLINE, probe).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {PROBE_DEADLINE:?}")),
    };
    match answer {
        Ok(()) => Ok(TestMysql {
            url,
            provider,
            child: None,
            dir: None,
            container: None,
        }),
        // The driver's message may quote the URL: never let its password through.
        Err(e) => Err(format!(
            "{} ({}) does not answer: {}",
            provider_name(&provider),
            redact(&url),
            scrub(&e, &url)
        )),
    }
}

fn provider_name(p: &Provider) -> &'static str {
    match p {
        Provider::Url => "MYSQL_URL",
        Provider::Local => "the local server",
        _ => "the server",
    }
}

/// Removes the URL's password from `text`, wherever it appears.
fn scrub(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(p, "***"),
        None => text.to_string(),
    }
}

fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/bin"].map(PathBuf::from));
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command, what: &str) -> Result<String, MysqlError> {
    let out = cmd.output().map_err(|source| MysqlError::Spawn {
        what: what.to_string(),
        source,
    })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(MysqlError::Failed {
            what: what.to_string(),
            detail: tail(&text, 20),
        })
    }
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `mariadbd`/`mysqld` in a temp datadir on a unix socket, and waits until it answers.
pub async fn spawn() -> Result<TestMysql, MysqlError> {
    spawn_with_options(&[]).await
}

/// [`spawn`] with extra server options appended to the command line (later options win, so
/// `--skip-networking=0 --port=N` turns TCP on; `--skip-name-resolve=0`, `--general-log`, ...).
/// The URL stays the unix socket's.
pub async fn spawn_with_options(extra: &[String]) -> Result<TestMysql, MysqlError> {
    let binary = find_binary(&["mariadbd", "mysqld"]).ok_or(MysqlError::NoServerBinary)?;
    let version = run(Command::new(&binary).arg("--version"), "server --version")?;
    let mariadb = version.contains("MariaDB");
    let dir = tempfile::Builder::new()
        .prefix("pgh-mysql-")
        .tempdir()
        .map_err(|source| MysqlError::Spawn {
            what: "temp dir".into(),
            source,
        })?;
    let data = dir.path().join("data");
    let socket = dir.path().join("mysql.sock");
    let user = is_root().then_some("--user=root");
    if mariadb {
        let install = find_binary(&["mariadb-install-db", "mysql_install_db"])
            .ok_or(MysqlError::NoServerBinary)?;
        let mut cmd = Command::new(install);
        cmd.arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .arg("--skip-test-db")
            .args(user);
        run(&mut cmd, "mariadb-install-db")?;
    } else {
        let mut cmd = Command::new(&binary);
        cmd.arg("--no-defaults")
            .arg("--initialize-insecure")
            .arg(format!("--datadir={}", data.display()))
            .args(user);
        run(&mut cmd, "mysqld --initialize-insecure")?;
    }
    let log = dir.path().join("error.log");
    let mut cmd = Command::new(&binary);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!(
            "--pid-file={}",
            dir.path().join("mysqld.pid").display()
        ))
        .arg(format!("--log-error={}", log.display()))
        .arg("--skip-networking")
        .args(user)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !mariadb {
        cmd.arg("--mysqlx=OFF");
    }
    let child = cmd.spawn().map_err(|source| MysqlError::Spawn {
        what: binary.display().to_string(),
        source,
    })?;
    let url = format!("mysql://root@localhost/test?socket={}", socket.display());
    let mut m = TestMysql {
        url,
        provider: Provider::Spawned { binary },
        child: Some(child),
        dir: Some(dir),
        container: None,
    };
    wait_ready(&mut m, &log).await?;
    Ok(m)
}

/// Polls until a connection succeeds and `test` exists; fails early if the server exits.
async fn wait_ready(m: &mut TestMysql, log: &Path) -> Result<(), MysqlError> {
    let start = Instant::now();
    // Connect without a database first: `test` may not exist yet.
    let admin_url = m.url.replacen("/test?", "/?", 1);
    let mut last = String::from("never tried");
    while start.elapsed() < READY_DEADLINE {
        if let Some(child) = m.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(MysqlError::Failed {
                    what: format!("server exited ({status})"),
                    detail: tail(&text, 20),
                });
            }
        }
        match try_connect(&admin_url).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    Err(MysqlError::NotReady {
        deadline: READY_DEADLINE,
        detail: format!("{last}\n{}", tail(&text, 10)),
    })
}

async fn try_connect(url: &str) -> Result<(), String> {
    use mysql_async::prelude::Queryable;
    let opts = mysql_async::Opts::from_url(url).map_err(|e| e.to_string())?;
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| e.to_string())?;
    conn.query_drop("CREATE DATABASE IF NOT EXISTS test")
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    Ok(())
}

/// Starts a `mysql:8` container with the Docker CLI (only if the image is already present:
/// nothing is pulled). Unexercised on this machine (no Docker daemon).
#[cfg(not(feature = "testcontainers"))]
pub async fn docker() -> Result<TestMysql, MysqlError> {
    let answers = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !answers(&["info"]) || !answers(&["image", "inspect", "mysql:8"]) {
        return Err(MysqlError::NoDocker);
    }
    let id = run(
        Command::new("docker").args([
            "run",
            "-d",
            "--rm",
            "-p",
            "127.0.0.1::3306",
            "-e",
            "MYSQL_ALLOW_EMPTY_PASSWORD=yes",
            "-e",
            "MYSQL_DATABASE=test",
            "mysql:8",
        ]),
        "docker run mysql:8",
    )?
    .trim()
    .to_string();
    let port_line = run(
        Command::new("docker").args(["port", &id, "3306/tcp"]),
        "docker port",
    )?;
    let port = port_line
        .lines()
        .find_map(|l| l.strip_prefix("127.0.0.1:"))
        .map(|p| p.trim().to_string())
        .ok_or_else(|| MysqlError::Failed {
            what: "docker port".into(),
            detail: port_line.clone(),
        })?;
    let mut m = TestMysql {
        url: format!("mysql://root@127.0.0.1:{port}/test"),
        provider: Provider::Docker { container: id },
        child: None,
        dir: None,
        container: None,
    };
    wait_ready(&mut m, Path::new("/nonexistent")).await?;
    Ok(m)
}

/// Starts testcontainers' MySQL 8 module (`mysql:8.1`) with the async runner, only if a Docker
/// daemon answers and the image is already present (nothing is pulled), its port published on
/// 127.0.0.1 only. The container is held by the returned [`TestMysql`] and removed on drop.
/// Unexercised on this machine (no Docker daemon): there it returns [`MysqlError::NoDocker`].
#[cfg(feature = "testcontainers")]
pub async fn docker() -> Result<TestMysql, MysqlError> {
    use testcontainers_modules::mysql::Mysql;
    use testcontainers_modules::testcontainers::bollard::models::PortBinding;
    use testcontainers_modules::testcontainers::bollard::Docker;
    use testcontainers_modules::testcontainers::core::IntoContainerPort;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::{Image, ImageExt};

    let image = Mysql::default();
    let descriptor = format!("{}:{}", image.name(), image.tag());
    let daemon = Docker::connect_with_defaults().map_err(|_| MysqlError::NoDocker)?;
    if !daemon_has_image(&daemon, &descriptor).await {
        return Err(MysqlError::NoDocker);
    }
    let what = format!("testcontainers {descriptor}");
    let container = image
        .with_startup_timeout(READY_DEADLINE)
        .with_host_config_modifier(|host| {
            // Loopback only: replace testcontainers' publish-all (every interface).
            host.publish_all_ports = Some(false);
            host.port_bindings = Some(
                [(
                    "3306/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_string()),
                        host_port: Some(String::new()),
                    }]),
                )]
                .into(),
            );
        })
        .start()
        .await
        .map_err(|e| MysqlError::Failed {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    let port = container
        .get_host_port_ipv4(3306.tcp())
        .await
        .map_err(|e| MysqlError::Failed {
            what: format!("{what}: mapped port"),
            detail: e.to_string(),
        })?;
    let mut m = TestMysql {
        url: format!("mysql://root@127.0.0.1:{port}/test"),
        provider: Provider::Docker {
            container: container.id().to_string(),
        },
        child: None,
        dir: None,
        container: Some(container),
    };
    wait_ready(&mut m, Path::new("/nonexistent")).await?;
    Ok(m)
}

/// Whether `daemon` answers a ping and already holds `image` (so starting it pulls nothing).
#[cfg(feature = "testcontainers")]
async fn daemon_has_image(
    daemon: &testcontainers_modules::testcontainers::bollard::Docker,
    image: &str,
) -> bool {
    daemon.ping().await.is_ok() && daemon.inspect_image(image).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("mysql://root:s3cret@127.0.0.1:3306/test"),
            "mysql://root:***@127.0.0.1:3306/test"
        );
        assert_eq!(
            redact("mysql://root@localhost/test?socket=/tmp/x"),
            "mysql://root@localhost/test?socket=/tmp/x"
        );
    }

    /// A loopback port nobody listens on (bound, then released).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        port
    }

    fn env(force: Option<&str>, url: Option<String>, required: &str) -> ProviderEnv {
        ProviderEnv {
            force: force.map(str::to_string),
            mysql_url: url,
            required: crate::require::Required::parse(required).expect("parses"),
        }
    }

    #[tokio::test]
    async fn unreachable_server_fails_when_mysql_is_required_and_skips_otherwise() {
        let url = format!("mysql://root:hunter2@127.0.0.1:{}/test", closed_port());
        let required = provide_with(
            "required",
            &env(Some("url"), Some(url.clone()), "mysql,kubectl,go"),
        )
        .await;
        match required {
            Err(MysqlError::Required(msg)) => {
                assert!(msg.contains("does not answer"), "{msg}");
                assert!(!msg.contains("hunter2"), "password leaked: {msg}");
            }
            other => panic!("expected MysqlError::Required, got {other:?}"),
        }
        // MYSQL_URL set but dead, nothing forced: the same verdicts.
        let unforced = provide_with("unforced", &env(None, Some(url.clone()), "mysql")).await;
        assert!(
            matches!(unforced, Err(MysqlError::Required(_))),
            "{unforced:?}"
        );
        let skipped = provide_with("skipped", &env(Some("url"), Some(url), "kubectl")).await;
        assert!(matches!(skipped, Ok(None)), "{skipped:?}");
    }

    #[tokio::test]
    async fn forced_skip_is_a_failure_when_mysql_is_required() {
        let r = provide_with("forced", &env(Some("skip"), None, "mysql")).await;
        assert!(matches!(r, Err(MysqlError::Required(_))), "{r:?}");
        let r = provide_with("forced", &env(Some("skip"), None, "")).await;
        assert!(matches!(r, Ok(None)), "{r:?}");
        let r = provide_with("bad", &env(Some("sometimes"), None, "")).await;
        assert!(matches!(r, Err(MysqlError::BadForce(_))), "{r:?}");
    }

    #[cfg(feature = "testcontainers")]
    #[tokio::test]
    async fn a_daemon_that_does_not_answer_means_no_docker() {
        use testcontainers_modules::testcontainers::bollard::{Docker, API_DEFAULT_VERSION};
        // A socket file nobody listens on any more: connecting is refused, as with a dead daemon.
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("dead-daemon.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
        let daemon = Docker::connect_with_unix(&socket.to_string_lossy(), 5, API_DEFAULT_VERSION)
            .expect("client for an existing socket path");
        assert!(!daemon_has_image(&daemon, "mysql:8.1").await);
    }
}
