//! Hashing for everything keyed by packet data. Attackers choose those
//! keys (spoofed addresses, ports), so every map and sketch over them
//! hashes with seeds drawn at random once per process: nobody outside can
//! compute which keys collide in a map, or which addresses look alike to a
//! distinct-count sketch. foldhash (already the flow table's hasher) with
//! random seeds: both factors of each multiply are keyed, so no input
//! word can cancel the key out, which is what made wyhash with a constant
//! seed (and even with a random one) collapse crafted IPv6 addresses.

use std::{
    hash::{BuildHasher, Hasher},
    sync::LazyLock,
};

/// The process's random hash state; one instance, so equal keys hash
/// equally in every map and sketch of this process.
static PROCESS: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

/// `BuildHasher` for maps keyed by packet data.
#[derive(Clone, Copy, Default)]
pub struct KeyedState;

impl BuildHasher for KeyedState {
    type Hasher = KeyedHasher;

    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher::default()
    }
}

/// A hasher with `Default` (sketches such as `cardinality-estimator`
/// build their hasher that way), keyed by the process's random seeds.
#[derive(Clone)]
pub struct KeyedHasher(foldhash::quality::FoldHasher<'static>);

impl Default for KeyedHasher {
    fn default() -> KeyedHasher {
        KeyedHasher(PROCESS.build_hasher())
    }
}

impl Hasher for KeyedHasher {
    fn finish(&self) -> u64 {
        self.0.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    fn write_u8(&mut self, i: u8) {
        self.0.write_u8(i);
    }

    fn write_u16(&mut self, i: u16) {
        self.0.write_u16(i);
    }

    fn write_u32(&mut self, i: u32) {
        self.0.write_u32(i);
    }

    fn write_u64(&mut self, i: u64) {
        self.0.write_u64(i);
    }

    fn write_u128(&mut self, i: u128) {
        self.0.write_u128(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.0.write_usize(i);
    }
}

/// A random 64-bit value for this process (seeds of the detectors'
/// random choices, such as which entries an eviction compares).
pub fn process_random(salt: u64) -> u64 {
    PROCESS.hash_one(salt)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// The key is random per process: the same input hashes differently in
    /// another run of this test binary.
    #[test]
    fn the_key_differs_between_processes() {
        const VAR: &str = "NTA_KEYED_PRINT";
        let mine = KeyedState.hash_one(0x0123_4567_89ab_cdefu64);
        assert_eq!(mine, KeyedState.hash_one(0x0123_4567_89ab_cdefu64));
        if std::env::var_os(VAR).is_some() {
            println!("hash={mine}");
            return;
        }
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
        let out = Command::new(exe)
            .args([
                "--exact",
                "pipeline::keyed::tests::the_key_differs_between_processes",
                "--nocapture",
            ])
            .env(VAR, "1")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let theirs: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("hash="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no hash in {text}"));
        assert_ne!(mine, theirs, "two processes share a hash key");
    }
}
