//! Bounds on what one request may make the server allocate, compute or wait for (pure functions).

use std::time::Duration;

/// Largest request body, like kube-apiserver's 3 MiB `MaxRequestBodyBytes` (larger: 413).
pub const MAX_REQUEST_BODY: usize = 3 * 1024 * 1024;

/// Largest stored object, like etcd's default 1.5 MiB request limit. A write (create, update,
/// or the result of a patch) that would store more is refused with 422 `Invalid` naming the size.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Most operations in one JSON patch, like kube-apiserver's `maxJSONPatchOperations` (more: 413).
pub const MAX_JSON_PATCH_OPS: usize = 10_000;

/// Most bytes a JSON patch may duplicate with `copy` ops in total (kube-apiserver's
/// `AccumulatedCopySizeLimit`); beyond it the patch is refused before the copy is made.
pub const MAX_PATCH_COPY_BYTES: usize = MAX_OBJECT_BYTES;

/// Most array elements a JSON patch may shift (inserting or removing in the middle) in total.
pub const MAX_PATCH_SHIFT_WORK: usize = 10_000_000;

/// How often a patch is re-applied when the object changed under it (GuaranteedUpdate's retry).
pub const MAX_PATCH_ATTEMPTS: usize = 5;

/// Longest duration a fault plan may ask for (latency, stall, close-after): one day.
pub const MAX_FAULT_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Most rules in one fault plan.
pub const MAX_FAULT_RULES: usize = 1000;

/// Longest any watch may stay open, whatever the client's `timeoutSeconds` or the builder says.
pub const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// `d`, but no longer than `max` (so `Instant + d` can never overflow).
pub fn clamp(d: Duration, max: Duration) -> Duration {
    d.min(max)
}

/// A watch's lifetime: the client's `timeoutSeconds` if shorter than the server's cap, both bounded.
pub fn watch_timeout(requested: Option<Duration>, server_cap: Duration) -> Duration {
    let cap = clamp(server_cap, MAX_WATCH_TIMEOUT);
    requested.map_or(cap, |t| t.min(cap))
}

/// `Err(size)` when an object serializes to more than `max` bytes. Counting stops at the
/// first byte past `max`, so checking a huge value costs at most `max` bytes of work.
pub fn check_size(v: &serde_json::Value, max: usize) -> Result<(), usize> {
    let mut w = Counter { n: 0, max };
    match serde_json::to_writer(&mut w, v) {
        Ok(()) => Ok(()),
        Err(_) => Err(w.n),
    }
}

/// The serialized size of `v` if it is at most `max` bytes.
pub fn size_within(v: &serde_json::Value, max: usize) -> Option<usize> {
    let mut w = Counter { n: 0, max };
    serde_json::to_writer(&mut w, v).ok().map(|()| w.n)
}

struct Counter {
    n: usize,
    max: usize,
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n = self.n.saturating_add(buf.len());
        if self.n > self.max {
            return Err(std::io::Error::other("size limit"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exponential backoff for a failing accept loop: `initial` doubling up to `max`, reset on success.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Start at `initial`, never exceed `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }
    /// The wait after one more failure.
    pub fn fail(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }
    /// A success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_are_counted_with_an_early_stop() {
        let v = json!({"a": "x".repeat(100)});
        let exact = serde_json::to_vec(&v).unwrap().len();
        assert_eq!(size_within(&v, exact), Some(exact));
        assert_eq!(size_within(&v, exact - 1), None);
        assert!(check_size(&v, exact).is_ok());
        assert!(check_size(&v, 10).unwrap_err() > 10);
    }

    #[test]
    fn watch_timeouts_are_bounded() {
        let cap = Duration::from_secs(1800);
        assert_eq!(watch_timeout(None, cap), cap);
        assert_eq!(
            watch_timeout(Some(Duration::from_secs(5)), cap),
            Duration::from_secs(5)
        );
        assert_eq!(watch_timeout(Some(Duration::MAX), cap), cap);
        assert_eq!(watch_timeout(None, Duration::MAX), MAX_WATCH_TIMEOUT);
        let now = std::time::Instant::now();
        assert!(now
            .checked_add(watch_timeout(Some(Duration::MAX), Duration::MAX))
            .is_some());
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        let waits: Vec<_> = (0..9).map(|_| b.fail().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.fail(), Duration::from_millis(10));
    }
}
