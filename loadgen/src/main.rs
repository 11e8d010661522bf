//! loadgen: drives async-micro with goose users and reports what they saw.
//!
//! ```text
//! loadgen post-tasks --users 64 --duration 30s
//! loadgen e2e --rate 2000 --duration 10m --json e2e.json
//! ```
//!
//! [`cli`] reads the command line, [`scenarios`] has what the users do and
//! the fixed-rate schedule, [`report`] the summary; goose runs the users and
//! measures every request.

mod cli;
mod report;
mod scenarios;

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::atomic::Ordering,
    time::Duration,
};

use goose::prelude::*;

use crate::{cli::Options, report::Summary};

// jemalloc, as the services use: under glibc's malloc, allocation was
// about a quarter of the load generator's CPU at a fixed rate, CPU the
// services it measures share (BENCHMARKS.md). The workspace's compiled-in
// options come with it (one arena, `.cargo/config.toml`); on a host with
// many cores, `_RJEM_MALLOC_CONF=narenas:<cores>` lets its threads allocate
// side by side.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(failed) if failed => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadgen: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the load; `Ok(true)` when every iteration failed (nothing answered).
async fn run(options: Options) -> Result<bool, Box<dyn std::error::Error>> {
    let scenario = scenarios::start(&options)?;
    let users = options.users();
    let config = goose::config::GooseConfiguration::default();
    let attack = GooseAttack::initialize_with_config(config)?
        .register_scenario(scenario)
        .set_default(GooseDefault::Host, options.host.as_str())?
        .set_default(GooseDefault::Users, users)?
        // Every user at once: the schedule, not the ramp, shapes the load.
        .set_default(GooseDefault::HatchRate, users.to_string().as_str())?
        .set_default(GooseDefault::RunTime, options.duration.as_secs() as usize)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        // Count from the first request: every user starts at once anyway.
        .set_default(GooseDefault::NoResetMetrics, true)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoWebSocket, true)?
        .set_default(GooseDefault::Quiet, 1)?;
    eprintln!(
        "loadgen {} against {} ({:?}, {:?})",
        options.scenario, options.host, options.load, options.duration
    );
    let progress = tokio::spawn(progress_line());
    let metrics = attack.execute().await?;
    progress.abort();
    let run = scenarios::run();
    let summary = Summary::new(
        &options,
        &metrics,
        run,
        // Iterations per second over the time they kept starting, but never
        // over less than the run (a platform that stopped answering must
        // not look fast).
        run.active().max(run.elapsed().min(options.duration)),
    );
    println!("{}", summary.table());
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)?;
        eprintln!("summary written to {path}");
    }
    Ok(summary.iterations > 0 && summary.failed_iterations == summary.iterations)
}

/// Once a second: elapsed time, iterations per second over the last second,
/// totals and failures; rewritten in place on a terminal.
async fn progress_line() {
    let run = scenarios::run();
    let terminal = std::io::stderr().is_terminal();
    let mut last = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let total = run.iterations.load(Ordering::Relaxed);
        let failed = run.failures.load(Ordering::Relaxed);
        let e2e = run.e2e_micros.lock().map(|l| l.len()).unwrap_or(0);
        let line = format!(
            "[{:>5.0}s] {:>7}/s  iterations {total}  failed {failed}  followed to done {e2e}",
            run.elapsed().as_secs_f64(),
            total - last
        );
        last = total;
        let mut stderr = std::io::stderr();
        if terminal {
            let _ = write!(stderr, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
    }
}
