//! Scheduling latency on a busy CPU.
//!
//! A put waits on several thread wake-ups: the connection's worker after the request
//! arrives, the member loop's worker after its WAL fdatasync, the worker that writes the
//! response. Linux's EEVDF scheduler (6.6 and later) lets a waking thread preempt the one
//! running only if it asked for a shorter time slice than that thread's; otherwise it waits
//! for the running thread's slice (3 ms) to end, which the scheduler tick (4 ms here)
//! notices. On a CPU shared with compilers every wake-up then costs about 4 ms: a plain
//! `pwrite` + `fdatasync` loop measured 4.0 ms p50 under load, 0.1 ms with a 0.1 ms slice.
//!
//! A slice is a latency request, not a share: the thread's weight (its nice value) is kept,
//! so it gets no more CPU than before, only sooner and in shorter turns. Kernels before
//! 6.12 take no custom slice for ordinary threads and refuse the request; it is then
//! skipped.

/// The slice detcd's threads ask for: the shortest the kernel grants. Their work between
/// two waits (a request, a Ready) is far shorter.
#[cfg(all(target_os = "linux", not(madsim)))]
const SLICE_NANOS: u64 = 100_000;

/// Asks the scheduler for a short time slice for the calling thread, keeping its policy
/// and nice value.
fn request_short_slice() {
    #[cfg(all(target_os = "linux", not(madsim)))]
    {
        let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::sched_attr>() as u32;
        // SAFETY: `attr` is a sched_attr of `size` bytes that the kernel fills in (tid 0:
        // the calling thread).
        let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
        if got != 0 || attr.sched_policy != libc::SCHED_OTHER as u32 {
            return;
        }
        attr.size = size;
        attr.sched_runtime = SLICE_NANOS;
        // SAFETY: as above; the kernel only reads `attr`. A refusal leaves the thread as
        // it was, which is only slower.
        let _ = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    }
}

/// A multi-threaded tokio runtime whose threads (and the calling one, which drives
/// `block_on`) ask for a short slice; glibc's malloc is tuned first, before the threads
/// that use it exist.
pub fn threaded_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    super::malloc::tune();
    request_short_slice();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // madsim's runtime has no threads of its own.
    #[cfg(not(madsim))]
    builder.on_thread_start(request_short_slice);
    builder.build()
}
