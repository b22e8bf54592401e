//! Ringtones (`ringtone.play` / `ringtone.stop`, docs/protocol.md): a sound file the page
//! supplies, played on an output of the endpoint chosen by `sinkId` (typically the speaker,
//! while the call stays on the headset), once or looped.
//!
//! A ringtone is page content sent once over the channel, not call audio. Each one gets a
//! pipeline of its own, alive only while it plays:
//!
//! ```text
//! playbin uri=file:///proc/self/fd/N (a sealed memfd holding the bytes)
//!   └ uridecodebin (typefind, any installed demuxer/decoder: WAV, Ogg Opus/Vorbis, MP3, …)
//!   └ playsink (soft volume) ─▶ audio-sink = AudioOutput::make_sink()
//! ```
//!
//! Looping is gapless: on `about-to-finish` (GStreamer's gapless playback signal, emitted when
//! the current file has been read) playbin is given the same URI again, so no seek and no
//! flush ever reaches the output sink. The bytes live in an anonymous memory file (memfd): no
//! file is left behind by a crash, and every loop reopens it through `/proc/self/fd`.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use vdimedia_protocol::message::ErrorCode;

use super::output::AudioOutput;
use super::track::element_name;
use super::{ensure_gst, make_element};
use crate::error::{EngineError, EngineResult};

/// Largest ringtone a page may send, in bytes of the encoded file (before base64). Its base64
/// form (4/3 of it, about 683 KiB) plus the request's JSON stays well under the channel's
/// `max_message` of 1 MiB and the bridge's 1 MiB page-message cap.
pub const MAX_RINGTONE_BYTES: usize = 512 * 1024;

/// Ringtones one page may play at the same time; one more gets `limit_exceeded`.
pub const MAX_RINGTONES_PER_SESSION: usize = 4;

/// How long a ringtone may take to start (typefind, decoder, the output's stream): past it,
/// `ringtone.play` fails with `operation_error` and the pipeline is freed.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Something a playing ringtone reports to its session, tagged with the ringtone's `serial`
/// so a report of a ringtone already stopped (and maybe replaced under the same id) is ignored.
#[derive(Debug)]
pub enum RingtoneEvent {
    /// A non-looping ringtone played to its end.
    Ended { id: String, serial: u64 },
    /// Playback failed after it had started (e.g. the output device went away).
    Failed { id: String, serial: u64, message: String },
}

/// A playing ringtone: its pipeline, the memory file with its bytes, and where it plays.
/// Dropping it stops playback and frees both (blocking briefly in the state change: drop it
/// off the async threads, or call [`Ringtone::stop`] from a blocking one).
pub struct Ringtone {
    /// The page's id for it.
    pub id: String,
    /// Distinguishes it from an earlier ringtone with the same id ([`RingtoneEvent`]).
    pub serial: u64,
    /// Label and W3C `deviceId` of the output it plays on.
    pub device: String,
    pub device_id: String,
    pub looping: bool,
    playbin: gst::Element,
    _file: OwnedFd,
}

/// Options of one ringtone (`ringtone.play` params after validation).
#[derive(Debug, Clone, Copy)]
pub struct RingtoneOptions {
    /// Play again from the start at the end of the file, until stopped.
    pub looping: bool,
    /// Linear gain, 0.0 ..= 1.0 (`HTMLMediaElement.volume` semantics).
    pub volume: f64,
}

impl Ringtone {
    /// Decodes and starts playing `data` (an encoded sound file of at most
    /// [`MAX_RINGTONE_BYTES`]) on `output`; returns once it plays. Blocking (up to
    /// [`START_TIMEOUT`]): call it from a blocking thread.
    ///
    /// Errors: `invalid_params` when the bytes are not a sound this endpoint can decode (no
    /// demuxer/decoder found, or a decode error while starting); `limit_exceeded` when too
    /// large; `operation_error` when the output cannot play it or it does not start in time.
    /// Reports `Ended`/`Failed` on `events` afterwards.
    pub fn start(
        id: &str,
        data: &[u8],
        output: &AudioOutput,
        options: RingtoneOptions,
        events: mpsc::UnboundedSender<RingtoneEvent>,
    ) -> EngineResult<Ringtone> {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        if data.is_empty() {
            return Err(EngineError::invalid_params("the ringtone is empty"));
        }
        if data.len() > MAX_RINGTONE_BYTES {
            return Err(EngineError::new(
                ErrorCode::LimitExceeded,
                format!("a ringtone of {} bytes exceeds the limit of {MAX_RINGTONE_BYTES} bytes", data.len()),
            ));
        }
        ensure_gst()?;
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let file = memory_file(data)?;
        let uri = format!("file:///proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));

        let playbin = make_element("playbin", "gstreamer1.0-plugins-base")?;
        playbin.set_property("name", element_name("vdimedia-ringtone"));
        playbin.set_property("uri", &uri);
        // Audio only, with playsink's own volume element (the output bin has none).
        playbin.set_property_from_str("flags", "audio+soft-volume");
        playbin.set_property("volume", options.volume.clamp(0.0, 1.0));
        let sink = output.make_sink()?;
        keep_backpressure(&sink);
        playbin.set_property("audio-sink", sink);
        if options.looping {
            let next = uri.clone();
            // The same file again as the "next" URI: playbin chains it gaplessly.
            playbin.connect("about-to-finish", false, move |args| {
                if let Some(Ok(pb)) = args.first().map(|v| v.get::<gst::Element>()) {
                    pb.set_property("uri", &next);
                }
                None
            });
        }

        let failure: Arc<Mutex<Option<gst::glib::Error>>> = Arc::default();
        let started = Arc::new(AtomicBool::new(false));
        let bus = playbin.bus().ok_or_else(|| EngineError::operation("playbin has no bus"))?;
        {
            let failure = failure.clone();
            let started = started.clone();
            let id = id.to_string();
            // No main loop: act on the posting thread and drop every message.
            bus.set_sync_handler(move |_, msg| {
                match msg.view() {
                    gst::MessageView::Eos(_) => {
                        let _ = events.send(RingtoneEvent::Ended { id: id.clone(), serial });
                    }
                    gst::MessageView::Error(e) => {
                        debug!(target: "media", ringtone = %id, src = ?msg.src().map(|s| s.path_string()),
                               error = %e.error(), debug = ?e.debug(), "ringtone pipeline error");
                        let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                        if slot.is_none() {
                            *slot = Some(e.error());
                            if started.load(Ordering::Acquire) {
                                let _ = events.send(RingtoneEvent::Failed {
                                    id: id.clone(),
                                    serial,
                                    message: e.error().to_string(),
                                });
                            }
                        }
                    }
                    gst::MessageView::Warning(w) => {
                        debug!(target: "media", ringtone = %id, warning = %w.error(), "ringtone pipeline warning")
                    }
                    _ => {}
                }
                gst::BusSyncReply::Drop
            });
        }

        let ringtone = Ringtone {
            id: id.to_string(),
            serial,
            device: output.label.clone(),
            device_id: output.device_id.clone(),
            looping: options.looping,
            playbin,
            _file: file,
        };
        let take_failure = || failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = ringtone.playbin.set_state(gst::State::Playing);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(e) = take_failure() {
                return Err(start_error(&e)); // `ringtone` drops: pipeline to NULL
            }
            let (res, current, _) = ringtone.playbin.state(gst::ClockTime::from_mseconds(50));
            match res {
                Ok(_) if current == gst::State::Playing => break,
                Err(_) => {
                    // The error message that made the state change fail is posted just before.
                    std::thread::sleep(Duration::from_millis(20));
                    return Err(take_failure().map_or_else(
                        || EngineError::operation("the ringtone's pipeline failed to start"),
                        |e| start_error(&e),
                    ));
                }
                Ok(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(EngineError::operation(format!(
                    "the ringtone did not start within {} ms",
                    START_TIMEOUT.as_millis()
                )));
            }
        }
        started.store(true, Ordering::Release);
        // An error between the last check and `started`: nobody reported it yet.
        if let Some(e) = take_failure() {
            return Err(start_error(&e));
        }
        Ok(ringtone)
    }

    /// Stops playback and frees the pipeline (blocking briefly).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Ringtone {
    fn drop(&mut self) {
        if let Some(bus) = self.playbin.bus() {
            bus.unset_sync_handler();
        }
        let _ = self.playbin.set_state(gst::State::Null);
    }
}

/// Makes every leaky queue inside the output bin block instead. The playout bin may drop
/// buffers when full (right for a live call, whose receiver must never wait on a device), but a
/// file is read faster than real time: only backpressure from the sink paces it, and a leaky
/// queue would throw most of the ringtone away.
fn keep_backpressure(sink: &gst::Element) {
    let Some(bin) = sink.downcast_ref::<gst::Bin>() else { return };
    for el in bin.iterate_recurse().into_iter().flatten() {
        if el.find_property("leaky").is_some() {
            el.set_property_from_str("leaky", "no");
            debug!(target: "media", element = %el.name(), "ringtone output: queue made non-leaky");
        }
    }
}

/// The page-visible error for a pipeline error while starting: data this endpoint cannot
/// decode is `invalid_params` (the SDK throws NotSupportedError, as `HTMLMediaElement.play()`
/// does for an unsupported source); anything else is `operation_error`.
fn start_error(e: &gst::glib::Error) -> EngineError {
    let undecodable =
        e.is::<gst::StreamError>() || e.kind::<gst::CoreError>() == Some(gst::CoreError::MissingPlugin);
    if undecodable {
        warn!(target: "media", error = %e, "ringtone cannot be decoded");
        EngineError::invalid_params(format!("the ringtone cannot be decoded on this endpoint: {e}"))
    } else {
        warn!(target: "media", error = %e, "ringtone failed to start");
        EngineError::operation(format!("the ringtone failed to start: {e}"))
    }
}

/// An anonymous in-memory file (memfd, close-on-exec) holding `data`, so `filesrc` can read,
/// and reread for each loop, the bytes by path without anything touching a disk.
fn memory_file(data: &[u8]) -> EngineResult<OwnedFd> {
    // SAFETY: memfd_create reads a NUL-terminated name and returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"vdimedia-ringtone".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        warn!(target: "media", error = %e, "memfd_create failed");
        return Err(EngineError::operation(format!("cannot hold the ringtone in memory: {e}")));
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    file.write_all(data)
        .map_err(|e| EngineError::operation(format!("cannot hold the ringtone in memory: {e}")))?;
    Ok(file.into())
}

/// Decodes the base64 (RFC 4648 §4, with padding) `data` of `ringtone.play`. Rejects any
/// other character (glib's decoder would skip them silently) and, before decoding, anything
/// that would exceed [`MAX_RINGTONE_BYTES`].
pub fn decode_base64(text: &str) -> EngineResult<Vec<u8>> {
    let text = text.trim_end_matches(['\n', '\r']);
    if text.is_empty() {
        return Err(EngineError::invalid_params("data is empty"));
    }
    let valid = text.len().is_multiple_of(4)
        && text.trim_end_matches('=').bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && text.len() - text.trim_end_matches('=').len() <= 2;
    if !valid {
        return Err(EngineError::invalid_params("data is not base64 (RFC 4648, padded)"));
    }
    let decoded_len = text.len() / 4 * 3 - (text.len() - text.trim_end_matches('=').len());
    if decoded_len > MAX_RINGTONE_BYTES {
        return Err(EngineError::new(
            ErrorCode::LimitExceeded,
            format!("a ringtone of {decoded_len} bytes exceeds the limit of {MAX_RINGTONE_BYTES} bytes"),
        ));
    }
    Ok(gst::glib::base64_decode(text))
}

/// Logs a ringtone's start in the journal (called by the session once `start` returned).
pub fn log_started(r: &Ringtone, bytes: usize, volume: f64) {
    info!(ringtone = %r.id, DEVICE = %r.device, device_id = %r.device_id, looping = r.looping, bytes, volume,
          "ringtone started");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_strict_and_bounded() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(decode_base64("aGVsbG8=\n").unwrap(), b"hello");
        for bad in ["", "aGVsbG8", "aGVs bG8=", "aGVsbG8*", "a===", "aGVs=G8="] {
            let e = decode_base64(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams, "{bad:?}");
        }
        let big = "A".repeat((MAX_RINGTONE_BYTES / 3 + 1) * 4);
        assert_eq!(decode_base64(&big).unwrap_err().code, ErrorCode::LimitExceeded);
        let max = "A".repeat(MAX_RINGTONE_BYTES / 3 * 4);
        assert_eq!(decode_base64(&max).unwrap().len(), MAX_RINGTONE_BYTES / 3 * 3);
    }

    #[test]
    fn memory_file_holds_the_bytes() {
        let fd = memory_file(b"RIFF....").unwrap();
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        assert_eq!(std::fs::read(path).unwrap(), b"RIFF....");
    }
}
