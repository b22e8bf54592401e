//! `daemon/src/media`: only the constraints parser (pure; no devices).

#[path = "../../daemon/src/media/constraints.rs"]
pub mod constraints;
