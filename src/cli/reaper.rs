//! `lastmile __reaper`: a tiny watchdog that outlives lastmile only to clean up after it.
//!
//! `serve` starts it with a pipe on its stdin and writes `+PGID` when a child's process group starts
//! and `-PGID` when it has been stopped. When the pipe closes — lastmile exited, however it exited,
//! SIGKILL included — the reaper kills every process group still registered, grandchildren and all.
//! This works on every Unix (unlike Linux's PR_SET_PDEATHSIG, which reaches only the direct child)
//! and needs no unsafe code. It runs in its own process group so a terminal's Ctrl-C does not reach
//! it before lastmile has had its chance to stop the children gracefully.

use std::collections::BTreeSet;
use std::io::BufRead;

/// Read registrations until EOF, then kill what is left. Returns the exit code.
pub fn run() -> u8 {
    // It holds no secret, but it can SIGKILL every child's group: keep other processes out.
    crate::downstream::isolate::make_non_dumpable();
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, pgid) = line.split_at(line.len().min(1));
        let Ok(pgid) = pgid.trim().parse::<i32>() else {
            continue;
        };
        if pgid <= 1 {
            continue;
        }
        match op {
            "+" => {
                groups.insert(pgid);
            }
            "-" => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    kill_groups(&groups);
    crate::exit_codes::OK
}

#[cfg(unix)]
fn kill_groups(groups: &BTreeSet<i32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    for pgid in groups {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_groups(_groups: &BTreeSet<i32>) {
    // Windows children are tied to lastmile by a job object (process-wrap's JobObject), which the
    // system closes when lastmile dies.
}
