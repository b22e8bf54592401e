//! ALSA-only device discovery: the PCMs of ALSA's device-name hint list, as `aplay -L` and
//! Chromium's ALSA audio manager read them.
//!
//! Why hints and not GStreamer's `alsadeviceprovider`: that provider walks sound cards only
//! (`snd_card_next`), so PCMs defined in `asound.conf`/`~/.asoundrc` (`type null`, `type file`,
//! `dmix`/`dsnoop` setups a kiosk image ships) never appear, while the hint list has every card
//! (as `plughw:CARD=…`) and every configured PCM.

use ::alsa::Direction;
use ::alsa::device_name::HintIter;
use tracing::{debug, warn};

/// One PCM from the hint list. `name` is the ALSA PCM name to open (`device=` of
/// alsasrc/alsasink); `description` its first description line, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlsaPcm {
    pub name: String,
    pub description: Option<String>,
    pub capture: bool,
    pub playback: bool,
}

/// PCM names (or name prefixes ending in ':') never offered as separate devices:
/// - `null`: alsa-lib's own discard device (a user-defined `type null` PCM has another name);
/// - `default`: offered as the W3C "default" entry instead;
/// - the per-card variants that duplicate `plughw:` (raw `hw:` lacks rate conversion, and
///   `front:`/`surround*:`/`iec958:`/`hdmi:`/`dmix:`/`dsnoop:`/`sysdefault:` are the same card
///   through other plugins), as Chromium keeps one entry per card.
const HIDDEN: &[&str] = &[
    "null",
    "default",
    "hw:",
    "front:",
    "rear:",
    "center_lfe:",
    "side:",
    "surround21:",
    "surround40:",
    "surround41:",
    "surround50:",
    "surround51:",
    "surround71:",
    "iec958:",
    "hdmi:",
    "dmix:",
    "dsnoop:",
    "sysdefault:",
    "usbstream:",
];

fn hidden(name: &str) -> bool {
    HIDDEN.iter().any(|h| if h.ends_with(':') { name.starts_with(h) } else { name == *h })
}

/// Reads the hint list. Returns `(default, others)`: the `default` PCM when the configuration
/// defines it with a hint, and the offerable PCMs in hint-list order.
pub(crate) fn pcms() -> (Option<AlsaPcm>, Vec<AlsaPcm>) {
    let hints = match HintIter::new_str(None, "pcm") {
        Ok(h) => h,
        Err(e) => {
            warn!(target: "media", error = %e, "ALSA: cannot read the device-name hint list");
            return (None, Vec::new());
        }
    };
    let mut default = None;
    let mut out: Vec<AlsaPcm> = Vec::new();
    for h in hints {
        let Some(name) = h.name else { continue };
        let pcm = AlsaPcm {
            description: h.desc.as_deref().and_then(|d| d.lines().next()).map(|l| l.trim().to_string()),
            capture: h.direction != Some(Direction::Playback),
            playback: h.direction != Some(Direction::Capture),
            name,
        };
        if pcm.name == "default" {
            default = Some(pcm);
        } else if !hidden(&pcm.name) && !out.iter().any(|p| p.name == pcm.name) {
            out.push(pcm);
        }
    }
    debug!(target: "media", count = out.len(), has_default = default.is_some(), "ALSA hint list read");
    (default, out)
}

/// The group key of a PCM: its card for card PCMs (`plughw:CARD=PCH,DEV=0` → `card:PCH`), so
/// a headset's microphone and earphones share a W3C `groupId`; else the PCM name itself.
pub(crate) fn group_key(name: &str) -> String {
    if let Some((_, args)) = name.split_once(':') {
        for arg in args.split(',') {
            if let Some(card) = arg.strip_prefix("CARD=") {
                return format!("alsa-card:{card}");
            }
        }
    }
    format!("alsa-pcm:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_alsa_hidden_and_groups() {
        assert!(hidden("null") && hidden("default") && hidden("hw:CARD=PCH,DEV=0"));
        assert!(!hidden("plughw:CARD=PCH,DEV=0") && !hidden("nullmic") && !hidden("pipewire"));
        assert_eq!(group_key("plughw:CARD=PCH,DEV=0"), "alsa-card:PCH");
        assert_eq!(group_key("nullmic"), "alsa-pcm:nullmic");
    }
}
