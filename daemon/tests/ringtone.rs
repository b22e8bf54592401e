//! Ringtones (`ringtone.play` / `ringtone.stop` / `ringtone.ended`, docs/protocol.md) through
//! the real `vdimediad` on a private PipeWire graph (tests/rig/pipewire.sh) with a second sink,
//! "the speaker": a looping ringtone is heard on the speaker for longer than its file and not
//! on the default sink, stops within ~200 ms of `ringtone.stop`; a non-looping one ends with
//! `ringtone.ended`; bad data, unknown outputs, too large a file and too many ringtones get
//! typed errors and the daemon carries on; no ringtone pipeline outlives its ringtone or the
//! page's session. Skips (with a printed reason) only when PipeWire is not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vdimedia_protocol::message::ErrorCode;
use vdimedia_protocol::{ChannelEvent, Message, SessionId};

mod common;
use common::{Page, Rig, tempdir};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
/// node.name and label of the sink the test adds as "the speaker".
const SPEAKER: &str = "vdimedia_ringtone_speaker";
const SPEAKER_LABEL: &str = "Ringtone Test Speaker";
/// The rig's default sink (tests/rig/pipewire.sh makes it the configured default).
const DEFAULT_SINK: &str = "vdimedia_null_sink";
const RATE: u32 = 48_000;
/// Length of one recorded analysis window, ms.
const WINDOW_MS: usize = 20;
/// Window RMS above which the tone counts as present (the tone's RMS is ~0.35).
const ON_RMS: f64 = 0.05;

/// A mono 16-bit PCM WAV file of a sine tone: `freq` Hz, amplitude 0.5, `ms` long.
fn tone_wav(freq: f64, ms: u32) -> Vec<u8> {
    common::wav_mono16(RATE, common::sine(freq, 0.5, RATE, (RATE * ms / 1000) as usize))
}

fn b64(data: &[u8]) -> String {
    gst::glib::base64_encode(data).to_string()
}

/// Deterministic bytes no demuxer recognises (xorshift).
fn garbage(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A `pw-record` of a sink's monitor into a mono 16-bit WAV file; killed if the test fails.
struct Recorder {
    child: Option<Child>,
    path: PathBuf,
}

impl Recorder {
    fn start(rig: &Rig, target: &str, path: PathBuf) -> Recorder {
        let child = Command::new("pw-record")
            .envs(&rig.env)
            .args(["-P", "{ stream.capture.sink = true }", "--target", target])
            .args(["--rate", "48000", "--channels", "1", "--format", "s16"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pw-record");
        Recorder { child: Some(child), path }
    }

    /// Stops with SIGINT (pw-record writes a valid header only then) and returns the samples.
    fn finish(mut self) -> Vec<f64> {
        let mut c = self.child.take().unwrap();
        let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && c.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        wav_samples(&self.path)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The samples (-1..1) of a 16-bit PCM WAV file.
fn wav_samples(path: &Path) -> Vec<f64> {
    let data = std::fs::read(path).expect("read the recording");
    assert!(data.len() > 44 && &data[0..4] == b"RIFF", "not a WAV file ({} bytes)", data.len());
    let mut pos = 12;
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let len = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &data[pos + 8..(pos + 8 + len).min(data.len())];
        if id == b"fmt " {
            let bits = u16::from_le_bytes([body[14], body[15]]);
            assert_eq!(bits, 16, "recording is not 16-bit");
        } else if id == b"data" {
            return body.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f64 / 32768.0).collect();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("WAV without data chunk");
}

/// Whether the tone is present in each [`WINDOW_MS`] window of a mono 48 kHz recording.
fn windows_on(samples: &[f64]) -> Vec<bool> {
    samples
        .chunks(RATE as usize * WINDOW_MS / 1000)
        .map(|w| (w.iter().map(|s| s * s).sum::<f64>() / w.len() as f64).sqrt() > ON_RMS)
        .collect()
}

fn max_rms(samples: &[f64]) -> f64 {
    samples
        .chunks(RATE as usize * WINDOW_MS / 1000)
        .map(|w| (w.iter().map(|s| s * s).sum::<f64>() / w.len() as f64).sqrt())
        .fold(0.0, f64::max)
}

fn is_ended(e: &ChannelEvent, sid: SessionId, id: &str) -> bool {
    matches!(e, ChannelEvent::Message { session, message: Message::Event(ev) }
        if *session == sid && ev.event == "ringtone.ended" && ev.params["id"] == id)
}

/// Playback streams (`Stream/Output/Audio` nodes) in the graph: only the daemon's ringtones
/// play in this test.
fn output_streams(rig: &Rig) -> usize {
    // pw-dump may print more than one JSON array (objects that changed while it dumped).
    let text = rig.pw(&["pw-dump", "--no-colors"]);
    let mut ids = std::collections::HashSet::new();
    for dump in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
        for o in dump.unwrap().as_array().into_iter().flatten() {
            if o["info"]["props"]["media.class"] == "Stream/Output/Audio" {
                ids.insert(o["id"].as_u64());
            }
        }
    }
    ids.len()
}

async fn wait_streams(rig: &Rig, page: &mut Page, want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = output_streams(rig);
        if n == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {n} playback streams, want {want}");
        page.pump(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ringtone_plays_loops_and_stops_on_the_chosen_output() {
    let dir = tempdir("ringtone");
    let Some(rig) = Rig::start(dir.join("rig")) else { return };
    rig.pw(&[
        "pw-cli",
        "create-node",
        "adapter",
        &format!(
            "{{ factory.name=support.null-audio-sink node.name={SPEAKER} node.description=\"{SPEAKER_LABEL}\" \
                 media.class=Audio/Sink object.linger=true audio.position=[FL FR] }}"
        ),
    ]);
    let daemon = rig.start_daemon(DAEMON, &dir, "vc");
    let mut page = Page::connect(&dir.join("vc.sock"), "ringtone-test/1").await;
    let sid = page.open().await;

    // The speaker's deviceId (the node may take a moment to appear).
    let deadline = Instant::now() + Duration::from_secs(10);
    let speaker = loop {
        let list = page.request(sid, "devices.enumerate", json!({})).await;
        let found = list["devices"].as_array().unwrap().iter().find_map(|d| {
            (d["kind"] == "audiooutput" && d["label"] == SPEAKER_LABEL)
                .then(|| d["deviceId"].as_str().unwrap().to_string())
        });
        if let Some(id) = found {
            let default = list["devices"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["kind"] == "audiooutput" && d["deviceId"] == "default");
            assert_ne!(
                default.map(|d| &d["label"]),
                Some(&json!(SPEAKER_LABEL)),
                "the speaker must not be the default: {list:#}"
            );
            break id;
        }
        assert!(Instant::now() < deadline, "the speaker never appeared: {list:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(output_streams(&rig), 0, "nothing plays before the first ringtone");

    // --- a looping 0.5 s tone on the speaker, 2 s long, then stop
    let wav = tone_wav(800.0, 500);
    let on_speaker = Recorder::start(&rig, SPEAKER, dir.join("speaker.wav"));
    let on_default = Recorder::start(&rig, DEFAULT_SINK, dir.join("default.wav"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = Instant::now();
    let r = page
        .try_request(
            sid,
            "ringtone.play",
            json!({"id": "r1", "data": b64(&wav), "sinkId": speaker, "loop": true}),
        )
        .await;
    r.unwrap_or_else(|e| panic!("ringtone.play failed: {e:?}"));
    let answered = Instant::now();
    eprintln!("ringtone.play answered after {} ms", (answered - asked).as_millis());
    wait_streams(&rig, &mut page, 1, "while one ringtone plays").await;
    let until = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < until {
        page.pump(Duration::from_millis(50)).await;
    }
    let stop_sent = Instant::now();
    page.try_request(sid, "ringtone.stop", json!({"id": "r1"})).await.unwrap();
    // The tone cannot have started before ringtone.play was answered (it answers once the
    // pipeline plays), so anything heard beyond `ran` is the stop's delay.
    let ran = stop_sent - answered;
    let stop_took = stop_sent.elapsed();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let recording_ended = stop_sent.elapsed();
    let speaker_samples = on_speaker.finish();
    let default_samples = on_default.finish();

    let on = windows_on(&speaker_samples);
    let first = on.iter().position(|&b| b).expect("the ringtone was not heard on the speaker");
    let last = on.iter().rposition(|&b| b).unwrap();
    let heard = Duration::from_millis(((last - first + 1) * WINDOW_MS) as u64);
    let gaps = on[first..=last].iter().filter(|&&b| !b).count();
    // The recording ends when pw-record gets SIGINT: the silence at its end dates the tone's
    // end on the wall clock (PipeWire's start-up latency, which shortens `heard`, does not).
    let tail = Duration::from_millis(((on.len() - last - 1) * WINDOW_MS) as u64);
    let stop_delay = recording_ended.saturating_sub(tail);
    eprintln!(
        "speaker: tone for {} ms (play answered → stop sent: {} ms; stop answered in {} ms; tone ended {} ms after the stop), {gaps} silent {WINDOW_MS} ms windows inside; default sink max rms {:.4}",
        heard.as_millis(),
        ran.as_millis(),
        stop_took.as_millis(),
        stop_delay.as_millis(),
        max_rms(&default_samples)
    );
    assert!(heard >= Duration::from_millis(1000), "a 0.5 s file looped for 2 s was heard for {heard:?} only");
    assert!(
        heard <= ran + Duration::from_millis(200),
        "the tone went on for {heard:?}, more than 200 ms past ringtone.stop ({ran:?} after play was answered)"
    );
    assert!(
        stop_delay <= Duration::from_millis(300),
        "the tone went on {stop_delay:?} after ringtone.stop (want ~200 ms; 300 ms allowed for the recorder)"
    );
    // Gaps are logged, not failed on: a loaded machine makes the null sink and pw-record drop
    // cycles. The loop itself is gapless (playbin's about-to-finish); looping means the tone
    // was on for more than the file's length in all.
    let on_ms = (last - first + 1 - gaps) * WINDOW_MS;
    assert!(on_ms >= 1000, "the tone was on for {on_ms} ms in all; a 0.5 s file did not loop");
    assert!(on.len() > last + 10, "the recording ends before the tone does");
    assert!(default_samples.len() > RATE as usize, "default sink recording too short");
    assert!(max_rms(&default_samples) < 0.01, "the ringtone leaked onto the default sink");
    page.pump(Duration::from_millis(200)).await;
    assert!(!page.events.iter().any(|e| is_ended(e, sid, "r1")), "ringtone.ended after ringtone.stop");
    wait_streams(&rig, &mut page, 0, "after ringtone.stop").await;
    // Stopping again is fine (idempotent).
    page.try_request(sid, "ringtone.stop", json!({"id": "r1"})).await.unwrap();

    // --- a non-looping ringtone ends by itself with ringtone.ended
    let short = tone_wav(800.0, 300);
    let t = Instant::now();
    page.try_request(
        sid,
        "ringtone.play",
        json!({"id": "r2", "data": b64(&short), "sinkId": speaker, "loop": false, "volume": 0.5}),
    )
    .await
    .unwrap();
    page.wait_for("ringtone.ended r2", |e| is_ended(e, sid, "r2")).await;
    let took = t.elapsed();
    eprintln!("non-looping 300 ms ringtone ended after {} ms", took.as_millis());
    assert!(took >= Duration::from_millis(250), "ended after {took:?}, before the file could play");
    assert!(took < Duration::from_secs(3), "ended after {took:?}");
    wait_streams(&rig, &mut page, 0, "after ringtone.ended").await;

    // --- bad input: typed errors, the daemon carries on
    let e = page
        .try_request(sid, "ringtone.play", json!({"id": "g", "data": b64(&garbage(4096))}))
        .await
        .unwrap_err();
    eprintln!("garbage: {e:?}");
    assert_eq!(e.code, ErrorCode::InvalidParams, "{e:?}");
    assert!(e.message.contains("cannot be decoded"), "{e:?}");
    let e = page
        .try_request(sid, "ringtone.play", json!({"id": "n", "data": b64(&wav), "sinkId": "no-such-output"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e:?}");
    let e =
        page.try_request(sid, "ringtone.play", json!({"id": "b", "data": "not base64!"})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams, "{e:?}");
    let too_big = "A".repeat((512 * 1024 / 3 + 1) * 4);
    let e = page.try_request(sid, "ringtone.play", json!({"id": "t", "data": too_big})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e:?}");
    let e = page
        .try_request(sid, "ringtone.play", json!({"id": "v", "data": b64(&wav), "volume": 2.0}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams, "{e:?}");
    wait_streams(&rig, &mut page, 0, "after the failed ringtone.play requests").await;

    // --- at most 4 at once; closing the session stops them all
    for i in 0..4 {
        page.try_request(
            sid,
            "ringtone.play",
            json!({"id": format!("m{i}"), "data": b64(&wav), "sinkId": speaker}),
        )
        .await
        .unwrap();
    }
    let e = page
        .try_request(sid, "ringtone.play", json!({"id": "m4", "data": b64(&wav), "sinkId": speaker}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e:?}");
    let e = page.try_request(sid, "ringtone.play", json!({"id": "m0", "data": b64(&wav)})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidParams, "same id twice: {e:?}");
    wait_streams(&rig, &mut page, 4, "while four ringtones play").await;
    // The daemon still serves other requests.
    page.request(sid, "devices.enumerate", json!({})).await;
    page.ch.close_session(sid, ErrorCode::Normal, "page closed");
    page.pump(Duration::from_millis(100)).await;
    wait_streams(&rig, &mut page, 0, "after the session closed").await;

    let log = std::fs::read_to_string(dir.join("vc.log")).unwrap_or_default();
    for line in [
        "ringtone started",
        "ringtone stopped",
        "ringtone ended",
        "ringtone cannot be decoded",
        "ringtones stopped with their session",
    ] {
        assert!(log.contains(line), "no {line:?} in the daemon's log:\n{log}");
    }
    assert!(log.contains(SPEAKER_LABEL), "the journal names the device");
    drop(daemon);
}
