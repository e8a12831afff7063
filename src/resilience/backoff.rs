//! (being written in a parallel change)
