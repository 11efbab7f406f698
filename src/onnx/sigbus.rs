//! A mapped file that shrinks while nnlint reads it: an error for that file,
//! not a crash.
//!
//! Reading a page of a memory map past the end of a file that another
//! process truncated raises SIGBUS, which kills the process by default. An
//! exporter rewriting a model while a pre-commit hook lints it does exactly
//! that. Each large map is registered here; on a fault inside one, the
//! handler maps zero pages over the rest of it and marks it, and the read goes
//! on. The loader then reports the file as changed while it was read and
//! discards what was found in it. A fault anywhere else is handed to the
//! handler that was there before (by default, the signal kills the process).
//!
//! Small files are read into memory instead of being mapped (see
//! `external::map_file`), so this only guards files of 8 MiB and up.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Maps that can be watched at once; a map beyond these is not guarded.
const SLOTS: usize = 64;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};

static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];

/// The handler before ours, and the page size, set once when ours is installed.
static PREVIOUS: OnceLock<Previous> = OnceLock::new();

struct Previous {
    action: libc::sigaction,
    page: usize,
    installed: bool,
}

// SAFETY: `sigaction` is plain data (a handler address, flags and a mask).
unsafe impl Send for Previous {}
unsafe impl Sync for Previous {}

/// One registered map; unregistered when dropped, which must happen before
/// the map is unmapped.
#[derive(Debug)]
pub(super) struct Watch {
    slot: Option<usize>,
}

impl Watch {
    /// Whether a read of the map faulted: the file shrank after it was mapped.
    pub(super) fn faulted(&self) -> bool {
        self.slot
            .is_some_and(|i| TABLE[i].faulted.load(Ordering::Acquire))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            TABLE[i].len.store(0, Ordering::Release);
            TABLE[i].start.store(0, Ordering::Release);
        }
    }
}

/// Registers the map at `start`, `len` bytes long.
pub(super) fn watch(start: *const u8, len: usize) -> Watch {
    if install().is_none() || len == 0 {
        return Watch { slot: None };
    }
    for (i, s) in TABLE.iter().enumerate() {
        if s.start
            .compare_exchange(0, start as usize, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            s.faulted.store(false, Ordering::Release);
            s.len.store(len, Ordering::Release);
            return Watch { slot: Some(i) };
        }
    }
    Watch { slot: None }
}

fn install() -> Option<&'static Previous> {
    let previous = PREVIOUS.get_or_init(|| {
        // SAFETY: plain libc calls with valid, zero-initialized structures;
        // the handler below only touches atomics and calls mmap/sigaction.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            let page = usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)).unwrap_or(4096);
            // Not installed: nothing is guarded, and the previous action stands.
            let installed = libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0;
            Previous {
                action: previous,
                page,
                installed,
            }
        }
    });
    previous.installed.then_some(previous)
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let Some(previous) = PREVIOUS.get() else {
        return;
    };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &TABLE {
        let start = s.start.load(Ordering::Acquire);
        let len = s.len.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= start + len {
            continue;
        }
        let page = previous.page;
        let from = addr & !(page - 1);
        let end = (start + len).div_ceil(page) * page;
        // SAFETY: [from, end) lies inside a read-only map that nnlint owns and
        // that is still registered, so still mapped. Zero pages replace the
        // pages the file no longer has; munmap of the whole map later removes them.
        let mapped = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                end - from,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            s.faulted.store(true, Ordering::Release);
            return;
        }
    }
    // Not a map of ours: put the previous handler back; the read faults again
    // and gets what it would have got without nnlint's handler.
    // SAFETY: restoring the action saved at installation.
    unsafe {
        libc::sigaction(libc::SIGBUS, &previous.action, std::ptr::null_mut());
    }
}
