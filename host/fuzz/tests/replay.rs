//! Replays the saved fuzz corpus and the inputs that once failed, as
//! ordinary tests: every file of `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through its target's body (which
//! asserts the target's invariants), each within a time and an
//! allocation bound.
//!
//! The corpus is what `scripts/fuzz` found and `cargo fuzz cmin` kept; a
//! regression is a file that made a target fail once, named after what it
//! found, kept after the fix.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mailgate_fuzz::{Target, TARGETS};

/// No input of a few KiB may make a parser hold more than this at once.
const MAX_PEAK_BYTES: usize = 64 << 20;
/// Nor take longer than this (debug build; libFuzzer's own limit while
/// fuzzing is 10 s on an optimised build, see scripts/fuzz).
const MAX_TIME: Duration = Duration::from_secs(5);

/// Counts the bytes live on the heap and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged and only
// counts sizes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests run one at a time so that the peak is one input's.
static SERIAL: Mutex<()> = Mutex::new(());

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_file() && path.file_name().is_some_and(|n| n != ".gitkeep") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(name: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let target: &Target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .expect("a known target");
    let files = inputs(name);
    assert!(!files.is_empty(), "no saved corpus for {name}");
    for file in files {
        let data = std::fs::read(&file).expect("readable corpus file");
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(|| (target.run)(&data));
        let took = started.elapsed();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(Box::new(format!(
                "{name} failed on {}: {:?}",
                file.display(),
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or(panic.downcast_ref::<&str>().copied())
            )));
        }
        assert!(
            took <= MAX_TIME,
            "{name} took {took:?} on {}",
            file.display()
        );
        assert!(
            peak <= MAX_PEAK_BYTES,
            "{name} held {peak} bytes at once on {}",
            file.display()
        );
    }
}

#[test]
fn every_target_has_a_replay_test() {
    let tested = [
        "smtp_command",
        "smtp_data",
        "smtp_bdat",
        "imap_framer",
        "imap_command",
        "imap_compress",
        "mutf7",
        "pop3",
        "structure",
        "sieve_compile",
        "config",
    ];
    for t in TARGETS {
        assert!(tested.contains(&t.name), "{} is not replayed", t.name);
    }
}

#[test]
fn smtp_command() {
    replay("smtp_command");
}

#[test]
fn smtp_data() {
    replay("smtp_data");
}

#[test]
fn smtp_bdat() {
    replay("smtp_bdat");
}

#[test]
fn imap_framer() {
    replay("imap_framer");
}

#[test]
fn imap_command() {
    replay("imap_command");
}

#[test]
fn imap_compress() {
    replay("imap_compress");
}

#[test]
fn mutf7() {
    replay("mutf7");
}

#[test]
fn pop3() {
    replay("pop3");
}

#[test]
fn structure() {
    replay("structure");
}

#[test]
fn sieve_compile() {
    replay("sieve_compile");
}

#[cfg(feature = "config")]
#[test]
fn config() {
    replay("config");
}
