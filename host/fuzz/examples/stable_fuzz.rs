//! A mutation fuzzer on the stable toolchain, for targets that cargo-fuzz
//! does not build (the configuration loader links wasmtime, too heavy to
//! build a second time with coverage instrumentation) or where nightly
//! flags are not available. No coverage feedback: it mutates the saved
//! corpus (byte flips, insertions, deletions, splices, and words from
//! the target's dictionary) and keeps what it generates as further seeds
//! at random.
//!
//! ```text
//! cargo run --release -p mailgate-fuzz --example stable_fuzz -- TARGET SECONDS
//! ```
//!
//! An input that fails is written to `fuzz/artifacts/TARGET/` and the
//! program exits with status 1; one slower than 1 s is reported the same
//! way (a quadratic blow-up).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailgate_fuzz::TARGETS;

const SLOW: Duration = Duration::from_secs(1);
const MAX_LEN: usize = 8192;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn load(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if let Ok(data) = std::fs::read(e.path()) {
                out.push(data);
            }
        }
    }
    out
}

/// Dictionary words: the `"..."` entries of `fuzz/dict/TARGET.dict`
/// (libFuzzer's format, without escapes other than `\"`, `\\` and `\xNN`).
fn dictionary(target: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(fuzz_dir().join("dict").join(format!("{target}.dict")))
        .unwrap_or_default();
    let mut words = Vec::new();
    for line in text.lines() {
        let Some(start) = line.find('"') else {
            continue;
        };
        let Some(end) = line.rfind('"') else { continue };
        if end <= start {
            continue;
        }
        let raw = &line.as_bytes()[start + 1..end];
        let mut word = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'\\' && i + 1 < raw.len() {
                if raw[i + 1] == b'x' && i + 3 < raw.len() {
                    let hex = std::str::from_utf8(&raw[i + 2..i + 4]).unwrap_or("00");
                    word.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    i += 4;
                } else {
                    word.push(raw[i + 1]);
                    i += 2;
                }
            } else {
                word.push(raw[i]);
                i += 1;
            }
        }
        words.push(word);
    }
    words
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let pos = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 => data.insert(pos, rng.next() as u8),
            2 if !data.is_empty() => {
                let end = (pos + rng.below(16)).min(data.len());
                data.drain(pos.min(end)..end);
            }
            3 | 4 if !dict.is_empty() => {
                let word = &dict[rng.below(dict.len())];
                data.splice(pos..pos, word.iter().copied());
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(64)).min(other.len());
                data.splice(pos..pos, other[from..to].iter().copied());
            }
            _ if !data.is_empty() => {
                // Repeat a slice: long runs find the quadratic cases.
                let from = rng.below(data.len());
                let to = (from + 1 + rng.below(16)).min(data.len());
                let chunk = data[from..to].to_vec();
                for _ in 0..rng.below(64) {
                    data.splice(pos..pos, chunk.iter().copied());
                }
            }
            _ => {}
        }
    }
    data.truncate(MAX_LEN);
    data
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(seconds)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: stable_fuzz TARGET SECONDS");
        std::process::exit(2);
    };
    let seconds: u64 = seconds.parse().expect("SECONDS is a number");
    let target = TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("unknown target {name}"));
    let mut seeds = load(&fuzz_dir().join("corpus").join(name));
    seeds.extend(load(&fuzz_dir().join("regressions").join(name)));
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    let dict = dictionary(name);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs: u64 = 0;
    std::panic::set_hook(Box::new(|_| {}));
    while Instant::now() < deadline {
        let data = mutate(&mut rng, &seeds, &dict);
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(|| (target.run)(&data));
        let took = started.elapsed();
        runs += 1;
        let failure = match outcome {
            Err(panic) => Some(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or(panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
            Ok(()) if took > SLOW => Some(format!("slow: {took:?}")),
            Ok(()) => None,
        };
        if let Some(why) = failure {
            let dir = fuzz_dir().join("artifacts").join(name);
            std::fs::create_dir_all(&dir).expect("artifacts directory");
            let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            let path = dir.join(format!("crash-{hash:016x}"));
            std::fs::write(&path, &data).expect("write the failing input");
            eprintln!("{name}: {why}\n  input saved as {}", path.display());
            std::process::exit(1);
        }
        if seeds.len() < 10_000 && rng.below(16) == 0 {
            seeds.push(data);
        }
    }
    println!("{name}: {runs} inputs in {seconds} s, no failure");
}
