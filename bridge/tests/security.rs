//! Security of the page side with real processes: the process allow-list (the real
//! `vdimedia-bridge` binary, WebSocket clients that are other processes, some run as other
//! users) and the per-user channel mapping (`vc_connect = "unix:…/{uid}/vc.sock"`) with two
//! real system users.
//!
//! The WebSocket client is this test binary re-executed with `VDIMEDIA_TEST_WS_CLIENT=URL`
//! (see [`ws_client_helper`]); copies and hard links of it stand in for browsers under the
//! names the allow-list knows (`chromium`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use common::{Engine, engine_welcome, temp_dir};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vdimedia_protocol::channel::{ChannelConfig, ChannelEvent};

const BIN: &str = env!("CARGO_BIN_EXE_vdimedia-bridge");
const CLIENT_ENV: &str = "VDIMEDIA_TEST_WS_CLIENT";
const USER_A: &str = "vdimedia-test-a";
const USER_B: &str = "vdimedia-test-b";
/// The bridge's own user in the per-user tests (the unit's `User=vdimedia-bridge`).
const USER_BRIDGE: &str = "vdimedia-test-bridge";
/// The unit's `AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_OVERRIDE`, in setpriv's spelling.
const UNIT_CAPS: &str = "+sys_ptrace,+dac_override";

/// Client mode (a no-op in a normal test run): connects to `$VDIMEDIA_TEST_WS_CLIENT` with
/// `Origin: $VDIMEDIA_TEST_ORIGIN`, sends hello, and if redirected `pc.create` with
/// `$VDIMEDIA_TEST_PC`; prints `WSCLIENT {json}` per message or close frame, then
/// `WSCLIENT {"done":true}`, and (with `$VDIMEDIA_TEST_HOLD`) keeps the page open until stdin
/// closes.
#[test]
fn ws_client_helper() {
    let Ok(url) = std::env::var(CLIENT_ENV) else { return };
    let origin = std::env::var("VDIMEDIA_TEST_ORIGIN").unwrap_or_else(|_| "https://test.example".into());
    let pc = std::env::var("VDIMEDIA_TEST_PC").unwrap_or_else(|_| "pc1".into());
    let hold = std::env::var_os("VDIMEDIA_TEST_HOLD").is_some();
    let out = |v: Value| {
        println!("WSCLIENT {v}");
        let _ = std::io::stdout().flush();
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut req = url.as_str().into_client_request().unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        let addr = url.trim_start_matches("ws://").trim_end_matches('/').to_string();
        let tcp = match tokio::net::TcpStream::connect(&addr).await {
            Ok(t) => t,
            Err(e) => return out(json!({"error": e.to_string()})),
        };
        let (mut ws, _) = match tokio_tungstenite::client_async(req, tcp).await {
            Ok(c) => c,
            Err(e) => return out(json!({"error": e.to_string()})),
        };
        let hello = json!({"type":"hello","sdk":"0.1.0","min_version":1,"max_version":1});
        let _ = ws.send(WsMessage::text(hello.to_string())).await;
        let mut sent_request = false;
        // After a negative status: a close follows (refusals), or the page stays open
        // (origin refused) and a short wait ends the run.
        let mut negative = false;
        loop {
            let wait = if negative { Duration::from_secs(1) } else { Duration::from_secs(10) };
            let m = match tokio::time::timeout(wait, ws.next()).await {
                Err(_) if negative => break,
                Err(_) => break out(json!({"error": "timeout"})),
                Ok(None) => break out(json!({"error": "connection ended"})),
                Ok(Some(Err(e))) => break out(json!({"error": e.to_string()})),
                Ok(Some(Ok(m))) => m,
            };
            match m {
                WsMessage::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    out(json!({"text": v}));
                    if v["type"] == "status" && v["redirected"] == true && !sent_request {
                        sent_request = true;
                        let r = json!({"type":"request","id":1,"method":"pc.create","params":{"pc":pc,"configuration":{}}});
                        let _ = ws.send(WsMessage::text(r.to_string())).await;
                    } else if v["type"] == "status" {
                        negative = true;
                    } else if v["type"] == "response" {
                        break;
                    }
                }
                WsMessage::Close(c) => {
                    let (code, reason) = c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                    break out(json!({"close": [code, reason]}));
                }
                _ => {}
            }
        }
        out(json!({"done": true}));
        if hold {
            let _ = tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                let _ = std::io::stdin().read_line(&mut s);
            })
            .await;
        }
        let _ = ws.close(None).await;
    });
}

/// What a client process saw.
#[derive(Debug, Default)]
struct Seen {
    texts: Vec<Value>,
    close: Option<(u16, String)>,
    error: Option<String>,
}

impl Seen {
    fn status(&self) -> &Value {
        self.texts.iter().find(|t| t["type"] == "status").unwrap_or(&Value::Null)
    }
}

/// A client process (this binary at `exe`), optionally as `user`.
struct Client {
    child: Child,
    lines: std_mpsc::Receiver<String>,
}

impl Client {
    fn spawn(exe: &Path, user: Option<(u32, u32)>, url: &str, origin: &str, pc: &str, hold: bool) -> Client {
        let mut cmd = match user {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["ws_client_helper", "--exact", "--nocapture", "--test-threads=1"])
            .env(CLIENT_ENV, url)
            .env("VDIMEDIA_TEST_ORIGIN", origin)
            .env("VDIMEDIA_TEST_PC", pc)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if hold {
            cmd.env("VDIMEDIA_TEST_HOLD", "1");
        }
        let mut child = cmd.spawn().expect("client process starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest may have printed "test NAME ... " on the same line.
                if let Some(i) = l.find("WSCLIENT ") {
                    let _ = tx.send(l[i + 9..].to_string());
                }
            }
        });
        Client { child, lines }
    }

    /// Reads until `{"done":true}` (15 s).
    fn seen(&mut self) -> Seen {
        let mut s = Seen::default();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).expect("client reports within 15 s");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["done"] == true {
                return s;
            }
            if let Some(t) = v.get("text") {
                s.texts.push(t.clone());
            }
            if let Some(c) = v.get("close") {
                s.close = Some((c[0].as_u64().unwrap() as u16, c[1].as_str().unwrap().to_string()));
            }
            if let Some(e) = v.get("error") {
                s.error = Some(e.to_string());
            }
        }
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills and reaps a child when dropped.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a client to completion.
fn run_client(exe: &Path, user: Option<(u32, u32)>, url: &str, origin: &str) -> Seen {
    let mut c = Client::spawn(exe, user, url, origin, "pc1", false);
    let s = c.seen();
    c.finish();
    s
}

/// The real bridge binary; its stderr log is collected.
struct BridgeProc {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    url: String,
    vc: Option<String>,
}

impl BridgeProc {
    fn start(args: &[&str]) -> BridgeProc {
        BridgeProc::start_as(None, args)
    }

    /// As the unit runs it: an unprivileged user (`as_user`) with only the capabilities of
    /// packaging/systemd/system/vdimedia-bridge.service (`caps`, e.g. `+sys_ptrace,+dac_override`),
    /// seeing a /proc like the unit's.
    fn start_as(as_user: Option<((u32, u32), &str)>, args: &[&str]) -> BridgeProc {
        let mut cmd = match as_user {
            None => Command::new(BIN),
            Some(((uid, gid), caps)) => {
                // The unit's ProtectProc=invisible + ProcSubset=pid: a private /proc mounted
                // hidepid=invisible,subset=pid, in a mount namespace of its own.
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg("mount -t proc -o hidepid=invisible,subset=pid proc /proc && exec \"$0\" \"$@\"")
                    .arg("setpriv");
                c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups");
                if !caps.is_empty() {
                    c.arg(format!("--inh-caps={caps}")).arg(format!("--ambient-caps={caps}"));
                }
                c.arg("--").arg(BIN);
                c
            }
        };
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0", "--insecure-ws", "--hello-timeout-ms", "10000"])
            .args(args)
            .env("VDIMEDIA_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("JOURNAL_STREAM")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(l);
            }
        });
        let mut b = BridgeProc { child, log, url: String::new(), vc: None };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "bridge did not start: {:#?}", b.lines());
            let lines = b.lines();
            if let Some(u) = lines.iter().find_map(|l| field(l, "url=")) {
                b.url = u;
                b.vc = lines.iter().find_map(|l| field(l, "vc=tcp://"));
                if b.vc.is_some() || !args.contains(&"--vc-listen") {
                    return b;
                }
            }
            if let Some(st) = b.child.try_wait().unwrap() {
                panic!("bridge exited {st}: {:#?}", b.lines());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (5 s) for a log line containing every one of `parts`.
    fn expect_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| parts.iter().all(|p| l.contains(p))) {
                return l;
            }
            assert!(Instant::now() < deadline, "no log line with {parts:?}:\n{}", self.lines().join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value after `key` up to the next space (`url=ws://127.0.0.1:4242/`).
fn field(line: &str, key: &str) -> Option<String> {
    let i = line.find(key)?;
    Some(line[i + key.len()..].split_whitespace().next()?.trim_matches('"').to_string())
}

/// Says what was not run, on the process's stderr itself (libtest captures only the print
/// macros), so a skip is never a silent pass.
fn skip(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Owned by root and writable by nobody else (what a name rule requires).
fn root_owned(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0)
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A directory others may traverse (the clients run as other users).
fn open_dir(tag: &str) -> PathBuf {
    let d = temp_dir(tag);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// This test binary under another name: a hard link keeps the inode (root-owned, 0755) while
/// `/proc/PID/exe` shows the linked name.
fn link_as(dir: &Path, name: &str) -> PathBuf {
    let sub = dir.join(format!("{name}-dir"));
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = sub.join(name);
    let me = std::env::current_exe().unwrap();
    if std::fs::hard_link(&me, &p).is_err() {
        std::fs::copy(&me, &p).unwrap();
    }
    p
}

/// Dials the bridge's `--vc-listen` address as the engine.
async fn engine_for(b: &BridgeProc) -> Engine {
    Engine::dial(b.vc.as_ref().unwrap().parse().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_allow_list_refuses_unknown_executables_and_accepts_allowed_ones() {
    let dir = open_dir("allow");
    let me = std::env::current_exe().unwrap();
    let chromium = link_as(&dir, "chromium");

    // Defaults: chromium, chrome, msedge, firefox…: this test binary is refused.
    let b = BridgeProc::start(&["--vc-listen", "tcp://127.0.0.1:0"]);
    let _engine = engine_for(&b).await;
    let url = b.url.clone();
    let (me2, url2) = (me.clone(), url.clone());
    let seen = tokio::task::spawn_blocking(move || run_client(&me2, None, &url2, "https://a.example"))
        .await
        .unwrap();
    let (code, reason) = seen.close.clone().unwrap_or_else(|| panic!("no close frame: {seen:?}"));
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("process not allowed") && reason.contains("allowed_executables"), "{reason}");
    // Before the close, the status of docs/protocol.md with the same reason; nothing else.
    assert_eq!(seen.texts.len(), 1, "{seen:?}");
    assert_eq!(seen.status()["reason"], "not_allowed", "{seen:?}");
    assert_eq!(seen.status()["message"], reason.as_str());
    let line = b.expect_log(&["WARN", "executable not in allowed_executables"]);
    let exe_name = me.file_name().unwrap().to_str().unwrap();
    let uid = format!("uid={}", unsafe { libc::geteuid() });
    assert!(line.contains("pid=") && line.contains(&uid) && line.contains(exe_name), "{line}");
    assert!(
        line.contains("reason=\"process_not_allowed\"") || line.contains("reason=process_not_allowed"),
        "{line}"
    );

    // The same program named chromium (root-owned, like /usr/lib/chromium/chromium) is accepted.
    if root_owned(&chromium) {
        let (c2, url2) = (chromium.clone(), url.clone());
        let seen = tokio::task::spawn_blocking(move || run_client(&c2, None, &url2, "https://a.example"))
            .await
            .unwrap();
        assert_eq!(seen.status()["redirected"], true, "{seen:?}");
        assert!(seen.close.is_none(), "{seen:?}");
        b.expect_log(&["page process allowed", "rule=chromium"]);
    } else {
        skip(
            "SKIPPED part: a root-owned binary named chromium is accepted (needs root: this binary is not root's)",
        );
    }

    if is_root() {
        // A user's own file named chromium is not a browser: a name rule needs a root-owned
        // binary.
        let own = dir.join("own");
        std::fs::create_dir_all(&own).unwrap();
        let fake = own.join("chromium");
        std::fs::copy(&me, &fake).unwrap();
        std::os::unix::fs::chown(&fake, Some(65534), Some(65534)).unwrap();
        let url2 = url.clone();
        let seen = tokio::task::spawn_blocking(move || run_client(&fake, None, &url2, "https://a.example"))
            .await
            .unwrap();
        let (code, reason) = seen.close.clone().unwrap_or_else(|| panic!("no close frame: {seen:?}"));
        assert_eq!(code, 1008, "{reason}");
        assert!(reason.contains("own/chromium"), "{reason}");
    } else {
        skip("SKIPPED part: user-owned chromium (needs root to chown)");
    }
    drop(b);

    // An absolute path rule accepts exactly that executable.
    let me_s = me.to_str().unwrap().to_string();
    let b = BridgeProc::start(&["--vc-listen", "tcp://127.0.0.1:0", "--allow-executable", &me_s]);
    let _engine = engine_for(&b).await;
    let (me2, url2) = (me.clone(), b.url.clone());
    let seen = tokio::task::spawn_blocking(move || run_client(&me2, None, &url2, "https://a.example"))
        .await
        .unwrap();
    assert_eq!(seen.status()["redirected"], true, "{seen:?}");
    let (c2, url2) = (chromium.clone(), b.url.clone());
    let seen =
        tokio::task::spawn_blocking(move || run_client(&c2, None, &url2, "https://a.example")).await.unwrap();
    assert_eq!(seen.close.as_ref().map(|c| c.0), Some(1008), "chromium is not in this list: {seen:?}");
    drop(b);

    // The development switch accepts anything; the origin allow-list still applies.
    let b = BridgeProc::start(&[
        "--vc-listen",
        "tcp://127.0.0.1:0",
        "--allow-any-process",
        "--allow-origin",
        "https://softphone.example",
    ]);
    b.expect_log(&["WARN", "ANY local process"]);
    let _engine = engine_for(&b).await;
    let (me2, url2) = (me.clone(), b.url.clone());
    let seen =
        tokio::task::spawn_blocking(move || run_client(&me2, None, &url2, "https://softphone.example"))
            .await
            .unwrap();
    assert_eq!(seen.status()["redirected"], true, "{seen:?}");
    let (me2, url2) = (me.clone(), b.url.clone());
    let seen = tokio::task::spawn_blocking(move || run_client(&me2, None, &url2, "https://evil.example"))
        .await
        .unwrap();
    assert_eq!(seen.status()["reason"], "not_allowed", "{seen:?}");
    drop(b);
    std::fs::remove_dir_all(&dir).ok();
}

/// Creates the system user `name` if absent; returns (uid, gid).
fn system_user(name: &str) -> (u32, u32) {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, name]).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().parse().ok())?
    };
    if id("-u").is_none() {
        let st = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name])
            .status()
            .expect("useradd runs");
        assert!(st.success() || id("-u").is_some(), "useradd {name} failed");
    }
    (id("-u").unwrap(), id("-g").unwrap())
}

/// `{root}/{uid}/` owned by the user, 0700, like /run/user/UID.
fn runtime_dir(root: &Path, (uid, gid): (u32, u32)) -> PathBuf {
    let d = root.join(uid.to_string());
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// An engine peer listening on `path`, the socket owned by `owner`, announcing `name`.
async fn engine_at(
    path: &Path,
    owner: u32,
    name: &'static str,
) -> tokio::sync::mpsc::UnboundedReceiver<ChannelEvent> {
    let l = tokio::net::UnixListener::bind(path).unwrap();
    std::os::unix::fs::chown(path, Some(owner), None).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Every dial is served (the bridge redials after a drop).
        while let Ok((s, _)) = l.accept().await {
            let mut w = engine_welcome();
            w.engine = name.to_string();
            let mut e = Engine::spawn(s, ChannelConfig::endpoint(w));
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = e.events.recv().await {
                    let _ = tx.send(ev);
                }
            });
        }
    });
    rx
}

fn origins_opened(rx: &mut tokio::sync::mpsc::UnboundedReceiver<ChannelEvent>) -> Vec<String> {
    let mut v = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let ChannelEvent::SessionOpened { open: Some(open), .. } = ev {
            v.push(open.origin.unwrap_or_default());
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_reaches_only_their_own_channel() {
    if !is_root() {
        skip(
            "SKIPPED each_user_reaches_only_their_own_channel: needs root (creates two system users and runs clients as them)",
        );
        return;
    }
    let a = system_user(USER_A);
    let b = system_user(USER_B);
    let dir = open_dir("uid");
    let chromium = link_as(&dir, "chromium");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut saw_a = engine_at(&runtime_dir(&run, a).join("vc.sock"), a.0, "engine-of-a").await;
    let mut saw_b = engine_at(&runtime_dir(&run, b).join("vc.sock"), b.0, "engine-of-b").await;

    let template = format!("unix:{}/{{uid}}/vc.sock", run.display());
    // The bridge as its unit runs it: its own system user, CAP_SYS_PTRACE (other users'
    // /proc/PID/fd and exe) and CAP_DAC_OVERRIDE (their 0700 runtime dirs, 0600 sockets).
    let me = (system_user(USER_BRIDGE), UNIT_CAPS);
    let state = open_dir("uid-state");
    std::os::unix::fs::chown(&state, Some(me.0.0), Some(me.0.1)).unwrap();
    let state_s = state.to_str().unwrap().to_string();

    // Without those capabilities the processes behind pages cannot be identified: refused.
    let weak = BridgeProc::start_as(Some((me.0, "")), &["--vc-connect", &template, "--state-dir", &state_s]);
    let (c, u) = (chromium.clone(), weak.url.clone());
    let seen = tokio::task::spawn_blocking(move || run_client(&c, Some(a), &u, "https://user-a.example"))
        .await
        .unwrap();
    let (code, reason) = seen.close.clone().unwrap_or_else(|| panic!("no close frame: {seen:?}"));
    assert_eq!(code, 1008);
    assert!(reason.contains("process not identified"), "{reason}");
    drop(weak);

    let bridge = BridgeProc::start_as(Some(me), &["--vc-connect", &template, "--state-dir", &state_s]);
    let url = bridge.url.clone();

    for round in 0..2 {
        for (user, name, origin) in
            [(a, "engine-of-a", "https://user-a.example"), (b, "engine-of-b", "https://user-b.example")]
        {
            let (c, u) = (chromium.clone(), url.clone());
            let seen =
                tokio::task::spawn_blocking(move || run_client(&c, Some(user), &u, origin)).await.unwrap();
            assert_eq!(seen.status()["redirected"], true, "round {round}, uid {}: {seen:?}", user.0);
            assert_eq!(seen.status()["engine"], name, "uid {} reached the wrong channel: {seen:?}", user.0);
            let r = seen.texts.iter().find(|t| t["type"] == "response").expect("pc.create answered");
            assert_eq!(r["result"]["method"], "pc.create", "{r}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (oa, ob) = (origins_opened(&mut saw_a), origins_opened(&mut saw_b));
    assert_eq!(oa, vec!["https://user-a.example"; 2], "A's channel saw {oa:?}");
    assert_eq!(ob, vec!["https://user-b.example"; 2], "B's channel saw {ob:?}");

    // A uid without a channel (root here) is refused with a reason, not sent elsewhere.
    let (c, u) = (chromium.clone(), url.clone());
    let seen =
        tokio::task::spawn_blocking(move || run_client(&c, None, &u, "https://root.example")).await.unwrap();
    let (code, reason) = seen.close.clone().unwrap_or_else(|| panic!("no close frame: {seen:?}"));
    assert_eq!(code, 1008);
    assert!(reason.contains("no virtual channel for uid 0"), "{reason}");
    assert_eq!(seen.status()["reason"], "no_engine", "{seen:?}");
    bridge.expect_log(&["WARN", "no virtual channel for its user", "uid=0"]);

    // B cannot borrow A's channel by pointing its own socket path at A's: B's "socket" is a
    // symlink to A's, which the bridge does not follow (nor a socket owned by A in B's place).
    let b_sock = run.join(b.0.to_string()).join("vc.sock");
    std::fs::remove_file(&b_sock).unwrap();
    std::os::unix::fs::symlink(run.join(a.0.to_string()).join("vc.sock"), &b_sock).unwrap();
    // A new bridge, so B's channel is dialled afresh.
    drop(bridge);
    let bridge = BridgeProc::start_as(Some(me), &["--vc-connect", &template, "--state-dir", &state_s]);
    let (c, u) = (chromium.clone(), bridge.url.clone());
    let seen = tokio::task::spawn_blocking(move || run_client(&c, Some(b), &u, "https://user-b.example"))
        .await
        .unwrap();
    assert_eq!(
        seen.close.as_ref().map(|c| c.0),
        Some(1008),
        "B reached a channel through a symlink: {seen:?}"
    );
    std::fs::remove_file(&b_sock).unwrap();
    let planted = tokio::net::UnixListener::bind(&b_sock).unwrap();
    std::os::unix::fs::chown(&b_sock, Some(a.0), None).unwrap();
    let (c, u) = (chromium.clone(), bridge.url.clone());
    let seen = tokio::task::spawn_blocking(move || run_client(&c, Some(b), &u, "https://user-b.example"))
        .await
        .unwrap();
    let (code, reason) = seen.close.clone().unwrap_or_else(|| panic!("no close frame: {seen:?}"));
    assert_eq!(code, 1008);
    assert!(reason.contains(&format!("belongs to uid {}", a.0)), "{reason}");
    drop(planted);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let oa = origins_opened(&mut saw_a);
    assert!(oa.is_empty(), "A's channel saw another user's page: {oa:?}");
    drop(bridge);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&state).ok();
}

/// The same with the real `vdimediad`, one per user, each run as that user on its own socket
/// (as the user unit does at /run/user/UID/vdimedia/vc.sock); which daemon holds each user's
/// peer connection is read from its control socket (`vdimediactl status --json`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_reaches_only_their_own_vdimediad() {
    if !is_root() {
        skip("SKIPPED each_user_reaches_only_their_own_vdimediad: needs root (two system users)");
        return;
    }
    // target/<profile>/ of this test binary (target/<profile>/deps/NAME).
    let bin_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let (daemon, ctl) = (bin_dir.join("vdimediad"), bin_dir.join("vdimediactl"));
    if !daemon.exists() || !ctl.exists() {
        skip(&format!(
            "SKIPPED each_user_reaches_only_their_own_vdimediad: {} or vdimediactl not built (cargo build -p vdimediad)",
            daemon.display()
        ));
        return;
    }
    let a = system_user(USER_A);
    let b = system_user(USER_B);
    let dir = open_dir("uid-daemon");
    let chromium = link_as(&dir, "chromium");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut daemons = Vec::new();
    for user in [a, b] {
        let rd = runtime_dir(&run, user);
        let sock = rd.join("vc.sock");
        let child = Command::new("setpriv")
            .arg(format!("--reuid={}", user.0))
            .arg(format!("--regid={}", user.1))
            .args(["--clear-groups", "--"])
            .arg(&daemon)
            .args(["--listen", &format!("unix:{}", sock.display()), "--backend", "alsa"])
            .env("XDG_RUNTIME_DIR", &rd)
            .env("HOME", &rd)
            .env("VDIMEDIA_LOG", "info")
            .current_dir("/")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        daemons.push(Reaper(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "vdimediad of uid {} did not listen", user.0);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let template = format!("unix:{}/{{uid}}/vc.sock", run.display());
    let me = (system_user(USER_BRIDGE), UNIT_CAPS);
    let bridge = BridgeProc::start_as(Some(me), &["--vc-connect", &template]);

    // Both pages stay open while each daemon is asked which peer connections it holds.
    let ca = Client::spawn(&chromium, Some(a), &bridge.url, "https://user-a.example", "pc-of-a", true);
    let cb = Client::spawn(&chromium, Some(b), &bridge.url, "https://user-b.example", "pc-of-b", true);
    let (sa, sb, ca, cb) = tokio::task::spawn_blocking(move || {
        let (mut ca, mut cb) = (ca, cb);
        (ca.seen(), cb.seen(), ca, cb)
    })
    .await
    .unwrap();
    for (s, who) in [(&sa, "A"), (&sb, "B")] {
        assert_eq!(s.status()["redirected"], true, "{who}: {s:?}");
        let r = s.texts.iter().find(|t| t["type"] == "response").unwrap_or_else(|| panic!("{who}: {s:?}"));
        assert!(r.get("error").is_none(), "{who}: pc.create failed: {r}");
    }
    for (user, mine, theirs) in [(a, "pc-of-a", "pc-of-b"), (b, "pc-of-b", "pc-of-a")] {
        let out = Command::new(&ctl)
            .args(["status", "--json", "--socket"])
            .arg(run.join(user.0.to_string()).join("control.sock"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "vdimediactl status (uid {}): {text} {}",
            user.0,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(mine), "uid {}'s daemon lacks {mine}: {text}", user.0);
        assert!(!text.contains(theirs), "uid {}'s daemon holds {theirs}: {text}", user.0);
    }
    ca.finish();
    cb.finish();
    drop(bridge);
    drop(daemons);
    std::fs::remove_dir_all(&dir).ok();
}
