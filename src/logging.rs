//! Logging setup (filled in by its own change).
