//! The simulated wall clock: a fixed start time plus tokio's (pausable) elapsed time.

use std::time::{Duration, SystemTime};

/// Wall-clock time derived from `tokio::time`, so timestamps advance with a paused test clock.
#[derive(Clone, Debug)]
pub struct Clock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock reading `base` now.
    pub fn new(base: SystemTime) -> Self {
        Self {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }

    /// The current time as an RFC 3339 string at second precision (the `metav1.Time` wire format).
    pub fn now_rfc3339(&self) -> String {
        rfc3339(self.now())
    }
}

/// Format a time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match k8s_openapi::jiff::Timestamp::from_second(secs as i64) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => "1970-01-01T00:00:00Z".to_string(),
    }
}
