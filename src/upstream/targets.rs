//! The targets of an upstream (`url`, or each of `urls`), chosen round-robin among the
//! healthy ones.
//!
//! A target is healthy when its last active health check passed (server mode, with
//! `health_check`) and it is not passively ejected: after [`EJECT_AFTER`] consecutive connect
//! failures or timeouts it is skipped for [`EJECT_FOR`]. Lambda has no background work between
//! invocations, so there passive ejection is the only source of health.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// Consecutive connect failures or timeouts that eject a target.
pub const EJECT_AFTER: u32 = 3;
/// How long an ejected target is skipped before it is tried again.
pub const EJECT_FOR: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Target {
    pub url: Arc<str>,
    /// `url` parsed once, so that a forwarded request's URL is this with its path and query
    /// set, instead of a whole URL parsed (host, IDNA) per request.
    base: reqwest::Url,
    /// The path part of `url` (`http://host/api` -> `/api`), prefixed to every forwarded path;
    /// empty when there is none.
    base_path: Box<str>,
    probe_healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Milliseconds after `Targets::origin` until which the target is ejected.
    ejected_until: AtomicU64,
}

impl Target {
    /// The URL a request for `path` (starting with `/`) and `query` goes to on this target.
    pub fn url_for(&self, path: &str, query: Option<&str>) -> reqwest::Url {
        let mut url = self.base.clone();
        if self.base_path.is_empty() {
            url.set_path(path);
        } else {
            url.set_path(&[&self.base_path, path].concat());
        }
        url.set_query(query);
        url
    }
}

#[derive(Debug)]
pub struct Targets {
    list: Vec<Target>,
    next: AtomicUsize,
    origin: Instant,
}

impl Targets {
    /// `urls` are base URLs the plan has validated (http or https, no query or fragment).
    pub fn new(urls: &[String], origin: Instant) -> Result<Self, String> {
        let list = urls
            .iter()
            .map(|url| {
                let base = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
                let base_path = base.path().trim_end_matches('/').into();
                Ok(Target {
                    url: url.as_str().into(),
                    base,
                    base_path,
                    probe_healthy: AtomicBool::new(true),
                    consecutive_failures: AtomicU32::new(0),
                    ejected_until: AtomicU64::new(0),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            list,
            next: AtomicUsize::new(0),
            origin,
        })
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    pub fn get(&self, index: usize) -> &Target {
        &self.list[index]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Target> {
        self.list.iter()
    }

    pub fn is_healthy(&self, index: usize, now: Instant) -> bool {
        let target = &self.list[index];
        target.probe_healthy.load(Ordering::Relaxed)
            && target.ejected_until.load(Ordering::Relaxed) <= self.millis(now)
    }

    pub fn healthy_count(&self, now: Instant) -> usize {
        (0..self.list.len())
            .filter(|&i| self.is_healthy(i, now))
            .count()
    }

    /// The next healthy target in round-robin order, if any.
    pub fn pick(&self, now: Instant) -> Option<usize> {
        let len = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..len)
            .map(|offset| (start + offset) % len)
            .find(|&index| self.is_healthy(index, now))
    }

    /// Passive health: a connection-level failure counts toward ejection; anything that got
    /// an answer resets the count.
    pub fn report(&self, index: usize, connection_failed: bool, now: Instant) {
        let target = &self.list[index];
        if !connection_failed {
            target.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = target.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= EJECT_AFTER {
            target.consecutive_failures.store(0, Ordering::Relaxed);
            let until = self.millis(now + EJECT_FOR);
            target.ejected_until.store(until, Ordering::Relaxed);
            tracing::warn!(target = %target.url, failures, eject_for = ?EJECT_FOR, "upstream target ejected");
        }
    }

    /// Active health: the result of a probe. Returns whether the state changed.
    pub fn set_probe_result(&self, index: usize, healthy: bool) -> bool {
        self.list[index]
            .probe_healthy
            .swap(healthy, Ordering::Relaxed)
            != healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: usize) -> (Targets, Instant) {
        let now = Instant::now();
        let urls: Vec<String> = (0..n).map(|i| format!("http://10.0.0.{i}")).collect();
        (Targets::new(&urls, now).unwrap(), now)
    }

    #[test]
    fn a_forwarded_url_keeps_the_base_path_and_sets_the_query() {
        let now = Instant::now();
        let urls = [
            "http://10.0.0.1:8080".to_owned(),
            "https://api.example.com/v2/".to_owned(),
        ];
        let t = Targets::new(&urls, now).unwrap();
        let plain = t.get(0).url_for("/orders/7", None);
        assert_eq!(plain.as_str(), "http://10.0.0.1:8080/orders/7");
        let prefixed = t.get(1).url_for("/orders/%2F7", Some("a=1&b=%20"));
        assert_eq!(
            prefixed.as_str(),
            "https://api.example.com/v2/orders/%2F7?a=1&b=%20"
        );
        assert_eq!(
            t.get(1).url_for("/", None).as_str(),
            "https://api.example.com/v2/"
        );
    }

    #[test]
    fn picks_rotate_over_all_healthy_targets() {
        let (t, now) = targets(3);
        let picks: Vec<_> = (0..6).map(|_| t.pick(now).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn an_unhealthy_target_is_skipped() {
        let (t, now) = targets(3);
        t.set_probe_result(1, false);
        let picks: Vec<_> = (0..4).map(|_| t.pick(now).unwrap()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert_eq!(t.healthy_count(now), 2);
    }

    #[test]
    fn consecutive_connect_failures_eject_a_target_for_a_while() {
        let (t, now) = targets(2);
        for _ in 0..EJECT_AFTER - 1 {
            t.report(0, true, now);
        }
        assert!(t.is_healthy(0, now));
        t.report(0, true, now);
        assert!(!t.is_healthy(0, now));
        assert!(t.is_healthy(0, now + EJECT_FOR));
    }

    #[test]
    fn an_answer_resets_the_failure_count() {
        let (t, now) = targets(1);
        t.report(0, true, now);
        t.report(0, true, now);
        t.report(0, false, now);
        t.report(0, true, now);
        assert!(t.is_healthy(0, now));
    }

    #[test]
    fn with_no_healthy_target_there_is_no_pick() {
        let (t, now) = targets(2);
        t.set_probe_result(0, false);
        t.set_probe_result(1, false);
        assert_eq!(t.pick(now), None);
    }
}
