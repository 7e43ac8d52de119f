//! The `podgrant` binary's failure modes: bad flags and an unreachable cluster give one clear line and a non-zero exit.

use std::process::{Command, Output};

fn podgrant(args: &[&str], kubeconfig: Option<&std::path::Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podgrant"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("PODGRANT_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    if let Some(kc) = kubeconfig {
        cmd.env("KUBECONFIG", kc);
    }
    cmd.env("RUST_LOG", "info");
    cmd.output().expect("run podgrant")
}

fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    // A loopback port nobody listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join(format!("kubeconfig-{port}"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let o = podgrant(&["run", "--no-such-flag"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--no-such-flag"), "{}", stderr(&o));
}

#[test]
fn bad_duration_is_a_usage_error_naming_the_flag() {
    let o = podgrant(&["run", "--debounce", "soon", "--store", "memory"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--debounce"), "{}", stderr(&o));
}

#[test]
fn missing_mysql_url_is_one_clear_line() {
    let o = podgrant(&["run"], None);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("podgrant: error: --mysql-url"), "{err}");
}

#[test]
fn bad_privilege_in_allowlist_is_rejected() {
    let o = podgrant(
        &[
            "run",
            "--store",
            "memory",
            "--allow-privilege",
            "SELECT,ALL; DROP",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("--allow-privilege"), "{err}");
}

#[test]
fn unreachable_cluster_fails_fast_with_one_line() {
    let dir = std::env::temp_dir().join(format!("podgrant-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = unreachable_kubeconfig(&dir);
    let o = podgrant(
        &[
            "run",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--store",
            "memory",
            "--connect-timeout",
            "3s",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("podgrant: error: cannot reach the Kubernetes API server"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreachable_mysql_fails_fast_without_leaking_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mysql://root:Hunter2Secret@127.0.0.1:{port}/test");
    let o = podgrant(
        &["run", "--mysql-url", &url, "--connect-timeout", "5s"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("podgrant: error: cannot use MySQL at mysql://root:***@127.0.0.1:"),
        "{err}"
    );
    assert!(
        !err.contains("Hunter2Secret") && !out.contains("Hunter2Secret"),
        "{err}"
    );
}

#[test]
fn mysql_url_from_the_environment_is_used_and_redacted() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podgrant"));
    cmd.args(["run", "--connect-timeout", "5s"]).env(
        "PODGRANT_MYSQL_URL",
        format!("mysql://app:EnvSecret99@127.0.0.1:{port}/"),
    );
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("mysql://app:***@127.0.0.1"), "{err}");
    assert!(!err.contains("EnvSecret99"), "{err}");
}

#[test]
fn bad_policy_file_fails_start_naming_the_file_and_the_problem() {
    let dir = std::env::temp_dir().join(format!("podgrant-cli-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str)] = &[
        (
            r#"{"namespaces": {"shop": {"users": ["shop_*"], "databse": []}}}"#,
            "unknown field `databse`",
        ),
        (
            r#"{"namespaces": {"shop": {"users": ["sh*p"]}}}"#,
            "namespaces.shop.users: pattern \"sh*p\"",
        ),
        (
            r#"{"namespaces": {"Team_A": {}}}"#,
            "\"Team_A\" is not a Kubernetes namespace name",
        ),
        (
            "namespaces:\n  shop:\n    users: [shop_*]\n    databses: [shop]\n",
            "unknown field `databses`",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let ext = if text.starts_with('{') {
            "json"
        } else {
            "yaml"
        };
        let path = dir.join(format!("policy-{i}.{ext}"));
        std::fs::write(&path, text).unwrap();
        let o = podgrant(
            &[
                "run",
                "--store",
                "memory",
                "--policy",
                path.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!(
                "podgrant: error: policy file {}: ",
                path.display()
            )),
            "{err}"
        );
        assert!(last.contains(want), "{want}: {err}");
    }
    let missing = dir.join("no-such-policy.json");
    let o = podgrant(
        &[
            "run",
            "--store",
            "memory",
            "--policy",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read it"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tenancy_off_says_so_loudly_at_start() {
    let dir = std::env::temp_dir().join(format!("podgrant-cli-toff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = unreachable_kubeconfig(&dir);
    let o = podgrant(
        &[
            "run",
            "--store",
            "memory",
            "--tenancy",
            "off",
            "--connect-timeout",
            "2s",
        ],
        Some(&kc),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.lines().any(|l| l.contains("WARN")
            && l.contains("--tenancy=off")
            && l.contains("ANY namespace")),
        "{err}"
    );
    let o = podgrant(&["run", "--store", "memory", "--tenancy", "maybe"], None);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
