//! `podgrant-test-mysql --env-file FILE`: one private mariadbd for a whole test run (TCP on a free 127.0.0.1 port); writes `MYSQL_URL`/`PODGRANT_SPAWNED_MYSQL` to FILE, stops the server on SIGTERM/SIGINT or when its parent exits.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use podgrant_harness::mysql::{self, Provider, SHARED_SPAWN_ENV};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podgrant-test-mysql: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let env_file = match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--env-file"), Some(path), None) => PathBuf::from(path),
        _ => bail!("usage: podgrant-test-mysql --env-file FILE"),
    };
    // When the script that started us dies, we get SIGTERM and stop the server (no orphan).
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets this process's parent-death signal.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(serve(env_file))
}

async fn serve(env_file: PathBuf) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // SAFETY: getppid has no preconditions. Parent gone before PR_SET_PDEATHSIG took effect.
    if unsafe { libc::getppid() } == 1 {
        bail!("parent exited before the server started");
    }
    let server = mysql::spawn()
        .await
        .context("starting a private mariadbd")?;
    let Provider::Spawned { binary, .. } = server.provider() else {
        bail!("spawn returned {}", server.provider());
    };
    // Written whole, then renamed: a reader never sees half a file.
    let tmp = env_file.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| tmp.display().to_string())?;
    writeln!(f, "MYSQL_URL={}", server.url())?;
    writeln!(f, "{SHARED_SPAWN_ENV}={}", binary.display())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &env_file).with_context(|| env_file.display().to_string())?;
    eprintln!(
        "podgrant-test-mysql: {} at {} (pid {}), until SIGTERM",
        server.provider(),
        server.redacted_url(),
        std::process::id()
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let _ = std::fs::remove_file(&env_file);
    drop(server);
    eprintln!("podgrant-test-mysql: server stopped");
    Ok(())
}
