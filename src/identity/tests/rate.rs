//! Rate limits per tier, on governor's fake clock: no sleeping.

use std::time::Duration;

use governor::clock::FakeRelativeClock;

use crate::config::{RateLimitSection, Tier};
use crate::identity::{RateLimitConfigError, RateLimited, SessionRateLimiter};

fn limiter(
    section: &RateLimitSection,
    tier: Tier,
) -> (SessionRateLimiter<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    (
        SessionRateLimiter::with_clock(section, tier, clock.clone()).unwrap(),
        clock,
    )
}

#[test]
fn each_tier_gets_base_times_multiplier_with_a_three_times_burst() {
    // (tier, calls a minute, burst, ms between calls)
    let expected = [
        (Tier::Admin, 600.0, 1800, 100),
        (Tier::User, 60.0, 180, 1000),
        (Tier::Service, 300.0, 900, 200),
        (Tier::A2a, 300.0, 900, 200),
        (Tier::Mcp, 300.0, 900, 200),
        (Tier::Anonymous, 30.0, 90, 2000),
    ];
    let section = RateLimitSection::default();
    for (tier, per_minute, burst, period_ms) in expected {
        let (l, clock) = limiter(&section, tier);
        assert_eq!(l.per_minute(), per_minute, "{tier}");
        assert_eq!(l.burst(), burst, "{tier}");
        for i in 0..burst {
            assert!(l.check().is_ok(), "{tier}: call {i} of the burst");
        }
        assert_eq!(
            l.check(),
            Err(RateLimited {
                retry_after_ms: period_ms
            }),
            "{tier}"
        );
        clock.advance(Duration::from_millis(period_ms / 2));
        assert_eq!(
            l.check(),
            Err(RateLimited {
                retry_after_ms: period_ms - period_ms / 2
            })
        );
        clock.advance(Duration::from_millis(period_ms - period_ms / 2));
        assert!(l.check().is_ok(), "{tier}: refilled one call");
        assert!(l.check().is_err());
    }
}

#[test]
fn fractional_rates_work() {
    let section = RateLimitSection {
        base_per_minute: 1,
        ..Default::default()
    };
    // anonymous: 0.5 calls a minute, burst floor(1.5) = 1
    let (l, clock) = limiter(&section, Tier::Anonymous);
    assert_eq!(l.per_minute(), 0.5);
    assert_eq!(l.burst(), 1);
    assert!(l.check().is_ok());
    assert_eq!(
        l.check(),
        Err(RateLimited {
            retry_after_ms: 120_000
        })
    );
    clock.advance(Duration::from_secs(120));
    assert!(l.check().is_ok());
}

#[test]
fn burst_multiplier_of_one_and_the_message() {
    let section = RateLimitSection {
        burst_multiplier: 1.0,
        ..Default::default()
    };
    let (l, _clock) = limiter(&section, Tier::User);
    assert_eq!(l.burst(), 60);
    for _ in 0..60 {
        l.check().unwrap();
    }
    let e = l.check().unwrap_err();
    assert_eq!(e.to_string(), "rate limit reached: retry in 1000 ms");
}

#[test]
fn unusable_rates_are_refused() {
    for m in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
        let mut section = RateLimitSection::default();
        section.multipliers.user = m;
        let e = SessionRateLimiter::new(&section, Tier::User).unwrap_err();
        assert!(matches!(
            e,
            RateLimitConfigError::UnusableRate {
                tier: Tier::User,
                ..
            }
        ));
    }
}

#[test]
fn calls_reads_and_tasks_draw_from_buckets_of_their_own() {
    use crate::identity::{RateBucket, SessionRateLimits};
    let clock = FakeRelativeClock::default();
    let section = RateLimitSection::default();
    let limits = SessionRateLimits::with_clock(&section, Tier::User, clock.clone()).unwrap();
    assert_eq!(limits.bucket(RateBucket::Calls).burst(), 180);
    assert_eq!(limits.bucket(RateBucket::Reads).burst(), 360);
    assert_eq!(limits.bucket(RateBucket::Tasks).burst(), 1800);
    // Exhaust the reads: calls and tasks still pass.
    for _ in 0..360 {
        assert!(limits.check(RateBucket::Reads).is_ok());
    }
    assert!(limits.check(RateBucket::Reads).is_err());
    assert!(limits.check(RateBucket::Calls).is_ok());
    assert!(limits.check(RateBucket::Tasks).is_ok());
    // Reads come back at their own pace: 120 a minute is one every 500 ms.
    clock.advance(Duration::from_millis(500));
    assert!(limits.check(RateBucket::Reads).is_ok());
    assert!(limits.check(RateBucket::Reads).is_err());
}
