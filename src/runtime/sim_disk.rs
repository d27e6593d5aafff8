//! A simulated disk that loses what a real one may lose.
//!
//! # Fault model
//! The state outlives the member that uses it: a member restarts on the same `SimDisk`
//! after [`SimDisk::crash`], the way a machine comes back after a power cut.
//!
//! - Each file has *current* bytes (what reads see) and *durable* bytes (what survives a
//!   crash). `write_at` and `set_len` change only the current bytes and mark the touched
//!   512-byte sectors dirty; [`DiskFile::sync`] copies the dirty sectors to the durable bytes.
//! - Names are the same: creating, renaming or removing a file changes the current names of
//!   its directory; [`Disk::sync_dir`] makes them durable. Directories themselves are durable
//!   once created.
//! - A crash ([`CrashMode`]) picks, by the seeded RNG, per directory whether its unsynced
//!   name changes survive, and per file whether each dirty sector keeps its new content or
//!   reverts to the durable one, and whether an unsynced length change survives. A sector is
//!   never half written. Handles opened before a crash fail afterwards, as a dead process's
//!   would.
//! - Injected faults ([`Fault`]): EIO on reads, writes or syncs (a failed sync makes
//!   nothing durable), ENOSPC past a capacity, and bit flips in durable data, which no retry
//!   cures. Random EIO can also be drawn from the RNG at a given rate.
//! - Crash points ([`Fault::CrashAt`]): something happens the N-th time the member reaches
//!   a named point of its write path ([`CrashPoint`]), as [`PointFault`] says. The power
//!   fails, or the process is killed: from that call on every operation fails, as
//!   [`Fault::DieAfter`] with no operations left, until the power cut's crash or the kill's
//!   [`SimDisk::process_died`]. Or the process stalls at the point and then goes on,
//!   through the stall hook.
//! - A killed process ([`SimDisk::process_died`]) loses nothing: what it wrote stays in the
//!   page cache, synced or not (and unsynced, so a later power cut may still lose it); only
//!   its handles die.
//! - Slow fsync ([`Fault::SlowSync`]): a sync drawn slow stalls its caller. Disk calls do
//!   not yield, so the disk cannot sleep itself; it calls the stall hook
//!   ([`SimDisk::on_stall`]), which the simulation implements by pausing the member's
//!   machine for the delay, as a blocked fsync stalls the process.
//!
//! Every operation is folded into [`SimDisk::trace_hash`], so a simulation can prove that
//! two runs with one seed did the same I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::disk::{parent_dir, Disk, DiskFile, OpenMode};
use super::sparse::Sparse;
use super::CrashPoint;

/// Sector size: the unit in which a crash keeps or drops unsynced data.
pub const SECTOR: u64 = 512;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// What a crash does with data and names that were not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Everything unsynced is lost.
    DropAll,
    /// Everything unsynced happened to reach the disk.
    KeepAll,
    /// Each dirty sector and each directory's changes survive or not, by the RNG.
    Tear,
}

/// The kind of operation an injected EIO applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IoOp {
    Read,
    Write,
    Sync,
}

/// A fault to inject.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The next `count` operations of kind `op` on files under `path` fail with EIO.
    Eio { op: IoOp, path: PathBuf, count: u32 },
    /// Every operation of kind `op` fails with EIO with this probability (0.0 turns it off).
    RandomEio { op: IoOp, probability: f64 },
    /// Writes that would make the files' total size exceed `capacity` bytes fail with ENOSPC.
    NoSpace { capacity: Option<u64> },
    /// Flips bit `bit` of byte `offset` of `path`, in durable and current data alike.
    BitFlip { path: PathBuf, offset: u64, bit: u8 },
    /// After `ops` more operations that change the disk, every operation fails with EIO
    /// until the next crash: the moment power fails, seen from the process.
    DieAfter { ops: u64 },
    /// Each file sync takes `delay` longer with this probability (0.0 turns it off).
    SlowSync { probability: f64, delay: Duration },
    /// `then` happens the `nth` time (from 1) the member reaches `point` from now.
    CrashAt {
        point: CrashPoint,
        nth: u32,
        then: PointFault,
    },
}

/// What an armed crash point does to the member that reaches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointFault {
    /// The machine loses power: nothing after the point reaches the disk, and what was not
    /// synced before it may be lost or torn.
    PowerCut,
    /// The process is killed: nothing after the point reaches the disk, and everything
    /// written before it survives, synced or not.
    Kill,
    /// The process stalls at the point for this long (the stall hook), then goes on.
    Pause(Duration),
}

impl PointFault {
    /// The milestone a fired point counts under.
    fn milestone(self) -> crate::runtime::Milestone {
        use crate::runtime::Milestone;
        match self {
            PointFault::PowerCut => Milestone::CrashPointPowerCut,
            PointFault::Kill => Milestone::CrashPointKill,
            PointFault::Pause(_) => Milestone::CrashPointPause,
        }
    }
}

/// What a slow sync calls to stall its caller for the given time.
#[derive(Clone)]
pub struct StallHook(Arc<dyn Fn(Duration) + Send + Sync>);

impl std::fmt::Debug for StallHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StallHook")
    }
}

/// A simulated disk; clones share the same state.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    /// Bumped by every crash; handles from an earlier generation are dead.
    generation: u64,
    eio: Vec<(IoOp, PathBuf, u32)>,
    random_eio: BTreeMap<IoOp, f64>,
    capacity: Option<u64>,
    die_after: Option<u64>,
    slow_sync: Option<(f64, Duration)>,
    /// An armed crash point, how many more times it is passed before it fires, and what
    /// it does then.
    crash_at: Option<(CrashPoint, u32, PointFault)>,
    /// Where the member stopped (lost power or was killed), until the next crash.
    stopped_at: Option<(CrashPoint, PointFault)>,
    stall: Option<StallHook>,
    /// The planted ack-before-fsync bug: WAL syncs succeed without making anything durable.
    lying_wal_sync: bool,
    trace: u64,
}

#[derive(Debug, Default)]
struct Inode {
    current: Sparse,
    durable: Sparse,
    /// Dirty sector ranges `[start, end)`, disjoint and not adjacent.
    dirty: BTreeMap<u64, u64>,
    synced_once: bool,
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    path: PathBuf,
    inode: u64,
    generation: u64,
}

impl SimDisk {
    /// An empty disk whose crash and fault choices all come from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut dirs = BTreeSet::new();
        dirs.insert(PathBuf::from("/"));
        dirs.insert(PathBuf::from("."));
        SimDisk {
            state: Arc::new(Mutex::new(State {
                rng: crate::runtime::seeded_rng(seed),
                inodes: BTreeMap::new(),
                next_inode: 1,
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                dirs,
                generation: 0,
                eio: Vec::new(),
                random_eio: BTreeMap::new(),
                capacity: None,
                die_after: None,
                slow_sync: None,
                crash_at: None,
                stopped_at: None,
                stall: None,
                lying_wal_sync: crate::runtime::planted(crate::runtime::Bug::AckBeforeFsync),
                trace: 0xcbf2_9ce4_8422_2325,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Power loss: applies `mode` to everything not yet durable and kills open handles.
    pub fn crash_with(&self, mode: CrashMode) {
        let mut st = self.lock();
        st.record(&[b'C', mode as u8]);
        st.crash(mode);
    }

    /// The process using the disk was killed: its handles die and so does a failure that
    /// stood for its death ([`Fault::DieAfter`], a fired crash point); every byte stays as
    /// it was.
    pub fn process_died(&self) {
        let mut st = self.lock();
        st.record(b"K");
        st.generation += 1;
        st.die_after = None;
        st.stopped_at = None;
    }

    /// Power loss with the mode drawn from the RNG (tearing half of the time).
    pub fn crash(&self) -> CrashMode {
        let mut st = self.lock();
        let mode = match st.rng.random_range(0..4u8) {
            0 => CrashMode::DropAll,
            1 => CrashMode::KeepAll,
            _ => CrashMode::Tear,
        };
        st.record(&[b'C', mode as u8]);
        st.crash(mode);
        mode
    }

    pub fn inject(&self, fault: Fault) {
        let mut st = self.lock();
        match fault {
            Fault::Eio { op, path, count } => st.eio.push((op, path, count)),
            Fault::RandomEio { op, probability } => {
                assert!(
                    (0.0..=1.0).contains(&probability),
                    "probability({probability}) out of [0, 1]"
                );
                st.random_eio.insert(op, probability);
            }
            Fault::NoSpace { capacity } => st.capacity = capacity,
            Fault::DieAfter { ops } => st.die_after = Some(ops),
            Fault::CrashAt { point, nth, then } => {
                assert!(nth >= 1, "crash point {point} armed for its {nth}th pass");
                st.crash_at = Some((point, nth - 1, then));
            }
            Fault::SlowSync { probability, delay } => {
                assert!(
                    (0.0..=1.0).contains(&probability),
                    "probability({probability}) out of [0, 1]"
                );
                st.slow_sync = Some((probability, delay));
            }
            Fault::BitFlip { path, offset, bit } => {
                assert!(bit < 8, "bit({bit}) out of range [0, 8)");
                let id = *st.names.get(&path).expect("bit flip in a missing file");
                let inode = st.inodes.get_mut(&id).expect("named inode exists");
                inode.durable.flip(offset, bit);
                inode.current.flip(offset, bit);
            }
        }
    }

    /// Removes all injected faults.
    pub fn heal(&self) {
        let mut st = self.lock();
        st.eio.clear();
        st.random_eio.clear();
        st.capacity = None;
        st.die_after = None;
        st.slow_sync = None;
        st.crash_at = None;
    }

    /// The crash point where the member lost power or was killed, and which of the two, if
    /// that happened since the last crash. A pause leaves nothing here: the member went on.
    pub fn stopped_at(&self) -> Option<(CrashPoint, PointFault)> {
        self.lock().stopped_at
    }

    /// Passes `point`: an armed point whose count is used up fires here. A pause stalls the
    /// caller once the lock is released, as a slow sync does.
    fn pass(&self, point: CrashPoint) -> io::Result<()> {
        let mut st = self.lock();
        st.record(&[b'P', point as u8]);
        let fired = match &mut st.crash_at {
            Some((p, 0, then)) if *p == point => Some(*then),
            Some((p, left, _)) if *p == point => {
                *left -= 1;
                None
            }
            _ => None,
        };
        let Some(then) = fired else {
            return match st.die_after {
                Some(0) => Err(io::Error::from_raw_os_error(EIO)),
                _ => Ok(()),
            };
        };
        st.crash_at = None;
        crate::runtime::reach(then.milestone());
        match then {
            PointFault::Pause(delay) => {
                st.record_op(b'z', Path::new(point.name()), delay.as_millis() as u64, 0);
                let stall = st.stall.clone();
                drop(st);
                if let Some(StallHook(hook)) = stall {
                    hook(delay);
                }
                Ok(())
            }
            PointFault::PowerCut | PointFault::Kill => {
                st.die_after = Some(0);
                st.stopped_at = Some((point, then));
                let how = match then {
                    PointFault::Kill => "the process was killed",
                    _ => "power failed",
                };
                Err(io::Error::other(format!("{how} at crash point {point}")))
            }
        }
    }

    /// Sets what a slow sync calls to stall its caller.
    pub fn on_stall(&self, hook: impl Fn(Duration) + Send + Sync + 'static) {
        self.lock().stall = Some(StallHook(Arc::new(hook)));
    }

    /// A hash of every operation so far, for determinism checks.
    pub fn trace_hash(&self) -> u64 {
        self.lock().trace
    }

    /// Total bytes of all files as reads see them.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }
}

impl State {
    fn record(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.trace ^= u64::from(b);
            self.trace = self.trace.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn record_op(&mut self, tag: u8, path: &Path, a: u64, b: u64) {
        self.record(&[tag]);
        self.record(path.as_os_str().as_encoded_bytes());
        self.record(&a.to_le_bytes());
        self.record(&b.to_le_bytes());
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len()).sum()
    }

    /// Counts one operation that changes the disk against [`Fault::DieAfter`].
    fn mutation(&mut self) -> io::Result<()> {
        match &mut self.die_after {
            Some(0) => Err(io::Error::from_raw_os_error(EIO)),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn injected_eio(&mut self, op: IoOp, path: &Path) -> io::Result<()> {
        if op == IoOp::Read && self.die_after == Some(0) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        if let Some(slot) = self
            .eio
            .iter_mut()
            .find(|(o, p, n)| *o == op && *n > 0 && path.starts_with(p))
        {
            slot.2 -= 1;
            return Err(io::Error::from_raw_os_error(EIO));
        }
        if let Some(&p) = self.random_eio.get(&op) {
            if p > 0.0 && self.rng.random_bool(p) {
                return Err(io::Error::from_raw_os_error(EIO));
            }
        }
        Ok(())
    }

    fn check_space(&self, id: u64, new_len: u64) -> io::Result<()> {
        let Some(capacity) = self.capacity else {
            return Ok(());
        };
        let old_len = self.inodes[&id].current.len();
        if new_len > old_len && self.used() + (new_len - old_len) > capacity {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn require_dir(&self, dir: &Path) -> io::Result<()> {
        if self.dirs.contains(dir) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such directory: {}", dir.display()),
            ))
        }
    }

    fn crash(&mut self, mode: CrashMode) {
        self.generation += 1;
        self.die_after = None;
        self.stopped_at = None;
        let dirs: Vec<PathBuf> = self.dirs.iter().cloned().collect();
        for dir in dirs {
            let in_dir = |p: &PathBuf| parent_dir(p) == dir;
            let current: BTreeMap<PathBuf, u64> = self
                .names
                .iter()
                .filter(|(p, _)| in_dir(p))
                .map(|(p, i)| (p.clone(), *i))
                .collect();
            let durable: BTreeMap<PathBuf, u64> = self
                .durable_names
                .iter()
                .filter(|(p, _)| in_dir(p))
                .map(|(p, i)| (p.clone(), *i))
                .collect();
            if current == durable {
                continue;
            }
            let keep = match mode {
                CrashMode::DropAll => false,
                CrashMode::KeepAll => true,
                CrashMode::Tear => self.rng.random_bool(0.5),
            };
            let survivor = if keep { current } else { durable };
            self.names.retain(|p, _| !in_dir(p));
            self.durable_names.retain(|p, _| !in_dir(p));
            for (p, i) in survivor {
                self.names.insert(p.clone(), i);
                self.durable_names.insert(p, i);
            }
        }
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|id, _| live.contains(id));
        let ids: Vec<u64> = self.inodes.keys().copied().collect();
        for id in ids {
            let mut inode = std::mem::take(self.inodes.get_mut(&id).expect("listed inode"));
            inode.settle(mode, &mut self.rng);
            self.inodes.insert(id, inode);
        }
    }
}

impl Inode {
    fn mark_dirty(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        let mut start = from / SECTOR;
        let mut end = to.div_ceil(SECTOR);
        let overlapping: Vec<(u64, u64)> = self
            .dirty
            .range(..=end)
            .filter(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            self.dirty.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.dirty.insert(start, end);
    }

    /// Makes sectors `[start, end)` durable as they are now.
    fn copy_sectors(&mut self, start: u64, end: u64) {
        let to = (end * SECTOR)
            .min(self.current.len())
            .min(self.durable.len());
        if start * SECTOR < to {
            self.durable.copy_range(&self.current, start * SECTOR, to);
        }
    }

    fn sync(&mut self) {
        self.durable.set_len(self.current.len());
        for (s, e) in std::mem::take(&mut self.dirty) {
            self.copy_sectors(s, e);
        }
        assert_eq!(
            self.durable.len(),
            self.current.len(),
            "sync left durable length != current length"
        );
    }

    /// Resolves unsynced state after a crash; afterwards current == durable.
    fn settle(&mut self, mode: CrashMode, rng: &mut ChaCha8Rng) {
        let new_len = match mode {
            CrashMode::DropAll => self.durable.len(),
            CrashMode::KeepAll => self.current.len(),
            CrashMode::Tear if rng.random_bool(0.5) => self.current.len(),
            CrashMode::Tear => self.durable.len(),
        };
        self.durable.set_len(new_len);
        // A dropped sector keeps its durable content, or zeros past the old end.
        for (s, e) in std::mem::take(&mut self.dirty) {
            match mode {
                CrashMode::DropAll => {}
                CrashMode::KeepAll => self.copy_sectors(s, e),
                CrashMode::Tear => {
                    for sector in s..e {
                        if rng.random_bool(0.5) {
                            self.copy_sectors(sector, sector + 1);
                        }
                    }
                }
            }
        }
        self.current = self.durable.clone();
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let mut st = self.lock();
        st.record_op(b'O', path, mode as u64, 0);
        st.mutation()?;
        st.require_dir(&parent_dir(path))?;
        let id = match (st.names.get(path).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("file exists: {}", path.display()),
                ))
            }
            (Some(id), _) => id,
            (None, OpenMode::Existing) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no such file: {}", path.display()),
                ))
            }
            (None, _) => {
                let id = st.next_inode;
                st.next_inode += 1;
                st.inodes.insert(id, Inode::default());
                st.names.insert(path.to_path_buf(), id);
                id
            }
        };
        Ok(Box::new(SimFile {
            disk: self.clone(),
            path: path.to_path_buf(),
            inode: id,
            generation: st.generation,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.record_op(b'D', path, 0, 0);
        st.mutation()?;
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                st.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.lock();
        st.require_dir(dir)?;
        let mut names: Vec<String> = st
            .names
            .keys()
            .chain(st.dirs.iter())
            .filter(|p| p.parent() == Some(dir) && *p != dir)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.record_op(b'R', from, 0, 0);
        st.record_op(b'R', to, 0, 0);
        st.mutation()?;
        st.require_dir(&parent_dir(to))?;
        let id = st.names.remove(from).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such file: {}", from.display()),
            )
        })?;
        st.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.record_op(b'X', path, 0, 0);
        st.mutation()?;
        st.names.remove(path).map(|_| ()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such file: {}", path.display()),
            )
        })
    }

    fn exists(&self, path: &Path) -> bool {
        let st = self.lock();
        st.names.contains_key(path) || st.dirs.contains(path)
    }

    fn crash_point(&self, point: CrashPoint) -> io::Result<()> {
        self.pass(point)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.lock();
        st.record_op(b'S', dir, 1, 0);
        st.mutation()?;
        st.require_dir(dir)?;
        st.injected_eio(IoOp::Sync, dir)?;
        let in_dir = |p: &PathBuf| parent_dir(p) == dir;
        let current: Vec<(PathBuf, u64)> = st
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        st.durable_names.retain(|p, _| !in_dir(p));
        st.durable_names.extend(current);
        Ok(())
    }
}

impl SimFile {
    /// Locks the disk and checks that this handle survived every crash since it was opened.
    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.disk.lock();
        if st.generation != self.generation {
            return Err(io::Error::other(format!(
                "{}: handle opened before a crash",
                self.path.display()
            )));
        }
        Ok(st)
    }
}

impl DiskFile for SimFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> io::Result<u64> {
        let st = self.live()?;
        Ok(st.inodes[&self.inode].current.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.live()?;
        st.record_op(b'r', &self.path, offset, buf.len() as u64);
        st.injected_eio(IoOp::Read, &self.path)?;
        let data = &st.inodes[&self.inode].current;
        let end = offset + buf.len() as u64;
        if end > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: read [{offset}, {end}) past the end ({})",
                    self.path.display(),
                    data.len()
                ),
            ));
        }
        data.read(offset, buf);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.live()?;
        st.record_op(b'w', &self.path, offset, data.len() as u64);
        st.mutation()?;
        st.injected_eio(IoOp::Write, &self.path)?;
        let end = offset + data.len() as u64;
        st.check_space(self.inode, end)?;
        let inode = st.inodes.get_mut(&self.inode).expect("open inode exists");
        inode.current.write(offset, data);
        inode.mark_dirty(offset, end);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.live()?;
        st.record_op(b'l', &self.path, len, 0);
        st.mutation()?;
        st.injected_eio(IoOp::Write, &self.path)?;
        st.check_space(self.inode, len)?;
        let inode = st.inodes.get_mut(&self.inode).expect("open inode exists");
        let old = inode.current.len();
        inode.current.set_len(len);
        inode.mark_dirty(old.min(len), old.max(len));
        Ok(())
    }

    fn crash_point(&self, point: CrashPoint) -> io::Result<()> {
        self.disk.pass(point)
    }

    fn sync(&self) -> io::Result<()> {
        let mut st = self.live()?;
        st.record_op(b's', &self.path, 0, 0);
        st.mutation()?;
        st.injected_eio(IoOp::Sync, &self.path)?;
        let in_wal = self.path.components().any(|c| c.as_os_str() == "wal");
        let lying = st.lying_wal_sync && in_wal;
        let inode = st.inodes.get_mut(&self.inode).expect("open inode exists");
        // The planted bug spares a file's first sync, which makes a new segment's header
        // durable: what it loses is appended records, not the WAL's structure.
        if !(lying && inode.synced_once) {
            inode.sync();
        }
        inode.synced_once = true;
        let slow_sync = st.slow_sync;
        let stall = match slow_sync {
            Some((p, delay)) if p > 0.0 && st.rng.random_bool(p) => {
                st.record_op(b'z', &self.path, delay.as_millis() as u64, 0);
                st.stall.clone().map(|hook| (hook, delay))
            }
            _ => None,
        };
        drop(st);
        if let Some((StallHook(hook), delay)) = stall {
            hook(delay);
        }
        Ok(())
    }
}
