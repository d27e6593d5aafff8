//! Watch streams: one JSON line per received watch response.
//!
//! ```text
//! {"index":0,"watch":1,"key":"k1","range_end":"k9","start_revision":5,"revision":12,
//!  "events":[{"type":"put","kv":{"key":"k1","value":"v7","mod_revision":12},
//!             "prev_kv":{"key":"k1","value":"v6","mod_revision":9}}]}
//! ```
//! `watch` names the stream (a resumed watch is a new stream, starting at the revision after
//! the last one received); `range_end` absent watches one key, `"\u0000"` every key from
//! `key`. An event's revision is its kv's `mod_revision` (for a delete, the revision that
//! deleted the key).
//!
//! Guarantees checked (etcd's watch API): ordered (revisions never go back), unique (no event
//! twice), atomic (a revision is not split across responses), reliable (no event of the
//! watched range missing between the start revision and the last revision received, as known
//! from the history and every other stream; "resumable" when it is missing before the first
//! event of a stream that started at a revision), and agreement with the
//! history (values written at a revision, and `prev_kv` being the previous write of the key).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::history::{Call, History, ParseError, Status};

/// Name of the guarantee that events match the history.
const AGREE: &str = "in agreement with the history";

/// Most events one stream file may hold.
pub const MAX_WATCH_EVENTS: usize = 10_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Kv {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub mod_revision: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WatchEvent {
    /// `put` or `delete`.
    #[serde(rename = "type")]
    pub kind: String,
    pub kv: Kv,
    #[serde(default)]
    pub prev_kv: Option<Kv>,
}

/// One watch response.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Response {
    pub watch: u64,
    pub key: String,
    #[serde(default)]
    pub range_end: Option<String>,
    #[serde(default)]
    pub start_revision: u64,
    #[serde(default)]
    pub events: Vec<WatchEvent>,
    /// 1-based line in the file.
    #[serde(skip)]
    pub line: usize,
}

impl Response {
    fn watches(&self, key: &str) -> bool {
        match self.range_end.as_deref() {
            None => key == self.key,
            Some("\0") => key >= self.key.as_str(),
            Some(end) => key >= self.key.as_str() && key < end,
        }
    }
}

/// Reads a stream file.
pub fn parse(text: &str) -> Result<Vec<Response>, ParseError> {
    let mut out = Vec::new();
    let mut events = 0;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut r: Response =
            serde_json::from_str(line).map_err(|e| ParseError::new(i + 1, e.to_string()))?;
        r.line = i + 1;
        events += r.events.len();
        if events > MAX_WATCH_EVENTS {
            return Err(ParseError::new(
                i + 1,
                format!("more than {MAX_WATCH_EVENTS} events"),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

/// A broken guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub watch: u64,
    pub line: usize,
    pub guarantee: &'static str,
    pub msg: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: watch {} not {}: {}",
            self.line, self.watch, self.guarantee, self.msg
        )
    }
}

/// What happened to a key at a revision, and who said so.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fact {
    /// `None` for a delete.
    value: Option<String>,
    source: String,
}

/// (key, revision) -> what was written, from the history's `ok` writes and reads that carry
/// revisions and from every stream's events.
type Facts = BTreeMap<(String, u64), Fact>;

fn history_facts(h: &History) -> Facts {
    let mut facts = Facts::new();
    for (i, op) in h
        .ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.status == Status::Ok)
    {
        let (value, revision) = match op.call {
            Call::Put { value } | Call::Cas { value, .. } => (value, op.out.revision),
            Call::Get => match op.out.value {
                Some(v) => (v, op.out.mod_revision),
                None => continue,
            },
            Call::Delete => continue,
        };
        if let Some(rev) = revision {
            let fact = Fact {
                value: Some(h.values[value as usize].clone()),
                source: h.describe(i),
            };
            facts.insert((h.keys[op.key as usize].clone(), rev), fact);
        }
    }
    facts
}

/// Checks `responses` (possibly several streams) against each other and the history.
pub fn check(h: &History, responses: &[Response]) -> Vec<Violation> {
    let mut facts = history_facts(h);
    let mut out = Vec::new();
    let mut streams: BTreeMap<u64, Vec<&Response>> = BTreeMap::new();
    for r in responses {
        streams.entry(r.watch).or_default().push(r);
    }
    // Every history operation writes one key, so a revision it made belongs to that key.
    let owners: BTreeMap<u64, (String, String)> = facts
        .iter()
        .map(|((key, rev), f)| (*rev, (key.clone(), f.source.clone())))
        .collect();
    for r in responses {
        let mut disagree = |msg: String| {
            out.push(Violation {
                watch: r.watch,
                line: r.line,
                guarantee: AGREE,
                msg,
            });
        };
        for e in &r.events {
            let (key, rev) = (&e.kv.key, e.kv.mod_revision);
            let value = if e.kind == "delete" {
                None
            } else {
                e.kv.value.clone()
            };
            let fact = Fact {
                value,
                source: format!("watch {} line {}", r.watch, r.line),
            };
            if let Some((owner, source)) = owners.get(&rev).filter(|(k, _)| k != key) {
                disagree(format!(
                    "{key} at revision {rev}, but {source} made revision {rev} on {owner}"
                ));
            }
            let known = facts
                .entry((key.clone(), rev))
                .or_insert_with(|| fact.clone());
            if known.value != fact.value {
                disagree(format!(
                    "{key} at revision {rev} is {:?}, but {} says {:?}",
                    fact.value, known.source, known.value
                ));
            }
        }
    }
    for (&watch, stream) in &streams {
        check_stream(watch, stream, &facts, &mut out);
    }
    out
}

/// Order, uniqueness, atomicity, completeness and `prev_kv` of one stream.
fn check_stream(watch: u64, stream: &[&Response], facts: &Facts, out: &mut Vec<Violation>) {
    let mut push = |line: usize, guarantee: &'static str, msg: String| {
        out.push(Violation {
            watch,
            line,
            guarantee,
            msg,
        })
    };
    let first = stream[0];
    let mut last_rev = 0;
    let mut seen: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for r in stream {
        if let Some(e) = r
            .events
            .first()
            .filter(|e| last_rev > 0 && e.kv.mod_revision == last_rev)
        {
            push(
                r.line,
                "atomic",
                format!(
                    "revision {} continues from the previous response ({})",
                    last_rev, e.kv.key
                ),
            );
        }
        for e in &r.events {
            let (key, rev) = (e.kv.key.clone(), e.kv.mod_revision);
            if rev < last_rev {
                push(
                    r.line,
                    "ordered",
                    format!("{key} at revision {rev} after revision {last_rev}"),
                );
            }
            if rev < first.start_revision {
                push(
                    r.line,
                    "resumable",
                    format!(
                        "{key} at revision {rev} before the start revision {}",
                        first.start_revision
                    ),
                );
            }
            if !first.watches(&key) {
                push(r.line, AGREE, format!("{key} is outside the watched range"));
            }
            if let Some(line) = seen.insert((key.clone(), rev), r.line) {
                push(
                    r.line,
                    "unique",
                    format!("{key} at revision {rev} already delivered on line {line}"),
                );
            }
            if let Some(prev) = &e.prev_kv {
                check_prev(&key, rev, prev, facts)
                    .into_iter()
                    .for_each(|msg| push(r.line, AGREE, msg));
            }
            last_rev = last_rev.max(rev);
        }
    }
    let end = stream.last().map_or(0, |r| r.line);
    for ((key, rev), fact) in facts.range((first.key.clone(), first.start_revision)..) {
        let missing = *rev >= first.start_revision
            && *rev <= last_rev
            && first.watches(key)
            && !seen.contains_key(&(key.clone(), *rev));
        if missing {
            let resumed = first.start_revision > 0 && seen.keys().all(|(_, r)| r > rev);
            let guarantee = if resumed { "resumable" } else { "reliable" };
            push(
                end,
                guarantee,
                format!("{key} at revision {rev} ({}) is missing", fact.source),
            );
        }
    }
}

/// Why `prev`, reported with the event on `key` at `rev`, is not the key's previous write.
fn check_prev(key: &str, rev: u64, prev: &Kv, facts: &Facts) -> Option<String> {
    if prev.mod_revision >= rev {
        return Some(format!(
            "prev_kv of {key} at revision {rev} has mod_revision {}",
            prev.mod_revision
        ));
    }
    if let Some(f) = facts
        .get(&(key.to_string(), prev.mod_revision))
        .filter(|f| f.value != prev.value)
    {
        return Some(format!(
            "prev_kv of {key} at revision {rev} is {:?}, but {} says {:?}",
            prev.value, f.source, f.value
        ));
    }
    let between = facts
        .range((key.to_string(), prev.mod_revision + 1)..(key.to_string(), rev))
        .next();
    between.map(|((_, r), f)| {
        format!(
            "prev_kv of {key} at revision {rev} is from revision {}, but {} wrote it at {r}",
            prev.mod_revision, f.source
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    /// k1=a at 2, k1=b at 3, k2=c at 4.
    fn writes() -> History {
        history(
            "1 invoke put k1 a\n1 ok put k1 rev=2\n1 invoke put k1 b\n1 ok put k1 rev=3\n\
             1 invoke put k2 c\n1 ok put k2 rev=4",
        )
    }

    /// A response of stream 1 over [k1, k9) from `start`; events `key@rev=value[/prev@rev]`.
    fn response(start: u64, events: &str) -> String {
        let events: Vec<String> = events
            .split_whitespace()
            .map(|e| {
                let (kv, prev) = e.split_once('/').map_or((e, None), |(a, b)| (a, Some(b)));
                let (key, rest) = kv.split_once('@').expect("key@rev=value");
                let (rev, value) = rest.split_once('=').expect("rev=value");
                let prev = prev.map_or(String::new(), |p| {
                    let (v, r) = p.split_once('@').expect("value@rev");
                    format!(r#","prev_kv":{{"key":"{key}","value":"{v}","mod_revision":{r}}}"#)
                });
                format!(r#"{{"type":"put","kv":{{"key":"{key}","value":"{value}","mod_revision":{rev}}}{prev}}}"#)
            })
            .collect();
        format!(
            r#"{{"watch":1,"key":"k1","range_end":"k9","start_revision":{start},"events":[{}]}}"#,
            events.join(",")
        )
    }

    /// The guarantees `responses` break, in order.
    fn broken(start: u64, responses: &[&str]) -> Vec<&'static str> {
        let text: Vec<String> = responses.iter().map(|r| response(start, r)).collect();
        let stream = parse(&text.join("\n")).expect("valid stream");
        check(&writes(), &stream)
            .into_iter()
            .map(|v| v.guarantee)
            .collect()
    }

    #[test]
    fn a_faithful_stream_breaks_nothing() {
        assert_eq!(
            broken(1, &["k1@2=a", "k1@3=b/a@2 k2@4=c"]),
            Vec::<&str>::new()
        );
        assert_eq!(
            broken(3, &["k1@3=b k2@4=c"]),
            Vec::<&str>::new(),
            "resumed at 3"
        );
    }

    #[test]
    fn each_guarantee_is_checked() {
        assert_eq!(broken(1, &["k1@3=b k1@2=a k2@4=c"]), ["ordered"]);
        assert_eq!(
            broken(1, &["k1@2=a", "k1@2=a k1@3=b k2@4=c"]),
            ["atomic", "unique"]
        );
        assert_eq!(
            broken(1, &["k1@2=a", "k2@4=c"]),
            ["reliable"],
            "k1@3 is missing"
        );
        assert_eq!(
            broken(3, &["k1@2=a k1@3=b k2@4=c"]),
            ["resumable"],
            "before the start"
        );
        assert_eq!(
            broken(4, &["k2@4=c"]),
            Vec::<&str>::new(),
            "nothing missing from 4 on"
        );
        assert_eq!(
            broken(1, &["k1@2=a k1@3=z k2@4=c"]),
            ["in agreement with the history"]
        );
        assert_eq!(
            broken(1, &["k1@2=a k1@3=b/x@2 k2@4=c"]),
            ["in agreement with the history"]
        );
        assert_eq!(
            broken(1, &["k1@2=a k1@3=b k2@4=c/a@2"]),
            Vec::<&str>::new(),
            "k2 has no write before 4 on record, so any prev_kv not contradicted passes"
        );
        let wrong = [
            "in agreement with the history",
            "in agreement with the history",
            "reliable",
            "reliable",
        ];
        assert_eq!(
            broken(1, &["k1@2=a k1@4=b/a@1"]),
            wrong,
            "4 is k2's, prev_kv skips 2, 3 and 4 missing"
        );
    }
}
