//! Test signals shared by the element tests.

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
