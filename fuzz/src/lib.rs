//! The daemon's pure request-parsing modules, compiled into the fuzz workspace from their own
//! source files (`#[path]`), so the fuzz build needs neither tokio, ALSA nor our GStreamer
//! plugins — only the gstreamer-sdp / gstreamer-webrtc bindings those modules name.
//!
//! The module tree mirrors `daemon/src` (`crate::error`, `crate::webrtc::{codecs,sdp,ice}`,
//! `crate::media::constraints`) so the files compile unchanged. If one of them starts to use
//! another daemon module, add that module here (or a shim of it) — the fuzz build then fails
//! with "unresolved import", which is the reminder.

#[path = "../../daemon/src/error.rs"]
pub mod error;
pub mod media;
pub mod webrtc;
