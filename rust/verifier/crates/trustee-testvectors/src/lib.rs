//! Where the tests find the shared upstream vectors (`shared/vectors` beside the repository, or
//! the folder named by `TRUSTEE_VECTORS_DIR`), and what happens when they are absent.
//!
//! Rust has no skipped test: locally a test that needs an absent vector prints why and returns;
//! under `CI=true` it panics with the same message, so CI never passes on tests that did not run.
//! The message is the one the Python suite skips or fails with (`tests/support/shared.py`).

use std::path::{Path, PathBuf};

/// The one variable both suites read for the vectors folder.
pub const ENV: &str = "TRUSTEE_VECTORS_DIR";
const WHAT: &str = "shared test vectors";

/// What is missing, where it was looked for, and how to provide it.
pub fn missing_message(what: &str, path: &Path, env: &str) -> String {
    format!(
        "{what} not found at {}: set {env} to that folder, or place the `shared` folder beside \
         the repository (CONTRIBUTING.md, 'Test data')",
        path.display()
    )
}

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// The vectors folder the tests use, whether or not it exists.
pub fn vectors_path() -> PathBuf {
    match std::env::var_os(ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        // crates/trustee-testvectors -> crates -> verifier -> rust -> repo -> its parent
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../../shared/vectors"),
    }
}

/// `None` after printing `message` locally; a panic with it under CI.
fn absent<T>(message: String, ci: bool) -> Option<T> {
    if ci {
        panic!("{message} [CI=true: required]");
    }
    eprintln!("SKIP: {message}");
    None
}

/// `dir` when it is a folder, else the missing-vectors outcome for `ci`.
pub fn check_dir(dir: PathBuf, ci: bool) -> Option<PathBuf> {
    if dir.is_dir() {
        Some(dir)
    } else {
        absent(missing_message(WHAT, &dir, ENV), ci)
    }
}

/// The vectors folder; `None` (printed) locally when absent, a panic under CI.
pub fn vectors_dir() -> Option<PathBuf> {
    check_dir(vectors_path(), in_ci())
}

/// Bytes of `rel` under `root`, else the missing-vector outcome for `ci`.
pub fn read_under(root: &Path, rel: &str, ci: bool) -> Option<Vec<u8>> {
    let path = root.join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => absent(
            format!(
                "{} ({e})",
                missing_message(&format!("test vector {rel}"), &path, ENV)
            ),
            ci,
        ),
    }
}

/// Bytes of the vector at `rel` (a path under the vectors folder).
pub fn read(rel: &str) -> Option<Vec<u8>> {
    read_under(&vectors_dir()?, rel, in_ci())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOWHERE: &str = "/nonexistent/trustee-vectors";

    #[test]
    fn the_message_is_the_python_suites() {
        // The same text tests/unit/test_what_tests_need.py expects of tests/support/shared.py.
        assert_eq!(
            missing_message("shared vectors", Path::new("/nowhere/vectors"), "SOME_ENV"),
            "shared vectors not found at /nowhere/vectors: set SOME_ENV to that folder, or place \
             the `shared` folder beside the repository (CONTRIBUTING.md, 'Test data')"
        );
    }

    #[test]
    #[should_panic(
        expected = "shared test vectors not found at /nonexistent/trustee-vectors: \
                               set TRUSTEE_VECTORS_DIR to that folder, or place the `shared` \
                               folder beside the repository (CONTRIBUTING.md, 'Test data') \
                               [CI=true: required]"
    )]
    fn an_absent_folder_panics_under_ci() {
        check_dir(PathBuf::from(NOWHERE), true);
    }

    #[test]
    fn an_absent_folder_is_none_locally() {
        assert_eq!(check_dir(PathBuf::from(NOWHERE), false), None);
    }

    #[test]
    #[should_panic(
        expected = "test vector a/b.bin not found at /nonexistent/trustee-vectors/a/b.bin"
    )]
    fn an_absent_file_panics_under_ci() {
        read_under(Path::new(NOWHERE), "a/b.bin", true);
    }

    #[test]
    fn a_present_folder_and_file_are_read() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(check_dir(dir.clone(), true), Some(dir.clone()));
        assert!(read_under(&dir, "Cargo.toml", true).is_some());
    }
}

/// What the time-boxed fuzz tests share: a deterministic PRNG and their time budget.
pub mod fuzz {
    use std::time::Duration;

    /// The budget the environment variable `var` sets in whole seconds (`default` when unset
    /// or unreadable), at most `max`.
    pub fn budget(var: &str, default: u64, max: u64) -> Duration {
        let secs = std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(default)
            .min(max);
        Duration::from_secs(secs)
    }

    /// xorshift64*: small, deterministic, good enough to drive mutations; a fixed seed makes
    /// every failure reproducible.
    pub struct Rng(pub u64);

    impl Rng {
        #[allow(clippy::should_implement_trait)]
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform enough in `0..n`; 0 when `n` is 0.
        pub fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }

        pub fn byte(&mut self) -> u8 {
            self.next() as u8
        }

        pub fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.byte()).collect()
        }
    }
}
