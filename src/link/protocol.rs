//! Wire protocol (being written in a parallel change).
