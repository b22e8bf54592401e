//! The JSON message layer carried in `DATA` frames (docs/protocol.md, "Message layer").
//!
//! ```json
//! {"type":"request","id":7,"method":"pc.createOffer","params":{"pc":"pc1"}}
//! {"type":"response","id":7,"result":{"type":"offer","sdp":"v=0…"}}
//! {"type":"response","id":7,"error":{"name":"InvalidStateError","code":"invalid_state","message":"…"}}
//! {"type":"event","event":"pc.icecandidate","params":{"pc":"pc1","candidate":null}}
//! ```

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest request id (exclusive): ids are JSON integers the page's JS can hold exactly.
pub const MAX_ID: u64 = 1 << 53;

/// Machine-readable error codes (docs/protocol.md, "Error codes"); on the wire as the
/// snake_case string of the spec's `code` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    BadMessage,
    MessageTooLarge,
    UnknownMethod,
    InvalidParams,
    InvalidState,
    InvalidAccess,
    InvalidSdp,
    NotFound,
    Overconstrained,
    NotReadable,
    OperationError,
    LimitExceeded,
    VersionMismatch,
    SessionExists,
    SessionClosed,
    Timeout,
    Normal,
    Internal,
}

impl ErrorCode {
    /// The DOMException / JS error name the SDK throws for this code (the spec's `name`
    /// column). `normal` has no name in the spec; `"OperationError"` is returned so an
    /// `ErrorBody` built from it is still well-formed.
    pub fn dom_name(&self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadFrame | MessageTooLarge | InvalidSdp | OperationError | LimitExceeded | SessionExists
            | Timeout | Normal | Internal => "OperationError",
            BadMessage => "SyntaxError",
            UnknownMethod | VersionMismatch => "NotSupportedError",
            InvalidParams => "TypeError",
            InvalidState | SessionClosed => "InvalidStateError",
            InvalidAccess => "InvalidAccessError",
            NotFound => "NotFoundError",
            Overconstrained => "OverconstrainedError",
            NotReadable => "NotReadableError",
        }
    }

    /// The wire string (`"bad_frame"`, …).
    pub fn as_str(&self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadFrame => "bad_frame",
            BadMessage => "bad_message",
            MessageTooLarge => "message_too_large",
            UnknownMethod => "unknown_method",
            InvalidParams => "invalid_params",
            InvalidState => "invalid_state",
            InvalidAccess => "invalid_access",
            InvalidSdp => "invalid_sdp",
            NotFound => "not_found",
            Overconstrained => "overconstrained",
            NotReadable => "not_readable",
            OperationError => "operation_error",
            LimitExceeded => "limit_exceeded",
            VersionMismatch => "version_mismatch",
            SessionExists => "session_exists",
            SessionClosed => "session_closed",
            Timeout => "timeout",
            Normal => "normal",
            Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a response and the payload of an `ERROR` frame.
///
/// `name` is the JS error name (see [`ErrorCode::dom_name`]), `message` a human sentence,
/// `constraint` the failing constraint of an `OverconstrainedError` (e.g. `"deviceId"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub name: String,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
}

impl ErrorBody {
    /// An error with `name = code.dom_name()` and no constraint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { name: code.dom_name().to_string(), code, message: message.into(), constraint: None }
    }

    /// An `OverconstrainedError` naming the failing constraint (e.g. `"deviceId"`).
    pub fn overconstrained(constraint: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            constraint: Some(constraint.into()),
            ..ErrorBody::new(ErrorCode::Overconstrained, message)
        }
    }

    /// The body as JSON bytes (the payload of an `ERROR` frame).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings and an enum cannot fail.
        serde_json::to_vec(self).expect("ErrorBody serializes")
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// `{"type":"request","id","method","params"}`. `params` defaults to `{}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Chosen by the page, `< 2^53`, unique among its pending requests.
    pub id: u64,
    pub method: String,
    /// Always a JSON object after parsing.
    pub params: Value,
}

/// `{"type":"response","id", "result" | "error"}`: exactly one of the two on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: u64,
    /// `Ok` → `"result"` (any JSON, including `null`), `Err` → `"error"`.
    pub outcome: Result<Value, ErrorBody>,
}

/// `{"type":"event","event","params"}`. `params` defaults to `{}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: String,
    /// Always a JSON object after parsing.
    pub params: Value,
}

/// One message of a logical session, tagged on the wire by `"type"`.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request(Request),
    Response(Response),
    Event(Event),
}

/// A message that could not be parsed: the error to report and, when the JSON was a request
/// with a usable `id`, that id so the receiver can answer it with an error response
/// (docs/protocol.md: "A request that cannot be parsed but has an id gets an error response
/// for that id; without an id it gets an `ERROR bad_message` frame").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct MessageError {
    pub id: Option<u64>,
    pub error: ErrorBody,
}

impl Message {
    /// A request; `params` should be a JSON object (`Value::Null` is sent as `{}`).
    pub fn request(id: u64, method: impl Into<String>, params: Value) -> Self {
        Message::Request(Request { id, method: method.into(), params: object_or_empty(params) })
    }

    /// A successful response carrying `result`.
    pub fn response_ok(id: u64, result: Value) -> Self {
        Message::Response(Response { id, outcome: Ok(result) })
    }

    /// A failed response carrying `error`.
    pub fn response_err(id: u64, error: ErrorBody) -> Self {
        Message::Response(Response { id, outcome: Err(error) })
    }

    /// An event; `params` should be a JSON object (`Value::Null` is sent as `{}`).
    pub fn event(name: impl Into<String>, params: Value) -> Self {
        Message::Event(Event { event: name.into(), params: object_or_empty(params) })
    }

    /// Parses one message from UTF-8 JSON bytes.
    ///
    /// Errors: not UTF-8 / not JSON / not an object / unknown `type` / missing or mistyped
    /// field → `bad_message`; a request whose `params` is not an object → `invalid_params`.
    /// [`MessageError::id`] is set when the object is not a response or event and has a valid
    /// integer `id`.
    pub fn from_json(bytes: &[u8]) -> Result<Message, MessageError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| MessageError {
            id: None,
            error: ErrorBody::new(ErrorCode::BadMessage, format!("message is not UTF-8 JSON: {e}")),
        })?;
        Message::from_value(value)
    }

    /// Parses one message from a JSON value (see [`Message::from_json`]).
    pub fn from_value(value: Value) -> Result<Message, MessageError> {
        let Value::Object(mut obj) = value else {
            return Err(bad(None, "message is not a JSON object"));
        };
        let ty = match obj.get("type") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let recovered = match ty.as_deref() {
            Some("response") | Some("event") => None,
            _ => obj.get("id").and_then(parse_id),
        };
        match ty.as_deref() {
            Some("request") => {
                let id = match obj.get("id") {
                    None => return Err(bad(None, "request has no \"id\"")),
                    Some(v) => {
                        parse_id(v).ok_or_else(|| bad(None, "request \"id\" is not an integer in 0..2^53"))?
                    }
                };
                let method = match obj.remove("method") {
                    Some(Value::String(m)) if !m.is_empty() => m,
                    _ => {
                        return Err(bad(Some(id), "request \"method\" is missing or not a non-empty string"));
                    }
                };
                let params = match obj.remove("params") {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(p @ Value::Object(_)) => p,
                    Some(_) => {
                        return Err(MessageError {
                            id: Some(id),
                            error: ErrorBody::new(
                                ErrorCode::InvalidParams,
                                "request \"params\" is not an object",
                            ),
                        });
                    }
                };
                Ok(Message::Request(Request { id, method, params }))
            }
            Some("response") => {
                let id = obj
                    .get("id")
                    .and_then(parse_id)
                    .ok_or_else(|| bad(None, "response \"id\" is missing or not an integer in 0..2^53"))?;
                let outcome = match (obj.remove("result"), obj.remove("error")) {
                    (Some(r), None) => Ok(r),
                    (None, Some(e)) => Err(serde_json::from_value::<ErrorBody>(e)
                        .map_err(|e| bad(None, format!("response \"error\" is not an error object: {e}")))?),
                    (Some(_), Some(_)) => {
                        return Err(bad(None, "response has both \"result\" and \"error\""));
                    }
                    (None, None) => {
                        return Err(bad(None, "response has neither \"result\" nor \"error\""));
                    }
                };
                Ok(Message::Response(Response { id, outcome }))
            }
            Some("event") => {
                let event = match obj.remove("event") {
                    Some(Value::String(e)) if !e.is_empty() => e,
                    _ => {
                        return Err(bad(None, "event \"event\" is missing or not a non-empty string"));
                    }
                };
                let params = match obj.remove("params") {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(p @ Value::Object(_)) => p,
                    Some(_) => return Err(bad(None, "event \"params\" is not an object")),
                };
                Ok(Message::Event(Event { event, params }))
            }
            Some(other) => Err(bad(recovered, format!("unknown message type {other:?}"))),
            None => Err(bad(recovered, "message has no string \"type\"")),
        }
    }

    /// The message as compact UTF-8 JSON, `"type"` first.
    pub fn to_json(&self) -> Vec<u8> {
        // Only strings, integers and `Value`s are written: serialization cannot fail.
        serde_json::to_vec(self).expect("Message serializes")
    }

    /// The request or response id, `None` for events.
    pub fn id(&self) -> Option<u64> {
        match self {
            Message::Request(r) => Some(r.id),
            Message::Response(r) => Some(r.id),
            Message::Event(_) => None,
        }
    }
}

impl MessageError {
    /// What the receiver sends back: an error response for the recovered id, if any.
    pub fn to_response(&self) -> Option<Message> {
        self.id.map(|id| Message::response_err(id, self.error.clone()))
    }
}

fn bad(id: Option<u64>, why: impl Into<String>) -> MessageError {
    MessageError { id, error: ErrorBody::new(ErrorCode::BadMessage, why) }
}

fn parse_id(v: &Value) -> Option<u64> {
    v.as_u64().filter(|id| *id < MAX_ID)
}

fn object_or_empty(v: Value) -> Value {
    if v.is_null() { Value::Object(Map::new()) } else { v }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        match self {
            Message::Request(r) => {
                m.serialize_entry("type", "request")?;
                m.serialize_entry("id", &r.id)?;
                m.serialize_entry("method", &r.method)?;
                m.serialize_entry("params", &r.params)?;
            }
            Message::Response(r) => {
                m.serialize_entry("type", "response")?;
                m.serialize_entry("id", &r.id)?;
                match &r.outcome {
                    Ok(v) => m.serialize_entry("result", v)?,
                    Err(e) => m.serialize_entry("error", e)?,
                }
            }
            Message::Event(e) => {
                m.serialize_entry("type", "event")?;
                m.serialize_entry("event", &e.event)?;
                m.serialize_entry("params", &e.params)?;
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Message::from_value(v).map_err(|e| serde::de::Error::custom(e.error.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_spec_examples() {
        let cases = [
            r#"{"type":"request","id":7,"method":"pc.createOffer","params":{"pc":"pc1","options":{}}}"#,
            r#"{"type":"response","id":7,"result":{"type":"offer","sdp":"v=0"}}"#,
            r#"{"type":"response","id":7,"error":{"name":"InvalidStateError","code":"invalid_state","message":"pc1 is closed"}}"#,
            r#"{"type":"event","event":"pc.icecandidate","params":{"pc":"pc1","candidate":null}}"#,
            r#"{"type":"response","id":8,"result":null}"#,
        ];
        for c in cases {
            let m = Message::from_json(c.as_bytes()).unwrap();
            let back = m.to_json();
            let a: Value = serde_json::from_str(c).unwrap();
            let b: Value = serde_json::from_slice(&back).unwrap();
            assert_eq!(a, b, "{c}");
            assert!(back.starts_with(br#"{"type":"#));
        }
    }

    #[test]
    fn constructors_write_spec_shapes() {
        let m = Message::request(1, "devices.enumerate", Value::Null);
        assert_eq!(m.to_json(), br#"{"type":"request","id":1,"method":"devices.enumerate","params":{}}"#);
        let e = ErrorBody::overconstrained("deviceId", "no such device");
        let m = Message::response_err(2, e);
        assert_eq!(
            serde_json::from_slice::<Value>(&m.to_json()).unwrap(),
            json!({"type":"response","id":2,"error":{"name":"OverconstrainedError",
                   "code":"overconstrained","message":"no such device","constraint":"deviceId"}})
        );
        let m = Message::event("devices.change", json!({}));
        assert_eq!(m.to_json(), br#"{"type":"event","event":"devices.change","params":{}}"#);
    }

    #[test]
    fn params_default_to_empty_object() {
        let m = Message::from_json(br#"{"type":"request","id":3,"method":"devices.enumerate"}"#).unwrap();
        assert_eq!(m, Message::request(3, "devices.enumerate", json!({})));
        let m = Message::from_json(br#"{"type":"event","event":"devices.change"}"#).unwrap();
        assert_eq!(m, Message::event("devices.change", json!({})));
    }

    #[test]
    fn recovers_request_id_on_bad_params_or_method() {
        let e =
            Message::from_json(br#"{"type":"request","id":9,"method":"pc.close","params":5}"#).unwrap_err();
        assert_eq!(e.id, Some(9));
        assert_eq!(e.error.code, ErrorCode::InvalidParams);
        assert_eq!(e.error.name, "TypeError");
        let e = Message::from_json(br#"{"type":"request","id":10,"method":7}"#).unwrap_err();
        assert_eq!((e.id, e.error.code), (Some(10), ErrorCode::BadMessage));
        let e = Message::from_json(br#"{"id":11,"method":"x"}"#).unwrap_err();
        assert_eq!(e.id, Some(11));
        let e = Message::from_json(br#"{"type":"hello","id":12}"#).unwrap_err();
        assert_eq!(e.id, Some(12));
        assert_eq!(
            e.to_response().unwrap(),
            Message::response_err(
                12,
                ErrorBody::new(ErrorCode::BadMessage, "unknown message type \"hello\"")
            )
        );
    }

    #[test]
    fn rejects_bad_shapes_without_id() {
        let bad_inputs: [&[u8]; 12] = [
            b"",
            b"\xff\xfe",
            b"[1,2]",
            b"not json",
            br#"{"type":"request","id":-1,"method":"x"}"#,
            br#"{"type":"request","id":9007199254740992,"method":"x"}"#,
            br#"{"type":"request","id":1.5,"method":"x"}"#,
            br#"{"type":"response","id":1}"#,
            br#"{"type":"response","id":1,"result":1,"error":{"name":"a","code":"internal","message":""}}"#,
            br#"{"type":"response","id":1,"error":{"code":"nope"}}"#,
            br#"{"type":"event","params":{}}"#,
            br#"{"type":"event","event":"x","params":[]}"#,
        ];
        for b in bad_inputs {
            let e = Message::from_json(b).unwrap_err();
            assert_eq!(e.id, None, "{}", String::from_utf8_lossy(b));
            assert_eq!(e.error.code, ErrorCode::BadMessage);
            assert_eq!(e.error.name, "SyntaxError");
        }
        // Deep nesting hits serde_json's recursion limit, not the stack.
        let deep = "[".repeat(100_000);
        assert!(Message::from_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn error_codes_match_spec_table() {
        let table = [
            (ErrorCode::BadFrame, "bad_frame", "OperationError"),
            (ErrorCode::BadMessage, "bad_message", "SyntaxError"),
            (ErrorCode::MessageTooLarge, "message_too_large", "OperationError"),
            (ErrorCode::UnknownMethod, "unknown_method", "NotSupportedError"),
            (ErrorCode::InvalidParams, "invalid_params", "TypeError"),
            (ErrorCode::InvalidState, "invalid_state", "InvalidStateError"),
            (ErrorCode::InvalidAccess, "invalid_access", "InvalidAccessError"),
            (ErrorCode::InvalidSdp, "invalid_sdp", "OperationError"),
            (ErrorCode::NotFound, "not_found", "NotFoundError"),
            (ErrorCode::Overconstrained, "overconstrained", "OverconstrainedError"),
            (ErrorCode::NotReadable, "not_readable", "NotReadableError"),
            (ErrorCode::OperationError, "operation_error", "OperationError"),
            (ErrorCode::LimitExceeded, "limit_exceeded", "OperationError"),
            (ErrorCode::VersionMismatch, "version_mismatch", "NotSupportedError"),
            (ErrorCode::SessionExists, "session_exists", "OperationError"),
            (ErrorCode::SessionClosed, "session_closed", "InvalidStateError"),
            (ErrorCode::Timeout, "timeout", "OperationError"),
            (ErrorCode::Normal, "normal", "OperationError"),
            (ErrorCode::Internal, "internal", "OperationError"),
        ];
        for (code, wire, name) in table {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(wire));
            assert_eq!(serde_json::from_value::<ErrorCode>(json!(wire)).unwrap(), code);
            assert_eq!(code.as_str(), wire);
            assert_eq!(code.dom_name(), name);
        }
    }

    #[test]
    fn message_is_serde_embeddable() {
        let m: Message =
            serde_json::from_value(json!({"type":"event","event":"track.ended","params":{"track":"t1"}}))
                .unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap()["params"]["track"], "t1");
        assert!(serde_json::from_value::<Message>(json!({"type":"x"})).is_err());
    }
}
