//! A real MySQL/MariaDB for tests, hermetically: `MYSQL_URL`, else the local server, else a self-started `mariadbd`, else Docker, else skipped loudly — or failed, under `PODGRANT_REQUIRE=mysql`.
//!
//! Order (issue 4): `MYSQL_URL` (it must answer `SELECT 1`); else the machine's own server at
//! [`LOCAL_URL`] if it answers; else a `mariadbd`/`mysqld` found on `PATH` (or `/usr/sbin`),
//! started in a temporary datadir listening on a free 127.0.0.1 port (and a unix socket), URL
//! `mysql://root@127.0.0.1:PORT/test` (about 3 s here); else a container of [`IMAGE_ENV`]
//! (default [`DEFAULT_IMAGE`], built locally by `scripts/build-mariadb-image.sh`; `mysql:8.4`
//! with a registry) on the host network and a free 127.0.0.1 port, when a Docker daemon answers
//! — by the Docker CLI, or with the cargo feature `testcontainers` by testcontainers, the same
//! image run the same way (`.ci/run` runs `mysql_docker.rs` both ways); else
//! [`provide`] returns `None` after printing a loud `SKIPPED` line — a test must then say it was
//! skipped, never pass silently. `PODGRANT_TEST_MYSQL=url|local|spawn|docker|skip` forces one.
//!
//! One server for a whole run (issue 8): `scripts/check-test.sh`, under `PODGRANT_TEST_MYSQL=spawn`
//! (what the Nix checks set), starts one private `mariadbd` with the `podgrant-test-mysql` helper
//! and exports `MYSQL_URL` and [`SHARED_SPAWN_ENV`]; [`provide`] then hands that server out as
//! [`Provider::Spawned`] (`shared`) instead of starting one per test process.
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

/// Set (to the server binary) by the `podgrant-test-mysql` helper next to `MYSQL_URL`: that URL
/// is one private server spawned for the whole run, used under `PODGRANT_TEST_MYSQL=spawn`.
pub const SHARED_SPAWN_ENV: &str = "PODGRANT_SPAWNED_MYSQL";

/// Env var naming the image the docker provider runs.
pub const IMAGE_ENV: &str = "PODGRANT_MYSQL_IMAGE";

/// The image `scripts/build-mariadb-image.sh` builds (Debian bookworm's MariaDB 10.11).
pub const DEFAULT_IMAGE: &str = "podgrant/mariadb:10.11-local";

/// How long a spawned server may take to answer.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The container held by a [`TestMysql`] (testcontainers removes it on drop); none without the feature.
#[cfg(feature = "testcontainers")]
type Container = testcontainers_modules::testcontainers::ContainerAsync<
    testcontainers_modules::testcontainers::GenericImage,
>;
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
    /// No daemon, or the image is absent and cannot be pulled.
    #[error("no Docker: {0}")]
    NoDocker(String),
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
    /// A server started from this binary in a temp datadir: by this process, or (`shared`) once
    /// for the whole run by the `podgrant-test-mysql` helper ([`SHARED_SPAWN_ENV`]).
    Spawned { binary: PathBuf, shared: bool },
    /// A container of `image` on the host network: started by the Docker CLI, or by
    /// testcontainers' MySQL 8 module with the cargo feature `testcontainers`.
    Docker { container: String, image: String },
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Url => write!(f, "MYSQL_URL"),
            Provider::Local => write!(f, "the local server"),
            Provider::Spawned {
                binary,
                shared: false,
            } => write!(f, "spawned {}", binary.display()),
            Provider::Spawned {
                binary,
                shared: true,
            } => write!(
                f,
                "spawned {} (one private server for the whole run, {SHARED_SPAWN_ENV})",
                binary.display()
            ),
            Provider::Docker { container, image } if cfg!(feature = "testcontainers") => {
                write!(f, "testcontainers container {container} of image {image}")
            }
            Provider::Docker { container, image } => {
                write!(f, "docker container {container} of image {image}")
            }
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
        if let Provider::Docker { container, .. } = &self.provider {
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
    /// [`SHARED_SPAWN_ENV`], if set and non-empty: `mysql_url` is a run-wide spawned server.
    pub shared_spawn: Option<String>,
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
            shared_spawn: var(SHARED_SPAWN_ENV),
        })
    }

    /// The run-wide spawned server's URL and provider, when the helper announced one.
    fn shared(&self) -> Option<(String, Provider)> {
        let url = self.mysql_url.clone()?;
        let binary = PathBuf::from(self.shared_spawn.as_ref()?);
        Some((
            url,
            Provider::Spawned {
                binary,
                shared: true,
            },
        ))
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
        Some("spawn") => match env.shared() {
            Some((url, provider)) => from_url(url, provider).await,
            None => Ok(spawn().await?),
        },
        Some("docker") => match docker().await {
            Ok(m) => Ok(m),
            Err(MysqlError::NoDocker(why)) => Err(format!("{FORCE_ENV}=docker: {why}")),
            Err(e) => return Err(e),
        },
        Some("skip") => Err(format!("{FORCE_ENV}=skip")),
        Some(other) => return Err(MysqlError::BadForce(other.to_string())),
        None => match &env.mysql_url {
            Some(url) => match env.shared() {
                Some((url, provider)) => from_url(url, provider).await,
                None => from_url(url.clone(), Provider::Url).await,
            },
            None => match from_url(LOCAL_URL.to_string(), Provider::Local).await {
                Ok(m) => Ok(m),
                Err(_) => match spawn().await {
                    Ok(m) => Ok(m),
                    Err(MysqlError::NoServerBinary) => match docker().await {
                        Ok(m) => Ok(m),
                        Err(MysqlError::NoDocker(why)) => Err(format!(
                            "MYSQL_URL unset, nothing answers at 127.0.0.1:3306, no mariadbd/mysqld, and {why}"
                        )),
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
        Provider::Spawned { shared: true, .. } => "the run's spawned server",
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

/// Starts `mariadbd`/`mysqld` in a temp datadir on a free 127.0.0.1 port (and a unix socket),
/// and waits until it answers at `mysql://root@127.0.0.1:PORT/test`.
pub async fn spawn() -> Result<TestMysql, MysqlError> {
    spawn_with_options(&[]).await
}

/// A loopback port nobody listened on a moment ago (bound, then released: another process may
/// still take it first, so starters retry on "address in use").
pub fn free_port() -> Result<u16, MysqlError> {
    let spawn_err = |source| MysqlError::Spawn {
        what: "binding 127.0.0.1:0".into(),
        source,
    };
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(spawn_err)?;
    Ok(l.local_addr().map_err(spawn_err)?.port())
}

/// How many times a starter tries a fresh port after losing the race for one.
const PORT_ATTEMPTS: usize = 3;

/// Whether a failed start lost its port to another process.
fn lost_port(e: &MysqlError) -> bool {
    let text = e.to_string();
    text.contains("Address already in use") || text.contains("Bind on TCP/IP port")
}

/// [`spawn`] with extra server options appended to the command line (later options win:
/// `--skip-name-resolve=0`, `--general-log`, ...). TCP is on, on 127.0.0.1 only, and MariaDB
/// runs with `--skip-name-resolve` (as the machine's server does); an extra
/// `--port=N` picks the port (else a free one), and the URL uses it.
pub async fn spawn_with_options(extra: &[String]) -> Result<TestMysql, MysqlError> {
    let fixed = extra
        .iter()
        .rev()
        .find_map(|o| o.strip_prefix("--port="))
        .map(|p| {
            p.parse::<u16>().map_err(|_| MysqlError::Failed {
                what: "spawn options".into(),
                detail: format!("--port={p} is not a port"),
            })
        })
        .transpose()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = match fixed {
            Some(p) => p,
            None => free_port()?,
        };
        match spawn_on(port, extra).await {
            Err(e) if fixed.is_none() && attempt < PORT_ATTEMPTS && lost_port(&e) => continue,
            other => return other,
        }
    }
}

async fn spawn_on(port: u16, extra: &[String]) -> Result<TestMysql, MysqlError> {
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
        .arg("--skip-networking=0")
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        // As the machine's server and the README's recommendation: the process list shows
        // client IPs, so the engine can end a revoked account's sessions. MariaDB only: there
        // mariadb-install-db creates root@127.0.0.1; MySQL's --initialize-insecure does not.
        .args(mariadb.then_some("--skip-name-resolve"))
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
    let mut m = TestMysql {
        url: format!("mysql://root@127.0.0.1:{port}/test"),
        provider: Provider::Spawned {
            binary,
            shared: false,
        },
        child: Some(child),
        dir: Some(dir),
        container: None,
    };
    wait_ready(&mut m, &log).await?;
    Ok(m)
}

/// The URL without its database (`test` may not exist yet).
fn admin_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => format!("{}/?{query}", base.trim_end_matches("/test")),
        None => format!("{}/", url.trim_end_matches("/test")),
    }
}

/// Polls until a connection succeeds and `test` exists; fails early if the server exits.
async fn wait_ready(m: &mut TestMysql, log: &Path) -> Result<(), MysqlError> {
    let start = Instant::now();
    let admin_url = admin_url(&m.url);
    let mut last = String::from("never tried");
    let mut checked = Instant::now();
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
        // A container that exited will never answer: say why now (once a second: a CLI call).
        if let Provider::Docker { container, .. } = &m.provider {
            if m.container.is_none() && checked.elapsed() >= Duration::from_secs(1) {
                checked = Instant::now();
                if let Some(why) = container_exited(container) {
                    return Err(MysqlError::Failed {
                        what: format!("container {container} exited"),
                        detail: why,
                    });
                }
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

/// The image the docker provider runs: [`IMAGE_ENV`], else [`DEFAULT_IMAGE`].
pub fn image() -> String {
    std::env::var(IMAGE_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// Whether `docker args…` succeeds (output discarded).
#[cfg(not(feature = "testcontainers"))]
fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `Some(why)` when the container is no longer running (its state and last log lines).
fn container_exited(container: &str) -> Option<String> {
    let state = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            container,
        ])
        .output()
        .ok()?;
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    if state.starts_with("running") || state.starts_with("created") {
        return None;
    }
    let logs = Command::new("docker")
        .args(["logs", "--tail", "20", container])
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    Some(format!("state {state:?}\n{}", tail(&logs, 20)))
}

/// Starts a container of [`image`] with the Docker CLI on the host network (no bridge, no
/// published ports): the server listens on a free 127.0.0.1 port, passed both as
/// `MYSQL_TCP_PORT` (read by `scripts/build-mariadb-image.sh`'s entrypoint) and as
/// `--port`/`--bind-address` arguments (appended to `mysqld` by the official `mysql` images,
/// which also read `MYSQL_ALLOW_EMPTY_PASSWORD`/`MYSQL_DATABASE`). The default image is never
/// pulled (build it with the script); an image named by [`IMAGE_ENV`] is pulled when absent.
/// The container is removed on drop.
#[cfg(not(feature = "testcontainers"))]
pub async fn docker() -> Result<TestMysql, MysqlError> {
    let image = image();
    if !docker_ok(&["info"]) {
        return Err(MysqlError::NoDocker(
            "no Docker daemon answers `docker info`".into(),
        ));
    }
    if !docker_ok(&["image", "inspect", &image]) {
        if image == DEFAULT_IMAGE {
            return Err(MysqlError::NoDocker(format!(
                "image {image} is not built (run scripts/build-mariadb-image.sh, or set {IMAGE_ENV})"
            )));
        }
        run(Command::new("docker").args(["pull", &image]), "docker pull").map_err(|e| {
            MysqlError::NoDocker(format!("image {image} absent and not pulled: {e}"))
        })?;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match docker_on(&image, free_port()?).await {
            Err(e) if attempt < PORT_ATTEMPTS && lost_port(&e) => continue,
            other => return other,
        }
    }
}

#[cfg(not(feature = "testcontainers"))]
async fn docker_on(image: &str, port: u16) -> Result<TestMysql, MysqlError> {
    let name = format!("pgh-mysql-{port}-{:08x}", rand_tag());
    let id = run(
        Command::new("docker").args([
            "run",
            "-d",
            "--network",
            "host",
            "--name",
            &name,
            "--label",
            "podgrant.test-mysql=1",
            "-e",
            &format!("MYSQL_TCP_PORT={port}"),
            "-e",
            "MYSQL_BIND_ADDRESS=127.0.0.1",
            "-e",
            "MYSQL_ALLOW_EMPTY_PASSWORD=yes",
            "-e",
            "MYSQL_DATABASE=test",
            image,
            &format!("--port={port}"),
            "--bind-address=127.0.0.1",
            // Client IPs in the process list, as on the machine's server (see spawn_on).
            "--skip-name-resolve",
        ]),
        &format!("docker run {image}"),
    )?
    .trim()
    .to_string();
    let mut m = TestMysql {
        url: format!("mysql://root@127.0.0.1:{port}/test"),
        provider: Provider::Docker {
            container: id.chars().take(12).collect(),
            image: image.to_string(),
        },
        child: None,
        dir: None,
        container: None,
    };
    // On failure `m` is dropped here, which removes the container.
    wait_ready(&mut m, Path::new("/nonexistent")).await?;
    Ok(m)
}

/// A random tag for container names (no `rand` here: `core` includes this file too).
fn rand_tag() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// The docker provider through testcontainers (cargo feature `testcontainers`): a container of
/// [`image`] run as the Docker CLI path runs it — host network, no published port, the server on
/// a free 127.0.0.1 port (`MYSQL_TCP_PORT` and `--port`), `--skip-name-resolve`, labelled
/// `podgrant.test-mysql=1` — held by the returned [`TestMysql`] and removed on drop. The default
/// image is never pulled (build it with `scripts/build-mariadb-image.sh`); an image named by
/// [`IMAGE_ENV`] is pulled by testcontainers when absent.
#[cfg(feature = "testcontainers")]
pub async fn docker() -> Result<TestMysql, MysqlError> {
    use testcontainers_modules::testcontainers::bollard::Docker;
    let image = image();
    let daemon = Docker::connect_with_defaults()
        .map_err(|e| MysqlError::NoDocker(format!("no Docker daemon: {e}")))?;
    if daemon.ping().await.is_err() {
        return Err(MysqlError::NoDocker(
            "no Docker daemon answers a ping".into(),
        ));
    }
    if image == DEFAULT_IMAGE && !daemon_has_image(&daemon, &image).await {
        return Err(MysqlError::NoDocker(format!(
            "image {image} is not built (run scripts/build-mariadb-image.sh, or set {IMAGE_ENV})"
        )));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match testcontainer_on(&image, free_port()?).await {
            Err(e) if attempt < PORT_ATTEMPTS && lost_port(&e) => continue,
            other => return other,
        }
    }
}

/// `name[:tag]` split at the tag's colon (one after the last `/`, so a registry's port is not a
/// tag); no tag is `latest`.
#[allow(dead_code)] // without the feature, only its test uses it
fn split_image(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

#[cfg(feature = "testcontainers")]
async fn testcontainer_on(image: &str, port: u16) -> Result<TestMysql, MysqlError> {
    use testcontainers_modules::testcontainers::core::WaitFor;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::{GenericImage, ImageExt};

    let (name, tag) = split_image(image);
    let what = format!("testcontainers {image}");
    let container = GenericImage::new(name, tag)
        // Readiness is `wait_ready`'s (a real query), not a log line's.
        .with_wait_for(WaitFor::Nothing)
        .with_network("host")
        .with_container_name(format!("pgh-mysql-{port}-{:08x}", rand_tag()))
        .with_label("podgrant.test-mysql", "1")
        .with_env_var("MYSQL_TCP_PORT", port.to_string())
        .with_env_var("MYSQL_BIND_ADDRESS", "127.0.0.1")
        .with_env_var("MYSQL_ALLOW_EMPTY_PASSWORD", "yes")
        .with_env_var("MYSQL_DATABASE", "test")
        .with_cmd([
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            "--skip-name-resolve".to_string(),
        ])
        .with_startup_timeout(READY_DEADLINE)
        .start()
        .await
        .map_err(|e| MysqlError::Failed {
            what: what.clone(),
            detail: e.to_string(),
        })?;
    let mut m = TestMysql {
        url: format!("mysql://root@127.0.0.1:{port}/test"),
        provider: Provider::Docker {
            container: container.id().chars().take(12).collect(),
            image: image.to_string(),
        },
        child: None,
        dir: None,
        container: Some(container),
    };
    // On failure `m` is dropped here, which removes the container.
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
    fn image_names_split_at_the_tags_colon_not_a_registrys_port() {
        assert_eq!(
            split_image(DEFAULT_IMAGE),
            ("podgrant/mariadb", "10.11-local")
        );
        assert_eq!(split_image("mysql:8.4"), ("mysql", "8.4"));
        assert_eq!(split_image("mysql"), ("mysql", "latest"));
        assert_eq!(
            split_image("registry.local:5000/db/mysql:8.4"),
            ("registry.local:5000/db/mysql", "8.4")
        );
        assert_eq!(
            split_image("registry.local:5000/mysql"),
            ("registry.local:5000/mysql", "latest")
        );
    }

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
            shared_spawn: None,
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
