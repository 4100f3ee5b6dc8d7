//! Resource URI against template matching (`lastmile::gateway::template`), on an ordinary URI and
//! on the inputs that made the old backtracking matcher take seconds, at the URI length limit; a
//! `HashMap` lookup of the same URI (what an exactly listed resource costs) is the baseline.
//!
//! `cargo bench --bench template`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lastmile::gateway::template::{MAX_URI_LEN, UriTemplate};

fn template(c: &mut Criterion) {
    let t = UriTemplate::parse("repo://{owner}/{repo}/contents{/path*}");
    let fill = |unit: &str, head: &str| {
        let mut uri = head.to_string();
        while uri.len() + unit.len() <= MAX_URI_LEN {
            uri.push_str(unit);
        }
        uri
    };
    let cases = [
        (
            "normal",
            "repo://octo/lastmile/contents/src/gateway/template.rs".to_string(),
        ),
        ("no_contents_8k", fill("a/", "repo://")),
        ("slashes_8k", fill("/", "repo://")),
        ("valid_8k", fill("a/", "repo://o/r/contents/")),
    ];
    let mut group = c.benchmark_group("uri_template");
    group.measurement_time(Duration::from_secs(3));
    for (name, uri) in &cases {
        let exact: HashMap<String, usize> = [(uri.clone(), 0)].into_iter().collect();
        group.throughput(Throughput::Bytes(uri.len() as u64));
        group.bench_function(format!("{name}/match"), |b| {
            b.iter(|| t.matches(black_box(uri)))
        });
        group.bench_function(format!("{name}/hash_lookup"), |b| {
            b.iter(|| exact.get(black_box(uri.as_str())))
        });
    }
    group.finish();
}

criterion_group!(benches, template);
criterion_main!(benches);
