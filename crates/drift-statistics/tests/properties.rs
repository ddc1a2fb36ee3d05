//! Invariants of the tests with p-values and of the change detectors, over generated inputs.

use loopline_drift_statistics::anderson_darling::anderson_darling_k_sample;
use loopline_drift_statistics::change_detection::{Cusum, Detection, PageHinkley};
use loopline_drift_statistics::hypothesis_tests::{
    chi_squared_contingency, chi_squared_goodness_of_fit, two_proportion_z_test,
};
use loopline_drift_statistics::kolmogorov_distribution::kolmogorov_survival;
use loopline_drift_statistics::kolmogorov_smirnov::kolmogorov_smirnov_test;
use proptest::prelude::*;

fn sample() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1e3f64..1e3, 2..120)
}

fn counts() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(1u32..500, 2..12).prop_map(|v| v.into_iter().map(f64::from).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn kolmogorov_survival_is_a_decreasing_probability(n in 1u64..5000, a in 0.0f64..1.0, b in 0.0f64..1.0) {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let (p_low, p_high) = (kolmogorov_survival(n, low), kolmogorov_survival(n, high));
        prop_assert!((0.0..=1.0).contains(&p_low) && (0.0..=1.0).contains(&p_high));
        prop_assert!(p_high <= p_low + 1e-12, "n={n}: sf({low})={p_low} < sf({high})={p_high}");
        prop_assert_eq!(kolmogorov_survival(n, 0.5 / n as f64), 1.0);
    }

    #[test]
    fn ks_test_is_symmetric_with_a_valid_p_value(first in sample(), second in sample()) {
        let forward = kolmogorov_smirnov_test(&first, &second).unwrap();
        let backward = kolmogorov_smirnov_test(&second, &first).unwrap();
        prop_assert_eq!(forward.statistic, backward.statistic);
        prop_assert!((forward.p_value - backward.p_value).abs() <= 1e-12);
        prop_assert!((0.0..=1.0).contains(&forward.p_value));
    }

    #[test]
    fn anderson_darling_ignores_order_and_location(first in sample(), second in sample(), shift in -100.0f64..100.0) {
        prop_assume!(first.iter().chain(&second).any(|v| *v != first[0]));
        let result = anderson_darling_k_sample(&[&first, &second]).unwrap();
        let swapped = anderson_darling_k_sample(&[&second, &first]).unwrap();
        prop_assert!((result.statistic - swapped.statistic).abs() <= 1e-9 * result.statistic.abs().max(1.0));
        prop_assert!((0.001..=0.25).contains(&result.p_value));
        // Shifting every value keeps the ranks, and the statistic depends only on ranks (up to rounding).
        let moved_first: Vec<f64> = first.iter().map(|v| v + shift.round()).collect();
        let moved_second: Vec<f64> = second.iter().map(|v| v + shift.round()).collect();
        let moved = anderson_darling_k_sample(&[&moved_first, &moved_second]).unwrap();
        prop_assert!((result.statistic - moved.statistic).abs() <= 1e-6 * result.statistic.abs().max(1.0));
    }

    #[test]
    fn chi_squared_p_values_are_probabilities_and_identity_is_no_evidence(first in counts(), scale in 1u32..4) {
        let same: Vec<f64> = first.iter().map(|c| c * f64::from(scale)).collect();
        let fit = chi_squared_goodness_of_fit(&same, &first).unwrap();
        prop_assert!(fit.statistic.abs() < 1e-9 && (fit.p_value - 1.0).abs() < 1e-9);
        let table = chi_squared_contingency(&first, &same).unwrap();
        prop_assert!((0.0..=1.0).contains(&table.p_value));
    }

    #[test]
    fn z_test_is_antisymmetric(a in 0u64..100, n in 100u64..200, b in 0u64..100, m in 100u64..200) {
        let forward = two_proportion_z_test(a, n, b, m).unwrap();
        let backward = two_proportion_z_test(b, m, a, n).unwrap();
        prop_assert!((forward.statistic + backward.statistic).abs() < 1e-12);
        prop_assert!((forward.p_value - backward.p_value).abs() < 1e-12);
    }

    #[test]
    fn detectors_stay_quiet_on_a_constant_stream(level in -100.0f64..100.0, length in 1usize..500) {
        let mut cusum = Cusum::new(level, 0.5, 5.0).unwrap();
        let mut page_hinkley = PageHinkley::new(0.1, 5.0).unwrap();
        for _ in 0..length {
            prop_assert_eq!(cusum.update(level).unwrap(), Detection::Stable);
            prop_assert_eq!(page_hinkley.update(level).unwrap(), Detection::Stable);
        }
    }
}
