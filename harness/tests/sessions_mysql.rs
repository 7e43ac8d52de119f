//! Sessions and SQL for real: pods hold MariaDB sessions from their own 127.x addresses, every revoke path ends exactly those, and no password reaches the server's logs.
//!
//! Each test starts its own `mariadbd` (harness/src/mysql.rs) with TCP on, name resolution on
//! (`--skip-name-resolve=0`, the MariaDB default) and the general log on. The sim hands out pod
//! IPs from `127.77.0.0/16`; a small relay per pod connects to the server from the pod's address
//! (`TcpSocket::bind`), so the server sees each pod's session as `user@127.77.x.y:port` — and an
//! unowned `'shop_app'@'%'` client from 127.0.0.1 as `localhost:port`, a host *name*. A missing
//! `mariadbd` fails these tests; it never skips them.

mod engine_support;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine_support::{config, grant_annotations, start, wait_until_async};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use podgrant_core::store::mysql::MysqlStore;
use podgrant_core::store::GrantStore;
use podgrant_harness::generate::secret_password;
use podgrant_harness::mysql::{spawn_with_options, TestMysql};
use podgrant_sim::{Sim, Step};
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket};

const NS: &str = "shop";
const DB: &str = "shop_app_db";
const WITHIN: Duration = Duration::from_secs(60);

/// A private server on 127.0.0.1:`port` (and its unix socket), resolving client names, with the
/// general log in its data dir.
struct Server {
    mysql: TestMysql,
    port: u16,
    general_log: PathBuf,
}

async fn server() -> Server {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().unwrap().port()
    };
    let options: Vec<String> = [
        "--skip-networking=0".to_string(),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--skip-name-resolve=0".into(),
        "--general-log=1".into(),
        "--general-log-file=general.log".into(),
    ]
    .into();
    let mysql = spawn_with_options(&options)
        .await
        .unwrap_or_else(|e| panic!("cannot start a private mariadbd (it is required here): {e}"));
    let general_log = mysql.datadir().expect("spawned").join("general.log");
    let s = Server {
        mysql,
        port,
        general_log,
    };
    let mut root = s.root().await;
    let resolving: Option<String> = root
        .query_first("SELECT @@skip_name_resolve")
        .await
        .unwrap();
    assert_eq!(resolving.as_deref(), Some("0"), "name resolution is on");
    root.query_drop(format!("CREATE DATABASE {DB}"))
        .await
        .unwrap();
    root.query_drop(format!("CREATE TABLE {DB}.t (x INT)"))
        .await
        .unwrap();
    s
}

impl Server {
    async fn root(&self) -> Conn {
        Conn::from_url(self.mysql.url()).await.expect("root")
    }

    /// A session as `user` over TCP, from `from` (through a relay bound to that address).
    async fn session(&self, from: IpAddr, user: &str, password: &str) -> Result<Conn, String> {
        let relay = relay(from, SocketAddr::from(([127, 0, 0, 1], self.port))).await;
        let opts = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(relay)
            .prefer_socket(false)
            .user(Some(user))
            .pass(Some(password))
            .db_name(Some(DB));
        Conn::new(opts).await.map_err(|e| e.to_string())
    }

    fn general_log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.general_log).expect("general log")).into()
    }
}

/// Listens on 127.0.0.1:0; each accepted client is relayed to `server` from `from`:0.
async fn relay(from: IpAddr, server: SocketAddr) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let socket = TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new(from, 0))
                .expect("bind the pod's address");
            tokio::spawn(async move {
                if let Ok(mut upstream) = socket.connect(server).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    port
}

/// Whether a session still answers.
async fn alive(conn: &mut Conn) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(10),
            conn.query_drop(format!("SELECT 1 FROM {DB}.t"))
        )
        .await,
        Ok(Ok(()))
    )
}

fn sim() -> Sim {
    let sim = Sim::builder().seed(9).pod_cidr("127.77.0.0/16").build();
    sim.apply(&Step::create_namespace(NS)).unwrap();
    sim
}

fn opt_in(sim: &Sim, service: &str, app: &str, user: &str, password: &str) {
    let secret = format!("{service}-db");
    sim.apply(&Step::create_secret(NS, &secret, [("password", password)]))
        .unwrap();
    sim.apply(
        &Step::create_service(NS, service, [("app", app)])
            .annotations(grant_annotations(user, DB, "SELECT", &secret)),
    )
    .unwrap();
}

fn pod_ip(sim: &Sim, name: &str) -> IpAddr {
    let pod = sim.get("pods", Some(NS), name).expect("pod exists");
    pod.pointer("/status/podIP")
        .and_then(|v| v.as_str()?.parse().ok())
        .expect("pod has an IP")
}

/// Connects as `user` from `ip` once the engine has granted it (polls: the grant is async).
async fn granted_session(s: &Server, ip: IpAddr, user: &str, password: &str) -> Conn {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let last = match s.session(ip, user, password).await {
            Ok(mut c) => {
                if alive(&mut c).await {
                    return c;
                }
                format!("{user}@{ip} connects but cannot read {DB}.t")
            }
            Err(e) => format!("{user}@{ip} never granted: {e}"),
        };
        assert!(tokio::time::Instant::now() < deadline, "{last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `victim` is dead, then asserts every `bystander` still answers.
async fn ends_only(what: &str, victim: &mut Conn, bystanders: &mut [(&str, &mut Conn)]) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while alive(victim).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the pod's session is still open after {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (who, conn) in bystanders.iter_mut() {
        assert!(alive(conn).await, "{what}: {who}'s session was ended too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revoke_path_ends_the_pods_session_and_no_other_on_a_name_resolving_server() {
    let s = server().await;
    let schema = "podgrant_sessions";
    // An account podgrant does not own, with the pods' user name, and its client from 127.0.0.1
    // (the server shows that session's host as `localhost`, a name).
    let mut root = s.root().await;
    root.query_drop("CREATE USER 'shop_app'@'%' IDENTIFIED BY 'legacy-pw'")
        .await
        .unwrap();
    root.query_drop(format!("GRANT SELECT ON {DB}.* TO 'shop_app'@'%'"))
        .await
        .unwrap();
    let mut legacy = s
        .session("127.0.0.1".parse().unwrap(), "shop_app", "legacy-pw")
        .await
        .expect("legacy client");
    assert!(alive(&mut legacy).await);

    let sim = sim();
    let app_pw = secret_password(1, 0);
    let other_pw = secret_password(2, 0);
    opt_in(&sim, "app", "app", "shop_app", &app_pw);
    opt_in(&sim, "other", "other", "shop_other", &other_pw);
    let pods = [
        "deleted",
        "unready",
        "relabelled",
        "hostnet",
        "recycled",
        "servicegone",
    ];
    for p in pods {
        let app = if p == "servicegone" { "other" } else { "app" };
        sim.apply(&Step::create_pod(NS, p).labels([("app", app)]))
            .unwrap();
    }
    let store = MysqlStore::connect(s.mysql.url(), schema)
        .await
        .expect("store");
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(schema);
    let engine = start(&sim, Arc::new(store.clone()), cfg);

    let mut sessions = Vec::new();
    for p in pods {
        let (user, pw) = if p == "servicegone" {
            ("shop_other", other_pw.as_str())
        } else {
            ("shop_app", app_pw.as_str())
        };
        sessions.push(granted_session(&s, pod_ip(&sim, p), user, pw).await);
    }
    let [mut deleted, mut unready, mut relabelled, mut hostnet, mut recycled, mut servicegone] =
        <[Conn; 6]>::try_from(sessions).unwrap_or_else(|_| unreachable!());
    let recycled_ip = pod_ip(&sim, "recycled");
    // The DBA's own session (root over the socket: `localhost`).
    let mut dba = s.root().await;

    sim.apply(&Step::delete_pod(NS, "deleted")).unwrap();
    ends_only(
        "pod deleted",
        &mut deleted,
        &mut [
            ("legacy 'shop_app'@'%'", &mut legacy),
            ("dba", &mut dba),
            ("unready", &mut unready),
            ("relabelled", &mut relabelled),
            ("hostnet", &mut hostnet),
            ("recycled", &mut recycled),
            ("servicegone", &mut servicegone),
        ],
    )
    .await;

    sim.apply(&Step::set_pod_ready(NS, "unready", false))
        .unwrap();
    ends_only(
        "pod not ready",
        &mut unready,
        &mut [
            ("legacy", &mut legacy),
            ("dba", &mut dba),
            ("relabelled", &mut relabelled),
            ("hostnet", &mut hostnet),
            ("recycled", &mut recycled),
            ("servicegone", &mut servicegone),
        ],
    )
    .await;

    sim.apply(&Step::relabel_pod(NS, "relabelled", [("app", "elsewhere")]))
        .unwrap();
    ends_only(
        "relabelled out of the selector",
        &mut relabelled,
        &mut [
            ("legacy", &mut legacy),
            ("dba", &mut dba),
            ("hostnet", &mut hostnet),
            ("recycled", &mut recycled),
            ("servicegone", &mut servicegone),
        ],
    )
    .await;

    let mut pod = sim.get("pods", Some(NS), "hostnet").unwrap();
    pod["spec"]["hostNetwork"] = json!(true);
    sim.replace("pods", Some(NS), pod).unwrap();
    ends_only(
        "pod now on the host network",
        &mut hostnet,
        &mut [
            ("legacy", &mut legacy),
            ("dba", &mut dba),
            ("recycled", &mut recycled),
            ("servicegone", &mut servicegone),
        ],
    )
    .await;

    sim.apply(&Step::delete_service(NS, "other")).unwrap();
    ends_only(
        "Service deleted",
        &mut servicegone,
        &mut [
            ("legacy", &mut legacy),
            ("dba", &mut dba),
            ("recycled", &mut recycled),
        ],
    )
    .await;

    // The IP goes to a new pod of another Service: the old account's session ends, and the new
    // pod's account works from the same address.
    opt_in(&sim, "next", "next", "shop_next", &secret_password(3, 0));
    sim.apply(&Step::recycle_ip(NS, "recycled", "newcomer").labels([("app", "next")]))
        .unwrap();
    assert_eq!(pod_ip(&sim, "newcomer"), recycled_ip);
    ends_only(
        "IP reused by a new pod",
        &mut recycled,
        &mut [("legacy", &mut legacy), ("dba", &mut dba)],
    )
    .await;
    let mut newcomer = granted_session(&s, recycled_ip, "shop_next", &secret_password(3, 0)).await;
    assert!(alive(&mut newcomer).await);

    // The legacy session was left alone, and counted: its host is a name.
    assert!(store.sessions_unmatched() > 0);
    let unmatched = engine.snapshot().sessions_unmatched;
    assert!(
        unmatched > 0,
        "the legacy session is counted as unmatched in /metrics"
    );
    assert!(engine
        .metrics
        .render_prometheus()
        .contains("podgrant_sessions_unmatched_total"));
    engine.stop().await;
    drop(newcomer);
    let _ = store.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_reaches_the_general_log_on_create_or_change() {
    let s = server().await;
    let schema = "podgrant_genlog";
    let sim = sim();
    // Generated passwords: quotes, `;`, comment openers, non-ASCII.
    let first = secret_password(0, 0) + &secret_password(5, 1) + "ü密";
    let second = secret_password(0, 7) + &secret_password(4, 3);
    assert!(first.contains('\'') && second.contains("--") && second.contains('"'));
    opt_in(&sim, "app", "app", "shop_app", &first);
    sim.apply(&Step::create_pod(NS, "p").labels([("app", "app")]))
        .unwrap();
    let store = MysqlStore::connect(s.mysql.url(), schema)
        .await
        .expect("store");
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(schema);
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    let ip = pod_ip(&sim, "p");
    let mut c = granted_session(&s, ip, "shop_app", &first).await;
    assert!(alive(&mut c).await);

    // Change the Secret: the account's password follows (ALTER USER), the old one stops working.
    let mut secret = sim.get("secrets", Some(NS), "app-db").unwrap();
    secret["stringData"] = json!({ "password": second });
    sim.replace("secrets", Some(NS), secret).unwrap();
    wait_until_async("the new password works", WITHIN, || async {
        s.session(ip, "shop_app", &second).await.is_ok()
    })
    .await;
    assert!(s.session(ip, "shop_app", &first).await.is_err());
    engine.stop().await;
    let _ = store.disconnect().await;

    let log = s.general_log();
    // The log is on and holds the account statements (so its silence about passwords means
    // something), with the hash in place of each password.
    assert!(
        log.contains("CREATE USER IF NOT EXISTS 'shop_app'@"),
        "{log}"
    );
    assert!(log.contains("ALTER USER IF EXISTS 'shop_app'@"), "{log}");
    for pw in [&first, &second] {
        assert!(
            log.contains(&podgrant_core::sql::native_hash(pw)),
            "the hash of each password was sent"
        );
        assert!(
            !log.contains(pw.as_str()),
            "a password is in the general log"
        );
        // Not even as the quoted literal a statement would carry.
        assert!(!log.contains(&pw.replace('\'', "''")));
    }
}
