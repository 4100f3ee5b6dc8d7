//! The `lastmile` binary: parse the command line, hand over to the library, map the outcome to an
//! exit code. Returning (rather than calling `process::exit`) lets children be reaped and logs flush.

use std::process::ExitCode;

fn main() -> ExitCode {
    lastmile::cli::main()
}
