//! Audio constraints of `getUserMedia` (Media Capture and Streams §4.3.8, §10.1.1) and the
//! SelectSettings algorithm (§4.3.1.1 "fitness distance"), reduced to what an audio capture
//! device on this engine can vary: `deviceId`, `groupId`, `sampleRate`, `channelCount`,
//! `echoCancellation`, `noiseSuppression`, `autoGainControl`.
//!
//! Forms accepted for each member, as in browsers: a bare value (treated as `ideal`),
//! `{exact}`, `{ideal}`, and for numbers `{min, max}`; strings may be arrays. `advanced` is a
//! list of constraint sets tried in order, each kept only if some device satisfies it.
//! Unknown members are ignored (the spec says so, and newer SDKs may send more).

use serde_json::{Map, Value};
use tracing::warn;
use vdimedia_protocol::api::MediaStreamConstraints;

use crate::error::{EngineError, EngineResult};

/// A `ConstrainDOMString` (deviceId, groupId): required and preferred values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StringConstraint {
    /// `exact`: the device must have one of these values.
    pub exact: Option<Vec<String>>,
    /// `ideal` (or a bare value): the device should have one of these values.
    pub ideal: Option<Vec<String>>,
}

/// A `ConstrainBoolean` (echoCancellation, noiseSuppression, autoGainControl).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BoolConstraint {
    pub exact: Option<bool>,
    pub ideal: Option<bool>,
}

/// A `ConstrainULong` (sampleRate in Hz, channelCount).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ULongConstraint {
    pub exact: Option<u32>,
    pub ideal: Option<u32>,
    pub min: Option<u32>,
    pub max: Option<u32>,
}

/// One `MediaTrackConstraintSet` for audio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioConstraintSet {
    pub device_id: Option<StringConstraint>,
    pub group_id: Option<StringConstraint>,
    pub sample_rate: Option<ULongConstraint>,
    pub channel_count: Option<ULongConstraint>,
    pub echo_cancellation: Option<BoolConstraint>,
    pub noise_suppression: Option<BoolConstraint>,
    pub auto_gain_control: Option<BoolConstraint>,
}

/// `MediaTrackConstraints` for audio: the basic set plus `advanced` sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioConstraints {
    pub basic: AudioConstraintSet,
    pub advanced: Vec<AudioConstraintSet>,
}

/// Interprets `MediaStreamConstraints` as Chromium does for an engine without cameras:
/// - neither `audio` nor `video` requested → `TypeError` (`invalid_params`);
/// - `video` requested (true or an object) → `NotFoundError` "Requested device not found"
///   (Chromium's answer on a machine without a camera, even when audio is requested too);
/// - `audio: true` → no constraints; `audio: {…}` → parsed constraints;
/// - malformed members (e.g. `sampleRate: "x"`) → `TypeError`.
pub fn parse_stream_constraints(c: &MediaStreamConstraints) -> EngineResult<AudioConstraints> {
    let requested = |v: &Option<Value>| -> EngineResult<bool> {
        match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(false),
            Some(Value::Bool(true)) | Some(Value::Object(_)) => Ok(true),
            Some(other) => Err(type_error(format!(
                "MediaStreamConstraints members must be boolean or MediaTrackConstraints, got {other}"
            ))),
        }
    };
    let audio = requested(&c.audio)?;
    let video = requested(&c.video)?;
    if !audio && !video {
        return Err(type_error("At least one of audio and video must be requested"));
    }
    if video {
        warn!(target: "media", "getUserMedia: video requested; this engine has no video devices");
        return Err(EngineError::not_found("Requested device not found"));
    }
    match &c.audio {
        Some(Value::Object(map)) => parse_track_constraints(map),
        _ => Ok(AudioConstraints::default()),
    }
}

/// Parses a `MediaTrackConstraints` dictionary.
pub fn parse_track_constraints(map: &Map<String, Value>) -> EngineResult<AudioConstraints> {
    let basic = parse_set(map)?;
    let advanced = match map.get("advanced") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(sets)) => sets
            .iter()
            .map(|s| match s {
                Value::Object(m) => parse_set(m),
                _ => Err(type_error("advanced must be a list of constraint sets")),
            })
            .collect::<EngineResult<_>>()?,
        Some(_) => return Err(type_error("advanced must be a list of constraint sets")),
    };
    Ok(AudioConstraints { basic, advanced })
}

fn parse_set(map: &Map<String, Value>) -> EngineResult<AudioConstraintSet> {
    Ok(AudioConstraintSet {
        device_id: opt(map, "deviceId", parse_string)?,
        group_id: opt(map, "groupId", parse_string)?,
        sample_rate: opt(map, "sampleRate", parse_ulong)?,
        channel_count: opt(map, "channelCount", parse_ulong)?,
        echo_cancellation: opt(map, "echoCancellation", parse_bool)?,
        noise_suppression: opt(map, "noiseSuppression", parse_bool)?,
        auto_gain_control: opt(map, "autoGainControl", parse_bool)?,
    })
}

fn opt<T>(
    map: &Map<String, Value>,
    name: &str,
    f: fn(&str, &Value) -> EngineResult<T>,
) -> EngineResult<Option<T>> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => f(name, v).map(Some),
    }
}

fn type_error(message: impl Into<String>) -> EngineError {
    let e = EngineError::invalid_params(message);
    warn!(target: "media", error = %e.message, "getUserMedia: bad constraints");
    e
}

fn strings(name: &str, v: &Value) -> EngineResult<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(type_error(format!("{name} must be a string or a list of strings"))),
            })
            .collect(),
        _ => Err(type_error(format!("{name} must be a string or a list of strings"))),
    }
}

fn parse_string(name: &str, v: &Value) -> EngineResult<StringConstraint> {
    match v {
        Value::Object(m) => Ok(StringConstraint {
            exact: m.get("exact").filter(|v| !v.is_null()).map(|v| strings(name, v)).transpose()?,
            ideal: m.get("ideal").filter(|v| !v.is_null()).map(|v| strings(name, v)).transpose()?,
        }),
        _ => Ok(StringConstraint { exact: None, ideal: Some(strings(name, v)?) }),
    }
}

fn parse_bool(name: &str, v: &Value) -> EngineResult<BoolConstraint> {
    let b = |v: &Value| match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(type_error(format!("{name} must be a boolean"))),
    };
    match v {
        Value::Object(m) => Ok(BoolConstraint {
            exact: m.get("exact").filter(|v| !v.is_null()).map(b).transpose()?,
            ideal: m.get("ideal").filter(|v| !v.is_null()).map(b).transpose()?,
        }),
        _ => Ok(BoolConstraint { exact: None, ideal: Some(b(v)?) }),
    }
}

fn parse_ulong(name: &str, v: &Value) -> EngineResult<ULongConstraint> {
    // WebIDL `unsigned long` conversion: JSON numbers may arrive as floats; round them.
    let n = |v: &Value| match v.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f <= u32::MAX as f64 => Ok(f.round() as u32),
        _ => Err(type_error(format!("{name} must be a non-negative number"))),
    };
    match v {
        Value::Object(m) => {
            let get = |k: &str| m.get(k).filter(|v| !v.is_null()).map(n).transpose();
            Ok(ULongConstraint {
                exact: get("exact")?,
                ideal: get("ideal")?,
                min: get("min")?,
                max: get("max")?,
            })
        }
        _ => Ok(ULongConstraint { ideal: Some(n(v)?), ..Default::default() }),
    }
}

/// What a capture track on this engine can do, as `MediaTrackCapabilities` ranges.
/// `sample_rate` and `channel_count` are inclusive ranges (Hz, channels): capture runs through
/// audioconvert/audioresample, so any value in range is produced exactly. The booleans say
/// whether the engine can turn the processing ON (it can always leave it off).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureCapabilities {
    pub sample_rate: (u32, u32),
    pub channel_count: (u32, u32),
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain_control: bool,
}

/// The settings a track gets when the page asks for nothing: 48 kHz mono, as WebRTC's Opus
/// path wants, and processing requested on (the W3C/Chromium defaults are `true`).
pub const DEFAULT_SAMPLE_RATE: u32 = 48_000;
/// Default `channelCount`.
pub const DEFAULT_CHANNEL_COUNT: u32 = 1;

/// A device to choose among: its W3C `deviceId` and `groupId`.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub device_id: &'a str,
    pub group_id: &'a str,
}

/// The outcome of SelectSettings: which candidate, and the settings to apply.
/// `*_requested` are what the page asked for (after defaults); whether they are applied is the
/// AEC/processing policy's decision (see [`crate::media::track::ProcessingPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    pub index: usize,
    pub sample_rate: u32,
    pub channel_count: u32,
    pub echo_cancellation_requested: bool,
    pub noise_suppression_requested: bool,
    pub auto_gain_control_requested: bool,
}

/// Runs SelectSettings over `candidates` (in preference order: the "default" entry first).
/// Returns `OverconstrainedError` naming the first required constraint no candidate meets.
/// An empty `candidates` list is the caller's `NotFoundError`, not handled here.
pub fn select(
    constraints: &AudioConstraints,
    candidates: &[Candidate<'_>],
    caps: &CaptureCapabilities,
) -> EngineResult<Selection> {
    // Required constraints of the basic set first: they filter candidates.
    let mut failed: Option<&'static str> = None;
    let mut kept: Vec<(usize, f64)> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        match fitness(&constraints.basic, c, caps, false) {
            Ok(f) => kept.push((i, f)),
            Err(name) => {
                failed.get_or_insert(name);
            }
        }
    }
    if kept.is_empty() {
        let name = failed.unwrap_or("deviceId");
        let e = EngineError::overconstrained(name, format!("Cannot satisfy constraint {name}"));
        warn!(target: "media", constraint = name, "getUserMedia: overconstrained");
        return Err(e);
    }
    // Advanced sets narrow the choice when they can be met, in order (§4.3.1.1 step 5).
    let mut accepted: Vec<&AudioConstraintSet> = Vec::new();
    for set in &constraints.advanced {
        let narrowed: Vec<(usize, f64)> =
            kept.iter().copied().filter(|(i, _)| fitness(set, &candidates[*i], caps, true).is_ok()).collect();
        if !narrowed.is_empty() {
            kept = narrowed;
            accepted.push(set);
        }
    }
    // Lowest fitness distance wins; ties go to the earlier candidate (the default device).
    let (index, _) = kept
        .iter()
        .copied()
        .fold(None::<(usize, f64)>, |best, cur| match best {
            Some(b) if b.1 <= cur.1 => Some(b),
            _ => Some(cur),
        })
        .expect("kept is not empty");

    let sets: Vec<&AudioConstraintSet> = std::iter::once(&constraints.basic).chain(accepted).collect();
    let sample_rate =
        settle_ulong(sets.iter().filter_map(|s| s.sample_rate), caps.sample_rate, DEFAULT_SAMPLE_RATE);
    let channel_count =
        settle_ulong(sets.iter().filter_map(|s| s.channel_count), caps.channel_count, DEFAULT_CHANNEL_COUNT);
    let settle_bool = |get: fn(&AudioConstraintSet) -> Option<BoolConstraint>| {
        let mut value = true;
        for c in sets.iter().filter_map(|s| get(s)) {
            if let Some(v) = c.exact.or(c.ideal) {
                value = v;
            }
        }
        value
    };
    Ok(Selection {
        index,
        sample_rate,
        channel_count,
        echo_cancellation_requested: settle_bool(|s| s.echo_cancellation),
        noise_suppression_requested: settle_bool(|s| s.noise_suppression),
        auto_gain_control_requested: settle_bool(|s| s.auto_gain_control),
    })
}

/// Fitness distance of one candidate for one constraint set; `Err(name)` when a required
/// constraint fails. In `advanced` sets every value is required (`all_required`).
fn fitness(
    set: &AudioConstraintSet,
    c: &Candidate<'_>,
    caps: &CaptureCapabilities,
    all_required: bool,
) -> Result<f64, &'static str> {
    let mut distance = 0.0;
    for (name, constraint, value) in
        [("deviceId", &set.device_id, c.device_id), ("groupId", &set.group_id, c.group_id)]
    {
        let Some(sc) = constraint else { continue };
        if let Some(exact) = &sc.exact
            && !exact.iter().any(|e| e == value)
        {
            return Err(name);
        }
        if let Some(ideal) = &sc.ideal
            && !ideal.iter().any(|e| e == value)
        {
            if all_required {
                return Err(name);
            }
            distance += 1.0;
        }
    }
    for (name, constraint, range) in [
        ("sampleRate", &set.sample_rate, caps.sample_rate),
        ("channelCount", &set.channel_count, caps.channel_count),
    ] {
        let Some(u) = constraint else { continue };
        let (lo, hi) = bounds(u, range);
        if lo > hi {
            return Err(name);
        }
        if all_required
            && let Some(ideal) = u.ideal
            && !(lo..=hi).contains(&ideal)
        {
            return Err(name);
        }
    }
    for (name, constraint, supported) in [
        ("echoCancellation", &set.echo_cancellation, caps.echo_cancellation),
        ("noiseSuppression", &set.noise_suppression, caps.noise_suppression),
        ("autoGainControl", &set.auto_gain_control, caps.auto_gain_control),
    ] {
        let Some(b) = constraint else { continue };
        let wanted_on = b.exact == Some(true) || (all_required && b.ideal == Some(true));
        if wanted_on && !supported {
            return Err(name);
        }
    }
    Ok(distance)
}

/// The allowed interval of a numeric constraint within the capability range.
fn bounds(u: &ULongConstraint, (cap_lo, cap_hi): (u32, u32)) -> (u32, u32) {
    let mut lo = cap_lo.max(u.min.unwrap_or(0));
    let mut hi = cap_hi.min(u.max.unwrap_or(u32::MAX));
    if let Some(e) = u.exact {
        lo = lo.max(e);
        hi = hi.min(e);
    }
    (lo, hi)
}

/// The value a numeric setting gets: inside every set's bounds, as close as possible to the
/// last ideal (or to the default).
fn settle_ulong(sets: impl Iterator<Item = ULongConstraint>, range: (u32, u32), default: u32) -> u32 {
    let (mut lo, mut hi) = range;
    let mut target = default;
    for u in sets {
        let (l, h) = bounds(&u, range);
        lo = lo.max(l);
        hi = hi.min(h);
        if let Some(i) = u.ideal.or(u.exact) {
            target = i;
        }
    }
    if lo > hi {
        // Cannot happen after `fitness` accepted the sets; stay inside the capability range.
        return default.clamp(range.0, range.1);
    }
    target.clamp(lo, hi)
}

/// What differs between two `MediaTrackSettings`, as `name old→new` items in W3C member
/// names (for the journal line of `applyConstraints`); empty when nothing changed.
pub fn settings_changes(
    old: &vdimedia_protocol::api::MediaTrackSettings,
    new: &vdimedia_protocol::api::MediaTrackSettings,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut item = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name} {a}→{b}"));
        }
    };
    item("deviceId", old.device_id.clone(), new.device_id.clone());
    item("sampleRate", old.sample_rate.to_string(), new.sample_rate.to_string());
    item("channelCount", old.channel_count.to_string(), new.channel_count.to_string());
    item("echoCancellation", old.echo_cancellation.to_string(), new.echo_cancellation.to_string());
    item("noiseSuppression", old.noise_suppression.to_string(), new.noise_suppression.to_string());
    item("autoGainControl", old.auto_gain_control.to_string(), new.auto_gain_control.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vdimedia_protocol::message::ErrorCode;

    const CAPS: CaptureCapabilities = CaptureCapabilities {
        sample_rate: (8_000, 96_000),
        channel_count: (1, 2),
        echo_cancellation: false,
        noise_suppression: false,
        auto_gain_control: false,
    };

    fn parse(v: Value) -> EngineResult<AudioConstraints> {
        parse_stream_constraints(&serde_json::from_value(v).unwrap())
    }

    fn cands() -> Vec<Candidate<'static>> {
        vec![
            Candidate { device_id: "default", group_id: "g1" },
            Candidate { device_id: "aaa", group_id: "g1" },
            Candidate { device_id: "bbb", group_id: "g2" },
        ]
    }

    #[test]
    fn media_constraints_type_errors_and_video() {
        assert_eq!(parse(json!({})).unwrap_err().code, ErrorCode::InvalidParams);
        assert_eq!(
            parse(json!({"audio": false, "video": false})).unwrap_err().code,
            ErrorCode::InvalidParams
        );
        assert_eq!(parse(json!({"audio": 3})).unwrap_err().code, ErrorCode::InvalidParams);
        let e = parse(json!({"audio": true, "video": true})).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.message, "Requested device not found");
        assert_eq!(parse(json!({"video": {"width": 640}})).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(
            parse(json!({"audio": {"sampleRate": "fast"}})).unwrap_err().code,
            ErrorCode::InvalidParams
        );
        assert_eq!(parse(json!({"audio": true})).unwrap(), AudioConstraints::default());
    }

    #[test]
    fn media_constraints_device_id_forms() {
        let sel = |v| select(&parse(json!({ "audio": v })).unwrap(), &cands(), &CAPS);
        assert_eq!(sel(json!(true)).unwrap().index, 0);
        assert_eq!(sel(json!({"deviceId": "bbb"})).unwrap().index, 2);
        assert_eq!(sel(json!({"deviceId": {"exact": "aaa"}})).unwrap().index, 1);
        assert_eq!(sel(json!({"deviceId": {"exact": ["zzz", "bbb"]}})).unwrap().index, 2);
        assert_eq!(sel(json!({"deviceId": ["zzz", "bbb"]})).unwrap().index, 2);
        // Unknown ideal: every device is equally far; the default (first) wins.
        assert_eq!(sel(json!({"deviceId": {"ideal": "zzz"}})).unwrap().index, 0);
        let e = sel(json!({"deviceId": {"exact": "zzz"}})).unwrap_err();
        assert_eq!(e.code, ErrorCode::Overconstrained);
        assert_eq!(e.constraint.as_deref(), Some("deviceId"));
        assert_eq!(sel(json!({"groupId": {"exact": "g2"}})).unwrap().index, 2);
        assert_eq!(sel(json!({"advanced": [{"deviceId": "zzz"}, {"deviceId": "aaa"}]})).unwrap().index, 1);
    }

    #[test]
    fn media_constraints_numeric_and_boolean() {
        let sel = |v| select(&parse(json!({ "audio": v })).unwrap(), &cands(), &CAPS);
        let s = sel(json!(true)).unwrap();
        assert_eq!((s.sample_rate, s.channel_count), (48_000, 1));
        assert!(
            s.echo_cancellation_requested && s.noise_suppression_requested && s.auto_gain_control_requested
        );
        let s = sel(json!({"sampleRate": 16000, "channelCount": {"exact": 2}, "echoCancellation": false}))
            .unwrap();
        assert_eq!((s.sample_rate, s.channel_count), (16_000, 2));
        assert!(!s.echo_cancellation_requested);
        // An ideal out of range is clamped, never an error.
        assert_eq!(sel(json!({"sampleRate": 192000})).unwrap().sample_rate, 96_000);
        assert_eq!(sel(json!({"sampleRate": {"min": 8000, "max": 16000}})).unwrap().sample_rate, 16_000);
        let e = sel(json!({"sampleRate": {"exact": 192000}})).unwrap_err();
        assert_eq!(e.constraint.as_deref(), Some("sampleRate"));
        let e = sel(json!({"channelCount": {"min": 3}})).unwrap_err();
        assert_eq!(e.constraint.as_deref(), Some("channelCount"));
        // Bare `true` is a preference; `exact: true` needs an engine that can apply it.
        assert!(sel(json!({"echoCancellation": true})).is_ok());
        let e = sel(json!({"echoCancellation": {"exact": true}})).unwrap_err();
        assert_eq!(e.constraint.as_deref(), Some("echoCancellation"));
        let with_aec = CaptureCapabilities { echo_cancellation: true, ..CAPS };
        let c = parse(json!({"audio": {"echoCancellation": {"exact": true}}})).unwrap();
        assert!(select(&c, &cands(), &with_aec).unwrap().echo_cancellation_requested);
        // Float numbers from JavaScript are accepted.
        assert_eq!(sel(json!({"sampleRate": 44100.0})).unwrap().sample_rate, 44_100);
    }
}
