//! How starting a child differs on Windows: a bare command is found through `PATHEXT` (`npx` is
//! `npx.cmd`), variable names compare without case (`Path` is `PATH`), a batch file whose
//! arguments Rust refuses to quote gets a named error, and every child starts without a console
//! window (`CREATE_NO_WINDOW`, or each server flashes one under Claude Desktop) inside a job object
//! that the system kills, grandchildren and all, when lastmile's handle to it closes — however
//! lastmile exits.
//!
//! The name rules are plain functions compiled everywhere, so Linux CI tests them too; only
//! `wrap` touches the Windows API.

// Elsewhere only the tests call the PATHEXT rules.
#![cfg_attr(not(windows), allow(dead_code))]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Windows' own default when `PATHEXT` is unset.
const DEFAULT_PATHEXT: &str = ".COM;.EXE;.BAT;.CMD";

/// The files that may be `command` in `dir`, in the order Windows tries them: the name as written
/// when it already ends in a `PATHEXT` extension, then the name plus each extension. A file with
/// no such extension is never a candidate: npm installs a POSIX shell script `npx` beside
/// `npx.cmd`, and starting that fails with "not a valid Win32 application".
pub(crate) fn pathext_candidates(
    dir: &Path,
    command: &str,
    pathext: Option<&OsStr>,
) -> Vec<PathBuf> {
    let list = pathext.map(OsStr::to_string_lossy).unwrap_or_default();
    let mut exts: Vec<String> = list
        .split(';')
        .map(str::trim)
        .filter(|e| e.starts_with('.') && e.len() > 1)
        .map(str::to_string)
        .collect();
    if exts.is_empty() {
        exts = DEFAULT_PATHEXT.split(';').map(str::to_string).collect();
    }
    let lower = command.to_ascii_lowercase();
    let mut out = Vec::new();
    if exts
        .iter()
        .any(|e| lower.ends_with(&e.to_ascii_lowercase()))
    {
        out.push(dir.join(command));
    }
    out.extend(exts.iter().map(|e| dir.join(format!("{command}{e}"))));
    out
}

/// Whether two environment variable names are the same variable here: without regard to case on
/// Windows (where the parent's `PATH` is usually spelled `Path`), exactly elsewhere.
pub(crate) fn same_var(a: &OsStr, b: &str) -> bool {
    if cfg!(windows) {
        a.to_string_lossy().eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// A `.bat` or `.cmd` file, which Windows runs through `cmd.exe`.
pub(crate) fn is_batch_file(program: &Path) -> bool {
    program
        .extension()
        .and_then(OsStr::to_str)
        .is_some_and(|e| e.eq_ignore_ascii_case("bat") || e.eq_ignore_ascii_case("cmd"))
}

/// Whether a failed spawn is Rust's refusal to pass these arguments to a batch file: `cmd.exe`
/// re-parses its command line, and an argument it cannot be made to read literally (a line
/// break, say) could run something else, so the standard library returns `InvalidInput`.
pub(crate) fn is_batch_refusal(program: &Path, error: &std::io::Error) -> bool {
    is_batch_file(program) && error.kind() == std::io::ErrorKind::InvalidInput
}

/// No console window for the child, and a job object that ends its whole tree with lastmile.
/// `JobObject` sets `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE` because `KillOnDrop` is present too; the
/// job handle lives only in lastmile, so the system closes it when lastmile dies, even killed.
#[cfg(windows)]
pub(crate) fn wrap(wrap: &mut process_wrap::tokio::CommandWrap) {
    use windows::Win32::System::Threading::CREATE_NO_WINDOW;
    wrap.wrap(process_wrap::tokio::CreationFlags(CREATE_NO_WINDOW));
    wrap.wrap(process_wrap::tokio::JobObject);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_gets_each_pathext_extension_and_never_goes_bare() {
        let dir = Path::new("bin");
        let got = pathext_candidates(dir, "npx", Some(OsStr::new(".COM;.EXE;.BAT;.CMD")));
        assert_eq!(
            got,
            ["npx.COM", "npx.EXE", "npx.BAT", "npx.CMD"].map(|n| dir.join(n))
        );
        assert!(
            !got.contains(&dir.join("npx")),
            "the shell script npx is not a program"
        );
    }

    #[test]
    fn a_name_with_a_pathext_extension_is_tried_as_written_first() {
        let dir = Path::new("bin");
        let got = pathext_candidates(dir, "npx.cmd", Some(OsStr::new(".EXE;.CMD")));
        assert_eq!(got[0], dir.join("npx.cmd"));
        // A dotted name without such an extension keeps its dot: `server.v2` → `server.v2.EXE`.
        let got = pathext_candidates(dir, "server.v2", Some(OsStr::new(".EXE")));
        assert_eq!(got, vec![dir.join("server.v2.EXE")]);
    }

    #[test]
    fn an_unset_or_empty_pathext_falls_back_to_the_windows_default() {
        let dir = Path::new("d");
        for pathext in [None, Some(OsStr::new("")), Some(OsStr::new(" ; "))] {
            assert_eq!(
                pathext_candidates(dir, "x", pathext).len(),
                4,
                "{pathext:?}"
            );
        }
    }

    #[test]
    fn batch_files_are_told_apart_by_extension_in_any_case() {
        for p in ["npx.cmd", "NPX.CMD", "run.bat", r"C:\nodejs\npx.Cmd"] {
            assert!(is_batch_file(Path::new(p)), "{p}");
        }
        for p in ["node.exe", "npx", "cmd", "x.cmd.exe"] {
            assert!(!is_batch_file(Path::new(p)), "{p}");
        }
        let refused = std::io::Error::new(std::io::ErrorKind::InvalidInput, "batch");
        assert!(is_batch_refusal(Path::new("npx.cmd"), &refused));
        assert!(!is_batch_refusal(Path::new("node.exe"), &refused));
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(!is_batch_refusal(Path::new("npx.cmd"), &missing));
    }

    #[test]
    fn variable_names_compare_as_the_platform_does() {
        assert!(same_var(OsStr::new("PATH"), "PATH"));
        assert_eq!(same_var(OsStr::new("Path"), "PATH"), cfg!(windows));
    }
}
