//! Redaction cost on realistic tool results, each measured next to a plain-copy baseline in the
//! same run so the figures can be read as ratios:
//!
//! - `scrub_1mb`: a 1 MB JSON-RPC result line (text with escaped newlines) with 50 secrets
//!   loaded, each appearing once in one of the covered encodings (raw, serde-escaped, `\u` for
//!   every character, `\u` mixed with plain characters, base64 standard/URL-safe, padded or not,
//!   inside a blob, wrapped at 76 and at 17 columns with escaped line breaks, four
//!   percent-encodings in either case, hex in either case); also the same line with no secret.
//!   Target ≥ 1 GiB/s;
//! - `scrub_200b`: a ~200-byte result, the common case, where the added per-call cost matters;
//! - `build_50`: rebuilding the redactor with 50 secrets (done when a child starts).

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lastmile::secrets::{Redactor, random_secret};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};

const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn secrets(n: usize) -> Vec<(String, SecretString)> {
    (0..n)
        .map(|i| {
            // Secrets with characters that encodings change (`/`, `+`, space, quote).
            let core = random_secret(24).expect("randomness");
            let value = format!("{}/+ \"{i:02}", core.expose_secret());
            (format!("KEY_{i:02}"), SecretString::from(value))
        })
        .collect()
}

/// The `n`-th covered encoding of `v`, as it appears inside a JSON string.
fn encoded(v: &str, n: usize) -> String {
    let json = |s: &str| {
        let q = serde_json::to_string(s).expect("string");
        q[1..q.len() - 1].to_string()
    };
    let wrap = |s: &str, width: usize| {
        s.as_bytes()
            .chunks(width)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\\n")
    };
    let u_all = |s: &str| {
        s.encode_utf16()
            .map(|u| format!("\\u{u:04x}"))
            .collect::<String>()
    };
    let u_mixed = |s: &str| {
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 || matches!(c, '"' | '\\') {
                    format!("\\u{:04X}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
    };
    match n % 17 {
        0 => json(v),
        1 => u_all(v),
        2 => u_mixed(v),
        3 => STANDARD.encode(v),
        4 => STANDARD_NO_PAD.encode(v),
        5 => URL_SAFE.encode(v),
        6 => URL_SAFE_NO_PAD.encode(v),
        7 => STANDARD.encode(format!("user:{v}!")),
        8 => wrap(&STANDARD.encode(format!("-----{v}-----")), 76),
        9 => wrap(&URL_SAFE_NO_PAD.encode(format!("xy{v}")), 17),
        10 => utf8_percent_encode(v, NON_ALPHANUMERIC).to_string(),
        11 => {
            // Lowercase hex digits, the rest as it is.
            let upper = utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
            let mut out = String::new();
            let mut hex_left = 0u8;
            for c in upper.chars() {
                out.push(if hex_left > 0 {
                    c.to_ascii_lowercase()
                } else {
                    c
                });
                hex_left = if c == '%' {
                    2
                } else {
                    hex_left.saturating_sub(1)
                };
            }
            out
        }
        12 => utf8_percent_encode(v, PATH_SAFE).to_string(),
        13 => utf8_percent_encode(v, PATH_SAFE)
            .to_string()
            .replace("%20", "+"),
        14 => v.bytes().map(|b| format!("{b:02x}")).collect(),
        15 => v.bytes().map(|b| format!("{b:02X}")).collect(),
        _ => json(&format!("prefix {v} suffix")),
    }
}

/// A JSON-RPC result line of about `len` bytes whose text (escaped newlines and all) carries
/// each of `planted` spread evenly.
fn tool_result(len: usize, planted: &[String]) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "id:",
        "issue",
        "repository",
        "{title:",
        "open",
        "closed",
        "https://example.com/a/b",
        "labels",
        "2026-11-28T10:00:00Z",
        "body:",
        "the",
        "of",
        "and",
        "user",
        "42",
        "},",
    ];
    let head = r#"{"jsonrpc":"2.0","id":17,"result":{"content":[{"type":"text","text":""#;
    let tail = r#""}],"isError":false}}"#;
    let mut out = String::with_capacity(len + 256);
    out.push_str(head);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let body = len.saturating_sub(head.len() + tail.len());
    let every = body / (planted.len() + 1);
    let mut next_plant = head.len() + every;
    let mut p = 0;
    while out.len() < head.len() + body {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.push_str(WORDS[(state >> 60) as usize]);
        out.push_str(if (state >> 20).is_multiple_of(11) {
            "\\n"
        } else {
            " "
        });
        if p < planted.len() && out.len() >= next_plant {
            out.push_str(&planted[p]);
            out.push(' ');
            p += 1;
            next_plant += every;
        }
    }
    out.push_str(tail);
    assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let loaded = secrets(50);
    let redactor = Redactor::new(loaded.clone()).expect("build");
    let planted: Vec<String> = loaded
        .iter()
        .enumerate()
        .map(|(i, (_, v))| encoded(v.expose_secret(), i))
        .collect();

    let big = tool_result(1 << 20, &planted);
    let (clean, hits) = redactor.scrub_bytes(&big);
    assert_eq!(hits, planted.len(), "every planted secret is found");
    assert!(serde_json::from_slice::<serde_json::Value>(&clean).is_ok());
    let big_clean = tool_result(1 << 20, &[]);
    assert_eq!(redactor.scrub_bytes(&big_clean).1, 0);
    let mut g = c.benchmark_group("scrub_1mb");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("copy_baseline", |b| {
        b.iter(|| black_box(big.as_slice()).to_vec())
    });
    g.bench_function("scrub_50_secrets_every_encoding", |b| {
        b.iter(|| redactor.scrub_bytes(black_box(&big)).0.into_owned())
    });
    g.bench_function("scrub_no_secret", |b| {
        b.iter(|| redactor.scrub_bytes(black_box(&big_clean)).0.into_owned())
    });
    g.finish();

    let small = tool_result(200, &[]);
    let small_hit = tool_result(200, &planted[1..2]);
    assert_eq!(redactor.scrub_bytes(&small_hit).1, 1);
    let mut g = c.benchmark_group("scrub_200b");
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("copy_baseline", |b| {
        b.iter(|| black_box(small.as_slice()).to_vec())
    });
    g.bench_function("scrub_clean", |b| {
        b.iter(|| redactor.scrub_bytes(black_box(&small)).0.into_owned())
    });
    g.bench_function("scrub_one_hit", |b| {
        b.iter(|| redactor.scrub_bytes(black_box(&small_hit)).0.into_owned())
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
