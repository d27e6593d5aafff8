//! Jepsen register logs: the `jepsen.util` lines of a read / write / cas workload on one key.
//!
//! ```text
//! INFO  jepsen.util - 3 :invoke :cas [3 0]
//! INFO  jepsen.util - 3 :fail :cas [3 0]
//! INFO  jepsen.util - 1 :info :read :timed-out
//! ```
//! (fields separated by tabs in Jepsen's output; any whitespace is accepted).
//! Lines from other loggers and from the `:nemesis` process are skipped. Values are integers
//! or `nil`; a keyword in a completion's value position is an error description.

use super::history::{Builder, Event, History, ParseError};

/// Marks a line the parser reads; text before it (timestamps, level) is ignored.
const MARKER: &str = "jepsen.util - ";
/// The key every operation of a register log acts on.
pub const KEY: &str = "r";

/// Splits on whitespace, keeping `[a b]` vectors as one token.
fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let end = if rest.starts_with('[') {
            rest.find(']').map_or(rest.len(), |i| i + 1)
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    out
}

/// An integer or `nil` (`Ok(None)`); anything else is `Err`.
fn scalar(s: &str) -> Result<Option<String>, String> {
    match s {
        "nil" => Ok(None),
        _ => s
            .parse::<i64>()
            .map(|n| Some(n.to_string()))
            .map_err(|_| format!("expected an integer or nil, got {s:?}")),
    }
}

/// Turns one log line into an event; `Ok(None)` for lines that hold no client operation.
fn event(line: &str, index: u64) -> Result<Option<Event>, String> {
    let Some(at) = line.find(MARKER) else {
        return Ok(None);
    };
    let t = tokens(&line[at + MARKER.len()..]);
    let [process, kind, f, rest @ ..] = t.as_slice() else {
        return Err(format!(
            "expected `process :type :f value`, got {:?}",
            &line[at..]
        ));
    };
    let Ok(process) = process.parse::<u64>() else {
        return Ok(None);
    };
    let kind = kind
        .strip_prefix(':')
        .ok_or_else(|| format!("type {kind:?} is not a keyword"))?;
    let value = rest.first().copied().unwrap_or("nil");
    let mut e = Event {
        index,
        process,
        kind: kind.to_string(),
        key: Some(KEY.to_string()),
        time: index,
        ..Event::default()
    };
    if let Some(err) = value.strip_prefix(':') {
        e.error = Some(err.to_string());
    }
    let parsed = if e.error.is_some() { None } else { Some(value) };
    e.f = match *f {
        ":read" => {
            if kind == "ok" {
                e.value = scalar(parsed.unwrap_or("nil"))?;
            }
            "get"
        }
        ":write" => {
            e.value = scalar(parsed.unwrap_or("nil"))?;
            "put"
        }
        ":cas" => {
            if let Some(v) = parsed {
                let inner = v.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
                let pair = inner.map(|v| v.split_whitespace().collect::<Vec<_>>());
                let Some([expect, new]) = pair.as_deref() else {
                    return Err(format!("cas value {v:?} is not [expect new]"));
                };
                e.expect = Some(scalar(expect)?);
                e.value = scalar(new)?;
            }
            "cas"
        }
        other => return Err(format!("unsupported f {other:?}")),
    }
    .to_string();
    Ok(Some(e))
}

/// Reads a Jepsen log; line numbers in errors are 1-based lines of `text`.
pub fn parse(text: &str) -> Result<History, ParseError> {
    let mut b = Builder::default();
    let mut index = 0;
    for (i, line) in text.lines().enumerate() {
        let e = event(line, index).map_err(|msg| ParseError::new(i + 1, msg))?;
        if let Some(e) = e {
            b.push(&e, i + 1)?;
            index += 1;
        }
    }
    if index == 0 {
        return Err(ParseError::new(
            0,
            "neither JSON Lines nor a log with jepsen.util operations",
        ));
    }
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, Status};

    #[test]
    fn vectors_are_one_token() {
        assert_eq!(
            tokens(" 3\t:invoke\t:cas\t[3 0]  x"),
            ["3", ":invoke", ":cas", "[3 0]", "x"]
        );
    }

    #[test]
    fn reads_writes_cas_and_errors() {
        let log = "INFO  jepsen.util - 1\t:invoke\t:cas\t[nil 2]\n\
                   INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
                   INFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n\
                   INFO  jepsen.util - 2\t:invoke\t:read\tnil\n\
                   INFO  jepsen.util - 2\t:ok\t:read\t7\n";
        let h = parse(log).expect("valid log");
        assert_eq!(h.ops.len(), 2);
        assert_eq!(
            h.ops[0].call,
            Call::Cas {
                expect: None,
                value: 0
            }
        );
        assert_eq!(
            (h.ops[0].status, h.ops[0].error.as_deref()),
            (Status::Info, Some("timed-out"))
        );
        assert_eq!(
            (h.ops[1].out.value, h.values[1].as_str(), h.ops[1].line),
            (Some(1), "7", 4)
        );
    }

    #[test]
    fn malformed_lines_are_errors_with_their_number() {
        let e = parse("junk\nINFO  jepsen.util - 1\t:invoke\t:cas\t[1]\n").expect_err("bad cas");
        assert_eq!(e.line, 2, "{e}");
        assert_eq!(parse("nothing here\n").expect_err("no operations").line, 0);
    }
}
