//! `lastmile __exec [--allow-kernel-keyring] -- PROGRAM ARGS…`: the isolation step every child
//! starts through on Linux (see `downstream/isolate.rs`). It gets the child's already-cleared
//! environment, isolates itself and execs PROGRAM; on failure it writes one named line on
//! stderr (the child's stderr, which lastmile reads) and exits with a code of its own.

use std::ffi::OsString;

use crate::downstream::isolate;

/// Isolate, then exec. Returns an exit code only when that failed.
pub(crate) fn run(args: Vec<OsString>) -> u8 {
    let mut warn = |line: String| super::Printer.err(line);
    let error = match isolate::parse_args(&args) {
        Ok((policy, program, rest)) => isolate::exec(policy, &program, &rest, &mut warn),
        Err(e) => e,
    };
    super::Printer.err(error.stderr_line());
    error.exit_code()
}
