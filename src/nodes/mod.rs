//! Node implementations, one file per family.
