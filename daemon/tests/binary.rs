//! The built `vdimediad` and `vdimediactl` binaries as an admin meets them: start, status over
//! the real socket, a lazy idle footprint, clean SIGTERM, and configuration errors that name
//! the key.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DAEMON: &str = env!("CARGO_BIN_EXE_vdimediad");
const CTL: &str = env!("CARGO_BIN_EXE_vdimediactl");

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vdimediad-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wait_for_path(p: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early: {status}");
        }
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the daemon if a test fails half-way, so no process outlives the test.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` (logging to a pipe, not the journal) and waits until `sock` exists.
fn spawn_until_listening(cmd: &mut Command, sock: &Path) -> Reaper {
    let mut reaper =
        Reaper(cmd.env_remove("JOURNAL_STREAM").stderr(Stdio::piped()).spawn().expect("spawn the daemon"));
    wait_for_path(sock, &mut reaper.0);
    reaper
}

/// Sends SIGTERM and waits (at most 5 s) for the daemon to exit; returns its status and stderr.
fn stop_with_sigterm(child: &mut Child) -> (std::process::ExitStatus, String) {
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "daemon did not stop within 5 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    (status, log)
}

/// `vdimediactl status` against `sock`.
fn status(sock: &Path) -> std::process::Output {
    Command::new(CTL).args(["status", "--vc", &format!("unix:{}", sock.display())]).output().unwrap()
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn starts_answers_status_and_stops_cleanly_on_sigterm() {
    let dir = tempdir("sigterm");
    let sock = dir.join("vc.sock");
    let listen = format!("unix:{}", sock.display());
    let mut reaper = spawn_until_listening(
        Command::new(DAEMON).args(["--listen", &listen, "--backend", "alsa"]).env("VDIMEDIA_LOG", "info"),
        &sock,
    );
    let child = &mut reaper.0;

    // Idle: no GStreamer, no pipeline, so just the runtime's thread(s).
    let idle_threads = threads_of(child.id());
    assert!(idle_threads <= 3, "idle daemon runs {idle_threads} threads");

    let out = status(&sock);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "status failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("engine:   vdimediad/"), "{stdout}");
    assert!(stdout.contains("opus"), "{stdout}");

    let (status, log) = stop_with_sigterm(child);
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "log:\n{log}");
}

#[test]
fn status_of_a_daemon_that_is_not_there_fails_with_a_reason() {
    let dir = tempdir("nodaemon");
    let out = Command::new(CTL)
        .args(["status", "--vc", &format!("unix:{}", dir.join("none.sock").display())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("none.sock"), "{err}");
}

#[test]
fn configuration_errors_name_the_key_and_exit_78() {
    let dir = tempdir("config");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[vc]\nmax_frame = 7\n").unwrap();
    let out =
        Command::new(DAEMON).args(["--config", bad.to_str().unwrap(), "--check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vc.max_frame") && err.contains("bad.toml"), "{err}");

    let good = dir.join("good.toml");
    std::fs::write(&good, "[vc]\nconnect = \"tcp://127.0.0.1:9003\"\n[webrtc]\nloopback_ice = true\n")
        .unwrap();
    let out =
        Command::new(DAEMON).args(["--config", good.to_str().unwrap(), "--check-config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = Command::new(DAEMON).args(["--connect", "http://x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn takes_its_listening_socket_from_systemd_socket_activation() {
    let activate = Path::new("/usr/bin/systemd-socket-activate");
    if !activate.exists() {
        eprintln!("skipped: systemd-socket-activate is not installed (apt install systemd)");
        return;
    }
    let dir = tempdir("activation");
    let sock = dir.join("activated.sock");
    // systemd-socket-activate binds the socket and execs the daemon on the first connection,
    // passing the socket as fd 3 with LISTEN_FDS=1, as a .socket unit does.
    let mut reaper = spawn_until_listening(
        Command::new(activate).args([
            "-l",
            sock.to_str().unwrap(),
            "-E",
            "VDIMEDIA_LOG=info",
            DAEMON,
            "--backend",
            "alsa",
        ]),
        &sock,
    );
    let child = &mut reaper.0;
    let out = status(&sock);
    assert!(
        out.status.success(),
        "status through the activated socket failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, log) = stop_with_sigterm(child);
    assert!(log.contains("socket systemd passed"), "the daemon did not use the passed socket:\n{log}");
}

/// The shared objects `pid` maps, by file name.
fn mapped_libs(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains(".so"))
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .collect();
    libs.dedup();
    libs
}

/// Polls `cond` every 50 ms for at most `secs`; true once it held.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Libraries that only the warm-up loads: the DTLS plugin and OpenSSL.
fn warm_up_libs(pid: u32) -> Vec<String> {
    mapped_libs(pid).into_iter().filter(|l| l.starts_with("libgstdtls") || l.starts_with("libssl")).collect()
}

/// A daemon with a page open: the daemon, its pid, and the channel with its socket (the page
/// session stays open while they live).
type OpenPage = (Reaper, u32, vdimedia_protocol::Channel, std::os::unix::net::UnixStream);

/// Starts the daemon (ALSA backend, `extra` arguments), handshakes a channel and checks that
/// the idle daemon with the channel is lean; then a page opens a session.
fn daemon_with_an_open_page(dir: &Path, extra: &[&str]) -> OpenPage {
    use std::io::Write;
    use vdimedia_protocol::{Channel, ChannelConfig, ChannelEvent, Open};

    let sock = dir.join("vc.sock");
    let reaper = spawn_until_listening(
        Command::new(DAEMON)
            .args(["--listen", &format!("unix:{}", sock.display()), "--backend", "alsa"])
            .args(extra)
            .env("VDIMEDIA_LOG", "info"),
        &sock,
    );
    let pid = reaper.0.id();
    let mut io = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    io.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut ch = Channel::new(ChannelConfig::vda("binary-test/1"), Instant::now());

    let mut buf = vec![0u8; 65536];
    let mut pump = |ch: &mut Channel, what: &str, pred: &dyn Fn(&ChannelEvent) -> bool| loop {
        while let Some(f) = ch.poll_transmit() {
            io.write_all(&f).unwrap();
        }
        while let Some(ev) = ch.poll_event() {
            if pred(&ev) {
                return ev;
            }
        }
        let n = io.read(&mut buf).unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        assert!(n > 0, "daemon closed the channel while waiting for {what}");
        ch.handle_input(&buf[..n], Instant::now());
    };
    let ChannelEvent::Ready(w) = pump(&mut ch, "WELCOME", &|e| matches!(e, ChannelEvent::Ready(_))) else {
        unreachable!()
    };
    assert!(w.capabilities.codecs.iter().any(|c| c == "opus"), "opus must be announced: {w:?}");

    assert!(
        eventually(5, || threads_of(pid) == 1),
        "idle daemon with a channel keeps {} threads",
        threads_of(pid)
    );
    let libs = mapped_libs(pid);
    assert!(warm_up_libs(pid).is_empty(), "idle daemon with a channel maps {:?}", warm_up_libs(pid));
    assert!(!libs.iter().any(|l| l.starts_with("libgstcoreelements")), "plugins loaded: {libs:?}");

    // A page loads the SDK.
    let sid = ch.open_session(Open::default()).unwrap();
    pump(&mut ch, "OPENED", &|e| matches!(e, ChannelEvent::SessionOpened { session, .. } if *session == sid));
    (reaper, pid, ch, io)
}

/// Issue 8: a handshaken channel without a page session must not load GStreamer's plugins or
/// OpenSSL (the DTLS certificate), nor keep a thread beyond the runtime's; the first `OPEN`
/// starts the warm-up. WELCOME's codecs come from the start-up element-check child.
#[test]
fn channel_without_a_page_session_stays_lean_and_open_warms_up() {
    let dir = tempdir("lean");
    let (_daemon, pid, _ch, _io) = daemon_with_an_open_page(&dir, &[]);
    assert!(
        eventually(20, || !warm_up_libs(pid).is_empty()),
        "no warm-up after OPEN: {:?}",
        mapped_libs(pid)
    );
}

/// `[webrtc] warm_up = "first-call"`: an open page alone does not load GStreamer's DTLS plugin
/// or OpenSSL (the first `pc.create` does; `pc.create` always awaits the warm-up).
#[test]
fn first_call_warm_up_leaves_an_open_page_lean() {
    let dir = tempdir("lean-first-call");
    let config = dir.join("vdimediad.toml");
    std::fs::write(&config, "[webrtc]\nwarm_up = \"first-call\"\n").unwrap();
    let (_daemon, pid, _ch, _io) = daemon_with_an_open_page(&dir, &["--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(warm_up_libs(pid).is_empty(), "warm-up ran at OPEN: {:?}", warm_up_libs(pid));
    assert_eq!(threads_of(pid), 1, "an open page with no call keeps extra threads");
}
