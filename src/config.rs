//! Robot configuration (filled in by its own change).
