//! Python `str.format` subset (filled in by its own change).
