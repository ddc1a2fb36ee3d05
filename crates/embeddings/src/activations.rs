//! The encoder's elementwise work: GELU over the feed-forward layer and softmax over attention scores.
//!
//! Both need `exp`, which the C library computes one value at a time. Here `exp` is written in plain
//! arithmetic (a power of two from the exponent bits times a polynomial of the remainder), and the loops run
//! inside `pulp`'s dispatch, so the compiler turns them into AVX-512 or AVX2 code like a hand-written kernel.

static ARCH: std::sync::LazyLock<pulp::Arch> = std::sync::LazyLock::new(pulp::Arch::new);

/// `e^x` within 2 units in the last place for `x` in [-87, 88]; below that range 0, above it `e^88`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding and taking away 1.5 · 2^23 rounds to the nearest whole number without a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let polynomial = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_452 + r * 0.001_388_628_5)))));
    // 2^n from its exponent bits: n + 127 lands in the low mantissa bits of n + 127 + 2^23.
    let scale = f32::from_bits(((n + (127.0 + 8_388_608.0)).to_bits() & 0xff) << 23);
    polynomial * scale
}

/// GELU as BERT defines it, with the error function: `x · Φ(x)`. Φ's tail comes from Abramowitz and
/// Stegun's 7.1.26 (absolute error below 1.5e-7), in the form that never subtracts nearly equal numbers.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let polynomial = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    // erfc(z): twice the upper tail of the normal distribution at |x|.
    let tail = polynomial * exp(-z * z);
    if x >= 0.0 {
        0.5 * x * (2.0 - tail)
    } else {
        0.5 * x * tail
    }
}

/// GELU of every value, in place.
pub fn gelu_in_place(values: &mut [f32]) {
    struct Gelu<'a>(&'a mut [f32]);
    impl pulp::WithSimd for Gelu<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            self.0.iter_mut().for_each(|value| *value = gelu(*value));
        }
    }
    ARCH.dispatch(Gelu(values));
}

/// Softmax of `scale ·` each row of `width` values, in place.
pub fn softmax_rows(values: &mut [f32], width: usize, scale: f32) {
    struct Softmax<'a>(&'a mut [f32], usize, f32);
    impl pulp::WithSimd for Softmax<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Softmax(values, width, scale) = self;
            for row in values.chunks_exact_mut(width) {
                let top = row
                    .iter()
                    .fold(f32::NEG_INFINITY, |top, value| if *value > top { *value } else { top })
                    * scale;
                row.iter_mut().for_each(|value| *value = exp(*value * scale - top));
                let sum: f32 = row.iter().sum();
                let inverse = 1.0 / sum;
                row.iter_mut().for_each(|value| *value *= inverse);
            }
        }
    }
    if width > 0 {
        ARCH.dispatch(Softmax(values, width, scale));
    }
}

/// Layer normalisation of each row (`weight.len()` values): `(x - mean) / √(variance + ε) · weight + bias`.
pub fn layer_norm(values: &mut [f32], weight: &[f32], bias: &[f32], epsilon: f32) {
    struct Norm<'a>(&'a mut [f32], &'a [f32], &'a [f32], f32);
    impl pulp::WithSimd for Norm<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Norm(values, weight, bias, epsilon) = self;
            let width = weight.len();
            for row in values.chunks_exact_mut(width) {
                let mean = lane_sum(row, |x| x) / width as f32;
                let variance = lane_sum(row, |x| (x - mean) * (x - mean)) / width as f32;
                let scale = 1.0 / (variance + epsilon).sqrt();
                for ((value, weight), bias) in row.iter_mut().zip(weight).zip(bias) {
                    *value = (*value - mean) * scale * weight + bias;
                }
            }
        }
    }
    if !weight.is_empty() {
        ARCH.dispatch(Norm(values, weight, bias, epsilon));
    }
}

/// The sum of `term` of each value, in sixteen independent running sums (a shape the compiler turns into
/// vector instructions; a single running sum it must keep in order).
#[inline(always)]
fn lane_sum(values: &[f32], term: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|x| term(*x)).sum();
    for chunk in chunks {
        for (lane, x) in lanes.iter_mut().zip(chunk) {
            *lane += term(*x);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_units_in_the_last_place() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, expected) = (exp(x), f64::from(x).exp());
            assert!(
                ((f64::from(got) - expected) / expected).abs() < 3e-7,
                "exp({x}) = {got}, not {expected}"
            );
            x += 0.013;
        }
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn gelu_matches_known_values() {
        // x · Φ(x), from the normal distribution's table.
        for (x, expected) in [
            (0.0, 0.0),
            (1.0, 0.841_344_7),
            (-1.0, -0.158_655_25),
            (2.5, 2.484_475_8),
            (-3.0, -0.004_049_71),
            (-10.0, 0.0),
        ] {
            let mut values = [x; 17];
            gelu_in_place(&mut values);
            assert!(
                (values[16] - expected).abs() < 1e-6,
                "gelu({x}) = {}, not {expected}",
                values[16]
            );
            assert!(values.iter().all(|value| *value == values[0]));
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut values = vec![1.0, 2.0, 3.0, -1e30, 0.0, 0.0];
        softmax_rows(&mut values, 3, 0.5);
        let expected: Vec<f64> = [0.5f64, 1.0, 1.5].iter().map(|v| v.exp()).collect();
        let total: f64 = expected.iter().sum();
        for (got, want) in values[..3].iter().zip(&expected) {
            assert!((f64::from(*got) - want / total).abs() < 1e-6);
        }
        assert!(values[3] < 1e-30);
        assert!((values[4] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let mut values: Vec<f32> = (0..40).map(|i| (i * i % 13) as f32 - 3.0).collect();
        let original = values.clone();
        let weight = vec![2.0; 20];
        let bias = vec![0.5; 20];
        layer_norm(&mut values, &weight, &bias, 1e-12);
        for (row, before) in values.chunks(20).zip(original.chunks(20)) {
            let mean = before.iter().map(|v| f64::from(*v)).sum::<f64>() / 20.0;
            let variance = before.iter().map(|v| (f64::from(*v) - mean).powi(2)).sum::<f64>() / 20.0;
            for (got, x) in row.iter().zip(before) {
                let expected = (f64::from(*x) - mean) / variance.sqrt() * 2.0 + 0.5;
                assert!((f64::from(*got) - expected).abs() < 1e-5, "{got} vs {expected}");
            }
        }
    }
}
