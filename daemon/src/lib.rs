//! vdimediad, the endpoint media engine. Module map and what each may touch:
//! `docs/ARCHITECTURE.md`.

pub mod config;
pub mod control;
pub mod element_check;
pub mod engine;
pub mod error;
pub mod logging;
pub mod media;
pub mod session;
pub mod vc;
pub mod webrtc;
