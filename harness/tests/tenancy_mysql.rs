//! Tenancy on a real MariaDB/MySQL (issue 9 items 1 and 6): cross-namespace claims, the engine's own login and foreign accounts are refused with a `GrantRefused` Event, a log line and a metric, and nothing is created or touched.
//!
//! Uses `MYSQL_URL`, else `mysql://root@127.0.0.1:3306/test`, else the harness's provider (a
//! self-started mariadbd); skipped loudly when none answers, and failed instead when `CI` is
//! set. Runs on the real clock (real I/O). Log lines are captured from a global subscriber.

mod engine_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use engine_support::{cleanup, config, grant_annotations, start, wait_real};
use mysql_async::prelude::*;
use podgrant_core::store::mysql::MysqlStore;
use podgrant_sim::{Sim, Step};

const LOCAL: &str = "mysql://root@127.0.0.1:3306/test";

/// A reachable server URL and, when spawned, the guard that keeps it alive.
async fn server(test: &str) -> Option<(String, Option<podgrant_harness::mysql::TestMysql>)> {
    let got = find_server(test).await;
    if got.is_none() && std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
        panic!("[{test}] no MySQL in CI: this test must not pass without its component");
    }
    got
}

async fn find_server(test: &str) -> Option<(String, Option<podgrant_harness::mysql::TestMysql>)> {
    if let Ok(url) = std::env::var("MYSQL_URL") {
        if !url.is_empty() {
            return Some((url, None));
        }
    }
    let pool = mysql_async::Pool::new(LOCAL);
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(3), pool.get_conn()).await,
        Ok(Ok(_))
    );
    let _ = pool.disconnect().await;
    if ok {
        return Some((LOCAL.to_string(), None));
    }
    match podgrant_harness::mysql::provide(test).await {
        Ok(Some(m)) => Some((m.url().to_string(), Some(m))),
        Ok(None) => None,
        Err(e) => {
            eprintln!("\n*** [{test}] SKIPPED: no MySQL: {e} ***\n");
            None
        }
    }
}

/// `prefix` + a per-run hex tag (lower-case, so a valid MySQL user name fragment).
fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let tag = (n ^ ((std::process::id() as u64) << 24)) & 0xff_ffff_ffff;
    format!("{prefix}{tag:x}")
}

/// Every log line of this test binary (one global subscriber, WARN and up).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || Capture(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        std::io::stderr().write_all(b)?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines(containing: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).to_string();
    text.lines()
        .filter(|l| containing.iter().all(|c| l.contains(c)))
        .map(String::from)
        .collect()
}

fn sim(namespaces: &[&str]) -> Sim {
    let sim = Sim::builder().seed(9).build();
    for ns in namespaces {
        sim.apply(&Step::create_namespace(ns)).expect("namespace");
    }
    sim
}

/// A Secret, an opted-in Service selecting `app=<service>`, and one ready pod; returns its IP.
fn service_with_pod(sim: &Sim, ns: &str, service: &str, user: &str, db: &str) -> IpAddr {
    let secret = format!("{service}-db");
    sim.apply(&Step::create_secret(
        ns,
        &secret,
        [("password", format!("pw-{service}-x1"))],
    ))
    .expect("secret");
    sim.apply(
        &Step::create_service(ns, service, [("app", service)])
            .annotations(grant_annotations(user, db, "SELECT", &secret)),
    )
    .expect("service");
    let pod = format!("{service}-0");
    sim.apply(&Step::create_pod(ns, &pod).labels([("app", service)]))
        .expect("pod");
    let v = sim.get("pods", Some(ns), &pod).expect("pod exists");
    v.pointer("/status/podIP")
        .and_then(|s| s.as_str())
        .and_then(|s| s.parse().ok())
        .expect("pod has an IP")
}

/// Events in `ns` about Service `service` with `reason`: their messages.
fn events(sim: &Sim, ns: &str, service: &str, reason: &str) -> Vec<String> {
    sim.list("events", Some(ns))
        .into_iter()
        .filter(|e| {
            e.pointer("/involvedObject/name").and_then(|v| v.as_str()) == Some(service)
                && e.pointer("/reason").and_then(|v| v.as_str()) == Some(reason)
        })
        .map(|e| {
            e.pointer("/message")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn hosts_of(pool: &mysql_async::Pool, user: &str) -> BTreeSet<String> {
    let mut c = pool.get_conn().await.expect("conn");
    let hosts: Vec<String> = c
        .exec("SELECT host FROM mysql.user WHERE user = ?", (user,))
        .await
        .expect("mysql.user");
    hosts.into_iter().collect()
}

/// Namespace `other` asks for team `shop`'s database; namespace `shop` asks for a user name
/// that `shop-x` already holds (both prefixes allow `shop_x_…`; without the ledger rule `shop`,
/// the lower name, would take it over). Both are refused with a `GrantRefused` Event, a log
/// line and a metric, and no account is created for them. On the old code both were granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_claims_are_refused_with_an_event_and_create_nothing() {
    let Some((url, _guard)) = server("tenancy_cross_ns").await else {
        return;
    };
    logs();
    let schema = unique("pgten_");
    let held = unique("shop_x_");
    let thief = unique("other_");
    let store = MysqlStore::connect(&url, &schema)
        .await
        .expect("MysqlStore");
    let pool = mysql_async::Pool::new(url.as_str());
    let sim = sim(&["shop", "shop-x", "other"]);
    let ip_held = service_with_pod(&sim, "shop-x", "api", &held, "shop_x");
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(&schema);
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    wait_real("shop-x's account", Duration::from_secs(60), || async {
        hosts_of(&pool, &held).await == BTreeSet::from([ip_held.to_string()])
    })
    .await;

    service_with_pod(&sim, "other", "thief", &thief, "shop");
    service_with_pod(&sim, "shop", "api", &held, "shop");
    wait_real("GrantRefused Events", Duration::from_secs(60), || async {
        !events(&sim, "other", "thief", "GrantRefused").is_empty()
            && !events(&sim, "shop", "api", "GrantRefused").is_empty()
    })
    .await;
    let m = events(&sim, "other", "thief", "GrantRefused").join("\n");
    assert!(
        m.contains("database \"shop\"") && m.contains("\"other\""),
        "{m}"
    );
    let m = events(&sim, "shop", "api", "GrantRefused").join("\n");
    assert!(m.contains("belongs to namespace \"shop-x\""), "{m}");
    // One more reconcile round trip after the Events: still nothing for the refused claims.
    engine_support::wait_until_async(
        "a reconcile after the refusals",
        Duration::from_secs(30),
        || {
            let s = engine.snapshot();
            async move { s.reconciles + s.reconciles_skipped >= 2 }
        },
    )
    .await;
    assert!(
        hosts_of(&pool, &thief).await.is_empty(),
        "other got an account"
    );
    assert_eq!(
        hosts_of(&pool, &held).await,
        BTreeSet::from([ip_held.to_string()]),
        "shop took shop-x's user name"
    );
    let s = engine.snapshot();
    assert!(
        s.refusals["namespace"] >= 1 && s.refusals["user_owned"] >= 1,
        "{:?}",
        s.refusals
    );
    assert!(s.tenancy_enforced);
    assert_eq!(
        log_lines(&[
            "service skipped",
            "service=other/thief",
            "kind=\"namespace\""
        ])
        .len(),
        1
    );
    assert_eq!(
        log_lines(&["service skipped", "service=shop/api", "kind=\"user_owned\""]).len(),
        1
    );
    engine.stop().await;
    cleanup(&pool, &[&held, &thief], &schema).await;
    let _ = pool.disconnect().await;
}

/// The engine logs in as its own MySQL user (created here, with the privileges it needs); a
/// tenant whose prefix allows that name asks for it. Refused (Event, log, metric), and no
/// `'<engine user>'@'<pod IP>'` appears. On the old code the tenant got the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_own_login_user_is_refused() {
    let Some((url, _guard)) = server("tenancy_engine_login").await else {
        return;
    };
    logs();
    let schema = unique("pgtenl_");
    let login = unique("shop_eng");
    let pw = "engine-pw-Zq81";
    let pool = mysql_async::Pool::new(url.as_str());
    {
        let mut c = pool.get_conn().await.expect("conn");
        for host in ["127.0.0.1", "localhost", "::1"] {
            c.query_drop(format!(
                "CREATE USER '{login}'@'{host}' IDENTIFIED BY '{pw}'"
            ))
            .await
            .expect("create the engine login");
            c.query_drop(format!(
                "GRANT ALL PRIVILEGES ON *.* TO '{login}'@'{host}' WITH GRANT OPTION"
            ))
            .await
            .expect("grant the engine login");
        }
    }
    // The same server, as the engine's own login.
    let (scheme, rest) = url.split_once("://").expect("url scheme");
    let after_user = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let engine_url = format!("{scheme}://{login}:{pw}@{after_user}");
    let store = MysqlStore::connect(&engine_url, &schema)
        .await
        .expect("MysqlStore as the engine's own login");
    let sim = sim(&["shop"]);
    let ip = service_with_pod(&sim, "shop", "sneaky", &login, "shop");
    let mut cfg = config();
    // Exactly what the binary does with --mysql-url.
    let user = podgrant_core::tenancy::url_user(&engine_url).expect("user in URL");
    assert_eq!(user, login);
    cfg.policy = cfg
        .policy
        .with_ledger_schema(&schema)
        .with_reserved_user(&user);
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    wait_real("GrantRefused Event", Duration::from_secs(60), || async {
        !events(&sim, "shop", "sneaky", "GrantRefused").is_empty()
    })
    .await;
    let m = events(&sim, "shop", "sneaky", "GrantRefused").join("\n");
    assert!(m.contains("reserved"), "{m}");
    assert!(
        !m.contains(pw) && !log_lines(&[pw]).iter().any(|_| true),
        "password leaked"
    );
    engine_support::wait_until_async("a reconcile", Duration::from_secs(30), || {
        let n = engine.snapshot().reconciles;
        async move { n >= 1 }
    })
    .await;
    assert!(
        !hosts_of(&pool, &login).await.contains(&ip.to_string()),
        "a tenant got the engine's own login at its pod IP"
    );
    let s = engine.snapshot();
    assert!(s.refusals["reserved"] >= 1, "{:?}", s.refusals);
    assert_eq!(
        log_lines(&[
            "service skipped",
            "service=shop/sneaky",
            "kind=\"reserved\""
        ])
        .len(),
        1
    );
    engine.stop().await;
    drop(store);
    cleanup(&pool, &[&login], &schema).await;
    let _ = pool.disconnect().await;
}

/// `'shop_f…'@'<pod IP>'` exists before podgrant starts and is not in its ledger. It is reported
/// (Event, log, metric) and left exactly as it was. On the old code nothing said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_account_at_a_desired_key_is_reported_and_untouched() {
    let Some((url, _guard)) = server("tenancy_foreign").await else {
        return;
    };
    logs();
    let schema = unique("pgtenf_");
    let user = unique("shop_f");
    let pool = mysql_async::Pool::new(url.as_str());
    let sim = sim(&["shop"]);
    let ip = service_with_pod(&sim, "shop", "legacy", &user, "shop");
    let mut c = pool.get_conn().await.expect("conn");
    c.query_drop(format!(
        "CREATE USER '{user}'@'{ip}' IDENTIFIED BY 'dba-pw-77'"
    ))
    .await
    .expect("foreign account");
    let grants_before: Vec<String> = c
        .query(format!("SHOW GRANTS FOR '{user}'@'{ip}'"))
        .await
        .expect("grants");
    drop(c);
    let store = MysqlStore::connect(&url, &schema)
        .await
        .expect("MysqlStore");
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(&schema);
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    wait_real("GrantRefused Event", Duration::from_secs(60), || async {
        !events(&sim, "shop", "legacy", "GrantRefused").is_empty()
    })
    .await;
    let m = events(&sim, "shop", "legacy", "GrantRefused").join("\n");
    assert!(
        m.contains("not podgrant's") && m.contains(&ip.to_string()),
        "{m}"
    );
    let s = engine.snapshot();
    assert!(s.refusals["foreign"] >= 1, "{:?}", s.refusals);
    assert_eq!(s.ledger_size, 0, "adopted into the ledger");
    assert_eq!(
        log_lines(&["service skipped", "service=shop/legacy", "kind=\"foreign\""]).len(),
        1
    );
    let mut c = pool.get_conn().await.expect("conn");
    let grants_after: Vec<String> = c
        .query(format!("SHOW GRANTS FOR '{user}'@'{ip}'"))
        .await
        .expect("grants");
    drop(c);
    assert_eq!(
        grants_after, grants_before,
        "the foreign account was touched"
    );
    engine.stop().await;
    cleanup(&pool, &[&user], &schema).await;
    let _ = pool.disconnect().await;
}

/// Issue 9 item 6: 37 bad Services at once got 26 log lines (the log shared the Event bucket).
/// Now: 37 log lines, the metric counts 37, and the Events are what the bucket allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_seven_bad_services_at_once_give_37_log_lines_and_count_37() {
    let Some((url, _guard)) = server("tenancy_37").await else {
        return;
    };
    logs();
    let schema = unique("pgten37_");
    let tag = unique("b");
    let store = MysqlStore::connect(&url, &schema)
        .await
        .expect("MysqlStore");
    let sim = sim(&["other"]);
    for i in 0..37 {
        service_with_pod(
            &sim,
            "other",
            &format!("{tag}-{i}"),
            &format!("other_{tag}_{i}"),
            "shop",
        );
    }
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(&schema);
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    let needle = format!("service=other/{tag}-");
    wait_real("37 log lines", Duration::from_secs(60), || async {
        log_lines(&["service skipped", &needle]).len() >= 37
    })
    .await;
    wait_real("Events posted", Duration::from_secs(60), || async {
        engine.snapshot().k8s_events_posted >= 25
    })
    .await;
    let lines = log_lines(&["service skipped", &needle]);
    let services: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.split(&needle).nth(1)?.split_whitespace().next())
        .collect();
    assert_eq!(lines.len(), 37, "{lines:#?}");
    assert_eq!(services.len(), 37, "{services:?}");
    let s = engine.snapshot();
    assert_eq!(s.refusals["namespace"], 37, "{:?}", s.refusals);
    let posted = sim
        .list("events", Some("other"))
        .into_iter()
        .filter(|e| e.pointer("/reason").and_then(|v| v.as_str()) == Some("GrantRefused"))
        .count();
    assert!((25..=37).contains(&posted), "{posted} Events");
    engine.stop().await;
    let pool = mysql_async::Pool::new(url.as_str());
    cleanup(&pool, &[], &schema).await;
    let _ = pool.disconnect().await;
}
