//! Seeded randomness derived from (seed, purpose, epoch, item), never from thread order,
//! so every draw is the same whatever the number of workers.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is for; keeps the streams of one seed independent.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Balance = 1,
    Shuffle = 2,
    Rotation = 3,
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator for one (seed, stream, a, b) combination.
pub(crate) fn rng(seed: u64, stream: Stream, a: u64, b: u64) -> ChaCha8Rng {
    let mut h = splitmix64(seed);
    for v in [stream as u64, a, b] {
        h = splitmix64(h ^ v);
    }
    ChaCha8Rng::seed_from_u64(h)
}
