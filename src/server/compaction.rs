//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), as
//! etcd's v3compactor does it, on the leader only (etcd pauses its compactor on
//! followers); a compaction is an ordinary Compaction request through the log.
//!
//! - periodic: keep about one retention period of history. The current revision is sampled
//!   every tenth of the period (of an hour at most); once a period has passed since the
//!   last compaction, the store is compacted to the sample of one period ago. After the
//!   first, compactions come every period, but at least every hour.
//! - revision: keep the last `retention` revisions, checked every five minutes.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Error, Server};
use crate::mvcc;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::runtime::Clock;

/// How often the revision compactor looks (etcd's `revInterval`).
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The longest wait between periodic compactions once the first is done.
const MAX_COMPACT_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Samples per compaction interval (etcd's `retryDivisor`).
const SAMPLES_PER_INTERVAL: u32 = 10;

/// What `--auto-compaction-mode` and `--auto-compaction-retention` ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

impl AutoCompaction {
    /// Parses the flags as etcd does: a plain number is hours (periodic) or revisions
    /// (revision); anything else is a Go duration (`1h30m`, `90s`), in revision mode read
    /// as nanoseconds. A retention of zero turns compaction off (`None`).
    pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
        let periodic = match mode {
            "periodic" => true,
            "revision" => false,
            "" => return Err("undefined auto-compaction-mode".into()),
            _ => return Err(format!("unknown auto-compaction-mode {mode:?}")),
        };
        let policy = match retention.parse::<u64>() {
            Ok(n) if periodic => AutoCompaction::Periodic(Duration::from_secs(n * 3600)),
            Ok(n) => AutoCompaction::Revision(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(_) => {
                let d = parse_go_duration(retention).map_err(|e| {
                    format!("invalid --auto-compaction-retention: error parsing CompactionRetention: {e}")
                })?;
                match periodic {
                    true => AutoCompaction::Periodic(d),
                    false => {
                        AutoCompaction::Revision(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                    }
                }
            }
        };
        Ok(match policy {
            AutoCompaction::Periodic(d) if d.is_zero() => None,
            AutoCompaction::Revision(0) => None,
            p => Some(p),
        })
    }
}

/// Go's `time.ParseDuration`, without negative durations (a negative retention means
/// nothing to a compactor): a sequence of decimal numbers, each with a unit.
pub(super) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = rest;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        total += number * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// etcd's periodic compactor, as decisions on given times (since the compactor started)
/// and revisions.
#[derive(Debug)]
pub struct Periodic {
    period: Duration,
    /// Revisions sampled one interval apart, oldest first: the first is about one period old.
    samples: VecDeque<i64>,
    last_success: Duration,
    /// The wait after a compaction: the period before the first, then at most an hour.
    wait: Duration,
    last_revision: i64,
}

impl Periodic {
    pub fn new(period: Duration) -> Periodic {
        Periodic {
            period,
            samples: VecDeque::new(),
            last_success: Duration::ZERO,
            wait: period,
            last_revision: 0,
        }
    }

    /// How often the revision is sampled and a compaction considered.
    pub fn sample_interval(&self) -> Duration {
        self.period.min(MAX_COMPACT_INTERVAL) / SAMPLES_PER_INTERVAL
    }

    /// Records the current revision; call once before each wait of [`Self::sample_interval`].
    pub fn sample(&mut self, revision: i64) {
        let keep = (self.period.as_nanos() / self.sample_interval().as_nanos().max(1)) as usize + 1;
        self.samples.push_back(revision);
        while self.samples.len() > keep {
            self.samples.pop_front();
        }
    }

    /// The revision to compact to at `now`, if one is due.
    pub fn due(&mut self, now: Duration) -> Option<i64> {
        let oldest = *self.samples.front()?;
        if now.saturating_sub(self.last_success) < self.wait || oldest == self.last_revision {
            return None;
        }
        self.wait = self.period.min(MAX_COMPACT_INTERVAL);
        Some(oldest)
    }

    /// The store was compacted to `revision` (or past it) at `now`.
    pub fn compacted(&mut self, revision: i64, now: Duration) {
        self.last_revision = revision;
        self.last_success = now;
    }
}

/// etcd's revision compactor's choice: `retention` revisions before `current`, unless that
/// is not a revision or was the last one compacted to.
pub fn revision_due(current: i64, retention: i64, last: i64) -> Option<i64> {
    let revision = current.saturating_sub(retention);
    (revision > 0 && revision != last).then_some(revision)
}

/// Runs `policy` for this member for as long as the server runs.
pub async fn run(server: Server, policy: AutoCompaction) {
    match policy {
        AutoCompaction::Periodic(period) => {
            let start = Clock.now();
            let mut periodic = Periodic::new(period);
            loop {
                periodic.sample(current_revision(&server));
                Clock.sleep(periodic.sample_interval()).await;
                if !server.member.status().is_leader {
                    continue;
                }
                if let Some(revision) = periodic.due(start.elapsed()) {
                    if compact(&server, revision).await {
                        periodic.compacted(revision, start.elapsed());
                    }
                }
            }
        }
        AutoCompaction::Revision(retention) => {
            let mut last = 0;
            loop {
                Clock.sleep(REVISION_CHECK_INTERVAL).await;
                if !server.member.status().is_leader {
                    continue;
                }
                let due = revision_due(current_revision(&server), retention, last);
                if let Some(revision) = due {
                    if compact(&server, revision).await {
                        last = revision;
                    }
                }
            }
        }
    }
}

fn current_revision(server: &Server) -> i64 {
    server.header(None).map_or(0, |h| h.revision)
}

/// Compacts to `revision`; whether the store is now compacted at least that far.
async fn compact(server: &Server, revision: i64) -> bool {
    tracing::info!(revision, "starting auto compaction");
    let req = CompactionRequest {
        revision,
        physical: false,
    };
    match server.compact(req).await {
        Ok(_) | Err(Error::Mvcc(mvcc::Error::Compacted)) => {
            tracing::info!(revision, "completed auto compaction");
            true
        }
        Err(e) => {
            tracing::warn!(revision, "failed auto compaction: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_as_etcd_parses_it() {
        let parse = AutoCompaction::parse;
        let hours = |h: u64| Some(AutoCompaction::Periodic(Duration::from_secs(h * 3600)));
        assert_eq!(parse("periodic", "1"), Ok(hours(1)));
        assert_eq!(parse("periodic", "72"), Ok(hours(72)));
        assert_eq!(parse("periodic", "1h"), Ok(hours(1)));
        assert_eq!(
            parse("periodic", "1h30m"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_secs(5400))))
        );
        assert_eq!(
            parse("periodic", "1.5s"),
            Ok(Some(AutoCompaction::Periodic(Duration::from_millis(1500))))
        );
        assert_eq!(parse("periodic", "0"), Ok(None));
        assert_eq!(parse("periodic", "0s"), Ok(None));
        assert_eq!(
            parse("revision", "1000"),
            Ok(Some(AutoCompaction::Revision(1000)))
        );
        assert_eq!(parse("revision", "0"), Ok(None));
        // As etcd: a duration in revision mode is a count of nanoseconds.
        assert_eq!(
            parse("revision", "1us"),
            Ok(Some(AutoCompaction::Revision(1000)))
        );
        for (retention, why) in [
            ("abc", r#"time: invalid duration "abc""#),
            ("5", "ok"),
            ("5d", r#"time: unknown unit "d" in duration "5d""#),
            ("-1", r#"time: invalid duration "-1""#),
            ("-1h", r#"time: invalid duration "-1h""#),
            ("1h5", r#"time: missing unit in duration "1h5""#),
            ("", r#"time: invalid duration """#),
        ] {
            match parse("periodic", retention) {
                Ok(_) => assert_eq!(why, "ok", "{retention:?}"),
                Err(e) => assert_eq!(
                    e,
                    format!("invalid --auto-compaction-retention: error parsing CompactionRetention: {why}")
                ),
            }
        }
        assert_eq!(
            parse("daily", "1"),
            Err(r#"unknown auto-compaction-mode "daily""#.into())
        );
        assert_eq!(parse("", "1"), Err("undefined auto-compaction-mode".into()));
    }

    /// etcd's TestPeriodicHourly, in steps: samples every 6 minutes, the first compaction
    /// after an hour to the revision of an hour ago, then one every hour.
    #[test]
    fn periodic_compacts_to_the_revision_of_one_period_ago() {
        let mut p = Periodic::new(Duration::from_secs(3600));
        assert_eq!(p.sample_interval(), Duration::from_secs(360));
        let mut now = Duration::ZERO;
        let mut compactions = Vec::new();
        // The revision grows by one per sample; three hours of samples. The oldest of the
        // 11 samples kept was taken 66 minutes before the decision, as in etcd.
        for rev in 1..=30 {
            p.sample(rev);
            now += p.sample_interval();
            if let Some(r) = p.due(now) {
                compactions.push((now.as_secs() / 60, r));
                p.compacted(r, now);
            }
        }
        assert_eq!(compactions, [(60, 1), (120, 10), (180, 20)]);
    }

    #[test]
    fn periodic_waits_at_most_an_hour_after_the_first() {
        let mut p = Periodic::new(Duration::from_secs(24 * 3600));
        assert_eq!(p.sample_interval(), Duration::from_secs(360));
        let mut now = Duration::ZERO;
        let mut compactions = Vec::new();
        for rev in 1..=260 {
            p.sample(rev);
            now += p.sample_interval();
            if let Some(r) = p.due(now) {
                compactions.push((now.as_secs() / 3600, r));
                p.compacted(r, now);
            }
        }
        // 241 samples span a day: the first compaction is at 24 h, to the first sample.
        assert_eq!(compactions, [(24, 1), (25, 10), (26, 20)]);
    }

    #[test]
    fn periodic_skips_a_revision_already_compacted_to() {
        let mut p = Periodic::new(Duration::from_secs(10));
        let mut now = Duration::ZERO;
        let mut compactions = 0;
        for _ in 0..100 {
            p.sample(7);
            now += p.sample_interval();
            if let Some(r) = p.due(now) {
                p.compacted(r, now);
                compactions += 1;
            }
        }
        assert_eq!(compactions, 1, "an idle store is compacted once");
    }

    #[test]
    fn revision_keeps_the_last_retention_revisions() {
        assert_eq!(revision_due(100, 10, 0), Some(90));
        assert_eq!(revision_due(100, 10, 90), None);
        assert_eq!(revision_due(10, 10, 0), None);
        assert_eq!(revision_due(5, i64::MAX, 0), None);
    }
}
