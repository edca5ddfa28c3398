//! The chat's pure core: who a connection is, what a client may say, what the room hears, and how
//! fast a connection may speak. Nothing here touches a socket or a clock.
//!
//! - [`UserId`]: 32 lowercase hex characters, fixed for a connection (and one for the relay's own
//!   bot user, for stdin lines).
//! - [`stamp`]: a client's text frame → the line the room hears. The frame must be a JSON object
//!   whose `"message"` is a string and that holds none of the [`RESERVED`] keys; `"user"` is set to
//!   the sender's id (whatever the client put there), every other key passes through. The result
//!   is serialized once and shared.
//! - [`RESERVED`]: keys only the relay may send. `"error"` marks the relay's own notice to one
//!   client (the page shows it as `server: …`), so a frame carrying it is refused, never broadcast:
//!   no client can make the page show a server notice to everybody.
//! - [`bot_line`]: a stdin line → the line the room hears (an object with `"message"` and no
//!   reserved key is used as it is, anything else becomes the text of a message).
//! - [`RateLimit`]: a token bucket with a debt limit, deciding allow / refuse / disconnect.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// A connection's user id: 128 bits written as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId([u8; 32]);

impl UserId {
    /// The id for 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> UserId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (i, b) in bytes.iter().enumerate() {
            text[2 * i] = HEX[usize::from(b >> 4)];
            text[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        UserId(text)
    }

    /// Parse an id given on the command line.
    pub fn parse(text: &str) -> Result<UserId, String> {
        let bytes = text.as_bytes();
        if bytes.len() != 32 || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "a user id is 32 lowercase hex characters, got {text:?}"
            ));
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(bytes);
        Ok(UserId(id))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.as_str())
    }
}

/// Keys a client may not send: the relay gives them meaning. `"error"` is the relay's notice to one
/// client (pages show it as a server message); `"user"` is not here because the relay overwrites
/// it with the sender's id rather than refuse it (the original page's protocol).
pub const RESERVED: &[&str] = &["error"];

/// Why a client's frame was not broadcast. The text goes back to the client in an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotJson(String),
    NotAnObject(&'static str),
    NoMessage,
    MessageNotText(&'static str),
    Reserved(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotJson(why) => write!(f, "not JSON: {why}"),
            Refusal::NotAnObject(kind) => {
                write!(f, "expected a JSON object with \"message\", got {kind}")
            }
            Refusal::NoMessage => f.write_str("missing \"message\""),
            Refusal::MessageNotText(kind) => write!(f, "\"message\" must be a string, got {kind}"),
            Refusal::Reserved(key) => {
                write!(f, "\"{key}\" is reserved for the relay's own notices")
            }
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What the room hears when `user` sends the text frame `frame`: the same object with `"user"`
/// set, as compact JSON. Serialized here once; every recipient shares these bytes.
pub fn stamp(frame: &str, user: &UserId) -> Result<String, Refusal> {
    let value: Value = serde_json::from_str(frame)
        .map_err(|e| Refusal::NotJson(crate::input::describe_json_error(frame, &e)))?;
    let Value::Object(object) = value else {
        return Err(Refusal::NotAnObject(kind(&value)));
    };
    match object.get("message") {
        None => return Err(Refusal::NoMessage),
        Some(Value::String(_)) => {}
        Some(other) => return Err(Refusal::MessageNotText(kind(other))),
    }
    if let Some(key) = reserved_key(&object) {
        return Err(Refusal::Reserved(key));
    }
    Ok(with_user(object, user))
}

/// The first reserved key `object` holds.
fn reserved_key(object: &Map<String, Value>) -> Option<&'static str> {
    RESERVED
        .iter()
        .copied()
        .find(|key| object.contains_key(*key))
}

/// What the room hears for one stdin line from the relay's bot user: an object with a string
/// `"message"` and no reserved key is sent as it is (with `"user"` set), any other line is the
/// text of a message.
pub fn bot_line(line: &str, bot: &UserId) -> String {
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) {
        if matches!(object.get("message"), Some(Value::String(_)))
            && reserved_key(&object).is_none()
        {
            return with_user(object, bot);
        }
    }
    let mut object = Map::new();
    object.insert("message".into(), Value::String(line.to_string()));
    with_user(object, bot)
}

/// An error frame for the client whose frame was refused (only the sender gets it).
pub fn error_frame(why: impl fmt::Display) -> String {
    serde_json::json!({ "error": why.to_string() }).to_string()
}

fn with_user(mut object: Map<String, Value>, user: &UserId) -> String {
    object.insert("user".into(), Value::String(user.as_str().to_string()));
    // A map of JSON values always serializes.
    serde_json::to_string(&object).expect("a JSON object serializes")
}

/// What the rate limiter says about one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the rate: drop this message and tell the sender.
    Refuse,
    /// Kept sending far past the rate: close the connection (1008, policy violation).
    Disconnect,
}

/// A token bucket: `rate` messages per second on average, bursts up to `burst`. A refused message
/// still costs a token, so the bucket goes into debt; a client that runs the debt past `burst`
/// (it keeps sending at well over the rate) is disconnected.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: f64, burst: u32, now: Instant) -> RateLimit {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        self.tokens -= 1.0;
        // A millionth of a token of slack, so a sender at exactly the rate is not refused over
        // the rounding of nanosecond clocks.
        if self.tokens >= -1e-6 {
            Verdict::Allow
        } else if self.tokens >= -self.burst {
            Verdict::Refuse
        } else {
            Verdict::Disconnect
        }
    }

    /// How long until one more message would be allowed (for the refusal text).
    pub fn wait(&self) -> Duration {
        if self.tokens >= 0.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((-self.tokens) / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn alice() -> UserId {
        UserId::from_bytes([0xab; 16])
    }

    fn parsed(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn ids_are_32_lowercase_hex() {
        let id = UserId::from_bytes([0, 1, 0x7f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        assert_eq!(id.as_str(), "00017fff000000000000000000000010");
        assert_eq!(UserId::parse(id.as_str()), Ok(id));
        assert!(UserId::parse("ABABABABABABABABABABABABABABABAB").is_err());
        assert!(UserId::parse("abab").is_err());
    }

    #[test]
    fn stamp_sets_user_and_keeps_other_keys() {
        let line = stamp(
            r#"{"message":"hi","user":"mallory","room":"x","n":[1,2]}"#,
            &alice(),
        )
        .unwrap();
        assert_eq!(
            parsed(&line),
            serde_json::json!({"message":"hi","user":alice().as_str(),"room":"x","n":[1,2]})
        );
    }

    #[test]
    fn stamp_refuses_what_is_not_a_message() {
        let refuse = |frame: &str| stamp(frame, &alice()).unwrap_err();
        assert!(matches!(refuse("hello"), Refusal::NotJson(_)));
        assert!(matches!(refuse(r#"{"message":"#), Refusal::NotJson(_)));
        assert_eq!(refuse("[1]"), Refusal::NotAnObject("an array"));
        assert_eq!(refuse(r#"{"text":"hi"}"#), Refusal::NoMessage);
        assert_eq!(
            refuse(r#"{"message":5}"#),
            Refusal::MessageNotText("a number")
        );
        assert_eq!(
            refuse(r#"{"message":null}"#).to_string(),
            "\"message\" must be a string, got null"
        );
    }

    #[test]
    fn no_client_can_send_a_server_notice() {
        let refusal = stamp(r#"{"message":"hi","error":"SPOOFED"}"#, &alice()).unwrap_err();
        assert_eq!(refusal, Refusal::Reserved("error"));
        assert_eq!(
            refusal.to_string(),
            "\"error\" is reserved for the relay's own notices"
        );
        // Whatever its value: the page shows any string, and other values are no message either.
        assert!(stamp(r#"{"message":"hi","error":null}"#, &alice()).is_err());
        // Bot lines never carry one either: such a line is just text.
        let bot = UserId::from_bytes([1; 16]);
        let line = r#"{"message":"tick","error":"x"}"#;
        assert_eq!(
            parsed(&bot_line(line, &bot)),
            serde_json::json!({"message": line, "user": bot.as_str()})
        );
    }

    #[test]
    fn bot_lines_are_messages_whatever_they_hold() {
        let bot = UserId::from_bytes([1; 16]);
        let user = bot.as_str();
        assert_eq!(
            parsed(&bot_line("good morning", &bot)),
            serde_json::json!({"message":"good morning","user":user})
        );
        assert_eq!(
            parsed(&bot_line(r#"{"message":"tick","user":"x","at":1}"#, &bot)),
            serde_json::json!({"message":"tick","user":user,"at":1})
        );
        // ticker's lines have no "message": the whole line is the text.
        let tick = r#"{"tick":1,"at":"2017-01-03T15:53:00.000000Z"}"#;
        assert_eq!(
            parsed(&bot_line(tick, &bot)),
            serde_json::json!({"message":tick,"user":user})
        );
    }

    #[test]
    fn error_frames_are_json_objects() {
        assert_eq!(
            parsed(&error_frame(Refusal::NoMessage)),
            serde_json::json!({"error":"missing \"message\""})
        );
    }

    #[test]
    fn rate_limit_allows_a_burst_then_refuses_then_disconnects() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(1.0, 3, t0);
        let verdicts: Vec<Verdict> = (0..7).map(|_| limit.check(t0)).collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Allow, Allow, Allow, Refuse, Refuse, Refuse, Disconnect]
        );
    }

    #[test]
    fn rate_limit_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(2.0, 1, t0);
        assert_eq!(limit.check(t0), Verdict::Allow);
        assert_eq!(limit.check(t0), Verdict::Refuse);
        assert_eq!(limit.wait(), Duration::from_millis(500));
        // A refused message cost a token too: 1 s at 2/s pays the debt and the next message.
        assert_eq!(limit.check(t0 + Duration::from_secs(1)), Verdict::Allow);
    }

    proptest! {
        #[test]
        fn stamping_keeps_everything_but_user(
            message in ".*",
            extra in proptest::collection::btree_map(
                "[a-z]{1,6}".prop_filter("not reserved", |k| !RESERVED.contains(&k.as_str())),
                any::<i64>(),
                0..5,
            ),
            spoof in proptest::option::of(".*"),
            id in any::<[u8; 16]>(),
        ) {
            let user = UserId::from_bytes(id);
            let mut sent = serde_json::Map::new();
            for (k, v) in &extra {
                sent.insert(k.clone(), Value::from(*v));
            }
            sent.insert("message".into(), Value::String(message.clone()));
            if let Some(s) = spoof {
                sent.insert("user".into(), Value::String(s));
            }
            let frame = Value::Object(sent.clone()).to_string();
            let heard = parsed(&stamp(&frame, &user).unwrap());
            let mut expected = sent;
            expected.insert("user".into(), Value::String(user.to_string()));
            prop_assert_eq!(heard, Value::Object(expected));
        }

        #[test]
        fn a_steady_sender_under_the_rate_is_never_refused(
            rate in 1u32..50, burst in 1u32..20, n in 1usize..200,
        ) {
            let t0 = Instant::now();
            let mut limit = RateLimit::new(f64::from(rate), burst, t0);
            for i in 0..n {
                let at = t0 + Duration::from_secs_f64(i as f64 / f64::from(rate));
                prop_assert_eq!(limit.check(at), Verdict::Allow);
            }
        }

        #[test]
        fn no_more_than_burst_plus_rate_times_elapsed_is_allowed(
            rate in 1u32..20, burst in 1u32..10, gaps in proptest::collection::vec(0u64..300, 1..300),
        ) {
            let t0 = Instant::now();
            let mut limit = RateLimit::new(f64::from(rate), burst, t0);
            let mut t = t0;
            let mut allowed = 0u32;
            for gap in gaps {
                t += Duration::from_millis(gap);
                if limit.check(t) == Verdict::Allow {
                    allowed += 1;
                }
            }
            let budget = f64::from(burst) + f64::from(rate) * (t - t0).as_secs_f64();
            prop_assert!(f64::from(allowed) <= budget + 1e-9);
        }
    }
}
