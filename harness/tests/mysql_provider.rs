//! The hermetic MySQL provider: a self-started mariadbd in a temp datadir really runs here.

use mysql_async::prelude::Queryable;
use podgrant_harness::mysql::{self, Provider};

#[tokio::test]
async fn spawned_mariadbd_answers_and_is_stopped_on_drop() {
    // What PODGRANT_TEST_MYSQL=spawn forces: this path must work on this machine.
    let m = mysql::spawn().await.expect("self-started server");
    eprintln!("provider: {} ({})", m.provider(), m.redacted_url());
    assert!(matches!(m.provider(), Provider::Spawned { .. }));
    let datadir = m.datadir().expect("datadir");
    assert!(datadir.join("mysql").is_dir(), "system tables installed");

    let pool = mysql_async::Pool::new(mysql_async::Opts::from_url(m.url()).expect("url"));
    let mut conn = pool.get_conn().await.expect("connect");
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await
        .expect("query")
        .expect("row");
    assert!(!version.is_empty());
    conn.query_drop("CREATE USER IF NOT EXISTS 'pgh_probe'@'10.9.8.7' IDENTIFIED BY 'x'")
        .await
        .expect("create user");
    let n: u64 = conn
        .query_first("SELECT COUNT(*) FROM mysql.user WHERE User = 'pgh_probe'")
        .await
        .expect("count")
        .expect("row");
    assert_eq!(n, 1);
    drop(conn);
    pool.disconnect().await.expect("disconnect");

    let pid_file = datadir.parent().expect("dir").join("mysqld.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    drop(m);
    // SAFETY: kill with signal 0 only checks existence.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "server process {pid} still alive after drop");
    assert!(!datadir.exists(), "temp datadir removed");
}

#[tokio::test]
async fn provide_names_its_provider_or_skips_loudly() {
    match mysql::provide("provide_names_its_provider_or_skips_loudly").await {
        Ok(Some(m)) => {
            let pool = mysql_async::Pool::new(mysql_async::Opts::from_url(m.url()).expect("url"));
            let one: u8 = pool
                .get_conn()
                .await
                .expect("connect")
                .query_first("SELECT 1")
                .await
                .expect("query")
                .expect("row");
            assert_eq!(one, 1);
            pool.disconnect().await.expect("disconnect");
        }
        // Printed loudly by the provider; under PODGRANT_REQUIRE=mysql it is an Err instead.
        Ok(None) => eprintln!("SKIPPED: no MySQL provider (printed above)"),
        Err(e) => panic!("provider failed: {e}"),
    }
}
