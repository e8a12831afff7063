//! Sans-IO resilience cores: reconnect backoff, circuit breaker, outbound queue. No threads, no
//! sleeps: time and randomness are injected, so every transition is unit tested exactly.

pub mod backoff;
pub mod breaker;
pub mod outq;
