//! PipeWire device discovery.
//!
//! Nodes come from `pw-dump` (pipewire-bin, installed wherever PipeWire is), run as a child
//! process once per probe with a deadline ([`DUMP_TIMEOUT`]; on expiry it is killed and the probe
//! fails with a typed error). Probing out of process is deliberate: GStreamer's in-process
//! `pipewiredeviceprovider` shares libpipewire's thread loop with the call's
//! `pipewiresrc`/`pipewiresink`, and a probe racing a starting capture hung forever in
//! `pw_thread_loop_wait` (PipeWire 0.3.65), stalling `enumerateDevices`, playout and status.
//! A child process cannot deadlock the daemon, and an idle daemon maps no libpipewire at all.
//!
//! The nodes offered are those whose `media.class` is exactly `Audio/Source` or `Audio/Sink`
//! (the set the device provider offered); their `info.props` are kept as strings, as
//! libpipewire's `spa_dict` holds them, so the ids derived from them stay the same.
//!
//! The default devices are not in the node properties (PipeWire 0.3.65 does not set
//! `is-default`), so they come from the session manager's `default` metadata, read with
//! `pw-metadata -n default 0`. When that tool is missing or slow, the "default" entries still
//! work: their elements carry no `target-object` and PipeWire routes them to its default.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::error::{EngineError, EngineResult};

/// Longest wait for `pw-metadata`, so `enumerate` stays well under 300 ms.
const METADATA_TIMEOUT: Duration = Duration::from_millis(200);
/// Longest wait for `pw-dump` (it took 20–40 ms on the headless rig; a desktop graph with
/// hundreds of objects stays under 100 ms). On expiry the child is killed and the probe fails.
pub(crate) const DUMP_TIMEOUT: Duration = Duration::from_millis(750);

/// One PipeWire node offered as a device. `node_name` is `node.name` (stable across restarts,
/// the `target-object` of pipewiresrc/pipewiresink); `label` the provider's display name
/// (`node.description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PwNode {
    pub node_name: String,
    pub label: String,
    pub is_source: bool,
    pub props: HashMap<String, String>,
}

/// The path of the PipeWire socket libpipewire would use: `PIPEWIRE_REMOTE` (absolute, or a
/// name inside the runtime dir), else `pipewire-0` in `PIPEWIRE_RUNTIME_DIR` or
/// `XDG_RUNTIME_DIR` (libpipewire's own order).
pub(crate) fn socket_path() -> Option<PathBuf> {
    let remote = std::env::var("PIPEWIRE_REMOTE").ok().filter(|r| !r.is_empty());
    let name = remote.unwrap_or_else(|| "pipewire-0".to_string());
    if name.starts_with('/') {
        return Some(PathBuf::from(name));
    }
    let dir = std::env::var_os("PIPEWIRE_RUNTIME_DIR")
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR"))
        .filter(|d| !d.is_empty())?;
    Some(PathBuf::from(dir).join(name))
}

/// True when a PipeWire daemon accepts connections on [`socket_path`].
pub(crate) fn daemon_answers() -> bool {
    socket_path().is_some_and(|p| UnixStream::connect(p).is_ok())
}

/// Which PipeWire daemon answers on [`socket_path`]: the socket file's (device, inode), or
/// None when nothing answers. A restarted PipeWire binds a new socket file, so a different
/// value means every stream of the old one is dead (and libpipewire's connection with it).
pub(crate) fn daemon_identity() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let path = socket_path()?;
    UnixStream::connect(&path).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Probes the PipeWire graph for audio source and sink nodes, with `pw-dump`.
///
/// Errors: `OperationError` when `pw-dump` cannot run, exits with a failure, answers nothing
/// within [`DUMP_TIMEOUT`] (it is killed) or prints something that is not its JSON array. An
/// absent PipeWire daemon is no error: no devices.
pub(crate) fn nodes() -> EngineResult<Vec<PwNode>> {
    if !daemon_answers() {
        warn!(target: "media", socket = ?socket_path(), "PipeWire does not answer; no devices");
        return Ok(Vec::new());
    }
    let t0 = Instant::now();
    let text = run_with_timeout(Command::new("pw-dump").arg("--no-colors"), DUMP_TIMEOUT).map_err(|e| {
        let e = EngineError::operation(format!("PipeWire device probe failed: {e}"));
        warn!(target: "media", "{}", e.message);
        e
    })?;
    let nodes = parse_dump(&text).map_err(|e| {
        let e = EngineError::operation(format!("PipeWire device probe: pw-dump printed no usable JSON: {e}"));
        warn!(target: "media", "{}", e.message);
        e
    })?;
    debug!(target: "media", nodes = nodes.len(), took_ms = t0.elapsed().as_millis() as u64, "pw-dump probe");
    Ok(nodes)
}

/// The audio source and sink nodes of a `pw-dump` JSON array (objects of type
/// `PipeWire:Interface:Node` whose `info.props["media.class"]` is `Audio/Source` or
/// `Audio/Sink`). Property values become strings (`pw-dump` prints numbers and booleans
/// unquoted; libpipewire stores them as strings); `label` is `node.description`, else
/// `node.nick`, else `node.name`; nodes without `node.name` are skipped.
pub(crate) fn parse_dump(text: &str) -> Result<Vec<PwNode>, serde_json::Error> {
    // pw-dump may print more than one array when the graph changes while it runs (a call's
    // streams starting): later arrays carry updates of the same ids, `"info": null` a removal.
    let mut by_id: std::collections::BTreeMap<i64, serde_json::Value> = Default::default();
    let mut arrays = 0;
    for array in serde_json::Deserializer::from_str(text).into_iter::<Vec<serde_json::Value>>() {
        arrays += 1;
        for o in array? {
            let Some(id) = o.get("id").and_then(|i| i.as_i64()) else { continue };
            if o.get("info").is_some_and(|i| i.is_null()) && o.get("type").is_none() {
                by_id.remove(&id);
            } else {
                by_id.insert(id, o);
            }
        }
    }
    if arrays == 0 {
        // An empty output is no graph at all: say so rather than report zero devices.
        return Err(serde_json::from_str::<Vec<serde_json::Value>>(text).unwrap_err());
    }
    let mut out = Vec::new();
    for o in by_id.values() {
        if o.get("type").and_then(|t| t.as_str()) != Some("PipeWire:Interface:Node") {
            continue;
        }
        let Some(raw) = o.pointer("/info/props").and_then(|p| p.as_object()) else {
            continue;
        };
        let is_source = match raw.get("media.class").and_then(|c| c.as_str()) {
            Some("Audio/Source") => true,
            Some("Audio/Sink") => false,
            _ => continue,
        };
        let props: HashMap<String, String> = raw
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((k.clone(), v))
            })
            .collect();
        let Some(node_name) = props.get("node.name").filter(|n| !n.is_empty()).cloned() else {
            debug!(target: "media", id = ?o.get("id"), "PipeWire node without node.name skipped");
            continue;
        };
        let label = ["node.description", "node.nick"]
            .iter()
            .find_map(|k| props.get(*k).filter(|v| !v.is_empty()).cloned())
            .unwrap_or_else(|| node_name.clone());
        out.push(PwNode { node_name, label, is_source, props });
    }
    Ok(out)
}

/// The `node.name`s of the default source and sink, from the `default` metadata: the
/// session manager's effective choice (`default.audio.*`), else the configured one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub source: Option<String>,
    pub sink: Option<String>,
}

pub(crate) fn defaults() -> Defaults {
    match run_with_timeout(Command::new("pw-metadata").args(["-n", "default", "0"]), METADATA_TIMEOUT) {
        Ok(text) => parse_metadata(&text),
        Err(e) => {
            debug!(target: "media", "default devices unnamed: {e}");
            Defaults::default()
        }
    }
}

/// Runs `cmd` to completion within `timeout` and returns its stdout. The output is read while
/// the child runs (a `pw-dump` is larger than a pipe's 64 KiB buffer); on expiry the child is
/// killed and reaped. Errors are one-line descriptions naming the program.
pub(crate) fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{prog} cannot run ({e}); install pipewire-bin"))?;
    let mut stdout = child.stdout.take().ok_or_else(|| format!("{prog}: no stdout pipe"))?;
    let reader = std::thread::Builder::new()
        .name("pw-probe-read".into())
        .spawn(move || {
            let mut buf = Vec::new();
            stdout.read_to_end(&mut buf).map(|_| buf)
        })
        .map_err(|e| format!("{prog}: cannot start its reader thread ({e})"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                warn!(target: "media", program = %prog, ?timeout, "killed: no answer in time");
                return Err(format!(
                    "{prog} did not finish within {} ms and was killed",
                    timeout.as_millis()
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(format!("{prog}: waiting for it failed ({e})"));
            }
        }
    };
    // The child has exited, so its end of the pipe is closed (unless it left a grandchild
    // holding it, which neither tool does) and the reader finishes.
    let out = reader
        .join()
        .map_err(|_| format!("{prog}: reader thread panicked"))?
        .map_err(|e| format!("{prog}: reading its output failed ({e})"))?;
    if !status.success() {
        return Err(format!("{prog} failed ({status})"));
    }
    String::from_utf8(out).map_err(|_| format!("{prog} printed non-UTF-8 output"))
}

/// Parses `pw-metadata` lines such as
/// `update: id:0 key:'default.audio.source' value:'{"name":"virt_mic"}' type:'Spa:String:JSON'`.
fn parse_metadata(text: &str) -> Defaults {
    let mut found: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let Some(key) = between(line, "key:'", "'") else {
            continue;
        };
        let Some(value) = between(line, "value:'", "' type:") else {
            continue;
        };
        let name = serde_json::from_str::<serde_json::Value>(value)
            .ok()
            .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_string));
        if let Some(name) = name {
            found.insert(key.to_string(), name);
        }
    }
    let pick = |kind: &str| {
        found
            .get(&format!("default.audio.{kind}"))
            .or_else(|| found.get(&format!("default.configured.audio.{kind}")))
            .cloned()
    };
    Defaults { source: pick("source"), sink: pick("sink") }
}

fn between<'a>(line: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = line.find(start)? + start.len();
    let len = line[from..].find(end)?;
    Some(&line[from..from + len])
}

/// The group key of a node: the physical device it belongs to, from stable properties, so a
/// headset's source and sink share a W3C `groupId`:
/// - Bluetooth: `api.bluez5.address`;
/// - ALSA nodes named by WirePlumber `alsa_{input,output}.<card>.<profile>`: `<card>`;
/// - anything else (virtual nodes): its own `node.name`.
pub(crate) fn group_key(node: &PwNode) -> String {
    if let Some(addr) = node.props.get("api.bluez5.address") {
        return format!("bluez:{addr}");
    }
    for prefix in ["alsa_input.", "alsa_output."] {
        if let Some(rest) = node.node_name.strip_prefix(prefix)
            && let Some((card, _profile)) = rest.rsplit_once('.')
        {
            return format!("alsa:{card}");
        }
    }
    for prefix in ["bluez_input.", "bluez_output."] {
        if let Some(rest) = node.node_name.strip_prefix(prefix) {
            let addr = rest.split('.').next().unwrap_or(rest);
            return format!("bluez:{}", addr.replace('_', ":"));
        }
    }
    format!("pw-node:{}", node.node_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, props: &[(&str, &str)]) -> PwNode {
        PwNode {
            node_name: name.into(),
            label: name.into(),
            is_source: true,
            props: props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn media_pipewire_metadata_parse() {
        let text = "Found \"default\" metadata 35\n\
            update: id:0 key:'default.audio.sink' value:'{\"name\":\"spk\"}' type:'Spa:String:JSON'\n\
            update: id:0 key:'default.configured.audio.source' value:'{ \"name\": \"mic2\" }' type:'Spa:String:JSON'\n\
            update: id:0 key:'default.audio.source' value:'{\"name\":\"mic\"}' type:'Spa:String:JSON'\n";
        assert_eq!(parse_metadata(text), Defaults { source: Some("mic".into()), sink: Some("spk".into()) });
        assert_eq!(parse_metadata("garbage\n"), Defaults::default());
    }

    #[test]
    fn media_pipewire_dump_parse() {
        // The shape of `pw-dump` output (PipeWire 0.3.65): numbers and booleans unquoted.
        let text = r#"[
          {"id": 0, "type": "PipeWire:Interface:Core", "info": {"props": {"core.name": "pipewire-0"}}},
          {"id": 34, "type": "PipeWire:Interface:Node", "info": {"max-input-ports": 65, "props": {
              "media.class": "Audio/Sink", "node.name": "vdimedia_null_sink", "node.description": "spk",
              "audio.channels": 2, "node.virtual": true, "object.serial": 38}}},
          {"id": 43, "type": "PipeWire:Interface:Node", "info": {"props": {
              "media.class": "Audio/Source", "node.name": "alsa_input.usb-Jabra-00.mono-fallback",
              "node.nick": "Jabra", "api.alsa.card": "2"}}},
          {"id": 50, "type": "PipeWire:Interface:Node", "info": {"props": {
              "media.class": "Stream/Output/Audio", "node.name": "firefox"}}},
          {"id": 51, "type": "PipeWire:Interface:Node", "info": {"props": {"media.class": "Audio/Source"}}},
          {"id": 52, "type": "PipeWire:Interface:Node", "info": null},
          {"id": 60, "type": "PipeWire:Interface:Port", "info": {"props": {"media.class": "Audio/Sink", "node.name": "x"}}}
        ]"#;
        let nodes = parse_dump(text).unwrap();
        assert_eq!(nodes.len(), 2, "{nodes:#?}");
        let spk = &nodes[0];
        assert_eq!(
            (spk.node_name.as_str(), spk.label.as_str(), spk.is_source),
            ("vdimedia_null_sink", "spk", false)
        );
        assert_eq!(spk.props["audio.channels"], "2");
        assert_eq!(spk.props["node.virtual"], "true");
        let mic = &nodes[1];
        assert_eq!((mic.label.as_str(), mic.is_source), ("Jabra", true));
        assert_eq!(group_key(mic), "alsa:usb-Jabra-00");
        assert!(parse_dump("not json").is_err());
        assert!(parse_dump("").is_err());
        // A second array (the graph changed while pw-dump ran) updates and removes by id.
        let two = format!("{text}\n[{{\"id\": 43, \"info\": null}}]\n");
        assert_eq!(parse_dump(&two).unwrap().len(), 1);
        assert!(parse_dump("{}").is_err(), "pw-dump prints an array");
    }

    #[test]
    fn media_pipewire_probe_child_killed_on_timeout() {
        let t0 = Instant::now();
        let e = run_with_timeout(Command::new("sleep").arg("5"), Duration::from_millis(100)).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "the probe must not wait for the child");
        assert!(e.contains("sleep did not finish within 100 ms"), "{e}");
        let e = run_with_timeout(&mut Command::new("/nonexistent/pw-dump"), Duration::from_millis(100))
            .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
        let e = run_with_timeout(&mut Command::new("false"), Duration::from_millis(1000)).unwrap_err();
        assert!(e.contains("failed"), "{e}");
        // Output larger than a pipe buffer is read while the child runs.
        let big = run_with_timeout(
            Command::new("head").args(["-c", "300000", "/dev/zero"]),
            Duration::from_secs(2),
        );
        assert_eq!(big.map(|s| s.len()), Ok(300_000));
    }

    #[test]
    fn media_pipewire_group_keys() {
        let a = node("alsa_input.usb-Jabra_Evolve-00.mono-fallback", &[]);
        let b = node("alsa_output.usb-Jabra_Evolve-00.analog-stereo", &[]);
        assert_eq!(group_key(&a), group_key(&b));
        let c = node("bluez_output.00_1B_66_AA_BB_CC.1", &[]);
        let d = node("bluez_input.00:1B:66:AA:BB:CC", &[("api.bluez5.address", "00:1B:66:AA:BB:CC")]);
        assert_eq!(group_key(&c), group_key(&d));
        assert_ne!(group_key(&node("virt_mic", &[])), group_key(&node("spk", &[])));
    }
}
