//! Per-session rate limits on tool calls: a token bucket (governor's GCRA) refilled at
//! `base_per_minute × the tier's multiplier` calls a minute, holding at most
//! `rate × burst_multiplier` calls (at least one). Fractional rates work: anonymous at 0.5 × 60
//! is one call every two seconds.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::{RateLimitSection, Tier};

/// A call over the limit, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limit reached: retry in {retry_after_ms} ms")]
pub struct RateLimited {
    /// Milliseconds until a call would be allowed (at least 1).
    pub retry_after_ms: u64,
}

/// The profile's rate-limit settings give no usable rate for a tier.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitConfigError {
    /// The tier's rate is zero, negative, not a number, or too small to represent.
    #[error(
        "rate_limit for tier {tier} is {per_minute} calls a minute, which cannot be enforced\nhint: set rate_limit.multipliers.{tier} to a positive number"
    )]
    UnusableRate {
        /// The tier.
        tier: Tier,
        /// `base_per_minute × multiplier`.
        per_minute: f64,
    },
}

/// One session's rate limiter.
///
/// ```
/// use lastmile::config::{RateLimitSection, Tier};
/// use lastmile::identity::SessionRateLimiter;
///
/// let limiter = SessionRateLimiter::new(&RateLimitSection::default(), Tier::User)?;
/// assert!(limiter.check().is_ok());
/// # Ok::<(), lastmile::identity::RateLimitConfigError>(())
/// ```
pub struct SessionRateLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    per_minute: f64,
    burst: u32,
}

impl<C: Clock> std::fmt::Debug for SessionRateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRateLimiter")
            .field("per_minute", &self.per_minute)
            .field("burst", &self.burst)
            .finish()
    }
}

impl SessionRateLimiter {
    /// A limiter for a session of `tier` (use [`super::Session::rate_limit_tier`]) on the real clock.
    pub fn new(section: &RateLimitSection, tier: Tier) -> Result<Self, RateLimitConfigError> {
        Self::with_clock(section, tier, DefaultClock::default())
    }
}

/// Which bucket a request draws from (see [`RateLimitSection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateBucket {
    /// `tools/call`.
    Calls,
    /// Everything else that reaches a child or reveals the catalog.
    Reads,
    /// `tasks/*`: polling a task must not starve calls.
    Tasks,
}

impl std::fmt::Display for RateBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RateBucket::Calls => "calls",
            RateBucket::Reads => "reads",
            RateBucket::Tasks => "tasks",
        })
    }
}

/// A session's three buckets.
#[derive(Debug)]
pub struct SessionRateLimits<C: Clock = DefaultClock> {
    calls: SessionRateLimiter<C>,
    reads: SessionRateLimiter<C>,
    tasks: SessionRateLimiter<C>,
}

impl SessionRateLimits {
    /// The buckets of a session of `tier` on the real clock.
    pub fn new(section: &RateLimitSection, tier: Tier) -> Result<Self, RateLimitConfigError> {
        Self::with_clock(section, tier, DefaultClock::default())
    }
}

impl<C: Clock + Clone> SessionRateLimits<C> {
    /// The buckets on a given clock (tests use governor's `FakeRelativeClock`).
    pub fn with_clock(
        section: &RateLimitSection,
        tier: Tier,
        clock: C,
    ) -> Result<Self, RateLimitConfigError> {
        let with_base = |base: u32| RateLimitSection {
            base_per_minute: base,
            ..section.clone()
        };
        Ok(SessionRateLimits {
            calls: SessionRateLimiter::with_clock(section, tier, clock.clone())?,
            reads: SessionRateLimiter::with_clock(
                &with_base(section.reads_per_minute),
                tier,
                clock.clone(),
            )?,
            tasks: SessionRateLimiter::with_clock(
                &with_base(section.tasks_per_minute),
                tier,
                clock,
            )?,
        })
    }

    /// The limiter of one bucket.
    pub fn bucket(&self, bucket: RateBucket) -> &SessionRateLimiter<C> {
        match bucket {
            RateBucket::Calls => &self.calls,
            RateBucket::Reads => &self.reads,
            RateBucket::Tasks => &self.tasks,
        }
    }

    /// Take one request from `bucket`, or say when to retry.
    pub fn check(&self, bucket: RateBucket) -> Result<(), RateLimited> {
        self.bucket(bucket).check()
    }
}

impl<C: Clock> SessionRateLimiter<C> {
    /// A limiter on a given clock (tests use governor's `FakeRelativeClock`).
    pub fn with_clock(
        section: &RateLimitSection,
        tier: Tier,
        clock: C,
    ) -> Result<Self, RateLimitConfigError> {
        let per_minute = f64::from(section.base_per_minute) * section.multipliers.of(tier);
        let unusable = || RateLimitConfigError::UnusableRate { tier, per_minute };
        if !(per_minute.is_finite() && per_minute > 0.0) {
            return Err(unusable());
        }
        let period = Duration::try_from_secs_f64(60.0 / per_minute).map_err(|_| unusable())?;
        let quota = Quota::with_period(period).ok_or_else(unusable)?;
        let burst_f = (per_minute * section.burst_multiplier).floor();
        // Saturating float-to-int conversion; at least one call.
        let burst = (burst_f as u32).max(1);
        let burst_nz = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Ok(SessionRateLimiter {
            limiter: RateLimiter::direct_with_clock(quota.allow_burst(burst_nz), clock),
            per_minute,
            burst,
        })
    }

    /// Take one call from the bucket, or say when to retry.
    pub fn check(&self) -> Result<(), RateLimited> {
        self.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.limiter.clock().now());
            let ms = wait.as_nanos().div_ceil(1_000_000);
            RateLimited {
                retry_after_ms: u64::try_from(ms).unwrap_or(u64::MAX).max(1),
            }
        })
    }

    /// Calls a minute, sustained.
    pub fn per_minute(&self) -> f64 {
        self.per_minute
    }

    /// Calls allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}
