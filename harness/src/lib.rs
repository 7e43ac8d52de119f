//! podgrant-harness: runs the engine against the simulated API server and asserts correctness and bounded CPU.
//!
//! The map:
//! - [`cpu`] — per-thread CPU accounting of a named runtime, CPU share, CPU per event, RSS.

pub mod cpu;
