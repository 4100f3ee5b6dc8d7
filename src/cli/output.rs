//! One capturable printer for human output of non-serving commands. `serve` never uses it: there,
//! stdout belongs to the protocol.

use std::io::Write;

/// Writes a command's human output to stdout and its diagnostics to stderr.
#[derive(Debug, Default, Clone, Copy)]
pub struct Printer;

impl Printer {
    /// A line of output (stdout).
    #[allow(clippy::print_stdout)]
    pub fn out(&self, line: impl std::fmt::Display) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    /// A diagnostic line (stderr).
    pub fn err(&self, line: impl std::fmt::Display) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// Replace control characters (other than newline and tab) so that text from a downstream server
/// cannot drive the terminal.
pub fn sanitize_for_terminal(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}
