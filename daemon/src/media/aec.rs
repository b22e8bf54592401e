//! The echo-cancellation policy: which acoustic echo canceller a capture track gets.
//!
//! Per capture device at `getUserMedia` (Media Capture and Streams §4.3.8, `echoCancellation`):
//!
//! 1. `echoCancellation: false` requested → [`AecMode::Off`] (reason `constraint`);
//! 2. the device is in the `[aec] not_hardware` deny list → software (3 is skipped);
//! 3. the device cancels echo itself → [`AecMode::Hardware`]: no software AEC, the track reports
//!    `echoCancellation: true`. A device is taken to cancel echo when
//!    - it is a PipeWire echo-cancel node (`module-echo-cancel`: `node.name`, `node.description`,
//!      `media.name`, `factory.name` or `node.group` contains "echo-cancel"/"echo_cancel"), or
//!    - its label or PipeWire `node.name` matches a pattern of `[aec] hardware` (case-insensitive
//!      glob with `*` and `?`; a pattern without wildcards matches as a substring), or
//!    - `[aec] trust_device_roles` and PipeWire marks it a phone device: `device.intended-roles`
//!      contains `phone`, `device.form-factor` is `headset`/`handset`/`speakerphone`, or it is a
//!      Bluetooth hands-free (HFP/HSP) source (`api.bluez5.profile` `headset-head-unit`/`hsp`/`hfp`);
//! 4. else `[aec] software` (default true) → [`AecMode::Software`]: `vdiaec` (WebRTC AEC3, in the
//!    daemon's built-in plugin) on the capture path, its reference the connection's playout;
//! 5. else [`AecMode::None`].
//!
//! The decision and its reason go to the journal at `getUserMedia` (`aec=… reason=…`), and the
//! default input's mode is `WELCOME.capabilities.aec` (docs/protocol.md).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

/// `[aec]` of vdimediad.toml: the echo-cancellation policy's knobs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AecConfig {
    /// Run the software canceller (`vdiaec`) on devices without AEC of their own. `false`: such
    /// devices get no AEC (`echoCancellation` reported false).
    #[serde(default = "default_true")]
    pub software: bool,
    /// Devices that cancel echo themselves: case-insensitive globs (`*`, `?`) matched against the
    /// device label and the PipeWire `node.name`/ALSA PCM name; without a wildcard, a substring.
    #[serde(default = "default_hardware")]
    pub hardware: Vec<String>,
    /// Devices never taken as cancelling echo themselves (same matching), even when they are
    /// echo-cancel nodes, match `hardware` or carry phone roles: they get software AEC.
    #[serde(default)]
    pub not_hardware: Vec<String>,
    /// Take PipeWire's phone markings (`device.intended-roles=phone`, headset/handset/speakerphone
    /// form factor, Bluetooth hands-free profile) as built-in AEC.
    #[serde(default = "default_true")]
    pub trust_device_roles: bool,
}

fn default_true() -> bool {
    true
}

/// Speakerphones and headsets known to cancel echo in firmware, and PipeWire's echo-cancel nodes.
pub fn default_hardware() -> Vec<String> {
    ["echo-cancel", "Speakerphone", "Jabra SPEAK", "Poly Sync", "EPOS EXPAND", "Anker PowerConf"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Default for AecConfig {
    fn default() -> Self {
        Self {
            software: true,
            hardware: default_hardware(),
            not_hardware: Vec::new(),
            trust_device_roles: true,
        }
    }
}

/// Which echo canceller a capture track runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AecMode {
    /// The device cancels echo itself; no software AEC.
    Hardware,
    /// `vdiaec` on the capture path, referenced to the connection's playout.
    Software,
    /// `echoCancellation: false` was asked for.
    Off,
    /// No AEC available (software AEC turned off and the device has none).
    None,
}

impl AecMode {
    /// `"hardware"`, `"software"`, `"off"` or `"none"` (journal and `WELCOME` vocabulary).
    pub fn as_str(self) -> &'static str {
        match self {
            AecMode::Hardware => "hardware",
            AecMode::Software => "software",
            AecMode::Off => "off",
            AecMode::None => "none",
        }
    }

    /// Whether the track reports `echoCancellation: true` (some canceller runs).
    pub fn cancels(self) -> bool {
        matches!(self, AecMode::Hardware | AecMode::Software)
    }
}

impl fmt::Display for AecMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy decision: the mode and why (e.g. `constraint`, `pipewire echo-cancel node`,
/// `config hardware "Jabra SPEAK"`, `intended-roles=phone`, `no device AEC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AecDecision {
    pub mode: AecMode,
    pub reason: String,
}

/// What the policy knows of one capture device: its label, its opening name (PipeWire
/// `node.name` or ALSA PCM; `None` for PipeWire's default without a known real device) and its
/// PipeWire properties (empty on ALSA).
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts<'a> {
    pub label: &'a str,
    pub name: Option<&'a str>,
    pub props: &'a HashMap<String, String>,
}

/// Decides the AEC of a capture track; `requested` is the track's `echoCancellation` after
/// constraint selection (true unless the page asked for false). See the module docs for the
/// rules, in order.
pub fn decide(config: &AecConfig, device: DeviceFacts<'_>, requested: bool) -> AecDecision {
    let d = |mode, reason: String| AecDecision { mode, reason };
    if !requested {
        return d(AecMode::Off, "constraint".into());
    }
    let names = || std::iter::once(device.label).chain(device.name);
    if let Some(p) = config.not_hardware.iter().find(|p| names().any(|n| matches(p, n))) {
        return software(config, format!("config not_hardware {p:?}"));
    }
    if let Some(why) = echo_cancel_node(device.props) {
        return d(AecMode::Hardware, why);
    }
    if let Some(p) = config.hardware.iter().find(|p| names().any(|n| matches(p, n))) {
        return d(AecMode::Hardware, format!("config hardware {p:?}"));
    }
    if config.trust_device_roles
        && let Some(why) = phone_role(device.props)
    {
        return d(AecMode::Hardware, why);
    }
    software(config, "no device AEC".into())
}

fn software(config: &AecConfig, why: String) -> AecDecision {
    if config.software {
        AecDecision { mode: AecMode::Software, reason: why }
    } else {
        AecDecision { mode: AecMode::None, reason: format!("{why}; software AEC off in config") }
    }
}

/// `module-echo-cancel`'s nodes (PipeWire 0.3.x names them `echo-cancel-source`, describe them
/// "Echo-Cancel Source", group them as `echo-cancel-<id>`).
fn echo_cancel_node(props: &HashMap<String, String>) -> Option<String> {
    ["node.name", "node.description", "media.name", "factory.name", "node.group"].iter().find_map(|k| {
        let v = props.get(*k)?.to_ascii_lowercase();
        (v.contains("echo-cancel") || v.contains("echo_cancel") || v.contains("echocancel"))
            .then(|| format!("pipewire echo-cancel node ({k}={})", props[*k]))
    })
}

fn phone_role(props: &HashMap<String, String>) -> Option<String> {
    if let Some(r) = props.get("device.intended-roles")
        && r.split([' ', ',']).any(|r| r.eq_ignore_ascii_case("phone"))
    {
        return Some("device.intended-roles=phone".into());
    }
    if let Some(f) = props.get("device.form-factor")
        && ["headset", "handset", "speakerphone"].iter().any(|x| f.eq_ignore_ascii_case(x))
    {
        return Some(format!("device.form-factor={f}"));
    }
    if let Some(p) = props.get("api.bluez5.profile") {
        let p = p.to_ascii_lowercase();
        if p.contains("headset-head-unit") || p.contains("hsp") || p.contains("hfp") {
            return Some(format!("bluetooth hands-free profile ({p})"));
        }
    }
    None
}

/// Case-insensitive glob (`*` any run, `?` one character); without wildcards, a substring test.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    if p.is_empty() {
        return false;
    }
    if !p.iter().any(|c| *c == '*' || *c == '?') {
        let (p, n): (String, String) = (p.into_iter().collect(), n.into_iter().collect());
        return n.contains(&p);
    }
    // Iterative glob with single-star backtracking.
    let (mut pi, mut ni, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn decide_for(
        config: &AecConfig,
        label: &str,
        name: &str,
        kv: &[(&str, &str)],
        req: bool,
    ) -> AecDecision {
        let p = props(kv);
        decide(config, DeviceFacts { label, name: Some(name), props: &p }, req)
    }

    #[test]
    fn aec_packaged_config_is_the_default() {
        let text = include_str!("../../../packaging/config/vdimediad.toml");
        let c = crate::config::Config::parse(text, std::path::Path::new("vdimediad.toml")).unwrap();
        assert_eq!(c.aec, AecConfig::default());
        let c = crate::config::Config::parse(
            "[aec]\nsoftware = false\nhardware = [\"My Phone*\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        assert!(!c.aec.software && c.aec.trust_device_roles);
        assert_eq!(c.aec.hardware, vec!["My Phone*".to_string()]);
        let e = crate::config::Config::parse("[aec]\nsoftwre = true\n", std::path::Path::new("t.toml"));
        assert!(e.unwrap_err().to_string().contains("softwre"));
    }

    #[test]
    fn aec_globs() {
        assert!(matches("Jabra SPEAK", "Jabra SPEAK 510 USB"));
        assert!(matches("jabra speak", "Jabra SPEAK 510 USB"), "case-insensitive");
        assert!(matches("*speak?510*", "Jabra SPEAK 510 USB"));
        assert!(matches("alsa_input.usb-*", "alsa_input.usb-Jabra-00.mono"));
        assert!(!matches("alsa_input.usb-*", "xalsa_input.usb-Jabra"));
        assert!(!matches("*.mono", "alsa_input.usb-Jabra-00.mono-fallback"));
        assert!(!matches("", "anything"));
    }

    #[test]
    fn aec_policy_rules() {
        let c = AecConfig::default();
        let r = decide_for(&c, "virt_mic", "virt_mic", &[], false);
        assert_eq!((r.mode, r.reason.as_str()), (AecMode::Off, "constraint"));
        let r = decide_for(&c, "virt_mic", "virt_mic", &[], true);
        assert_eq!((r.mode, r.reason.as_str()), (AecMode::Software, "no device AEC"));
        // module-echo-cancel's source
        let r = decide_for(
            &c,
            "Echo-Cancel Source",
            "echo-cancel-source",
            &[("node.name", "echo-cancel-source"), ("node.group", "echo-cancel-42")],
            true,
        );
        assert_eq!(r.mode, AecMode::Hardware);
        assert!(r.reason.contains("echo-cancel node"), "{}", r.reason);
        // default list, by label
        let r = decide_for(&c, "Jabra SPEAK 510 USB Mono", "alsa_input.usb-0b0e_Jabra_SPEAK_510", &[], true);
        assert_eq!(r.mode, AecMode::Hardware);
        assert!(r.reason.contains("Jabra SPEAK"), "{}", r.reason);
        // phone roles
        let r = decide_for(&c, "Headset", "alsa_input.usb-x", &[("device.intended-roles", "phone")], true);
        assert_eq!(r.mode, AecMode::Hardware);
        let r =
            decide_for(&c, "BT", "bluez_input.00_11", &[("api.bluez5.profile", "headset-head-unit")], true);
        assert_eq!(r.mode, AecMode::Hardware);
        let no_roles = AecConfig { trust_device_roles: false, ..AecConfig::default() };
        let r =
            decide_for(&no_roles, "Headset", "alsa_input.usb-x", &[("device.intended-roles", "phone")], true);
        assert_eq!(r.mode, AecMode::Software);
        // deny list wins over everything
        let deny = AecConfig { not_hardware: vec!["*SPEAK 510*".into()], ..AecConfig::default() };
        let r = decide_for(&deny, "Jabra SPEAK 510 USB Mono", "alsa_input.usb-x", &[], true);
        assert_eq!(r.mode, AecMode::Software);
        assert!(r.reason.contains("not_hardware"), "{}", r.reason);
        // software off
        let off = AecConfig { software: false, ..AecConfig::default() };
        assert_eq!(decide_for(&off, "virt_mic", "virt_mic", &[], true).mode, AecMode::None);
        assert!(AecMode::Hardware.cancels() && AecMode::Software.cancels());
        assert!(!AecMode::Off.cancels() && !AecMode::None.cancels());
    }
}
