//! Helpers shared by the daemon's integration tests that drive a real `vdimediad` process.
#![allow(dead_code)] // each test binary uses a different subset

pub mod loopback;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vdimedia_protocol::{Channel, ChannelConfig, ChannelEvent, Message, Open, Response, SessionId};

/// Kills and reaps a child when the test ends, failed or not.
pub struct Reaper(pub Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A page on the virtual channel: the VDA side of the real protocol over the daemon's VC socket.
pub struct Page {
    pub ch: Channel,
    io: UnixStream,
    /// Events received and not yet taken by [`Page::wait_for`].
    pub events: Vec<ChannelEvent>,
    next_id: u64,
}

impl Page {
    /// Connects to the VC socket at `vc` as `engine` (e.g. `"ctl-test/1"`) and waits for WELCOME.
    pub async fn connect(vc: &Path, engine: &str) -> Page {
        let io = UnixStream::connect(vc).await.unwrap();
        let mut p = Page {
            ch: Channel::new(ChannelConfig::vda(engine), Instant::now()),
            io,
            events: vec![],
            next_id: 0,
        };
        p.wait_for("WELCOME", |e| matches!(e, ChannelEvent::Ready(_))).await;
        p
    }

    /// Writes every frame the channel has queued.
    pub async fn flush(&mut self) {
        while let Some(f) = self.ch.poll_transmit() {
            self.io.write_all(&f).await.unwrap();
        }
    }

    /// `getUserMedia` on the default microphone with echo cancellation, noise suppression and
    /// AGC off (a steady test tone is what noise suppression removes: tests measure the raw
    /// path); returns the track id. Panics on an error response.
    pub async fn raw_microphone(&mut self, sid: SessionId) -> String {
        let gum = self
            .request(
                sid,
                "media.getUserMedia",
                json!({"constraints": {"audio": {
                    "echoCancellation": false, "noiseSuppression": false, "autoGainControl": false}}}),
            )
            .await;
        gum["tracks"][0]["id"].as_str().expect("getUserMedia gave a track").to_string()
    }

    /// The id of the remote track that `pc.track` announced for peer connection `pc`
    /// (webrtcbin 1.22 writes no `a=msid`, so the page names the track in `playout.attach`).
    /// Panics when no such event arrived.
    pub fn remote_track(&self, pc: &str) -> String {
        self.events
            .iter()
            .find_map(|e| match e {
                ChannelEvent::Message { message: vdimedia_protocol::Message::Event(ev), .. }
                    if ev.event == "pc.track" && ev.params["pc"] == pc =>
                {
                    ev.params["track"]["id"].as_str().map(str::to_string)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no pc.track for {pc}"))
    }

    /// Sends what is queued, reads for up to `wait` and keeps the events that arrive.
    pub async fn pump(&mut self, wait: Duration) {
        self.flush().await;
        let mut buf = vec![0u8; 65536];
        if let Ok(r) = tokio::time::timeout(wait, self.io.read(&mut buf)).await {
            let n = r.unwrap();
            assert!(n > 0, "daemon closed the channel");
            self.ch.handle_input(&buf[..n], Instant::now());
        }
        while let Some(ev) = self.ch.poll_event() {
            self.events.push(ev);
        }
        self.flush().await;
    }

    /// Takes the first event matching `pred`, pumping for up to 20 s.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&ChannelEvent) -> bool) -> ChannelEvent {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = self.events.iter().position(&pred) {
                return self.events.remove(i);
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {:#?}", self.events);
            self.pump(Duration::from_millis(100)).await;
        }
    }

    /// Opens a logical session and waits until the daemon confirms it.
    pub async fn open(&mut self) -> SessionId {
        let sid = self.ch.open_session(Open::default()).unwrap();
        self.wait_for(
            "OPENED",
            |e| matches!(e, ChannelEvent::SessionOpened { session, .. } if *session == sid),
        )
        .await;
        sid
    }

    /// Sends a request and returns its result; panics on an error response.
    pub async fn request(&mut self, sid: SessionId, method: &str, params: Value) -> Value {
        self.try_request(sid, method, params).await.unwrap_or_else(|e| panic!("{method} failed: {e:?}"))
    }

    /// Sends a request and returns its outcome, error responses included.
    #[allow(dead_code)] // not every test binary asserts on error responses
    pub async fn try_request(
        &mut self,
        sid: SessionId,
        method: &str,
        params: Value,
    ) -> Result<Value, vdimedia_protocol::message::ErrorBody> {
        self.next_id += 1;
        let id = self.next_id;
        self.ch.send(sid, &Message::request(id, method, params)).unwrap();
        let ev = self
            .wait_for(method, |e| {
                matches!(e, ChannelEvent::Message { session, message: Message::Response(Response { id: rid, .. }) }
                    if *session == sid && *rid == id)
            })
            .await;
        let ChannelEvent::Message { message: Message::Response(r), .. } = ev else { unreachable!() };
        r.outcome
    }
}

/// A fresh directory under the temp dir, unique to this test process.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vdimedia-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits up to 15 s for `p` to exist; panics (with `log`'s text, if given) if `child` exits first.
pub fn wait_for_path(p: &Path, child: &mut Child, log: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !p.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            let text = log.map(|l| std::fs::read_to_string(l).unwrap_or_default()).unwrap_or_default();
            panic!("process exited early: {status}\n{text}");
        }
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The private PipeWire graph of tests/rig/pipewire.sh (virtual mic, null sink), stopped on
/// drop. `env` is what a process needs to reach it (XDG_RUNTIME_DIR, …; not PIPEWIRE_REMOTE
/// or PULSE_SERVER, so clients find the graph the way the daemon does).
pub struct Rig {
    pub dir: std::path::PathBuf,
    script: std::path::PathBuf,
    pub env: std::collections::HashMap<String, String>,
}

impl Rig {
    /// Starts the rig in `dir`, or returns None (printing why) when PipeWire is not installed.
    pub fn start(dir: std::path::PathBuf) -> Option<Rig> {
        use std::process::Command;
        if Command::new("pipewire").arg("--version").output().is_err() {
            eprintln!("SKIP: pipewire is not installed (scripts/install-deps.sh)");
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rig/pipewire.sh");
        let out = Command::new("bash").arg(&script).arg("start").arg(&dir).output().expect("run rig script");
        assert!(
            out.status.success(),
            "PipeWire rig failed to start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(dir.join("env")).expect("rig writes DIR/env");
        let env = text
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
            .filter(|(k, _)| k != "PIPEWIRE_REMOTE" && k != "PULSE_SERVER")
            .collect();
        Some(Rig { dir, script, env })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash").arg(&self.script).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Page {
    /// Creates peer connections "a" and "b" in session `sid`, has "a" send `track` (a capture
    /// track id from `media.getUserMedia`) and completes offer/answer; ICE then needs
    /// [`Page::trickle`] until connected.
    pub async fn negotiate_loopback(&mut self, sid: SessionId, track: &str) {
        self.request(sid, "pc.create", json!({"pc": "a"})).await;
        self.request(sid, "pc.create", json!({"pc": "b"})).await;
        self.request(sid, "pc.addTrack", json!({"pc": "a", "track": track, "streams": ["s"]})).await;
        let offer = self.request(sid, "pc.createOffer", json!({"pc": "a"})).await;
        self.request(sid, "pc.setLocalDescription", json!({"pc": "a", "description": offer})).await;
        self.request(sid, "pc.setRemoteDescription", json!({"pc": "b", "description": offer})).await;
        let answer = self.request(sid, "pc.createAnswer", json!({"pc": "b"})).await;
        self.request(sid, "pc.setLocalDescription", json!({"pc": "b", "description": answer})).await;
        self.request(sid, "pc.setRemoteDescription", json!({"pc": "a", "description": answer})).await;
    }

    /// Forwards `pc.icecandidate` events between peer connections `a` and `b` of session `sid`.
    pub async fn trickle(&mut self, sid: SessionId) {
        let cands: Vec<(String, Value)> = self
            .events
            .iter()
            .filter_map(|e| match e {
                ChannelEvent::Message { message: Message::Event(ev), .. }
                    if ev.event == "pc.icecandidate" =>
                {
                    Some((ev.params["pc"].as_str()?.to_string(), ev.params["candidate"].clone()))
                }
                _ => None,
            })
            .collect();
        self.events.retain(
            |e| !matches!(e, ChannelEvent::Message { message: Message::Event(ev), .. } if ev.event == "pc.icecandidate"),
        );
        for (from, cand) in cands {
            let to = if from == "a" { "b" } else { "a" };
            self.request(sid, "pc.addIceCandidate", json!({"pc": to, "candidate": cand})).await;
        }
    }
}

impl Rig {
    /// Runs a PipeWire tool (`pw-cli`, `pw-dump`, …) against the rig; panics when it fails.
    pub fn pw(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .envs(&self.env)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The PipeWire object id of the node whose `node.name` is `name`, if it exists.
    pub fn node_id(&self, name: &str) -> Option<u64> {
        let dump: Value = serde_json::from_str(&self.pw(&["pw-dump", "--no-colors"])).unwrap();
        dump.as_array()?
            .iter()
            .find_map(|o| (o["info"]["props"]["node.name"] == name).then(|| o["id"].as_u64()).flatten())
    }

    /// Starts `daemon` (the vdimediad binary) on the rig's PipeWire with its VC socket at
    /// `DIR/NAME.sock` and its log at `DIR/NAME.log`; returns when the socket exists.
    pub fn start_daemon(&self, daemon: &str, dir: &Path, name: &str) -> Reaper {
        let vc = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let mut child = Reaper(
            std::process::Command::new(daemon)
                .envs(&self.env)
                .env("VDIMEDIA_LOG", "info,media=debug")
                .env_remove("JOURNAL_STREAM")
                .args([
                    "--listen",
                    &format!("unix:{}", vc.display()),
                    "--backend",
                    "pipewire",
                    "--loopback-ice",
                ])
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for_path(&vc, &mut child.0, Some(&log));
        child
    }
}

/// A mono 16-bit PCM WAV file (RIFF, 44-byte header) of `samples` in [-1, 1] at `rate` Hz.
#[allow(dead_code)] // not every test binary writes WAVs
pub fn wav_mono16(rate: u32, samples: impl IntoIterator<Item = f64>) -> Vec<u8> {
    let pcm: Vec<u8> = samples
        .into_iter()
        .flat_map(|v| ((v * 32767.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
        .collect();
    let mut w = Vec::with_capacity(44 + pcm.len());
    w.extend(b"RIFF");
    w.extend((36 + pcm.len() as u32).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes()); // PCM
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(rate.to_le_bytes());
    w.extend((rate * 2).to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend((pcm.len() as u32).to_le_bytes());
    w.extend(pcm);
    w
}

/// `n` samples of a sine of `freq` Hz and peak `amp` at `rate` Hz.
#[allow(dead_code)]
pub fn sine(freq: f64, amp: f64, rate: u32, n: usize) -> impl Iterator<Item = f64> {
    (0..n).map(move |i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin())
}
