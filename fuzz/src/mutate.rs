//! The mutation loop's moves. Length fields in Tally's codec are big-endian u32s, so besides
//! blind edits a mutant may have four bytes replaced by a length that lies: just past the
//! input's end, the codec's limit, or the largest u32.

/// splitmix64: small, fast and fully determined by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

pub struct Mutator {
    pub rng: Rng,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            rng: Rng::new(seed),
        }
    }

    /// A mutant of one of `pool`'s inputs (`pool` must not be empty), one to four moves deep.
    pub fn mutate(&mut self, pool: &[Vec<u8>]) -> Vec<u8> {
        let mut b = pool[self.rng.below(pool.len() as u64) as usize].clone();
        let moves = 1 + self.rng.below(4);
        for _ in 0..moves {
            self.one(&mut b, pool);
        }
        b
    }

    fn at(&mut self, b: &[u8]) -> usize {
        self.rng.below(b.len() as u64) as usize
    }

    fn one(&mut self, b: &mut Vec<u8>, pool: &[Vec<u8>]) {
        match self.rng.below(9) {
            0 if !b.is_empty() => {
                let i = self.at(b);
                b[i] ^= 1 << self.rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = self.at(b);
                b[i] = [0, 1, 2, 0x7f, 0x80, 0xff][self.rng.below(6) as usize];
            }
            2 => {
                let n = self.rng.below(b.len() as u64 + 1) as usize;
                b.truncate(n);
            }
            3 if !b.is_empty() => {
                let i = self.at(b);
                let n = 1 + self.rng.below(8.min(b.len() - i) as u64) as usize;
                b.drain(i..i + n);
            }
            4 => {
                let i = self.rng.below(b.len() as u64 + 1) as usize;
                let n = 1 + self.rng.below(8) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.next_u64() as u8).collect();
                b.splice(i..i, bytes);
            }
            5 => {
                // Splice: a piece of another input put in at a random place.
                let other = &pool[self.rng.below(pool.len() as u64) as usize];
                if other.is_empty() {
                    return;
                }
                let from = self.rng.below(other.len() as u64) as usize;
                let to = from + 1 + self.rng.below((other.len() - from) as u64) as usize;
                let i = self.rng.below(b.len() as u64 + 1) as usize;
                b.splice(i..i, other[from..to].iter().copied());
            }
            6 if b.len() >= 4 => {
                // A length field that lies.
                let i = self.rng.below(b.len() as u64 - 3) as usize;
                let rest = (b.len() - i - 4) as u32;
                let v = [
                    rest.wrapping_add(1),
                    rest.wrapping_add(1 + self.rng.below(64) as u32),
                    64 * 1024 * 1024,
                    64 * 1024 * 1024 + 1,
                    u32::MAX,
                    0,
                ][self.rng.below(6) as usize];
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            7 if b.len() >= 4 => {
                // A length field nudged by one either way.
                let i = self.rng.below(b.len() as u64 - 3) as usize;
                let v = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                let v = if self.rng.below(2) == 0 {
                    v.wrapping_add(1)
                } else {
                    v.wrapping_sub(1)
                };
                b[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ if b.len() >= 2 => {
                // A run of bytes repeated (sequences that claim more elements).
                let i = self.at(b);
                let n = 1 + self.rng.below(16.min(b.len() - i) as u64) as usize;
                let piece = b[i..i + n].to_vec();
                b.splice(i..i, piece);
            }
            _ => b.push(self.rng.next_u64() as u8),
        }
    }
}
