//! The member's log as etcd 3.5's zap logger writes it (`--logger zap`, the only logger
//! etcd 3.5 has): one JSON object per line with `level`, `ts` (Unix seconds), `caller` and
//! `msg` first, then the event's fields under etcd's hyphenated names
//! (`local_member_id` is logged as `"local-member-id"`), so that tools reading etcd's logs
//! read detcd's. `--log-level` takes etcd's level names.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::runtime::Clock;

/// The loggers `--logger` names.
pub const LOGGERS: &[&str] = &["zap"];

/// `--log-level`'s value as a filter: etcd's debug, info, warn, error, and its dpanic,
/// panic and fatal, which detcd logs as errors.
pub fn level(name: &str) -> Result<LevelFilter, String> {
    Ok(match name {
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" => LevelFilter::WARN,
        "error" | "dpanic" | "panic" | "fatal" => LevelFilter::ERROR,
        _ => return Err(format!("unrecognized level: {name:?}")),
    })
}

/// Formats events as etcd's JSON lines.
pub struct EtcdJson;

/// An event's fields in the order they were recorded, the message apart.
#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, serde_json::Value)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.msg = match value {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
        } else {
            self.rest.push((field.name().replace('_', "-"), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, value.into());
    }
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

impl<S, N> FormatEvent<S, N> for EtcdJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let file = meta.file().unwrap_or(meta.target());
        let caller = format!(
            "{}:{}",
            file.trim_start_matches("src/"),
            meta.line().unwrap_or(0)
        );
        let mut line = String::new();
        write!(
            line,
            "{{\"level\":{},\"ts\":{},\"caller\":{},\"msg\":{}",
            quoted(&meta.level().as_str().to_ascii_lowercase()),
            Clock.unix_nanos() as f64 / 1e9,
            quoted(&caller),
            quoted(&fields.msg)
        )?;
        for (name, value) in &fields.rest {
            write!(line, ",{}:{value}", quoted(name))?;
        }
        writeln!(writer, "{line}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_level_names() {
        assert_eq!(level("debug"), Ok(LevelFilter::DEBUG));
        assert_eq!(level("fatal"), Ok(LevelFilter::ERROR));
        assert_eq!(
            level("verbose").unwrap_err(),
            "unrecognized level: \"verbose\""
        );
    }

    /// One event, formatted as etcd's zap logger would write it.
    #[test]
    fn events_are_etcd_json_lines() {
        #[derive(Clone, Default)]
        struct Out(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Out {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Out::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(EtcdJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                local_member_id = %format_args!("{:x}", 0xabcu64),
                number_of_peers_checked = 2,
                ok = true,
                "found \"hash\" mismatch"
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["level"], "warn");
        assert!(v["ts"].as_f64().unwrap() > 0.0);
        assert!(v["caller"].as_str().unwrap().starts_with("server/log.rs:"));
        assert_eq!(v["msg"], "found \"hash\" mismatch");
        assert_eq!(v["local-member-id"], "abc");
        assert_eq!(v["number-of-peers-checked"], 2);
        assert_eq!(v["ok"], true);
        let keys: Vec<&str> = text
            .split("\":")
            .map(|k| k.rsplit('"').next().unwrap())
            .collect();
        assert_eq!(keys[..4], ["level", "ts", "caller", "msg"]);
    }
}
