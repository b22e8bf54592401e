//! PipeWire device discovery.
//!
//! Nodes come from GStreamer's `pipewiredeviceprovider`, probed once per call
//! (`gst_device_provider_get_devices` on a provider that is not started: it connects, does one
//! round trip and disconnects). That is the DeviceMonitor's own code path without the monitor's
//! long-lived thread loop, so an idle daemon holds no PipeWire connection and no thread; it
//! took 3–25 ms on the headless rig, and it works headless (checked against `pw-dump`).
//!
//! The default devices are not in the provider's properties (PipeWire 0.3.65 does not set
//! `is-default`), so they come from the session manager's `default` metadata, read with
//! `pw-metadata -n default 0` (pipewire-bin, installed wherever PipeWire is). When that tool is
//! missing or slow, the "default" entries still work: their elements carry no `target-object`
//! and PipeWire routes them to its default.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tracing::{debug, warn};

use crate::error::{EngineError, EngineResult};

/// GStreamer's PipeWire device provider.
const PROVIDER: &str = "pipewiredeviceprovider";
/// Longest wait for `pw-metadata`, so `enumerate` stays well under 300 ms.
const METADATA_TIMEOUT: Duration = Duration::from_millis(200);

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

/// Probes the PipeWire graph for audio source and sink nodes.
pub(crate) fn nodes() -> EngineResult<Vec<PwNode>> {
    let Some(provider) = gst::DeviceProviderFactory::by_name(PROVIDER) else {
        let e =
            EngineError::operation("GStreamer's PipeWire plugin (gstreamer1.0-pipewire) is not installed");
        warn!(target: "media", "{}", e.message);
        return Err(e);
    };
    if !daemon_answers() {
        warn!(target: "media", socket = ?socket_path(), "PipeWire does not answer; no devices");
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for dev in provider.devices() {
        let class = dev.device_class();
        let is_source = match class.as_str() {
            "Audio/Source" => true,
            "Audio/Sink" => false,
            _ => continue,
        };
        let mut props = HashMap::new();
        if let Some(s) = dev.properties() {
            for (k, v) in s.iter() {
                if let Ok(v) = v.get::<String>() {
                    props.insert(k.to_string(), v);
                }
            }
        }
        let label = dev.display_name().to_string();
        let Some(node_name) = props.get("node.name").cloned() else {
            debug!(target: "media", %label, "PipeWire node without node.name skipped");
            continue;
        };
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
        Some(text) => parse_metadata(&text),
        None => Defaults::default(),
    }
}

fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Option<String> {
    let mut child = match cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn() {
        Ok(c) => c,
        Err(e) => {
            debug!(target: "media", error = %e, "pw-metadata not runnable; default devices unnamed");
            return None;
        }
    };
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(3)),
            _ => {
                warn!(target: "media", "pw-metadata did not answer in {timeout:?}; default devices unnamed");
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut text = String::new();
    child.stdout.take()?.read_to_string(&mut text).ok()?;
    Some(text)
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
