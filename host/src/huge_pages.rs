//! Transparent huge pages off for the daemon (`prctl(PR_SET_THP_DISABLE)`).
//!
//! mimalloc asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), and
//! purges the parts it has not used for a while (`MADV_DONTNEED`). The next
//! touch of a purged part then faults in a whole 2 MiB page, which the kernel
//! zeroes first. The AMQP source allocates some 100 KB per message (lapin's
//! body, serde's unescaped `oslo.message`, the ABI bytes), so that happens all
//! the time: in a profile of an AMQP drain, `clear_page_erms` under
//! `do_huge_pmd_anonymous_page` took 16 % of the daemon's CPU. With huge pages
//! off, the daemon took 4.2 and 4.4 µs of CPU per sample against 4.8 and 6.5
//! with them on (`cargo bench -p collector-e2e --bench amqp`, two interleaved
//! pairs), and held 40 MiB instead of 55 at a steady 100,000 UDP samples/s
//! (`scripts/bench-rss.sh`).
//!
//! The flag is process-wide and checked at each fault, so setting it at start
//! covers mimalloc's arenas, wasmtime's linear memories and everything else.
//! An operator who wants huge pages anyway sets mimalloc's own switch,
//! `MIMALLOC_ALLOW_THP=1`, and this module leaves the process as it is.

/// Turns transparent huge pages off for this process, unless the environment
/// sets `MIMALLOC_ALLOW_THP`. Returns what it did, for the startup log.
pub fn disable_for_this_process() -> Outcome {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return Outcome::LeftToEnvironment;
    }
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no
    // memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc == 0 {
        Outcome::Disabled
    } else {
        Outcome::Failed(std::io::Error::last_os_error())
    }
}

/// What [`disable_for_this_process`] did.
#[derive(Debug)]
pub enum Outcome {
    Disabled,
    /// `MIMALLOC_ALLOW_THP` is set: mimalloc decides.
    LeftToEnvironment,
    /// The kernel refused (before Linux 3.15, or a seccomp filter).
    Failed(std::io::Error),
}
