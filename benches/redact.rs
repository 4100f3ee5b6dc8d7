//! Redaction cost on realistic tool results, each measured next to a plain-copy baseline in the
//! same run so the figures can be read as ratios:
//!
//! - `scrub_1mb`: a 1 MB tool result (JSON-ish text with a few secrets in it) with 50 secrets
//!   loaded; target ≥ 1 GB/s;
//! - `scrub_200b`: a ~200-byte result, the common case, where the added per-call cost matters;
//! - `build_50`: rebuilding the redactor with 50 secrets (done when a child starts).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lastmile::secrets::{Redactor, random_secret};
use secrecy::{ExposeSecret, SecretString};

fn secrets(n: usize) -> Vec<(String, SecretString)> {
    (0..n)
        .map(|i| {
            let value = random_secret(30).expect("randomness");
            (format!("KEY_{i:02}"), value)
        })
        .collect()
}

/// Deterministic JSON-ish text of about `len` bytes, with `plant` secret values spread in it.
fn tool_result(len: usize, planted: &[&str]) -> String {
    const WORDS: [&str; 16] = [
        "\"id\":",
        "issue",
        "repository",
        "{\"title\":",
        "open",
        "closed",
        "https://example.com/a/b",
        "labels",
        "2026-11-28T10:00:00Z",
        "\"body\":",
        "the",
        "of",
        "and",
        "user",
        "42",
        "},",
    ];
    let mut out = String::with_capacity(len + 64);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let every = if planted.is_empty() {
        usize::MAX
    } else {
        len / (planted.len() + 1)
    };
    let mut next_plant = every;
    let mut p = 0;
    while out.len() < len {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(WORDS[(state >> 60) as usize]);
        out.push(if (state >> 20).is_multiple_of(11) {
            '\n'
        } else {
            ' '
        });
        if out.len() >= next_plant && p < planted.len() {
            out.push_str(planted[p]);
            out.push(' ');
            p += 1;
            next_plant += every;
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let loaded = secrets(50);
    let redactor = Redactor::new(loaded.clone()).expect("build");
    let planted: Vec<&str> = loaded
        .iter()
        .take(5)
        .map(|(_, v)| v.expose_secret())
        .collect();

    let big = tool_result(1 << 20, &planted);
    assert_eq!(redactor.scrub(&big).1, planted.len());
    let mut g = c.benchmark_group("scrub_1mb");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("copy_baseline", |b| {
        b.iter(|| black_box(big.as_str()).to_owned())
    });
    g.bench_function("scrub_50_secrets", |b| {
        b.iter(|| redactor.scrub(black_box(&big)).0.into_owned())
    });
    g.finish();

    let small = tool_result(200, &[]);
    let small_hit = tool_result(200, &planted[..1]);
    let mut g = c.benchmark_group("scrub_200b");
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("copy_baseline", |b| {
        b.iter(|| black_box(small.as_str()).to_owned())
    });
    g.bench_function("scrub_clean", |b| {
        b.iter(|| redactor.scrub(black_box(&small)).0.into_owned())
    });
    g.bench_function("scrub_one_hit", |b| {
        b.iter(|| redactor.scrub(black_box(&small_hit)).0.into_owned())
    });
    g.finish();

    let mut g = c.benchmark_group("build");
    g.sample_size(20);
    g.bench_function("redactor_50_secrets", |b| {
        b.iter(|| Redactor::new(black_box(loaded.clone())).expect("build"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
