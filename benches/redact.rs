//! Redaction benchmarks (filled in with the redactor).

fn main() {}
