//! A circuit breaker per upstream: closed, open, half-open.
//!
//! Closed, it counts outcomes over a sliding `window`; once at least `min_requests` were seen
//! and the failure ratio reaches `failure_ratio`, it opens. Open, it rejects at once (the
//! gateway answers 503 with Retry-After without touching the upstream) for `open_for`. Then
//! it lets `half_open_requests` probes through: all succeeding closes it, one failing reopens.
//! 5xx answers, timeouts and connect errors are failures; 4xx are the client's and are not.

use crate::observability::metrics::record_breaker_state;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::config::BreakerSettings;
use super::window::Window;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Successes (`a`) and failures (`b`) while closed.
    outcomes: Window,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    upstream: Arc<str>,
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// Permission to call the upstream; report the outcome with [`Ticket::record`]. A ticket
/// dropped unrecorded (the request was abandoned) frees its probe slot and counts nothing.
#[derive(Debug)]
pub struct Ticket<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    recorded: bool,
}

impl CircuitBreaker {
    pub fn new(upstream: Arc<str>, settings: BreakerSettings, now: Instant) -> Self {
        let outcomes = Window::new(settings.window, now);
        record_breaker_state(&upstream, 0);
        Self {
            upstream,
            settings,
            inner: Mutex::new(Inner {
                state: State::Closed,
                outcomes,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A ticket to call the upstream, or how long until the breaker may let calls through.
    pub fn admit(&self, now: Instant) -> Result<Ticket<'_>, Duration> {
        let mut inner = self.lock();
        if let State::Open { until } = inner.state {
            if now < until {
                return Err(until - now);
            }
            inner.state = State::HalfOpen {
                in_flight: 0,
                successes: 0,
            };
            record_breaker_state(&self.upstream, 1);
            tracing::info!(upstream = %self.upstream, "circuit breaker half-open: probing");
        }
        let probe = match &mut inner.state {
            State::Closed => false,
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                if *in_flight + *successes >= self.settings.half_open_requests {
                    return Err(Duration::from_secs(1));
                }
                *in_flight += 1;
                true
            }
            State::Open { .. } => unreachable!("handled above"),
        };
        Ok(Ticket {
            breaker: self,
            probe,
            recorded: false,
        })
    }

    fn record(&self, success: bool, probe: bool, now: Instant) {
        let mut inner = self.lock();
        match (&mut inner.state, probe) {
            (State::Closed, false) => {
                inner
                    .outcomes
                    .add(now, u64::from(success), u64::from(!success));
                let (successes, failures) = inner.outcomes.totals(now);
                let total = successes + failures;
                if !success
                    && total >= u64::from(self.settings.min_requests)
                    && failures as f64 / total as f64 >= self.settings.failure_ratio
                {
                    inner.state = State::Open {
                        until: now + self.settings.open_for,
                    };
                    record_breaker_state(&self.upstream, 2);
                    tracing::warn!(upstream = %self.upstream, failures, total, open_for = ?self.settings.open_for, "circuit breaker opened");
                }
            }
            (
                State::HalfOpen {
                    in_flight,
                    successes,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                if !success {
                    inner.state = State::Open {
                        until: now + self.settings.open_for,
                    };
                    record_breaker_state(&self.upstream, 2);
                    tracing::warn!(upstream = %self.upstream, "circuit breaker probe failed: open again");
                } else {
                    *successes += 1;
                    if *successes >= self.settings.half_open_requests {
                        inner.state = State::Closed;
                        inner.outcomes.reset();
                        record_breaker_state(&self.upstream, 0);
                        tracing::info!(upstream = %self.upstream, "circuit breaker closed");
                    }
                }
            }
            // Calls admitted in an earlier state finishing late change nothing.
            _ => {}
        }
    }

    fn release_probe(&self) {
        if let State::HalfOpen { in_flight, .. } = &mut self.lock().state {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

impl Ticket<'_> {
    pub fn record(mut self, success: bool, now: Instant) {
        self.recorded = true;
        self.breaker.record(success, self.probe, now);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.probe {
            self.breaker.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(now: Instant) -> CircuitBreaker {
        let settings = BreakerSettings {
            failure_ratio: 0.5,
            min_requests: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            half_open_requests: 2,
        };
        CircuitBreaker::new("u".into(), settings, now)
    }

    fn call(b: &CircuitBreaker, success: bool, now: Instant) {
        b.admit(now).expect("admitted").record(success, now);
    }

    #[test]
    fn it_stays_closed_below_min_requests_whatever_the_ratio() {
        let now = Instant::now();
        let b = breaker(now);
        for _ in 0..3 {
            call(&b, false, now);
        }
        assert_eq!(b.state(now), BreakerState::Closed);
        call(&b, false, now);
        assert_eq!(b.state(now), BreakerState::Open);
    }

    #[test]
    fn it_opens_at_the_failure_ratio_and_rejects_until_open_for_elapses() {
        let now = Instant::now();
        let b = breaker(now);
        call(&b, true, now);
        call(&b, true, now);
        call(&b, false, now);
        assert_eq!(b.state(now), BreakerState::Closed, "1 of 3 failed");
        call(&b, false, now);
        assert_eq!(b.state(now), BreakerState::Open, "2 of 4 failed");
        let wait = b.admit(now + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
    }

    #[test]
    fn half_open_closes_after_enough_successful_probes() {
        let now = Instant::now();
        let b = breaker(now);
        for _ in 0..4 {
            call(&b, false, now);
        }
        let later = now + Duration::from_secs(31);
        let first = b.admit(later).unwrap();
        let second = b.admit(later).unwrap();
        assert!(b.admit(later).is_err(), "only two probes at a time");
        first.record(true, later);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        second.record(true, later);
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let now = Instant::now();
        let b = breaker(now);
        for _ in 0..4 {
            call(&b, false, now);
        }
        let later = now + Duration::from_secs(31);
        b.admit(later).unwrap().record(false, later);
        assert_eq!(b.state(later), BreakerState::Open);
        assert_eq!(b.admit(later).unwrap_err(), Duration::from_secs(30));
    }

    #[test]
    fn an_abandoned_probe_frees_its_slot() {
        let now = Instant::now();
        let b = breaker(now);
        for _ in 0..4 {
            call(&b, false, now);
        }
        let later = now + Duration::from_secs(31);
        drop(b.admit(later).unwrap());
        drop(b.admit(later).unwrap());
        assert!(b.admit(later).is_ok());
    }

    #[test]
    fn old_failures_age_out_of_the_window() {
        let now = Instant::now();
        let b = breaker(now);
        for _ in 0..3 {
            call(&b, false, now);
        }
        let later = now + Duration::from_secs(11);
        call(&b, false, later);
        assert_eq!(
            b.state(later),
            BreakerState::Closed,
            "only 1 request in the window"
        );
    }
}
