//! A bounded-memory CPU sampler (SIGPROF + a fixed stack table) that writes pprof protobuf.
//!
//! Why not `pprof::ProfilerGuard`: pprof-rs 0.15 keeps a 16 384-entry sample table of
//! 128-frame stacks (~160 MB) in a process-wide static, builds a second one when a profile
//! stops, and never frees either — one profile of the engine took RSS from 15 MB to 293 MB.
//! This sampler keeps at most [`SLOTS`] distinct stacks of [`DEPTH`] instruction pointers
//! (≈ 2.2 MiB, allocated per profile and freed after); samples that find the table full or
//! busy are counted as dropped, never stored. Symbolization runs after sampling has stopped and
//! reads only the ELF symbol table of `/proc/self/exe`, streamed in 64 KiB chunks ([`symtab`]),
//! and `dladdr` for shared libraries: function names, no file:line and no inlined frames —
//! backtrace's DWARF reader cost ~200 MB at its peak on a debug build. `malloc_trim` then hands
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

/// Gives freed heap pages back to the kernel.
fn release_memory() {
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
        || name.starts_with("_Unwind_")
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

/// Names the addresses of `ips`: the executable's symbol table, else `dladdr`. A return
/// address points after its call, so each is looked up at `ip - 1` first; where that lands
/// outside every function (padding before a function the signal interrupted at its first
/// instruction), at `ip` itself.
fn names(ips: &[usize]) -> HashMap<usize, String> {
    let own_base = dl_base(names as *const () as usize);
    let mut out = HashMap::new();
    let mut in_exe = Vec::new();
    for &ip in ips {
        match dl_base(ip) {
            Some(base) if Some(base) == own_base => in_exe.push((ip, ip - base)),
            _ => {
                if let Some(n) = dl_symbol(ip.saturating_sub(1)) {
                    out.insert(ip, n);
                }
            }
        }
    }
    if own_base.is_some() {
        let before: Vec<(usize, usize)> = in_exe
            .iter()
            .map(|&(ip, off)| (ip, off.saturating_sub(1)))
            .collect();
        if let Ok(found) = symtab::lookup("/proc/self/exe", &before) {
            out.extend(found);
        }
        let missed: Vec<(usize, usize)> = in_exe
            .into_iter()
            .filter(|(ip, _)| !out.contains_key(ip))
            .collect();
        if !missed.is_empty() {
            if let Ok(found) = symtab::lookup("/proc/self/exe", &missed) {
                out.extend(found);
            }
        }
    }
    out
}

fn dl_info(addr: usize) -> Option<libc::Dl_info> {
    // SAFETY: dladdr only reads the loader's tables; the out-parameter is valid.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        (libc::dladdr(addr as *const libc::c_void, &mut info) != 0).then_some(info)
    }
}

fn dl_base(addr: usize) -> Option<usize> {
    dl_info(addr).map(|i| i.dli_fbase as usize)
}

fn dl_symbol(addr: usize) -> Option<String> {
    let info = dl_info(addr)?;
    if info.dli_sname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated name owned by the loader.
    let raw = unsafe { std::ffi::CStr::from_ptr(info.dli_sname) };
    Some(demangle(raw.to_bytes()))
}

fn demangle(raw: &[u8]) -> String {
    format!("{:#}", backtrace::SymbolName::new(raw))
}

/// Streams an ELF64 little-endian symbol table to name a few addresses, holding only a chunk
/// of it in memory at a time.
mod symtab {
    use std::collections::HashMap;
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::FileExt;

    const CHUNK: usize = 64 * 1024;

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes([b[o], b[o + 1]])
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
    }
    fn read(f: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        f.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }
    fn bad(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, what.to_string())
    }

    /// `wanted` holds `(ip, offset from the load base)`; returns the names found, by ip.
    pub(super) fn lookup(
        path: &str,
        wanted: &[(usize, usize)],
    ) -> io::Result<HashMap<usize, String>> {
        let f = File::open(path)?;
        let eh = read(&f, 0, 64)?;
        if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
            return Err(bad("not an ELF64 little-endian file"));
        }
        let (phoff, phentsize, phnum) = (u64_at(&eh, 0x20), u16_at(&eh, 0x36), u16_at(&eh, 0x38));
        let (shoff, shentsize, shnum) = (u64_at(&eh, 0x28), u16_at(&eh, 0x3a), u16_at(&eh, 0x3c));
        // The load base corresponds to the lowest PT_LOAD's page-aligned vaddr.
        let ph = read(&f, phoff, phentsize as usize * phnum as usize)?;
        let min_vaddr = (0..phnum as usize)
            .map(|i| &ph[i * phentsize as usize..])
            .filter(|p| u32_at(p, 0) == 1)
            .map(|p| u64_at(p, 16) & !0xfff)
            .min()
            .ok_or_else(|| bad("no PT_LOAD"))?;
        let sh = read(&f, shoff, shentsize as usize * shnum as usize)?;
        let section = |i: usize| &sh[i * shentsize as usize..(i + 1) * shentsize as usize];
        let Some(symtab) = (0..shnum as usize).map(section).find(|s| u32_at(s, 4) == 2) else {
            return Ok(HashMap::new()); // stripped: addresses stay unnamed
        };
        let (sym_off, sym_size) = (u64_at(symtab, 24), u64_at(symtab, 32));
        let strtab = section(u32_at(symtab, 40) as usize);
        let (str_off, str_size) = (u64_at(strtab, 24), u64_at(strtab, 32));

        let mut addrs: Vec<(u64, usize)> = wanted
            .iter()
            .map(|&(ip, off)| (off as u64 + min_vaddr, ip))
            .collect();
        addrs.sort_unstable();
        // Per wanted address: (symbol start, name offset) of the innermost symbol containing it.
        let mut best: Vec<Option<(u64, u32)>> = vec![None; addrs.len()];
        let per_chunk = CHUNK / 24;
        let total = (sym_size / 24) as usize;
        let mut i = 0;
        while i < total {
            let n = per_chunk.min(total - i);
            let chunk = read(&f, sym_off + (i * 24) as u64, n * 24)?;
            for s in chunk.chunks_exact(24) {
                let (name, info, value, size) = (u32_at(s, 0), s[4], u64_at(s, 8), u64_at(s, 16));
                if info & 0xf != 2 || size == 0 {
                    continue; // not a function
                }
                let first = addrs.partition_point(|(a, _)| *a < value);
                for (j, (a, _)) in addrs.iter().enumerate().skip(first) {
                    if *a >= value + size {
                        break;
                    }
                    if best[j].is_none_or(|(start, _)| value > start) {
                        best[j] = Some((value, name));
                    }
                }
            }
            i += n;
        }
        let mut names: HashMap<u32, String> = HashMap::new();
        let mut out = HashMap::new();
        for (j, b) in best.iter().enumerate() {
            let Some((_, name)) = b else { continue };
            if !names.contains_key(name) && (*name as u64) < str_size {
                let len = 4096.min((str_size - *name as u64) as usize);
                let raw = read(&f, str_off + *name as u64, len)?;
                let end = raw.iter().position(|c| *c == 0).unwrap_or(raw.len());
                names.insert(*name, super::demangle(&raw[..end]));
            }
            if let Some(n) = names.get(name) {
                out.insert(addrs[j].1, n.clone());
            }
        }
        Ok(out)
    }
}

fn line(b: &mut Builder, names: &HashMap<usize, String>, ip: usize) -> (Vec<Line>, bool) {
    let name = names
        .get(&ip)
        .cloned()
        .unwrap_or_else(|| format!("{ip:#x}"));
    let function_id = b.function(&name, "");
    (
        vec![Line {
            function_id,
            line: 0,
        }],
        is_sampler_frame(&name),
    )
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
    let unique: std::collections::BTreeSet<usize> = table
        .stacks()
        .flat_map(|(s, _)| s.iter().copied())
        .collect();
    let names = names(&unique.into_iter().collect::<Vec<_>>());
    for (stack, count) in table.stacks() {
        let mut ids = Vec::with_capacity(stack.len());
        // Cut the sampler: everything up to the handler, and the kernel's signal trampoline
        // after it (`__restore_rt`, unnamed: a local libc symbol).
        let handler = stack.iter().position(|ip| {
            names
                .get(ip)
                .is_some_and(|n| n.ends_with("profile::on_sigprof"))
        });
        let cut = handler.map_or(0, |i| i + 2);
        let mut leading = handler.is_none();
        for ip in stack.iter().skip(cut).filter(|ip| **ip != 0) {
            let (id, sampler) = *location_ids.entry(*ip).or_insert_with(|| {
                let (line, sampler) = line(&mut b, &names, *ip);
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
