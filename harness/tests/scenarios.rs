//! Scenario files run under tokio's paused clock: the examples pass on the real engine, and
//! deliberately broken subjects fail with the right invariant and a capture on disk.

use std::path::{Path, PathBuf};

use podgrant_harness::invariants::Invariant;
use podgrant_harness::scenario::{self, RunOptions, Scenario, ScenarioError, Subject};

fn example(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.json"));
    Scenario::load(&path).expect("example scenario loads")
}

fn run(
    sc: &Scenario,
    subject: Subject,
    capture: bool,
) -> (scenario::ScenarioReport, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RunOptions::paused(dir.path());
    opts.subject = subject;
    opts.capture = capture;
    let report = scenario::run(sc, &opts).expect("scenario runs");
    eprintln!("{report}");
    (report, dir)
}

fn assert_capture(report: &scenario::ScenarioReport) -> PathBuf {
    let c = report.capture.as_ref().expect("a capture on failure");
    assert!(c.profile.is_file(), "{}", c.profile.display());
    assert!(c.flamegraph.is_file());
    assert!(c.top.is_file());
    assert!(report.artifacts_dir.join("report.json").is_file());
    assert!(report.artifacts_dir.join("report.txt").is_file());
    c.profile.clone()
}

#[test]
fn example_scenarios_pass_on_the_engine() {
    for name in ["basic-churn", "watch-closes"] {
        let (r, _dir) = run(&example(name), Subject::Engine, false);
        assert!(r.passed, "{r}");
        assert!(r.desired_accounts > 0, "{r}");
        assert_eq!(r.owned_accounts, r.desired_accounts);
        assert!(r.simulated >= std::time::Duration::from_secs(20), "{r}");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(r.artifacts_dir.join("report.json")).expect("report.json"),
        )
        .expect("json");
        assert_eq!(json["passed"], true);
    }
}

#[test]
fn planted_never_revokes_fails_convergence_and_safety() {
    let (r, _dir) = run(&example("basic-churn"), Subject::NeverRevokes, true);
    assert!(!r.passed);
    let broken = r.broken();
    assert!(broken.contains(&Invariant::Convergence), "{r}");
    assert!(broken.contains(&Invariant::Safety), "{r}");
    assert!(!broken.contains(&Invariant::BusyLoop), "{r}");
    assert_capture(&r);
}

#[test]
fn planted_spin_on_closed_stream_fails_busy_loop_without_hanging() {
    let (r, _dir) = run(&example("watch-closes"), Subject::SpinOnClosedStream, false);
    assert!(!r.passed);
    assert_eq!(r.broken().first(), Some(&Invariant::BusyLoop), "{r}");
    // The watchdog profiled the stuck thread: the seed's function is in the profile.
    let c = r.capture.as_ref().expect("watchdog capture");
    assert!(c.tables.contains("WatchPodsBySelector"), "{}", c.tables);
    assert_capture(&r);
}

#[test]
fn planted_bare_watcher_fails_rewatch_rate() {
    let (r, _dir) = run(&example("watch-closes"), Subject::BareWatcher, false);
    assert!(!r.passed);
    assert_eq!(r.broken().first(), Some(&Invariant::RewatchRate), "{r}");
    assert!(r.work.watch_requests > 100, "{r}");
    assert_capture(&r);
}

#[test]
fn bad_scenario_files_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.json");
    std::fs::write(&path, "{\"name\": \"x\", \"stepz\": []}").expect("write");
    let e = Scenario::load(&path).expect_err("unknown field");
    let msg = e.to_string();
    assert!(msg.contains("bad.json") && msg.contains("stepz"), "{msg}");

    std::fs::write(
        &path,
        r#"{"name": "x", "steps": [
            {"at": "2s", "step": {"op": "compact"}},
            {"at": "1s", "step": {"op": "compact"}}]}"#,
    )
    .expect("write");
    assert!(matches!(
        Scenario::load(&path),
        Err(ScenarioError::Order { index: 1, .. })
    ));

    let missing = Scenario::load(&dir.path().join("nope.json")).expect_err("missing");
    assert!(missing.to_string().contains("nope.json"));

    // A step that the sim rejects names the step.
    let sc = Scenario::from_json(
        &path,
        r#"{"name": "y", "initial": [{"op": "delete_pod", "namespace": "a", "name": "ghost"}]}"#,
    )
    .expect("parses");
    let e = scenario::run(&sc, &RunOptions::paused(dir.path())).expect_err("ghost pod");
    assert!(e.to_string().contains("initial step 0"), "{e}");
}

#[test]
fn mysql_scenario_converges_on_a_real_server_in_real_time() {
    // The provider prints which server it used (or SKIPPED loudly); under
    // PODGRANT_REQUIRE=mysql a missing server is an error, not NoMysql, so this cannot skip.
    let sc = example("mysql-short");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RunOptions::real_time(dir.path());
    opts.capture = false;
    let r = match scenario::run(&sc, &opts) {
        Err(ScenarioError::NoMysql) => {
            eprintln!("\n*** SKIPPED mysql_scenario_converges_on_a_real_server_in_real_time: no MySQL ***\n");
            return;
        }
        other => other.expect("scenario runs"),
    };
    eprintln!("{r}");
    assert!(!r.paused_clock, "mysql forces real time");
    assert!(r.passed, "{r}");
    assert!(r.desired_accounts >= 3, "{r}");
    assert_eq!(r.owned_accounts, r.desired_accounts, "{r}");
}
