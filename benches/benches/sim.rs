//! Simulator benches: how fast the simulated API server feeds a watcher and answers a big list.
//!
//! - `sim/watch_tcp/events` — events per second one kube-rs watcher receives over TCP (loopback):
//!   per iteration the sim emits a burst of 10 000 MODIFIED pod events (flood) and the watcher
//!   reads until it has all of them; the time covers generation, encoding, HTTP chunking and
//!   kube-rs decoding into `Pod` (throughput is reported in events/s).
//! - `sim/watch_tcp/raw_bytes` — the same burst read as raw bytes from a plain TCP socket (events
//!   counted as the lines inside the chunked framing, see [`LineCounter`]): the server's side
//!   without kube-rs decoding, i.e. the sustained flood to one raw watcher. The watcher must
//!   not be dropped (checked after the bench).
//! - `sim/list_10k_pods/{in_process,tcp}` — one unpaginated kube-rs `list` of 10 000 pods, through
//!   the in-process `tower::Service` and over TCP (includes kube-rs decoding 10 000 `Pod`s).
//! - `sim/list_10k_pods/raw_bytes` — the same list read as raw bytes over TCP (server side only);
//!   `raw_bytes_protobuf` the same with `Accept: application/vnd.kubernetes.protobuf` (each
//!   pod's message encoded on the first protobuf list and kept; that first list's time is printed).
//! - `sim/watch_fanout/100_watchers` — 100 concurrent kube-rs watchers over TCP; per iteration
//!   the sim emits a burst of 1 000 MODIFIED events and the time runs until every watcher has
//!   all of them (throughput: deliveries, i.e. 100 000 events/iteration).
//! - `sim/watch_fanout/100_raw_watchers` — the same with 100 raw TCP watchers (no kube-rs
//!   decoding, each on its own connection): the server's deliveries per second.
//! - `sim/flood/generator` — the flood generator alone: a burst of 10 000 MODIFIED events over
//!   100 pods with no watcher (throughput: events/s); `generator_cpu` is the same on the
//!   calling thread's CPU clock (events per CPU-second, independent of the machine's load).
//!
//! Memory per stored pod is not a criterion figure: `cargo run --release -p podgrant-sim
//! --example rss_per_pod` prints it (RSS from /proc/self/statm around 100 000 pods).
//!
//! Wall time (this is a throughput figure). Run briefly with:
//! `cargo bench -p podgrant-benches --bench sim -- --warm-up-time 1 --measurement-time 5`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use podgrant_sim::{FloodSpec, Sim, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BURST: u64 = 10_000;
const LIST_PODS: usize = 10_000;
const FANOUT_WATCHERS: usize = 100;
const FANOUT_BURST: u64 = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn tcp_client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().expect("sim url"));
    kube::Client::try_from(config).expect("kube client")
}

/// Times `iters` bursts: for each, a thread floods `burst` MODIFIED events into namespace
/// `bench` while `consume` reads them to the end; returns the summed wall time.
fn time_bursts(sim: &Sim, burst: u64, iters: u64, mut consume: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let gen = {
            let sim = sim.clone();
            std::thread::spawn(move || sim.flood(FloodSpec::burst("bench", burst)).sent())
        };
        consume();
        total += start.elapsed();
        assert_eq!(gen.join().expect("generator"), burst);
    }
    total
}

/// Reads a kube-rs watch until it has seen `n` MODIFIED events.
async fn read_modified<S>(stream: &mut S, n: u64)
where
    S: futures::Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin,
{
    let mut got = 0u64;
    while got < n {
        match stream.next().await {
            Some(Ok(WatchEvent::Modified(_))) => got += 1,
            Some(Ok(_)) => {}
            other => panic!("watch ended: {other:?}"),
        }
    }
}

fn watch_tcp(c: &mut Criterion) {
    let rt = runtime();
    let sim = Sim::builder().watch_buffer(1 << 16).build();
    for i in 0..100 {
        sim.apply(&Step::create_pod("bench", &format!("p{i}")))
            .expect("pod");
    }
    let server = rt
        .block_on(sim.serve_tcp(([127, 0, 0, 1], 0).into()))
        .expect("serve");
    let pods: Api<Pod> = Api::namespaced(rt.block_on(async { tcp_client(&server.url()) }), "bench");
    let rv = sim.resource_version().to_string();
    let mut stream = rt
        .block_on(pods.watch(&WatchParams::default().timeout(290), &rv))
        .expect("watch")
        .boxed();
    let mut g = c.benchmark_group("sim/watch_tcp");
    g.throughput(Throughput::Elements(BURST));
    g.sample_size(10);
    g.bench_function("events", |b| {
        b.iter_custom(|iters| {
            time_bursts(&sim, BURST, iters, || {
                rt.block_on(read_modified(&mut stream, BURST))
            })
        })
    });
    // Raw bytes over a plain socket: count event lines.
    let mut conn = rt.block_on(raw_watch(&sim, server.addr()));
    let mut counter = LineCounter::default();
    g.bench_function("raw_bytes", |b| {
        b.iter_custom(|iters| {
            time_bursts(&sim, BURST, iters, || {
                let upto = counter.lines + BURST;
                rt.block_on(read_lines(&mut conn, &mut counter, upto));
            })
        })
    });
    g.finish();
    assert_eq!(
        sim.sizes().watchers,
        2,
        "neither watcher was dropped as too slow"
    );
    drop(server);
}

/// Counts watch events in a chunked HTTP/1.1 response read in pieces: skips the headers,
/// decodes the chunk framing and counts the newlines inside chunk data (every watch line ends
/// with one, and compact JSON has no other).
#[derive(Default)]
struct LineCounter {
    lines: u64,
    body: bool,
    head: Vec<u8>,
    state: Chunked,
}

#[derive(Default)]
enum Chunked {
    #[default]
    Size,
    Data(usize),
    Trailer(usize),
}

impl LineCounter {
    fn feed(&mut self, mut buf: &[u8]) {
        if !self.body {
            self.head.extend_from_slice(buf);
            let Some(at) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.body = true;
            let rest = self.head.split_off(at + 4);
            self.head.clear();
            return self.feed(&rest);
        }
        while !buf.is_empty() {
            match self.state {
                Chunked::Size => {
                    let Some(nl) = buf.iter().position(|b| *b == b'\n') else {
                        self.head.extend_from_slice(buf);
                        return;
                    };
                    self.head.extend_from_slice(&buf[..nl]);
                    buf = &buf[nl + 1..];
                    let line = std::str::from_utf8(&self.head).expect("chunk size");
                    let hex = line.trim().split(';').next().unwrap_or("");
                    let size = usize::from_str_radix(hex, 16).expect("chunk size");
                    self.head.clear();
                    self.state = Chunked::Data(size);
                }
                Chunked::Data(n) => {
                    let take = n.min(buf.len());
                    self.lines += buf[..take].iter().filter(|b| **b == b'\n').count() as u64;
                    buf = &buf[take..];
                    self.state = if take == n {
                        Chunked::Trailer(2)
                    } else {
                        Chunked::Data(n - take)
                    };
                }
                Chunked::Trailer(n) => {
                    let take = n.min(buf.len());
                    buf = &buf[take..];
                    self.state = if take == n {
                        Chunked::Size
                    } else {
                        Chunked::Trailer(n - take)
                    };
                }
            }
        }
    }
}

/// A raw watch on `bench` pods from the current RV over its own TCP connection.
async fn raw_watch(sim: &Sim, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "GET /api/v1/namespaces/bench/pods?watch=true&resourceVersion={} HTTP/1.1\r\nhost: x\r\n\r\n",
        sim.resource_version()
    );
    conn.write_all(req.as_bytes()).await.expect("write");
    conn
}

/// Reads until the counter has seen `upto` lines in all.
async fn read_lines(conn: &mut tokio::net::TcpStream, counter: &mut LineCounter, upto: u64) {
    let mut buf = vec![0u8; 1 << 16];
    while counter.lines < upto {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "watch ended");
        counter.feed(&buf[..n]);
    }
}

fn watch_fanout(c: &mut Criterion) {
    let rt = runtime();
    let sim = Sim::builder().watch_buffer(1 << 16).build();
    for i in 0..10 {
        sim.apply(&Step::create_pod("bench", &format!("p{i}")))
            .expect("pod");
    }
    let server = rt
        .block_on(sim.serve_tcp(([127, 0, 0, 1], 0).into()))
        .expect("serve");
    let rv = sim.resource_version().to_string();
    // One connection per watcher, as 100 separate controllers would have.
    let mut streams: Vec<_> = (0..FANOUT_WATCHERS)
        .map(|_| {
            rt.block_on(async {
                let pods: Api<Pod> = Api::namespaced(tcp_client(&server.url()), "bench");
                pods.watch(&WatchParams::default().timeout(290), &rv)
                    .await
                    .expect("watch")
                    .boxed()
            })
        })
        .collect();
    let mut g = c.benchmark_group("sim/watch_fanout");
    g.throughput(Throughput::Elements(FANOUT_BURST * FANOUT_WATCHERS as u64));
    g.sample_size(10);
    g.bench_function("100_watchers", |b| {
        b.iter_custom(|iters| {
            time_bursts(&sim, FANOUT_BURST, iters, || {
                rt.block_on(futures::future::join_all(
                    streams
                        .iter_mut()
                        .map(|stream| read_modified(stream, FANOUT_BURST)),
                ));
            })
        })
    });
    drop(streams);
    let mut raw: Vec<_> = (0..FANOUT_WATCHERS)
        .map(|_| {
            (
                rt.block_on(raw_watch(&sim, server.addr())),
                LineCounter::default(),
            )
        })
        .collect();
    g.bench_function("100_raw_watchers", |b| {
        b.iter_custom(|iters| {
            time_bursts(&sim, FANOUT_BURST, iters, || {
                rt.block_on(futures::future::join_all(raw.iter_mut().map(
                    |(conn, counter)| {
                        let upto = counter.lines + FANOUT_BURST;
                        read_lines(conn, counter, upto)
                    },
                )));
            })
        })
    });
    g.finish();
    drop(server);
}

fn flood_generator(c: &mut Criterion) {
    let sim = Sim::builder().build();
    for i in 0..100 {
        sim.apply(&Step::create_pod("bench", &format!("p{i}")))
            .expect("pod");
    }
    let mut g = c.benchmark_group("sim/flood");
    g.throughput(Throughput::Elements(BURST));
    g.sample_size(10);
    g.bench_function("generator", |b| {
        b.iter(|| assert_eq!(sim.flood(FloodSpec::burst("bench", BURST)).sent(), BURST))
    });
    // The same on this thread's CPU clock: what the generator costs whatever the machine's load.
    g.bench_function("generator_cpu", |b| {
        b.iter_custom(|iters| {
            podgrant_benches::cpu_clock::measure_thread_cpu(iters, || {
                assert_eq!(sim.flood(FloodSpec::burst("bench", BURST)).sent(), BURST)
            })
        })
    });
    g.finish();
}

fn list_10k(c: &mut Criterion) {
    let rt = runtime();
    let sim = Sim::builder().build();
    for i in 0..LIST_PODS {
        sim.apply(
            &Step::create_pod(&format!("ns{}", i % 10), &format!("pod-{i}"))
                .labels([("app", "web")]),
        )
        .expect("pod");
    }
    let server = rt
        .block_on(sim.serve_tcp(([127, 0, 0, 1], 0).into()))
        .expect("serve");
    let in_process: Api<Pod> =
        rt.block_on(async { Api::all(kube::Client::new(sim.service(), "default")) });
    let tcp: Api<Pod> = rt.block_on(async { Api::all(tcp_client(&server.url())) });
    let mut g = c.benchmark_group("sim/list_10k_pods");
    g.throughput(Throughput::Elements(LIST_PODS as u64));
    g.sample_size(10);
    for (name, api) in [("in_process", &in_process), ("tcp", &tcp)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let list = rt.block_on(api.list(&ListParams::default())).expect("list");
                assert_eq!(list.items.len(), LIST_PODS);
            })
        });
    }
    // The same raw list as JSON (the default) and as protobuf (`Accept` preferring it, as
    // client-go's typed clients send). The first protobuf list encodes each pod's message and
    // keeps it with the stored object (as the JSON is kept from its commit): its time is
    // printed once, the bench measures the lists after it.
    let raw_list = |accept: &'static str, min_len: usize| {
        let addr = server.addr();
        rt.block_on(async move {
            let mut conn = tokio::net::TcpStream::connect(addr)
                .await
                .expect("connect");
            let req = format!(
                "GET /api/v1/pods HTTP/1.1\r\nhost: x\r\naccept: {accept}\r\nconnection: close\r\n\r\n"
            );
            conn.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::with_capacity(16 << 20);
            conn.read_to_end(&mut out).await.expect("read");
            assert!(
                out.len() > min_len,
                "short list response: {} bytes",
                out.len()
            );
            out
        })
    };
    const PROTOBUF: &str = "application/vnd.kubernetes.protobuf, application/json";
    let cold = Instant::now();
    let first = raw_list(PROTOBUF, LIST_PODS * 150);
    eprintln!(
        "sim/list_10k_pods: first protobuf list (encodes every pod): {:?}, {} bytes; JSON list {} bytes",
        cold.elapsed(),
        first.len(),
        raw_list("application/json", LIST_PODS * 300).len()
    );
    assert!(
        first
            .windows(35)
            .any(|w| w == b"application/vnd.kubernetes.protobuf"),
        "not a protobuf response"
    );
    g.bench_function("raw_bytes", |b| {
        b.iter(|| raw_list("application/json", LIST_PODS * 300))
    });
    g.bench_function("raw_bytes_protobuf", |b| {
        b.iter(|| raw_list(PROTOBUF, LIST_PODS * 150))
    });
    g.finish();
    drop(server);
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = watch_tcp, watch_fanout, list_10k, flood_generator
}
criterion_main!(benches);
