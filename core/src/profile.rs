//! A bounded-memory CPU sampler (SIGPROF + a fixed stack table) that writes pprof protobuf.
//!
//! Why not `pprof::ProfilerGuard`: pprof-rs 0.15 keeps a 16 384-entry sample table of
//! 128-frame stacks (~160 MB) in a process-wide static, builds a second one when a profile
//! stops, and never frees either — one profile of the engine took RSS from 15 MB to 293 MB.
//! This sampler keeps at most [`SLOTS`] distinct stacks of [`DEPTH`] instruction pointers
//! (≈ 2.2 MiB, allocated per profile and freed after); samples that find the table full or
//! busy are counted as dropped, never stored. Symbolization (backtrace's DWARF reader) runs
//! after sampling has stopped; its cache is cleared afterwards and `malloc_trim` hands the
//! freed heap back to the kernel, so a profile's memory is released when it ends.
//!
//! One profile at a time per process: [`Sampler::start`] refuses a second one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pprof::protos::{Function, Line, Location, Profile, Sample, ValueType};

/// Frames kept per stack (deeper stacks keep their innermost frames).
pub const DEPTH: usize = 64;
/// Distinct stacks kept per profile.
pub const SLOTS: usize = 4096;

/// Why a profile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("a profile is already running")]
    Busy,
    #[error("frequency must be 1..=1000 Hz, got {0}")]
    Frequency(u32),
    #[error("cannot arm the profiling timer: {0}")]
    Timer(std::io::Error),
}

/// The stacks seen so far: open addressing over `SLOTS` slots.
struct Table {
    /// `SLOTS * DEPTH` instruction pointers.
    ips: Vec<usize>,
    lens: Vec<u8>,
    counts: Vec<u64>,
    hashes: Vec<u64>,
    dropped: AtomicU64,
}

impl Table {
    fn new() -> Box<Self> {
        Box::new(Self {
            ips: vec![0; SLOTS * DEPTH],
            lens: vec![0; SLOTS],
            counts: vec![0; SLOTS],
            hashes: vec![0; SLOTS],
            dropped: AtomicU64::new(0),
        })
    }

    /// Counts one sample of `stack`; false when the table is full.
    fn add(&mut self, stack: &[usize]) -> bool {
        let hash = fnv(stack);
        let mut i = (hash as usize) % SLOTS;
        for _ in 0..SLOTS {
            if self.counts[i] == 0 {
                self.ips[i * DEPTH..i * DEPTH + stack.len()].copy_from_slice(stack);
                self.lens[i] = stack.len() as u8;
                self.hashes[i] = hash;
                self.counts[i] = 1;
                return true;
            }
            if self.hashes[i] == hash && self.stack(i) == stack {
                self.counts[i] += 1;
                return true;
            }
            i = (i + 1) % SLOTS;
        }
        false
    }

    fn stack(&self, i: usize) -> &[usize] {
        &self.ips[i * DEPTH..i * DEPTH + self.lens[i] as usize]
    }

    fn stacks(&self) -> impl Iterator<Item = (&[usize], u64)> {
        (0..SLOTS)
            .filter(|&i| self.counts[i] > 0)
            .map(|i| (self.stack(i), self.counts[i]))
    }
}

fn fnv(stack: &[usize]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for ip in stack {
        h ^= *ip as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The table the signal handler writes to (null when no profile runs).
static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
/// Held by the signal handler while it writes (a sample arriving meanwhile is dropped).
static WRITING: AtomicBool = AtomicBool::new(false);
/// A profile owns the sampler.
static RUNNING: AtomicBool = AtomicBool::new(false);
static HANDLER_INSTALLED: std::sync::Once = std::sync::Once::new();

extern "C" fn on_sigprof(_signal: libc::c_int) {
    // SAFETY: errno is thread-local; the handler must leave it as it found it.
    let errno = unsafe { *libc::__errno_location() };
    if !WRITING.swap(true, Ordering::Acquire) {
        let table = TABLE.load(Ordering::Acquire);
        if !table.is_null() {
            let mut stack = [0usize; DEPTH];
            let mut n = 0;
            // SAFETY: the same unwinder call pprof-rs makes from its SIGPROF handler; no lock
            // is taken (the unsynchronized variant), nothing is allocated.
            unsafe {
                backtrace::trace_unsynchronized(|frame| {
                    stack[n] = frame.ip() as usize;
                    n += 1;
                    n < DEPTH
                });
            }
            // SAFETY: `WRITING` is held, so `stop` has not taken the table back yet.
            let table = unsafe { &mut *table };
            if !table.add(&stack[..n]) {
                table.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        WRITING.store(false, Ordering::Release);
    }
    unsafe { *libc::__errno_location() = errno };
}

fn set_timer(hz: u32) -> std::io::Result<()> {
    let usec = if hz == 0 { 0 } else { 1_000_000 / hz as i64 };
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: usec as libc::suseconds_t,
    };
    let timer = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: a plain syscall with a valid pointer.
    let rc = unsafe { libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn install_handler() {
    HANDLER_INSTALLED.call_once(|| {
        // SAFETY: installs a handler for SIGPROF once; it stays installed (a stray SIGPROF
        // after a profile would otherwise terminate the process).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigprof as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut());
        }
    });
}

/// A running profile; [`Sampler::finish`] stops it and encodes it. Dropping it stops it too.
pub struct Sampler {
    hz: u32,
    started: SystemTime,
    table: Option<*mut Table>,
}

// SAFETY: the raw table pointer is only dereferenced by the signal handler (under `WRITING`)
// and by `stop`, which first withdraws it from the handler.
unsafe impl Send for Sampler {}

impl Sampler {
    /// Starts sampling the whole process's CPU time at `hz`.
    pub fn start(hz: u32) -> Result<Self, SamplerError> {
        if !(1..=1000).contains(&hz) {
            return Err(SamplerError::Frequency(hz));
        }
        if RUNNING.swap(true, Ordering::AcqRel) {
            return Err(SamplerError::Busy);
        }
        install_handler();
        let table = Box::into_raw(Table::new());
        TABLE.store(table, Ordering::Release);
        if let Err(e) = set_timer(hz) {
            let mut s = Self {
                hz,
                started: SystemTime::now(),
                table: Some(table),
            };
            drop(s.stop());
            return Err(SamplerError::Timer(e));
        }
        Ok(Self {
            hz,
            started: SystemTime::now(),
            table: Some(table),
        })
    }

    /// Stops the timer and takes the table back from the signal handler.
    fn stop(&mut self) -> Option<Box<Table>> {
        let table = self.table.take()?;
        let _ = set_timer(0);
        TABLE.store(std::ptr::null_mut(), Ordering::Release);
        while WRITING.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        RUNNING.store(false, Ordering::Release);
        // SAFETY: withdrawn from the handler above; created by `Box::into_raw` in `start`.
        Some(unsafe { Box::from_raw(table) })
    }

    /// Stops sampling and returns the profile (symbolized), then releases its memory.
    pub fn finish(mut self) -> Profile {
        let elapsed = self.started.elapsed().unwrap_or_default();
        let table = self.stop().expect("a started sampler has its table");
        let profile = encode(&table, self.hz, self.started, elapsed);
        drop(table);
        release_memory();
        profile
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if self.stop().is_some() {
            release_memory();
        }
    }
}

/// Frees the symbolizer's cache and gives freed heap pages back to the kernel.
fn release_memory() {
    backtrace::clear_symbol_cache();
    // SAFETY: glibc's malloc_trim only returns free memory to the kernel.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Frames of the sampler itself (the signal handler and the unwinder) lead every stack.
fn is_sampler_frame(name: &str) -> bool {
    name.starts_with("backtrace::")
        || name.starts_with("podgrant_core::profile::")
        || name.contains("__restore_rt")
}

#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<Function>,
    function_ids: HashMap<(i64, i64), u64>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(id) = self.string_ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.string_ids.insert(s.to_string(), id);
        id
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (self.string(name), self.string(file));
        if let Some(id) = self.function_ids.get(&key) {
            return *id;
        }
        let id = self.functions.len() as u64 + 1;
        self.functions.push(Function {
            id,
            name: key.0,
            system_name: key.0,
            filename: key.1,
            start_line: 0,
        });
        self.function_ids.insert(key, id);
        id
    }
}

/// The symbolized lines of one address (innermost inlined function first), and whether the
/// address belongs to the sampler itself.
fn resolve(ip: usize, leaf: bool, b: &mut Builder) -> (Vec<Line>, bool) {
    // Return addresses point after the call: look up the call instruction.
    let lookup = if leaf { ip } else { ip.saturating_sub(1) };
    let mut lines = Vec::new();
    let mut sampler = false;
    backtrace::resolve(lookup as *mut std::ffi::c_void, |symbol| {
        let name = symbol
            .name()
            .map(|n| format!("{n:#}"))
            .unwrap_or_else(|| format!("{ip:#x}"));
        sampler |= is_sampler_frame(&name);
        let file = symbol
            .filename()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        let function_id = b.function(&name, &file);
        lines.push(Line {
            function_id,
            line: symbol.lineno().unwrap_or(0) as i64,
        });
    });
    if lines.is_empty() {
        let function_id = b.function(&format!("{ip:#x}"), "");
        lines.push(Line {
            function_id,
            line: 0,
        });
    }
    (lines, sampler)
}

fn encode(table: &Table, hz: u32, started: SystemTime, elapsed: Duration) -> Profile {
    let period = 1_000_000_000 / hz as i64;
    let mut b = Builder::default();
    b.string("");
    let samples_ty = ValueType {
        ty: b.string("samples"),
        unit: b.string("count"),
    };
    let cpu_ty = ValueType {
        ty: b.string("cpu"),
        unit: b.string("nanoseconds"),
    };
    let mut locations: Vec<Location> = Vec::new();
    // ip → (location id, is a sampler frame)
    let mut location_ids: HashMap<usize, (u64, bool)> = HashMap::new();
    let mut samples = Vec::new();
    for (stack, count) in table.stacks() {
        let mut ids = Vec::with_capacity(stack.len());
        let mut leading = true;
        for (depth, ip) in stack.iter().enumerate() {
            let (id, sampler) = *location_ids.entry(*ip).or_insert_with(|| {
                let (line, sampler) = resolve(*ip, depth == 0, &mut b);
                let id = locations.len() as u64 + 1;
                locations.push(Location {
                    id,
                    mapping_id: 0,
                    address: *ip as u64,
                    line,
                    is_folded: false,
                });
                (id, sampler)
            });
            if leading && sampler {
                continue;
            }
            leading = false;
            ids.push(id);
        }
        samples.push(Sample {
            location_id: ids,
            value: vec![count as i64, count as i64 * period],
            label: Vec::new(),
        });
    }
    let dropped = table.dropped.load(Ordering::Relaxed);
    let comment = b.string(&format!(
        "podgrant sampler: {hz} Hz, {DEPTH} frames, {SLOTS} stacks, {dropped} samples dropped"
    ));
    Profile {
        sample_type: vec![samples_ty, cpu_ty.clone()],
        sample: samples,
        mapping: Vec::new(),
        location: locations,
        function: b.functions,
        string_table: b.strings,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64,
        duration_nanos: elapsed.as_nanos() as i64,
        period_type: Some(cpu_ty),
        period,
        comment: vec![comment],
        default_sample_type: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_equal_stacks_and_refuses_when_full() {
        let mut t = Table::new();
        assert!(t.add(&[1, 2, 3]));
        assert!(t.add(&[1, 2, 3]));
        assert!(t.add(&[1, 2]));
        assert!(t.add(&[]));
        let mut got: Vec<(Vec<usize>, u64)> = t.stacks().map(|(s, c)| (s.to_vec(), c)).collect();
        got.sort();
        assert_eq!(got, vec![(vec![], 1), (vec![1, 2], 1), (vec![1, 2, 3], 2)]);
        let mut t = Table::new();
        for i in 0..SLOTS {
            assert!(t.add(&[i + 10]));
        }
        assert!(!t.add(&[7]), "a full table refuses a new stack");
        assert!(t.add(&[10]), "an existing stack is still counted");
    }

    #[test]
    fn bad_frequency_is_refused() {
        assert!(matches!(Sampler::start(0), Err(SamplerError::Frequency(0))));
        assert!(matches!(
            Sampler::start(5000),
            Err(SamplerError::Frequency(5000))
        ));
    }
}
