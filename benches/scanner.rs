//! The HTTP edge's scanner check per request — a clean request, a path hit and a user-agent hit
//! — against a plain `HashSet` lookup of the path as the floor, and the whole triage of a clean
//! request with a bearer token (scanner, chain, token verification, identity velocity).
//!
//! `cargo bench --bench scanner`

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::{ExposeSecret, SecretString};

use lastmile::config::{AuthSection, HttpSection, ScannerSection, Tier};
use lastmile::edge::{Edge, Scanner, SystemClock};
use lastmile::identity::{Authenticator, IssueRequest, TokenIssuer};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

fn scanner(c: &mut Criterion) {
    // A ceiling the benchmark cannot reach, so every clean iteration takes the clean path; the
    // real clock, so its cost is counted.
    let cfg = ScannerSection {
        per_minute: u32::MAX,
        loopback_per_minute: u32::MAX,
        ..ScannerSection::default()
    };
    let s = Scanner::new(&cfg, Arc::new(SystemClock::default())).expect("default tables");
    let ua = b"python-httpx/0.28.1".as_slice();
    assert!(s.check("/mcp", Some(ua), PEER).is_ok());
    assert!(
        s.check("/wp-admin/setup-config.php", Some(ua), PEER)
            .is_err()
    );
    assert!(
        s.check("/mcp", Some(b"Mozilla/5.0 (compatible; Nikto/2.5.0)"), PEER)
            .is_err()
    );
    let set: HashSet<&str> = cfg.paths.iter().map(String::as_str).collect();

    let mut group = c.benchmark_group("scanner");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("baseline_hashset_path_lookup", |b| {
        b.iter(|| set.contains(black_box("/mcp")))
    });
    group.bench_function("clean_request", |b| {
        b.iter(|| s.check(black_box("/mcp"), black_box(Some(ua)), black_box(PEER)))
    });
    group.bench_function("clean_request_browser_agent", |b| {
        let browser = b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36".as_slice();
        b.iter(|| s.check(black_box("/mcp"), black_box(Some(browser)), black_box(PEER)))
    });
    group.bench_function("part_path_only", |b| {
        b.iter(|| s.check_path(black_box("/mcp")))
    });
    group.bench_function("part_agent_only", |b| {
        b.iter(|| s.check_agent(black_box(Some(ua)), black_box(PEER)))
    });
    group.bench_function("part_velocity_identity", |b| {
        b.iter(|| s.check_identity(black_box("alice"), Tier::User, black_box(PEER)))
    });
    group.bench_function("part_monotonic_clock", |b| {
        let start = std::time::Instant::now();
        b.iter(|| black_box(start.elapsed()))
    });
    group.bench_function("hit_path", |b| {
        b.iter(|| {
            s.check(
                black_box("/wp-admin/setup-config.php"),
                black_box(Some(ua)),
                PEER,
            )
        })
    });
    group.bench_function("hit_user_agent", |b| {
        let nikto = b"Mozilla/5.0 (compatible; Nikto/2.5.0)".as_slice();
        b.iter(|| s.check(black_box("/mcp"), black_box(Some(nikto)), PEER))
    });
    group.finish();
}

fn triage(c: &mut Criterion) {
    let auth = AuthSection::default();
    let secret = SecretString::from("bench-secret:Zq8v2Lr0yXk4Wm1sT7hB9cN3dF6gJ5pQ".to_string());
    let token = TokenIssuer::new(&auth, &secret)
        .expect("a strong secret")
        .issue(&IssueRequest::new("alice", Tier::User))
        .expect("a valid request")
        .token;
    let authn = Arc::new(Authenticator::new(&auth, Some(&secret), false).expect("a strong secret"));
    let http = HttpSection {
        scanner: ScannerSection {
            per_minute: u32::MAX,
            ..ScannerSection::default()
        },
        ..HttpSection::default()
    };
    let edge = Edge::new(&http, authn, None, Arc::new(SystemClock::default())).expect("defaults");
    let (parts, ()) = http::Request::post("/mcp")
        .header("user-agent", "python-httpx/0.28.1")
        .header("authorization", format!("Bearer {}", token.expose_secret()))
        .body(())
        .expect("a request")
        .into_parts();
    assert!(edge.triage(&parts, PEER).is_ok());
    let mut group = c.benchmark_group("edge");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("triage_clean_request_with_bearer", |b| {
        b.iter(|| edge.triage(black_box(&parts), PEER))
    });
    group.finish();
}

criterion_group!(benches, scanner, triage);
criterion_main!(benches);
