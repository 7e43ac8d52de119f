//! The real `podgrant` binary's endpoint can't starve the engine: idle connections under a
//! 256-descriptor limit, one profile at a time with bounded memory, `/readyz` following MySQL.
//!
//! Each test serves the sim over TCP in this process, puts a TCP proxy (also in this process)
//! in front of a real MariaDB/MySQL (`MYSQL_URL`, else 127.0.0.1:3306, else the harness's
//! provider) so the database can be cut off and brought back, and spawns the `podgrant` binary
//! the workspace built (`target/<profile>/podgrant`, next to this test's `deps/` directory).
//! No MySQL or no binary is a failure with a clear message, never a pass. Real clock (real
//! processes); every wait is a condition with a deadline.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use podgrant_sim::{Sim, SimServer, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Namespace `shop`: its user and database names start with `shop_` (tenancy's default rule);
/// each test's user is unique, so parallel tests (and runs) never share an account.
const NS: &str = "shop";
const DB: &str = "shop_app_db";
const LOCAL: &str = "mysql://root@127.0.0.1:3306/test";

// ---------------------------------------------------------------------------------------------
// MySQL, and a proxy in front of it that can be cut off.

/// Where the proxy forwards to.
#[derive(Clone)]
enum Upstream {
    Tcp(String),
    Unix(PathBuf),
}

impl Upstream {
    async fn connect(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(match self {
            Upstream::Tcp(a) => Box::new(TcpStream::connect(a).await?),
            Upstream::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        })
    }
}

trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// A real server for the test: its admin URL and (when spawned) the guard keeping it alive.
struct Database {
    admin_url: String,
    upstream: Upstream,
    _guard: Option<podgrant_harness::mysql::TestMysql>,
}

async fn database(test: &str) -> Database {
    let from_env = std::env::var("MYSQL_URL").ok().filter(|u| !u.is_empty());
    let candidates: Vec<String> = from_env.into_iter().chain([LOCAL.to_string()]).collect();
    for url in candidates {
        let pool = mysql_async::Pool::new(url.as_str());
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(3), pool.get_conn()).await,
            Ok(Ok(_))
        );
        let _ = pool.disconnect().await;
        if ok {
            let opts = mysql_async::Opts::from_url(&url).expect("MySQL URL");
            let upstream = match opts.socket() {
                Some(s) => Upstream::Unix(s.into()),
                None => Upstream::Tcp(format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())),
            };
            return Database {
                admin_url: url,
                upstream,
                _guard: None,
            };
        }
    }
    let m = podgrant_harness::mysql::provide(test)
        .await
        .unwrap_or_else(|e| panic!("[{test}] no MySQL: {e}"))
        .unwrap_or_else(|| {
            panic!("[{test}] needs a MySQL/MariaDB (MYSQL_URL, 127.0.0.1:3306 or mariadbd on PATH)")
        });
    let opts = mysql_async::Opts::from_url(m.url()).expect("provider URL");
    let upstream = match opts.socket() {
        Some(s) => Upstream::Unix(s.into()),
        None => Upstream::Tcp(format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())),
    };
    Database {
        admin_url: m.url().to_string(),
        upstream,
        _guard: Some(m),
    }
}

/// A TCP proxy on a fixed loopback port. `cut` closes the port and every proxied connection
/// (MySQL is unreachable); `restore` listens again on the same port.
struct Proxy {
    addr: SocketAddr,
    upstream: Upstream,
    /// Bumped by `cut`: connections of an older generation end.
    generation: tokio::sync::watch::Sender<u64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(upstream: Upstream) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let (generation, _) = tokio::sync::watch::channel(0);
        let mut p = Proxy {
            addr,
            upstream,
            generation,
            task: None,
        };
        p.run(listener);
        p
    }

    fn run(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let gen_rx = self.generation.subscribe();
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let mut gen_rx = gen_rx.clone();
                let mine = *gen_rx.borrow();
                tokio::spawn(async move {
                    let Ok(mut server) = upstream.connect().await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = gen_rx.wait_for(|g| *g != mine) => {}
                    }
                });
            }
        }));
    }

    /// MySQL becomes unreachable: the port is closed and open connections are cut.
    fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// MySQL is reachable again, on the same port.
    async fn restore(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "re-binding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.run(listener);
    }

    /// Every proxied connection ends (like a failover); the port stays open.
    fn reset_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The podgrant binary.

fn podgrant_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary in target/<profile>/deps");
    let bin = dir.join("podgrant");
    assert!(
        bin.is_file(),
        "the podgrant binary is not at {} — build it first: `cargo build -p podgrant-core --bin podgrant` \
         (`cargo test --workspace` builds it)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Raises this process's descriptor limit (the test itself holds hundreds of sockets).
fn raise_own_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls with valid pointers.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            assert!(
                lim.rlim_max >= want,
                "this test needs {want} descriptors; the hard limit is {}",
                lim.rlim_max
            );
            lim.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

/// Everything one test runs: sim, database, proxy, the spawned binary.
struct Rig {
    sim: Sim,
    _server: SimServer,
    db: Database,
    admin: mysql_async::Pool,
    proxy: Proxy,
    schema: String,
    user: String,
    http: SocketAddr,
    child: std::sync::Mutex<Child>,
    dir: tempfile::TempDir,
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{prefix}{:x}",
        (n ^ ((std::process::id() as u64) << 40)).wrapping_add(seq << 32)
    )
    .chars()
    .take(24)
    .collect()
}

impl Rig {
    async fn start(test: &str, nofile: Option<u64>) -> Rig {
        let bin = podgrant_binary();
        let db = database(test).await;
        let admin = mysql_async::Pool::new(db.admin_url.as_str());
        let proxy = Proxy::start(db.upstream.clone()).await;
        let sim = Sim::builder().seed(9).build();
        sim.apply(&Step::create_namespace(NS)).expect("namespace");
        let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig, &server.url()).unwrap();
        let schema = unique("pgel_");
        let user = unique("shop_");
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = std::fs::File::create(dir.path().join("podgrant.log")).unwrap();
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--mysql-url")
            // prefer_socket=false: mysql_async would otherwise switch to the server's unix
            // socket and bypass the proxy.
            .arg(format!(
                "mysql://root@{}/test?prefer_socket=false",
                proxy.addr
            ))
            .args(["--ledger-schema", &schema, "--namespace", NS])
            .args(["--listen", &http.to_string()])
            .args(["--no-leader-election", "--debounce", "100ms"])
            .args(["--mysql-probe-interval", "500ms"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn podgrant");
        let rig = Rig {
            sim,
            _server: server,
            db,
            admin,
            proxy,
            schema,
            user,
            http,
            child: std::sync::Mutex::new(child),
            dir,
        };
        rig.wait(
            "/readyz answers 200",
            Duration::from_secs(60),
            |r| async move { get(r, "/readyz").await.map(|(s, _)| s) == Some(200) },
        )
        .await;
        rig
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("podgrant.log")).unwrap_or_default()
    }

    /// Polls `cond` every 100 ms until it holds; fails after `within`, or if podgrant exits.
    async fn wait<F: std::future::Future<Output = bool>>(
        &self,
        what: &str,
        within: Duration,
        mut cond: impl FnMut(SocketAddr) -> F,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond(self.http).await {
                return start.elapsed();
            }
            let exited = self.child.lock().unwrap().try_wait();
            if let Ok(Some(status)) = exited {
                panic!(
                    "podgrant exited ({status}) waiting for {what}:\n{}",
                    tail(&self.log())
                );
            }
            assert!(
                start.elapsed() < within,
                "not within {within:?}: {what}\npodgrant log:\n{}",
                tail(&self.log())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn opt_in(&self) {
        self.sim
            .apply(&Step::create_secret(
                NS,
                "app-db",
                [("password", "pw-shop-app")],
            ))
            .expect("secret");
        self.sim
            .apply(
                &Step::create_service(NS, "app", [("app", "app")]).annotations([
                    ("podgrant.io/mysql-user", self.user.as_str()),
                    ("podgrant.io/mysql-database", DB),
                    ("podgrant.io/mysql-privileges", "SELECT"),
                    ("podgrant.io/mysql-password-secret", "app-db/password"),
                ]),
            )
            .expect("service");
    }

    fn pod(&self, name: &str) -> IpAddr {
        self.sim
            .apply(&Step::create_pod(NS, name).labels([("app", "app")]))
            .expect("pod");
        let v = self.sim.get("pods", Some(NS), name).expect("pod exists");
        v.pointer("/status/podIP")
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse().ok())
            .expect("pod has an IP")
    }

    fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Stops podgrant and drops what the test created (also done on drop, e.g. after a panic).
    async fn finish(self) {
        self.kill();
        cleanup(&self.admin, &self.user, &self.schema).await;
        let _ = self.admin.clone().disconnect().await;
    }
}

/// Drops `user`'s accounts and the ledger schema: only what this test created.
async fn cleanup(admin: &mysql_async::Pool, user: &str, schema: &str) {
    if let Ok(mut c) = admin.get_conn().await {
        let hosts: Vec<String> = c
            .exec("SELECT host FROM mysql.user WHERE user = ?", (user,))
            .await
            .unwrap_or_default();
        for h in hosts {
            let _ = c
                .query_drop(format!("DROP USER IF EXISTS '{user}'@'{h}'"))
                .await;
        }
        let _ = c
            .query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
            .await;
    }
}

impl Rig {
    fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // The test failed before `finish`: clean up on a thread of its own (this one may be
            // inside the test's runtime).
            let (url, user, schema) = (
                self.db.admin_url.clone(),
                self.user.clone(),
                self.schema.clone(),
            );
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let admin = mysql_async::Pool::new(url.as_str());
                    cleanup(&admin, &user, &schema).await;
                    let _ = admin.disconnect().await;
                });
            })
            .join();
        }
    }
}

fn tail(text: &str) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(30)..].join("\n")
}

/// One `GET` with `Connection: close`: `(status, body)`, or `None` if the exchange failed.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, buf[split + 4..].to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(90), exchange)
        .await
        .ok()
        .flatten()
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `podgrant_profiles_total` from `/metrics`.
async fn profiles_started(addr: SocketAddr) -> Option<u64> {
    let (_, body) = get(addr, "/metrics").await?;
    metric(&String::from_utf8_lossy(&body), "podgrant_profiles_total")
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_endpoint_connections_under_256_descriptors_do_not_stop_grants() {
    raise_own_nofile(1024);
    let rig = Rig::start("endpoint_idle_connections", Some(256)).await;
    rig.opt_in();
    let first = rig.pod("app-1");
    rig.wait("the first pod is granted", Duration::from_secs(30), |_| {
        rig_has(&rig, first)
    })
    .await;

    // 400 idle connections: no request, nothing sent. (A server that stopped accepting lets
    // its backlog fill and connects hang: stop opening then, and let the grant check decide.)
    let mut idle = Vec::new();
    let mut connect_failed = None;
    for _ in 0..400 {
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(rig.http)).await {
            Ok(Ok(s)) => idle.push(s),
            Ok(Err(e)) => panic!("connect #{}: {e}", idle.len()),
            Err(_) => {
                connect_failed = Some(idle.len());
                break;
            }
        }
    }
    // Every MySQL connection the engine holds ends (a failover): it has to open new ones.
    rig.proxy.reset_connections();

    let second = rig.pod("app-2");
    let granted_in = rig
        .wait(
            "a new pod is granted while 400 idle connections are open",
            Duration::from_secs(15),
            |_| rig_has(&rig, second),
        )
        .await;
    // The endpoint still serves (the held connections time out and free their slots).
    let served_in = rig
        .wait(
            "/healthz answers while the idle connections are still open",
            Duration::from_secs(20),
            |a| async move { get(a, "/healthz").await.map(|(s, _)| s) == Some(200) },
        )
        .await;
    let metrics = get(rig.http, "/metrics").await.expect("/metrics").1;
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    let refused = metric(&metrics, "podgrant_http_connections_refused_total").unwrap_or(0);
    let accept_errors = metric(&metrics, "podgrant_http_accept_errors_total").unwrap_or(0);
    let warns = rig.log().lines().filter(|l| l.contains("WARN")).count();
    eprintln!(
        "400 idle connections under nofile=256: new pod granted in {granted_in:?}, /healthz in \
         {served_in:?}; refused {refused}, accept errors {accept_errors}, WARN lines {warns}"
    );
    assert_eq!(
        connect_failed, None,
        "every connection was accepted (the excess refused at once)"
    );
    assert!(
        refused > 0,
        "excess connections are refused, not held:\n{metrics}"
    );
    assert!(warns < 20, "no WARN flood:\n{}", tail(&rig.log()));
    drop(idle);
    rig.finish().await;
}

/// Whether `rig`'s user has an account at `ip`.
fn rig_has(rig: &Rig, ip: IpAddr) -> impl std::future::Future<Output = bool> {
    let admin = rig.admin.clone();
    let user = rig.user.clone();
    async move {
        let Ok(mut c) = admin.get_conn().await else {
            return false;
        };
        let n: Option<u64> = c
            .exec_first(
                "SELECT COUNT(*) FROM mysql.user WHERE user = ? AND host = ?",
                (user, ip.to_string()),
            )
            .await
            .unwrap_or(None);
        n == Some(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_is_exclusive_freed_on_abort_and_releases_its_memory() {
    let rig = Rig::start("endpoint_profiles", None).await;
    rig.opt_in();
    let ip = rig.pod("app-1");
    rig.wait("the pod is granted", Duration::from_secs(30), |_| {
        rig_has(&rig, ip)
    })
    .await;
    let pid = rig.pid();
    let (rss_before, hwm_before) = memory_kib(pid);

    // A profile runs; a second one is refused with 409.
    let http = rig.http;
    let first = tokio::spawn(async move { get(http, "/debug/pprof/profile?seconds=4").await });
    rig.wait(
        "the first profile runs",
        Duration::from_secs(10),
        |a| async move { profiles_started(a).await == Some(1) },
    )
    .await;
    let (status, body) = get(rig.http, "/debug/pprof/profile?seconds=1")
        .await
        .expect("answers");
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    // Work for the profiler to see (and symbolize): pods come, and /metrics is scraped hard.
    for i in 0..20 {
        rig.pod(&format!("churn-{i}"));
    }
    while !first.is_finished() {
        let _ = get(rig.http, "/metrics").await;
    }
    let (status, body) = first.await.unwrap().expect("the first profile answers");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    if let Ok(path) = std::env::var("PODGRANT_TEST_KEEP_PROFILE") {
        std::fs::write(&path, &body).expect("write the profile");
    }
    let (samples, locations) = {
        use pprof::protos::Message;
        let p = pprof::protos::Profile::decode(body.as_slice()).expect("pprof protobuf");
        assert!(p.duration_nanos > 0);
        let samples: i64 = p.sample.iter().map(|s| s.value[0]).sum();
        (samples, p.location.len())
    };
    eprintln!("profile: {samples} samples, {locations} symbolized locations");
    assert!(samples > 0, "a busy process was sampled");
    // The sampler released its memory before answering.
    let (rss_after, hwm_after) = memory_kib(pid);
    let kept = rss_after.saturating_sub(rss_before);
    eprintln!(
        "profile memory: VmRSS {rss_before} KiB before, {rss_after} KiB after; VmHWM {hwm_before} \
         KiB before, {hwm_after} KiB after (peak over the start {} KiB, kept {kept} KiB)",
        hwm_after.saturating_sub(rss_before)
    );
    assert!(
        hwm_after.saturating_sub(rss_before) <= 64 * 1024,
        "a profile added more than 64 MiB at its peak: {rss_before} → {hwm_after} KiB"
    );
    assert!(
        kept <= 16 * 1024,
        "a profile kept more than 16 MiB after it ended: {rss_before} → {rss_after} KiB"
    );

    // A client that goes away mid-profile frees the slot long before the profile's 50 s.
    let mut aborted = TcpStream::connect(rig.http).await.unwrap();
    aborted
        .write_all(b"GET /debug/pprof/profile?seconds=50 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    rig.wait(
        "the long profile runs",
        Duration::from_secs(10),
        |a| async move { profiles_started(a).await == Some(2) },
    )
    .await;
    let (status, _) = get(rig.http, "/debug/pprof/profile?seconds=1")
        .await
        .expect("answers");
    assert_eq!(status, 409, "the long profile holds the slot");
    drop(aborted);
    let freed_in = rig
        .wait(
            "a profile succeeds after the client aborted the long one",
            Duration::from_secs(20),
            |a| async move {
                get(a, "/debug/pprof/profile?seconds=1")
                    .await
                    .map(|(s, _)| s)
                    == Some(200)
            },
        )
        .await;
    eprintln!("slot free {freed_in:?} after the abort of a 50 s profile");
    assert!(freed_in < Duration::from_secs(30));
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_mysql_reachability_and_healthz_stays_live() {
    let mut rig = Rig::start("endpoint_readyz", None).await;
    rig.proxy.cut();
    let down_in = rig
        .wait("/readyz answers 503 with MySQL cut off", Duration::from_secs(15), |a| async move {
            matches!(get(a, "/readyz").await, Some((503, b)) if String::from_utf8_lossy(&b).contains("mysql"))
        })
        .await;
    assert_eq!(
        get(rig.http, "/healthz").await.map(|(s, _)| s),
        Some(200),
        "liveness does not follow the database"
    );
    rig.proxy.restore().await;
    let up_in = rig
        .wait(
            "/readyz answers 200 with MySQL back",
            Duration::from_secs(20),
            |a| async move { get(a, "/readyz").await.map(|(s, _)| s) == Some(200) },
        )
        .await;
    eprintln!("/readyz: 503 {down_in:?} after the cut, 200 {up_in:?} after MySQL came back");
    // And the engine works again.
    rig.opt_in();
    let ip = rig.pod("app-1");
    rig.wait(
        "a pod is granted after MySQL came back",
        Duration::from_secs(30),
        |_| rig_has(&rig, ip),
    )
    .await;
    rig.finish().await;
}
