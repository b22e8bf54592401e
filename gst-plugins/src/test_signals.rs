//! Deterministic test signals, shared by the unit tests (`#[cfg(test)]` module of the crate)
//! and the element tests (`tests/common`, which includes this file by path). Not built into
//! the plugin.

/// Speech-like test signal at `rate` Hz, `len` samples: noise (LCG from `seed`) through a
/// resonant filter with a 4 Hz syllable envelope, peak about 0.05 full scale.
pub fn speech(rate: usize, len: usize, seed: u32) -> Vec<f32> {
    let mut seed = seed;
    let (mut y1, mut y2) = (0.0f32, 0.0f32);
    (0..len)
        .map(|i| {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let w = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let y = w + 1.6 * y1 - 0.8 * y2;
            y2 = y1;
            y1 = y;
            let t = i as f32 / rate as f32;
            let env = (0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * t).sin()).powi(2);
            0.05 * y * env
        })
        .collect()
}

/// White noise, `level` RMS, `len` samples, deterministic (LCG from `seed`).
pub fn white_noise(len: usize, level: f32, seed: u32) -> Vec<f32> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            ((x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0) * level * 3f32.sqrt()
        })
        .collect()
}
