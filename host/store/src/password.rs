//! Password hashing: Argon2id with a random salt, stored as a PHC string
//! (`$argon2id$v=19$m=...`), so that parameters can be raised later while
//! old hashes still verify.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Hashes a password with Argon2id and the crate's default parameters
/// (19 MiB, 2 passes, 1 lane: OWASP's recommended minimum).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_else(|e| unreachable!("argon2 with default parameters cannot fail: {e}"))
}

/// Verifies a password against a PHC string. A malformed hash never
/// verifies.
///
/// Argon2id with the default parameters works in 19 MiB of memory. Left to
/// the allocator, every verification on another blocking thread grows that
/// thread's heap by 19 MiB that glibc keeps (measured: 300 logins, 2.5 GB
/// of resident memory that never came back). So Argon2 hashes are computed
/// in working memory from a fixed pool of [`max_parallel_verifications`]
/// buffers,
/// so that the memory spent on verification is bounded whatever the login
/// rate; other PHC algorithms fall back to the library's own verification.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    verify_argon2_pooled(password.as_bytes(), &hash).unwrap_or_else(|| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// How many Argon2 verifications can usefully run at once: one per CPU
/// core (Argon2 is CPU-bound; more at once would not finish sooner), at
/// most [`MAX_PARALLEL_VERIFICATIONS`]. At most this many Argon2
/// working-memory buffers (19 MiB each with the default parameters) ever
/// exist; a verification that finds them all in use waits for one. The
/// authenticator queues logins to the same number.
pub fn max_parallel_verifications() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, MAX_PARALLEL_VERIFICATIONS)
    })
}

/// The most verifications at once, whatever the number of cores (bounds
/// the memory: 16 x 19 MiB).
pub const MAX_PARALLEL_VERIFICATIONS: usize = 16;

struct MemoryPool {
    free: Vec<Vec<argon2::Block>>,
    created: usize,
}

static MEMORY_POOL: std::sync::Mutex<MemoryPool> = std::sync::Mutex::new(MemoryPool {
    free: Vec::new(),
    created: 0,
});
static MEMORY_RETURNED: std::sync::Condvar = std::sync::Condvar::new();

/// Takes a buffer of at least `blocks` blocks, waiting if every buffer is
/// in use.
fn take_memory(blocks: usize) -> Vec<argon2::Block> {
    let mut pool = MEMORY_POOL.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(mut m) = pool.free.pop() {
            if m.len() < blocks {
                m.resize(blocks, argon2::Block::default());
            }
            return m;
        }
        if pool.created < max_parallel_verifications() {
            pool.created += 1;
            return vec![argon2::Block::default(); blocks];
        }
        pool = MEMORY_RETURNED
            .wait(pool)
            .unwrap_or_else(|p| p.into_inner());
    }
}

fn give_back_memory(memory: Vec<argon2::Block>) {
    MEMORY_POOL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .free
        .push(memory);
    MEMORY_RETURNED.notify_one();
}

/// Verifies an Argon2 hash with pooled working memory; `None` if the hash
/// is not one this can check (then the caller uses the plain path).
fn verify_argon2_pooled(password: &[u8], hash: &PasswordHash<'_>) -> Option<bool> {
    let algorithm = argon2::Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => argon2::Version::try_from(v).ok()?,
        None => argon2::Version::default(),
    };
    let params = argon2::Params::try_from(hash).ok()?;
    let expected = hash.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = hash.salt?.decode_b64(&mut salt_buf).ok()?;
    let blocks = params.block_count();
    let mut memory = take_memory(blocks);
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    let computed =
        argon.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks]);
    give_back_memory(memory);
    computed.ok()?;
    // `Output`'s equality is constant-time.
    Some(argon2::password_hash::Output::new(&out).ok()? == expected)
}

/// A valid hash of a random password, to verify against when an account
/// does not exist, so that a wrong address costs as long as a wrong
/// password and the reply time does not tell which accounts exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("mailgate-dummy-password-never-matches"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("secret");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("secret", &h));
        assert!(!verify_password("Secret", &h));
        assert!(!verify_password("secret", "not a hash"));
    }

    #[test]
    fn pooled_verification_agrees_with_the_library() {
        // Non-default parameters and a hash made by the library itself.
        let params = argon2::Params::new(8 * 1024, 3, 1, None).unwrap();
        let lib = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let phc = lib.hash_password(b"pw", &salt).unwrap().to_string();
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(verify_argon2_pooled(b"pw", &parsed), Some(true));
        assert_eq!(verify_argon2_pooled(b"pW", &parsed), Some(false));
        // Reusing a larger pooled buffer for a smaller hash still agrees.
        let big = hash_password("other");
        assert!(verify_password("other", &big));
        assert_eq!(verify_argon2_pooled(b"pw", &parsed), Some(true));
        // Argon2i and Argon2d hashes verify too.
        for alg in [argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2d] {
            let a = Argon2::new(
                alg,
                argon2::Version::V0x13,
                argon2::Params::new(1024, 1, 1, None).unwrap(),
            );
            let phc = a.hash_password(b"x", &salt).unwrap().to_string();
            assert!(verify_password("x", &phc), "{phc}");
            assert!(!verify_password("y", &phc), "{phc}");
        }
    }
}
