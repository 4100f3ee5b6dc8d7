//! The raw path's per-message work: frame one `tools/call` request line, parse its envelope,
//! rewrite its id and tool name and write it back — against a plain copy of the same bytes (the
//! floor any relay pays) and a full decode/re-encode through `serde_json::Value` (what a typed
//! core pays at least), in the same run.
//!
//! `cargo bench --bench wire`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use lastmile::wire::{Envelope, Frame, Framer, rename};

fn request(args_bytes: usize) -> Vec<u8> {
    let text = "x".repeat(args_bytes);
    let line = serde_json::json!({
        "jsonrpc": "2.0", "id": 1234, "method": "tools/call",
        "params": {"name": "github__create_issue", "arguments": {"title": "t", "body": text},
                   "_meta": {"progressToken": "p-1"}}
    });
    let mut bytes = serde_json::to_vec(&line).unwrap();
    bytes.push(b'\n');
    bytes
}

fn wire(c: &mut Criterion) {
    for size in [200usize, 16 * 1024] {
        let line = request(size);
        let mut group = c.benchmark_group(format!("tools_call_{size}_byte_arguments"));
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("copy", |b| b.iter(|| black_box(line.as_slice()).to_vec()));
        group.bench_function("envelope_rewrite", |b| {
            let mut framer = Framer::new(1 << 20);
            let mut out = Vec::with_capacity(line.len() + 16);
            b.iter(|| {
                framer.push(black_box(&line));
                let Some(Frame::Message(bytes)) = framer.next_frame() else {
                    unreachable!("one whole line was pushed")
                };
                let mut m = Envelope::parse(&bytes).unwrap();
                m.set_id("77".into());
                rename(&mut m, "create_issue").unwrap();
                out.clear();
                m.write(&mut out);
                out.push(b'\n');
                black_box(out.len())
            })
        });
        group.bench_function("value_roundtrip", |b| {
            b.iter(|| {
                let mut v: serde_json::Value = serde_json::from_slice(black_box(&line)).unwrap();
                v["id"] = 77.into();
                v["params"]["name"] = "create_issue".into();
                let mut out = serde_json::to_vec(&v).unwrap();
                out.push(b'\n');
                black_box(out.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, wire);
criterion_main!(benches);
