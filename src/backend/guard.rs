//! redb's panics that a damaged file reaches, caught. redb trusts a file it shut down
//! cleanly and reads its pages unchecked; a damaged one can reach its `unreachable!`,
//! `assert!` and slice indexing (found by `ci/fuzz` and `tests/backend_damage.rs`). Outside
//! bytes must not panic the member, so the calls that first read a file run here: a panic
//! becomes [`BackendError::Damaged`] naming the file, and its message stays off stderr (an
//! operator reads the error, not a trace).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use super::{BackendError, Result};
use crate::runtime::panic_message;

thread_local! {
    /// Whether a panic on this thread is caught by [`guard`] and must not be printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that stays silent for [`guard`]'s panics and
/// hands every other panic to the hook it replaced.
fn quiet_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // A thread being torn down has no QUIET left: such a panic is not ours.
            if !QUIET.try_with(Cell::get).unwrap_or(false) {
                next(info);
            }
        }));
    });
}

/// Runs `f`, which reads the database `file` first: a panic inside it, or any redb error
/// but a failing disk (a corrupted page, a file cut short, a magic number or format version
/// no redb wrote), is [`BackendError::Damaged`].
pub(super) fn guard<T>(file: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    quiet_hook();
    let was_quiet = QUIET.replace(true);
    let caught = catch_unwind(AssertUnwindSafe(f));
    QUIET.set(was_quiet);
    let damaged = |what: String| BackendError::Damaged {
        file: file.to_path_buf(),
        what,
    };
    match caught {
        Ok(Err(BackendError::Redb(e))) if !from_the_disk(&e) => Err(damaged(e.to_string())),
        Ok(result) => result,
        Err(panic) => Err(damaged(format!(
            "redb panicked reading it: {}",
            panic_message(&*panic)
        ))),
    }
}

/// Whether `e` is the disk failing (an I/O error the storage seam returned, named there),
/// rather than redb finding the file's bytes wrong.
fn from_the_disk(e: &redb::Error) -> bool {
    match e {
        // redb reports a file that is not a database (its magic number) as invalid data.
        redb::Error::Io(e) => e.kind() != std::io::ErrorKind::InvalidData,
        redb::Error::PreviousIo => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_naming_the_file() {
        let file = Path::new("/d/db");
        let e = guard(file, || -> Result<()> { panic!("index out of bounds") }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend /d/db: redb panicked reading it: index out of bounds"
        );
        let e = guard(file, || -> Result<()> {
            Err(BackendError::Redb(redb::Error::Corrupted(
                "bad page".into(),
            )))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "backend /d/db: DB corrupted: bad page");
        assert_eq!(guard(file, || Ok(7)).unwrap(), 7);
        assert!(!QUIET.get(), "quiet only inside a guard");
    }
}
