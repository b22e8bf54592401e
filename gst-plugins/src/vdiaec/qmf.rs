//! Two-band polyphase IIR QMF bank: splits a signal at `fs` into a low band (0..fs/4) and a
//! high band (fs/4..fs/2, spectrally inverted), each at `fs / 2`, and merges them back. This is
//! what AEC3 needs at 32 kHz (two 16 kHz bands, as WebRTC's APM splits 32 kHz capture); sonora
//! keeps its own splitting filter private.
//!
//! Textbook design (Valenzuela & Constantinides, "Digital signal processing schemes for
//! efficient interpolation and decimation", IEE Proc. 1983; the same closed-form elliptic design
//! as Laurent de Soras' HIIR): the half-band low-pass is `H0(z) = (A0(z²) + z⁻¹·A1(z²)) / 2`,
//! the high-pass `H1(z) = (A0(z²) − z⁻¹·A1(z²)) / 2`, where `A0`, `A1` are cascades of
//! first-order all-pass sections `(a + z⁻²) / (1 + a·z⁻²)`. Synthesis runs the opposite
//! all-pass on each polyphase branch, so analysis + synthesis = `A0(z²)·A1(z²)`: an all-pass
//! (magnitude-perfect reconstruction, aliasing cancelled; only a small, smooth phase shift
//! remains: the group delay of `A0(z²)·A1(z²)`, a few samples (0.2 ms) at 32 kHz).

use std::f64::consts::PI;

/// All-pass coefficients of the design (alternating between the two branches).
const NUM_COEFS: usize = 8;
/// Transition band, as a fraction of `fs` (0.04 at 32 kHz: 7.36–8.64 kHz).
const TRANSITION: f64 = 0.04;

/// Coefficients of the elliptic half-band filter with `n` all-pass coefficients and
/// transition band `tb` (fraction of the sample rate, 0 < tb < 0.25), ascending: even indices
/// belong to branch `A0`, odd to `A1`.
fn design(n: usize, tb: f64) -> Vec<f64> {
    let k = ((1.0 - 2.0 * tb) * PI / 4.0).tan().powi(2);
    let kksqrt = (1.0 - k * k).powf(0.25);
    let e = 0.5 * (1.0 - kksqrt) / (1.0 + kksqrt);
    let e4 = e.powi(4);
    let q = e * (1.0 + e4 * (2.0 + e4 * (15.0 + 150.0 * e4)));
    let order = (2 * n + 1) as f64;
    (1..=n)
        .map(|c| {
            let c = c as f64;
            // Jacobi theta-function series of the elliptic design; they converge in a few terms.
            let mut num = 0.0;
            let mut sign = 1.0;
            for i in 0..16 {
                let i = i as f64;
                num += sign * q.powf(i * (i + 1.0)) * ((2.0 * i + 1.0) * c * PI / order).sin();
                sign = -sign;
            }
            let mut den = 0.0;
            let mut sign = -1.0;
            for i in 1..16 {
                let i = i as f64;
                den += sign * q.powf(i * i) * (2.0 * i * c * PI / order).cos();
                sign = -sign;
            }
            let ww = num * q.powf(0.25) / (den + 0.5);
            let wwsq = ww * ww;
            let x = ((1.0 - wwsq * k) * (1.0 - wwsq / k)).sqrt() / (1.0 + wwsq);
            (1.0 - x) / (1.0 + x)
        })
        .collect()
}

/// A cascade of first-order all-pass sections `y[n] = a·(x[n] − y[n−1]) + x[n−1]` (one per
/// coefficient) running at the decimated rate.
#[derive(Clone)]
struct AllPass {
    coefs: Vec<f32>,
    /// Per section: previous input and previous output.
    state: Vec<(f32, f32)>,
}

impl AllPass {
    fn new(coefs: Vec<f32>) -> Self {
        let state = vec![(0.0, 0.0); coefs.len()];
        Self { coefs, state }
    }

    fn process(&mut self, mut x: f32) -> f32 {
        for (a, (xp, yp)) in self.coefs.iter().zip(self.state.iter_mut()) {
            let y = a * (x - *yp) + *xp;
            *xp = x;
            *yp = y;
            x = y;
        }
        x
    }
}

/// The two branches' all-pass cascades `(A0, A1)`.
fn branches() -> (AllPass, AllPass) {
    let c = design(NUM_COEFS, TRANSITION);
    let a0 = c.iter().step_by(2).map(|&v| v as f32).collect();
    let a1 = c.iter().skip(1).step_by(2).map(|&v| v as f32).collect();
    (AllPass::new(a0), AllPass::new(a1))
}

/// One channel's analysis (split) and synthesis (merge) state.
pub(super) struct TwoBandQmf {
    /// Analysis: `A0` on the newer sample of each pair, `A1` on the older.
    ana0: AllPass,
    ana1: AllPass,
    /// Synthesis: the opposite all-pass on each branch.
    syn0: AllPass,
    syn1: AllPass,
}

impl TwoBandQmf {
    pub(super) fn new() -> Self {
        let (a0, a1) = branches();
        Self { ana0: a0.clone(), ana1: a1.clone(), syn0: a1, syn1: a0 }
    }

    /// Splits `input` (`2·m` samples) into `low` and `high` (`m` samples each; `high` is
    /// spectrally inverted). Same scale as the input (unity passband gain).
    pub(super) fn analysis(&mut self, input: &[f32], low: &mut [f32], high: &mut [f32]) {
        debug_assert_eq!(input.len(), 2 * low.len());
        debug_assert_eq!(low.len(), high.len());
        for ((pair, l), h) in input.chunks_exact(2).zip(low.iter_mut()).zip(high.iter_mut()) {
            let p0 = self.ana0.process(pair[1]);
            let p1 = self.ana1.process(pair[0]);
            *l = 0.5 * (p0 + p1);
            *h = 0.5 * (p0 - p1);
        }
    }

    /// Merges `low` and `high` (`m` samples each, as `analysis` made them) into `output`
    /// (`2·m` samples).
    pub(super) fn synthesis(&mut self, low: &[f32], high: &[f32], output: &mut [f32]) {
        debug_assert_eq!(output.len(), 2 * low.len());
        for ((pair, l), h) in output.chunks_exact_mut(2).zip(low).zip(high) {
            // A1·A0 on the newer sample, A0·A1 on the older one: both see A0(z²)·A1(z²).
            pair[1] = self.syn0.process(l + h);
            pair[0] = self.syn1.process(l - h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(f: f64, fs: f64, n: usize) -> Vec<f32> {
        (0..n).map(|i| (2.0 * PI * f * i as f64 / fs).sin() as f32).collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Steady-state RMS of (low, high, reconstruction) for a unit sine at `f` Hz, fs 32 kHz.
    fn run(f: f64) -> (f64, f64, f64) {
        let fs = 32000.0;
        let x = sine(f, fs, 32000);
        let mut q = TwoBandQmf::new();
        let (mut lo, mut hi, mut y) = (vec![0.0; 160], vec![0.0; 160], vec![0.0; 320]);
        let (mut los, mut his, mut ys) = (Vec::new(), Vec::new(), Vec::new());
        for frame in x.chunks_exact(320) {
            q.analysis(frame, &mut lo, &mut hi);
            q.synthesis(&lo, &hi, &mut y);
            los.extend_from_slice(&lo);
            his.extend_from_slice(&hi);
            ys.extend_from_slice(&y);
        }
        // skip the first 0.25 s (filter settling)
        (rms(&los[4000..]), rms(&his[4000..]), rms(&ys[8000..]))
    }

    #[test]
    fn coefficients_are_stable_all_pass() {
        let c = design(NUM_COEFS, TRANSITION);
        assert_eq!(c.len(), NUM_COEFS);
        assert!(c.iter().all(|&a| a > 0.0 && a < 1.0), "{c:?}");
        assert!(c.windows(2).all(|w| w[0] < w[1]), "ascending: {c:?}");
    }

    #[test]
    fn splits_bands_with_60_db_stopband() {
        let unit = 1.0 / 2f64.sqrt();
        for f in [200.0, 1000.0, 3000.0, 6000.0, 7000.0] {
            let (lo, hi, _) = run(f);
            assert!((lo / unit - 1.0).abs() < 0.01, "{f} Hz: low band gain {}", lo / unit);
            assert!(20.0 * (hi / unit).log10() < -60.0, "{f} Hz leaks into the high band: {hi}");
        }
        for f in [9000.0, 10000.0, 13000.0, 15500.0] {
            let (lo, hi, _) = run(f);
            assert!((hi / unit - 1.0).abs() < 0.01, "{f} Hz: high band gain {}", hi / unit);
            assert!(20.0 * (lo / unit).log10() < -60.0, "{f} Hz leaks into the low band: {lo}");
        }
    }

    #[test]
    fn reconstructs_near_perfectly() {
        // Magnitude: any frequency, including the crossover, comes back at its level.
        for f in [100.0, 1000.0, 5000.0, 7800.0, 8000.0, 8200.0, 12000.0, 15000.0] {
            let (_, _, y) = run(f);
            let db = 20.0 * (y * 2f64.sqrt()).log10();
            assert!(db.abs() < 0.01, "{f} Hz: reconstruction off by {db} dB");
        }
        // Waveform: the bank as a whole is exactly the all-pass A0(z²)·A1(z²) run at the full
        // rate (aliasing cancels): compare with that filter, sample by sample, on white noise.
        let mut seed = 12345u32;
        let noise: Vec<f32> = (0..32000)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let mut q = TwoBandQmf::new();
        let (mut lo, mut hi, mut y) = (vec![0.0; 160], vec![0.0; 160], vec![0.0; 320]);
        let mut out = Vec::new();
        for frame in noise.chunks_exact(320) {
            q.analysis(frame, &mut lo, &mut hi);
            q.synthesis(&lo, &hi, &mut y);
            out.extend_from_slice(&y);
        }
        let coefs = design(NUM_COEFS, TRANSITION);
        let mut expect: Vec<f64> = noise.iter().map(|&v| v as f64).collect();
        for a in coefs {
            let x = expect.clone();
            for n in 0..x.len() {
                let (x2, y2) = if n >= 2 { (x[n - 2], expect[n - 2]) } else { (0.0, 0.0) };
                expect[n] = a * (x[n] - y2) + x2;
            }
        }
        let e: f64 = out.iter().zip(&expect).map(|(&o, &x)| (o as f64 - x).powi(2)).sum();
        let s: f64 = expect.iter().map(|x| x * x).sum();
        let snr = 10.0 * (s / e).log10();
        assert!(snr > 100.0, "analysis + synthesis differ from the all-pass: SNR {snr:.1} dB");
    }
}
