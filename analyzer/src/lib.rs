//! timerscope's analysis, on any pprof profile (timerscope's, or Go's own heap, goroutine,
//! block, mutex and CPU profiles): diff, leak classification with trends, flame graphs. It reads
//! profiles through the `pprof` crate and knows nothing of networks, config files or the
//! command line; it runs without root on any machine.

pub mod classify;
pub mod diff;
pub mod flamegraph;
pub mod gosym;
pub mod series;
pub mod trend;
pub mod units;
