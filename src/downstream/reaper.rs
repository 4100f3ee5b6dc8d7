//! The link to `lastmile __reaper` (see `cli/reaper.rs`): registers each child's process group so
//! that, if lastmile dies without stopping them (SIGKILL included), the reaper kills them.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// A running reaper; dropping it (lastmile exiting) closes its stdin.
pub struct ReaperLink {
    stdin: Mutex<Option<ChildStdin>>,
    _child: Child,
}

impl ReaperLink {
    /// Start `<lastmile> __reaper` in its own process group.
    pub fn start() -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("__reaper")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        Ok(ReaperLink {
            stdin: Mutex::new(stdin),
            _child: child,
        })
    }

    fn send(&self, line: String) {
        if let Ok(mut guard) = self.stdin.lock()
            && let Some(stdin) = guard.as_mut()
            && stdin.write_all(line.as_bytes()).is_err()
        {
            tracing::warn!("the reaper is gone; children may outlive a crash of lastmile");
            *guard = None;
        }
    }

    /// A child's process group started.
    pub fn register(&self, pgid: u32) {
        self.send(format!("+{pgid}\n"));
    }

    /// A child's process group was stopped.
    pub fn unregister(&self, pgid: u32) {
        self.send(format!("-{pgid}\n"));
    }
}
