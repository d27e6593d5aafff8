//! Client histories: the JSON Lines events of `shared/HISTORY.md` and the operations they
//! pair up into.
//!
//! An operation is an `invoke` event plus at most one completion by the same process. A
//! missing completion is read as `info`: the operation may take effect at any time after its
//! invocation, or never. Event positions (0-based, in file order) are the time axis of the
//! search; the `time` field is kept for drawing.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde::{Deserialize, Serialize};

/// Longest line the parser accepts; a longer one is reported as unreadable.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most events one history may hold.
pub const MAX_EVENTS: usize = 50_000_000;

/// An interned key or value: an index into [`History::keys`] or [`History::values`].
pub type Id = u32;
/// A value as a register holds it: `None` when the key does not exist.
pub type Val = Option<Id>;

/// One line of a JSON Lines history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `Some(None)` is an explicit `null`: for `cas`, "the key must be absent".
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "explicit_null"
    )]
    pub expect: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub time: u64,
}

/// Serde helper telling an absent field (`None`) from an explicit `null` (`Some(None)`).
mod explicit_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().and_then(|inner| inner.as_ref()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Took effect, with the recorded results.
    Ok,
    /// Certainly did not take effect.
    Fail,
    /// Unknown: may take effect at any time after the invocation, or never.
    Info,
}

/// What an operation asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Get,
    Put { value: Id },
    Delete,
    Cas { expect: Val, value: Id },
}

/// Results an `ok` completion reported; `None` when the field was absent (always, for
/// other completions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// For `get`: the value read (`None`: the key did not exist).
    pub value: Val,
    pub revision: Option<u64>,
    pub mod_revision: Option<u64>,
    pub create_revision: Option<u64>,
    pub version: Option<u64>,
}

/// One operation: an invocation and its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub process: u64,
    pub key: Id,
    pub call: Call,
    pub status: Status,
    pub out: Output,
    /// Position of the invoke event.
    pub invoke: usize,
    /// Position of the completion event; `None` when it is missing.
    pub complete: Option<usize>,
    pub invoke_time: u64,
    pub complete_time: Option<u64>,
    /// 1-based line of the invoke event in the input (0 for generated histories).
    pub line: usize,
    pub error: Option<String>,
}

impl Op {
    /// Whether the operation can change the store.
    pub fn is_write(&self) -> bool {
        !matches!(self.call, Call::Get)
    }
}

/// A parsed history: operations in invocation order, with interned keys and values.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub keys: Vec<String>,
    pub values: Vec<String>,
    /// Number of events (the time axis runs over `0..events`).
    pub events: usize,
}

impl History {
    /// Readable form of a value.
    pub fn show(&self, v: Val) -> String {
        v.map_or_else(|| "nil".to_string(), |id| self.values[id as usize].clone())
    }

    /// One-line description of operation `i`.
    pub fn describe(&self, i: usize) -> String {
        let op = &self.ops[i];
        let key = &self.keys[op.key as usize];
        let call = match op.call {
            Call::Get => format!("get {key}"),
            Call::Put { value } => format!("put {key} {}", self.show(Some(value))),
            Call::Delete => format!("delete {key}"),
            Call::Cas { expect, value } => {
                format!(
                    "cas {key} {}->{}",
                    self.show(expect),
                    self.show(Some(value))
                )
            }
        };
        let mut result = match (op.status, op.call) {
            (Status::Ok, Call::Get) => format!("ok {}", self.show(op.out.value)),
            (Status::Ok, _) => "ok".to_string(),
            (Status::Fail, _) => "fail".to_string(),
            (Status::Info, _) => "info".to_string(),
        };
        for (name, field) in [
            ("rev", op.out.revision),
            ("mod", op.out.mod_revision),
            ("create", op.out.create_revision),
            ("ver", op.out.version),
        ] {
            if let Some(n) = field {
                result.push_str(&format!(" {name}={n}"));
                if op.status == Status::Info {
                    // Only rule 4 of `info` gives an `info` operation a result.
                    result.push_str(" (from its readers)");
                }
            }
        }
        format!("#{i} p{} {call} => {result} (line {})", op.process, op.line)
    }
}

/// Input that is not a valid history, with the 1-based line at fault (0: the whole file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl ParseError {
    pub fn new(line: usize, msg: impl Into<String>) -> Self {
        ParseError {
            line,
            msg: msg.into(),
        }
    }
}

/// Interns strings into dense ids.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, Id>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> Id {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = Id::try_from(self.names.len()).expect("more than u32::MAX distinct strings");
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }
}

/// Pairs events into operations, checking that each process has one operation in flight.
#[derive(Default)]
pub struct Builder {
    ops: Vec<Op>,
    keys: Interner,
    values: Interner,
    /// Process -> index in `ops` of its operation in flight.
    in_flight: BTreeMap<u64, usize>,
    events: usize,
}

impl Builder {
    /// Adds the next event, read from input line `line`.
    pub fn push(&mut self, e: &Event, line: usize) -> Result<(), ParseError> {
        let err = |msg: String| Err(ParseError::new(line, msg));
        if self.events >= MAX_EVENTS {
            return err(format!("more than {MAX_EVENTS} events"));
        }
        let pos = self.events;
        self.events += 1;
        if e.kind == "invoke" {
            if let Some(&prev) = self.in_flight.get(&e.process) {
                let prev_line = self.ops[prev].line;
                return err(format!(
                    "process {} invokes while its operation from line {prev_line} is in flight",
                    e.process
                ));
            }
            let op = self.invocation(e, pos, line)?;
            self.in_flight.insert(e.process, self.ops.len());
            self.ops.push(op);
            return Ok(());
        }
        let status = match e.kind.as_str() {
            "ok" => Status::Ok,
            "fail" => Status::Fail,
            "info" => Status::Info,
            other => return err(format!("unknown type {other:?}")),
        };
        let Some(i) = self.in_flight.remove(&e.process) else {
            return err(format!(
                "process {} completes with nothing in flight",
                e.process
            ));
        };
        let f = call_name(self.ops[i].call);
        if e.f != f {
            return err(format!(
                "completion f={:?} does not match invoked f={f:?}",
                e.f
            ));
        }
        let value = match (status, self.ops[i].call, &e.value) {
            (Status::Ok, Call::Get, Some(v)) => Some(self.values.id(v)),
            _ => None,
        };
        let op = &mut self.ops[i];
        op.status = status;
        op.complete = Some(pos);
        op.complete_time = Some(e.time);
        op.error.clone_from(&e.error);
        // Only an `ok` completion reports results; whatever else says is not checked.
        if status == Status::Ok {
            op.out = Output {
                value,
                revision: e.revision,
                mod_revision: e.mod_revision,
                create_revision: e.create_revision,
                version: e.version,
            };
        }
        Ok(())
    }

    fn invocation(&mut self, e: &Event, pos: usize, line: usize) -> Result<Op, ParseError> {
        let missing = |field: &str| ParseError::new(line, format!("{} without {field}", e.f));
        let key = self
            .keys
            .id(e.key.as_deref().ok_or_else(|| missing("key"))?);
        let call = match e.f.as_str() {
            "get" | "read" => Call::Get,
            "put" | "write" => Call::Put {
                value: self
                    .values
                    .id(e.value.as_deref().ok_or_else(|| missing("value"))?),
            },
            "delete" => Call::Delete,
            "cas" => {
                let expect = e.expect.as_ref().ok_or_else(|| missing("expect"))?;
                Call::Cas {
                    expect: expect.as_deref().map(|v| self.values.id(v)),
                    value: self
                        .values
                        .id(e.value.as_deref().ok_or_else(|| missing("value"))?),
                }
            }
            other => return Err(ParseError::new(line, format!("unsupported f {other:?}"))),
        };
        Ok(Op {
            process: e.process,
            key,
            call,
            status: Status::Info,
            out: Output::default(),
            invoke: pos,
            complete: None,
            invoke_time: e.time,
            complete_time: None,
            line,
            error: None,
        })
    }

    /// The history; operations still in flight stay `info` with no completion.
    pub fn finish(self) -> History {
        History {
            ops: self.ops,
            keys: self.keys.names,
            values: self.values.names,
            events: self.events,
        }
    }
}

/// Name of the `f` that invokes `call`, as written by [`Event`].
pub fn call_name(call: Call) -> &'static str {
    match call {
        Call::Get => "get",
        Call::Put { .. } => "put",
        Call::Delete => "delete",
        Call::Cas { .. } => "cas",
    }
}

/// Builds a history from events in order (line numbers are positions + 1).
pub fn from_events(events: &[Event]) -> Result<History, ParseError> {
    let mut b = Builder::default();
    for (i, e) in events.iter().enumerate() {
        b.push(e, i + 1)?;
    }
    Ok(b.finish())
}

/// Most bytes of input [`parse`] reads.
pub const MAX_INPUT_BYTES: u64 = 4 << 30;

/// Reads JSON Lines text (blank lines are skipped).
pub fn parse_jsonl(text: &str) -> Result<History, ParseError> {
    let mut b = Builder::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.len() > MAX_LINE_BYTES {
            return Err(ParseError::new(
                n,
                format!("longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(line).map_err(|e| ParseError::new(n, e.to_string()))?;
        b.push(&e, n)?;
    }
    Ok(b.finish())
}

/// Reads a history, detecting JSON Lines or Jepsen `jepsen.util` register logs by the first
/// non-blank line.
pub fn parse(reader: impl Read) -> Result<History, ParseError> {
    let mut text = String::new();
    reader
        .take(MAX_INPUT_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| ParseError::new(0, format!("unreadable: {e}")))?;
    parse_str(&text)
}

/// Whether `text` is a Jepsen log rather than JSON Lines (its first non-blank line is not a
/// JSON object).
pub fn is_jepsen(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|first| !first.trim_start().starts_with('{'))
}

/// [`parse`] for text already in memory.
pub fn parse_str(text: &str) -> Result<History, ParseError> {
    if is_jepsen(text) {
        super::jepsen::parse(text)
    } else {
        parse_jsonl(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ParseError {
        parse_str(text).expect_err("must be rejected")
    }

    #[test]
    fn errors_name_the_line() {
        let put =
            r#"{"index":0,"process":1,"type":"invoke","f":"put","key":"k","value":"a","time":0}"#;
        assert_eq!(
            err(&format!("{put}\n\n{put}")).line,
            3,
            "blank lines count, and one op in flight per process"
        );
        assert_eq!(err(&format!("{put}\nnot json")).line, 2);
        let e = err(r#"{"index":0,"process":1,"type":"invoke","f":"txn","key":"k","time":0}"#);
        assert_eq!((e.line, e.msg.as_str()), (1, r#"unsupported f "txn""#));
        let e = err(&format!(
            "{put}\n{}",
            r#"{"index":1,"process":1,"type":"ok","f":"get","key":"k","time":1}"#
        ));
        assert!(e.msg.contains("does not match"), "{e}");
        let e = err(
            r#"{"index":0,"process":1,"type":"invoke","f":"cas","key":"k","value":"b","time":0}"#,
        );
        assert_eq!(e.msg, "cas without expect");
    }

    #[test]
    fn null_expect_means_absent_key_and_missing_completions_are_info() {
        let h = parse_str(r#"{"index":0,"process":1,"type":"invoke","f":"cas","key":"k","expect":null,"value":"b","time":5}"#)
            .expect("valid");
        let op = &h.ops[0];
        assert_eq!(
            op.call,
            Call::Cas {
                expect: None,
                value: 0
            }
        );
        assert_eq!(
            (op.status, op.complete, op.invoke_time),
            (Status::Info, None, 5)
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = Event {
            kind: "invoke".into(),
            f: "cas".into(),
            key: Some("k".into()),
            expect: Some(None),
            ..Event::default()
        };
        let text = serde_json::to_string(&e).expect("serializes");
        assert!(text.contains(r#""expect":null"#), "{text}");
        assert_eq!(serde_json::from_str::<Event>(&text).expect("parses"), e);
    }
}
