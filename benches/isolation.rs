//! What the isolation step costs a child's start (issue #9): the fixture server spawned directly
//! and through `lastmile __exec --` (no_new_privs, capabilities cleared, a Landlock domain, the
//! seccomp filter, then exec), each timed from spawn to its answer to `initialize` — its first
//! answered request. The two ways alternate in one run so machine noise hits both alike; the
//! table gives medians, the difference and the ratio.
//!
//! `cargo bench --bench isolation` (`LASTMILE_BENCH_RUNS=N` sets the starts per way, default 40).
//! Linux only: elsewhere children start directly and there is nothing to measure.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::transport::TokioChildProcess;

const LASTMILE: &str = env!("CARGO_BIN_EXE_lastmile");
const FIXTURE: &str = env!("CARGO_BIN_EXE_lastmile-fixture");
const FIXTURE_ARGS: [&str; 2] = ["--name", "bench"];

async fn start_once(isolated: bool) -> Duration {
    let mut cmd = if isolated {
        let mut c = tokio::process::Command::new(LASTMILE);
        c.args(["__exec", "--", FIXTURE]);
        c
    } else {
        tokio::process::Command::new(FIXTURE)
    };
    cmd.args(FIXTURE_ARGS)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .kill_on_drop(true);
    let started = Instant::now();
    let (transport, _stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let client = ().serve(transport).await.expect("initialize answered");
    let took = started.elapsed();
    let _ = client.cancel().await;
    took
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if !cfg!(target_os = "linux") {
        println!("isolation: Linux only; children start directly elsewhere");
        return;
    }
    let runs: usize = std::env::var("LASTMILE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm the page cache for both binaries.
        start_once(false).await;
        start_once(true).await;
        let (mut plain, mut isolated) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            plain.push(start_once(false).await);
            isolated.push(start_once(true).await);
        }
        let (p, i) = (median(&mut plain), median(&mut isolated));
        println!("child start to its first answered request (initialize), {runs} starts each, alternating");
        println!("{:<28} {:>10} {:>10} {:>10}", "", "median ms", "min ms", "max ms");
        for (name, v, m) in [("plain spawn", &plain, p), ("through lastmile __exec", &isolated, i)] {
            println!(
                "{:<28} {:>10.2} {:>10.2} {:>10.2}",
                name,
                ms(m),
                ms(v[0]),
                ms(v[v.len() - 1])
            );
        }
        println!(
            "isolation step adds {:.2} ms at the median (x{:.2})",
            ms(i) - ms(p),
            i.as_secs_f64() / p.as_secs_f64()
        );
    });
}
