//! The docker provider for real: a container of `PODGRANT_MYSQL_IMAGE` (default the locally built `podgrant/mariadb:10.11-local`) on the host network, a user and grants created on it; Docker missing fails under `PODGRANT_REQUIRE=docker`.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use podgrant_harness::mysql::{self, MysqlError, Provider};
use podgrant_harness::require::{skip_or_fail, Component};

fn docker_out(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn docker_provider_runs_the_image_and_a_user_gets_exactly_its_grants() {
    let test = "mysql_docker";
    // What PODGRANT_TEST_MYSQL=docker forces, called directly so that a missing Docker is
    // judged as `docker` (not `mysql`) by PODGRANT_REQUIRE.
    let m = match mysql::docker().await {
        Ok(m) => m,
        Err(MysqlError::NoDocker(why)) => return skip_or_fail(Component::Docker, test, &why),
        Err(e) => panic!("[{test}] docker provider failed: {e}"),
    };
    eprintln!(
        "[{test}] MySQL provider: {} ({}), image {}",
        m.provider(),
        m.redacted_url(),
        mysql::image()
    );
    let Provider::Docker { container, image } = m.provider().clone() else {
        panic!("[{test}] expected a docker provider, got {}", m.provider());
    };
    assert_eq!(image, mysql::image(), "the configured image ran");
    assert_eq!(
        docker_out(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &container]).as_deref(),
        Some("host"),
        "host networking only"
    );

    // The container's server, not the machine's: its own port and version.
    let port: u16 = Opts::from_url(m.url()).expect("url").tcp_port();
    assert_ne!(port, 3306, "a free port, not the machine's server");
    let mut root =
        Conn::new(OptsBuilder::from_opts(Opts::from_url(m.url()).unwrap()).prefer_socket(false))
            .await
            .expect("root over TCP");
    let (served_port, version): (u16, String) = root
        .query_first("SELECT @@port, VERSION()")
        .await
        .expect("query")
        .expect("row");
    assert_eq!(served_port, port);
    eprintln!("[{test}] server version {version} on port {served_port}");
    if image == mysql::DEFAULT_IMAGE {
        assert!(
            version.contains("10.11") && version.contains("MariaDB"),
            "{version}"
        );
    }

    for stmt in [
        "CREATE DATABASE pgd_db",
        "CREATE TABLE pgd_db.t (x INT)",
        "CREATE USER 'pgd_user'@'127.0.0.1' IDENTIFIED BY 'pgd-pw;''\"x'",
        "GRANT SELECT, INSERT ON pgd_db.* TO 'pgd_user'@'127.0.0.1'",
    ] {
        root.query_drop(stmt)
            .await
            .unwrap_or_else(|e| panic!("{stmt}: {e}"));
    }
    let grants: Vec<String> = root
        .query("SHOW GRANTS FOR 'pgd_user'@'127.0.0.1'")
        .await
        .expect("show grants");
    assert!(
        grants
            .iter()
            .any(|g| g.starts_with("GRANT SELECT, INSERT ON `pgd_db`.*")),
        "{grants:?}"
    );

    // The account works from 127.0.0.1 with exactly those privileges.
    let user_opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .prefer_socket(false)
        .user(Some("pgd_user"))
        .pass(Some("pgd-pw;'\"x"))
        .db_name(Some("pgd_db"));
    let mut user = Conn::new(user_opts).await.expect("the new user logs in");
    user.query_drop("INSERT INTO t VALUES (1)")
        .await
        .expect("INSERT granted");
    let n: u64 = user
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .expect("SELECT granted")
        .expect("row");
    assert_eq!(n, 1);
    let denied = user.query_drop("DELETE FROM t").await;
    assert!(denied.is_err(), "DELETE was not granted: {denied:?}");
    drop(user);
    drop(root);

    drop(m);
    assert_eq!(
        docker_out(&["inspect", "-f", "{{.State.Status}}", &container]),
        None,
        "container {container} removed on drop"
    );
}
