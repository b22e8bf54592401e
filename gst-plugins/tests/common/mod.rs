//! Test signals shared by the element tests: the crate's `src/test_signals.rs`, which its unit
//! tests use too.

#[allow(dead_code)] // each test binary uses some of them
#[path = "../../src/test_signals.rs"]
mod signals;
#[allow(unused_imports)]
pub use signals::*;
