//! The faults both fault runners speak of: the simulator's nemesis (`detcd-sim`, scenario
//! files' `[random] faults`) and the real-process runner (`detcd-check jepsen --nemesis`).
//! One name means one kind of fault in both; each runner says which kinds it can inject.

use std::fmt;
use std::str::FromStr;

/// A kind of fault, by the name scenario files and `--nemesis` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The members split into two groups that cannot reach each other.
    Partition,
    /// One member (or the leader) cut off from all others.
    Isolate,
    /// Messages from one member to another are lost; the other direction works.
    OneWay,
    /// A fraction of all messages is lost.
    Loss,
    /// Messages are delayed.
    Delay,
    /// A member is killed (its page cache survives) and restarted from its data directory.
    Kill,
    /// A member loses power: what it had not fsynced is gone.
    PowerLoss,
    /// A member stops running (SIGSTOP, or a paused simulated node) and resumes later.
    Pause,
    /// The WAL's writes or fsyncs fail with EIO.
    DiskEio,
    /// fsync takes long.
    SlowFsync,
    /// A member loses power, is killed or stalls at a named point of its write path (a
    /// crash point), then restarts from what its disk kept (or goes on, after a stall).
    CrashPoint,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::Partition,
        Fault::Isolate,
        Fault::OneWay,
        Fault::Loss,
        Fault::Delay,
        Fault::Kill,
        Fault::PowerLoss,
        Fault::Pause,
        Fault::DiskEio,
        Fault::SlowFsync,
        Fault::CrashPoint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Partition => "partition",
            Fault::Isolate => "isolate",
            Fault::OneWay => "one-way",
            Fault::Loss => "loss",
            Fault::Delay => "delay",
            Fault::Kill => "kill",
            Fault::PowerLoss => "power-loss",
            Fault::Pause => "pause",
            Fault::DiskEio => "disk-eio",
            Fault::SlowFsync => "slow-fsync",
            Fault::CrashPoint => "crash-point",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault {s:?} (one of {})", names.join(", "))
            })
    }
}

impl<'de> serde::Deserialize<'de> for Fault {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fault, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario files and command lines name faults; a name must come back as itself.
    #[test]
    fn names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(f.name().parse::<Fault>(), Ok(f));
        }
        let err = "power_loss".parse::<Fault>().unwrap_err();
        assert!(err.contains("power-loss"), "{err}");
    }
}
