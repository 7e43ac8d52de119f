//! podgrant-harness: runs the engine against the simulated API server and asserts correctness and bounded CPU.
