//! Choosing a version for one request: weighted shares (by a hash of the sticky key when there is one, so a
//! caller stays on its version), Thompson sampling for bandits, and the mirrored share for a shadow.

use rand::{Rng, RngCore};

/// A uniform number in [0, 1) from a key: FNV-1a over the salt and key, then a SplitMix64 finaliser so
/// similar keys land far apart. Stable across processes and versions (unlike the standard hasher).
pub fn key_point(salt: &str, key: &str) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in salt.bytes().chain([0xff]).chain(key.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm whose cumulative share covers `point` (shares need not sum exactly to 1).
pub fn pick_by_share(shares: &[f64], point: f64) -> usize {
    let total: f64 = shares.iter().sum();
    let mut cumulative = 0.0;
    for (index, share) in shares.iter().enumerate() {
        cumulative += share / total;
        if point < cumulative {
            return index;
        }
    }
    shares.iter().rposition(|s| *s > 0.0).unwrap_or(0)
}

fn standard_normal(rng: &mut dyn RngCore) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// A Gamma(shape, 1) draw (Marsaglia and Tsang; shapes below 1 boosted by u^(1/shape)).
fn gamma(rng: &mut dyn RngCore, shape: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(alpha, beta) draw.
pub fn beta(rng: &mut dyn RngCore, alpha: f64, beta: f64) -> f64 {
    let x = gamma(rng, alpha);
    let y = gamma(rng, beta);
    if x + y == 0.0 { 0.5 } else { x / (x + y) }
}

/// Thompson sampling: the arm whose posterior draw is highest.
pub fn thompson(rng: &mut dyn RngCore, posteriors: &[(f64, f64)]) -> usize {
    let mut best = (0, f64::MIN);
    for (index, (a, b)) in posteriors.iter().enumerate() {
        let draw = beta(rng, *a, *b);
        if draw > best.1 {
            best = (index, draw);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn key_points_are_stable_and_spread() {
        assert_eq!(key_point("d", "user-1"), key_point("d", "user-1"));
        assert_ne!(key_point("d", "user-1"), key_point("e", "user-1"));
        let below = (0..10_000)
            .filter(|i| key_point("d", &format!("user-{i}")) < 0.25)
            .count();
        assert!((2_300..2_700).contains(&below), "{below}");
    }

    #[test]
    fn shares_cover_the_unit_interval() {
        assert_eq!(pick_by_share(&[0.9, 0.1], 0.0), 0);
        assert_eq!(pick_by_share(&[0.9, 0.1], 0.89), 0);
        assert_eq!(pick_by_share(&[0.9, 0.1], 0.95), 1);
        assert_eq!(pick_by_share(&[0.0, 1.0], 0.0), 1);
        assert_eq!(pick_by_share(&[1.0, 0.0], 0.999_999_999), 0);
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_thompson_prefers_the_better_arm() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 20_000;
        let mean: f64 = (0..n).map(|_| beta(&mut rng, 2.0, 6.0)).sum::<f64>() / f64::from(n);
        assert!((mean - 0.25).abs() < 0.01, "{mean}");
        let small: f64 = (0..n).map(|_| beta(&mut rng, 0.5, 0.5)).sum::<f64>() / f64::from(n);
        assert!((small - 0.5).abs() < 0.02, "{small}");
        let wins = (0..1_000)
            .filter(|_| thompson(&mut rng, &[(10.0, 90.0), (60.0, 40.0)]) == 1)
            .count();
        assert!(wins > 990, "{wins}");
    }
}
