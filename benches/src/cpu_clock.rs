//! The calling thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`), for `iter_custom` benches that must not read a busy neighbour as a regression.

use std::time::Duration;

/// CPU time consumed so far by the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    // Only fails for an invalid clock id or pointer, neither of which can happen here.
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` `iters` times and returns the calling thread's CPU time for all of them:
/// the body of `Bencher::iter_custom` for single-threaded CPU-bound work.
pub fn measure_thread_cpu<O>(iters: u64, mut f: impl FnMut() -> O) -> Duration {
    let start = thread_cpu();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    thread_cpu().saturating_sub(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_advances_the_thread_clock_and_sleep_does_not() {
        let busy = measure_thread_cpu(1, || {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
            x
        });
        assert!(busy > Duration::from_millis(1), "{busy:?}");
        let slept = measure_thread_cpu(1, || std::thread::sleep(Duration::from_millis(200)));
        assert!(
            slept < Duration::from_millis(50),
            "sleeping used {slept:?} of CPU"
        );
    }
}
