//! The log file: one per UTC day (`lastmile.YYYY-MM-DD.jsonl`, the names tracing-appender's daily
//! rotation gave), the newest few kept. Unlike tracing-appender's, each file is opened with mode
//! 0600 — tool names, arguments' shapes and errors are the user's business alone — and one found
//! looser is tightened. The process umask is left alone: children inherit it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A daily-rotating log file writer that creates its files private to the user.
pub(crate) struct DailyFile {
    dir: PathBuf,
    prefix: &'static str,
    suffix: &'static str,
    keep: usize,
    day: i64,
    file: File,
}

impl DailyFile {
    /// Open today's file in `dir` (which must exist) and drop all but the `keep` newest.
    pub(crate) fn open(
        dir: &Path,
        prefix: &'static str,
        suffix: &'static str,
        keep: usize,
    ) -> std::io::Result<Self> {
        let day = today();
        let file = open_private(&dir.join(file_name(prefix, day, suffix)))?;
        let this = DailyFile {
            dir: dir.to_path_buf(),
            prefix,
            suffix,
            keep,
            day,
            file,
        };
        this.tidy();
        Ok(this)
    }

    /// Remove the oldest files beyond `keep`; tighten the modes of the rest (an older lastmile
    /// made them 0644).
    fn tidy(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let (head, tail) = (format!("{}.", self.prefix), format!(".{}", self.suffix));
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&head) && n.ends_with(&tail))
            })
            .collect();
        // Dates sort as text; newest last.
        logs.sort();
        let excess = logs.len().saturating_sub(self.keep);
        for (i, path) in logs.iter().enumerate() {
            if i < excess {
                let _ = std::fs::remove_file(path);
            } else {
                let _ = crate::config::perms::tighten(path);
            }
        }
    }
}

impl Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let day = today();
        if day != self.day {
            self.file = open_private(&self.dir.join(file_name(self.prefix, day, self.suffix)))?;
            self.day = day;
            self.tidy();
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Open for appending, creating it with mode 0600; an existing file is tightened to 0600.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

/// Days since 1970-01-01, UTC.
fn today() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (secs / 86_400) as i64
}

fn file_name(prefix: &str, day: i64, suffix: &str) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{prefix}.{y:04}-{m:02}-{d:02}.{suffix}")
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_calendar_s() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_422), (2025, 11, 30));
        assert_eq!(civil_from_days(20_787), (2026, 11, 30));
        assert_eq!(
            file_name("lastmile", 20_787, "jsonl"),
            "lastmile.2026-11-30.jsonl"
        );
    }

    #[cfg(unix)]
    #[test]
    fn files_are_created_0600_old_ones_tightened_and_the_oldest_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for day in ["2020-01-01", "2020-01-02", "2020-01-03"] {
            let p = dir.join(format!("lastmile.{day}.jsonl"));
            std::fs::write(&p, "old\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::write(dir.join("other.txt"), "").unwrap();
        let mut log = DailyFile::open(dir, "lastmile", "jsonl", 3).unwrap();
        log.write_all(b"{\"msg\":1}\n").unwrap();
        log.flush().unwrap();
        let today = dir.join(file_name("lastmile", today(), "jsonl"));
        assert_eq!(mode(&today), 0o600);
        assert_eq!(std::fs::read_to_string(&today).unwrap(), "{\"msg\":1}\n");
        assert!(!dir.join("lastmile.2020-01-01.jsonl").exists());
        for day in ["2020-01-02", "2020-01-03"] {
            assert_eq!(
                mode(&dir.join(format!("lastmile.{day}.jsonl"))),
                0o600,
                "{day}"
            );
        }
        assert!(dir.join("other.txt").exists());
    }
}
