//! Shared helpers for podgrant benches.
