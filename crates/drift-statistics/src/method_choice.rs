//! Which test decides drift for a column, following Evidently's documented defaults:
//!
//! | reference rows | column | method | drift when |
//! |---|---|---|---|
//! | ≤ 1000 | numerical with > 5 distinct values | two-sample Kolmogorov–Smirnov | p < 0.05 |
//! | ≤ 1000 | binary (≤ 2 distinct values) | two-proportion z-test | p < 0.05 |
//! | ≤ 1000 | other categorical, or numerical with ≤ 5 distinct values | chi-squared | p < 0.05 |
//! | > 1000 | numerical with > 5 distinct values | Wasserstein distance ÷ reference std | ≥ 0.1 |
//! | > 1000 | categorical, or numerical with ≤ 5 distinct values | Jensen–Shannon distance | ≥ 0.1 |
//!
//! The dataset drifts when the share of drifted columns reaches 0.5. Every threshold can be overridden.

use crate::distances::wasserstein_distance;
use crate::error::{StatisticError, check_sample};

/// How a column's values are to be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Numbers with an order and a scale.
    Numerical,
    /// Labels.
    Categorical,
}

/// A drift method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftMethod {
    /// Two-sample Kolmogorov–Smirnov test (a p-value).
    KolmogorovSmirnov,
    /// Chi-squared test on category frequencies (a p-value).
    ChiSquared,
    /// Two-proportion z-test for binary columns (a p-value).
    ProportionZTest,
    /// Wasserstein distance divided by the reference standard deviation (a distance).
    NormedWasserstein,
    /// Jensen–Shannon distance between category or bin shares (a distance).
    JensenShannon,
    /// Population Stability Index over bin or category shares (a distance-like score).
    PopulationStability,
    /// Kullback–Leibler divergence of the current shares from the reference's (a distance-like score).
    KullbackLeibler,
    /// Hellinger distance between bin or category shares (a distance).
    Hellinger,
    /// k-sample Anderson–Darling test (a p-value, scipy's interpolation between 0.001 and 0.25).
    AndersonDarling,
}

/// Every method, for listing in messages.
pub const ALL_METHODS: [DriftMethod; 9] = [
    DriftMethod::KolmogorovSmirnov,
    DriftMethod::ChiSquared,
    DriftMethod::ProportionZTest,
    DriftMethod::NormedWasserstein,
    DriftMethod::JensenShannon,
    DriftMethod::PopulationStability,
    DriftMethod::KullbackLeibler,
    DriftMethod::Hellinger,
    DriftMethod::AndersonDarling,
];

impl DriftMethod {
    /// The method's name as Evidently spells it (`ks`, `chisquare`, `z`, `wasserstein`, `jensenshannon`, `psi`,
    /// `kl_div`, `hellinger`).
    pub fn name(self) -> &'static str {
        match self {
            DriftMethod::KolmogorovSmirnov => "ks",
            DriftMethod::ChiSquared => "chisquare",
            DriftMethod::ProportionZTest => "z",
            DriftMethod::NormedWasserstein => "wasserstein",
            DriftMethod::JensenShannon => "jensenshannon",
            DriftMethod::PopulationStability => "psi",
            DriftMethod::KullbackLeibler => "kl_div",
            DriftMethod::Hellinger => "hellinger",
            DriftMethod::AndersonDarling => "anderson",
        }
    }

    /// The method with this name, if any.
    pub fn from_name(name: &str) -> Option<DriftMethod> {
        ALL_METHODS.into_iter().find(|m| m.name() == name)
    }

    /// A description for reports.
    pub fn description(self) -> &'static str {
        match self {
            DriftMethod::KolmogorovSmirnov => "Kolmogorov–Smirnov p-value",
            DriftMethod::ChiSquared => "chi-squared p-value",
            DriftMethod::ProportionZTest => "two-proportion z-test p-value",
            DriftMethod::NormedWasserstein => "Wasserstein distance (normed)",
            DriftMethod::JensenShannon => "Jensen–Shannon distance",
            DriftMethod::PopulationStability => "Population Stability Index",
            DriftMethod::KullbackLeibler => "Kullback–Leibler divergence",
            DriftMethod::Hellinger => "Hellinger distance",
            DriftMethod::AndersonDarling => "Anderson–Darling p-value",
        }
    }

    /// The threshold used when none is given: 0.05 for p-values, 0.1 for distances (Evidently's defaults).
    pub fn default_threshold(self) -> f64 {
        if self.yields_p_value() {
            DEFAULT_P_VALUE_THRESHOLD
        } else {
            DEFAULT_DISTANCE_THRESHOLD
        }
    }

    /// True when the method needs the samples themselves rather than counts (so a summarised reference
    /// cannot serve).
    pub fn needs_samples(self) -> bool {
        matches!(self, DriftMethod::KolmogorovSmirnov | DriftMethod::AndersonDarling)
    }

    /// True when the method compares category counts (numeric columns are binned first).
    pub fn compares_shares(self) -> bool {
        !matches!(
            self,
            DriftMethod::KolmogorovSmirnov | DriftMethod::NormedWasserstein | DriftMethod::AndersonDarling
        )
    }

    /// True when the method yields a p-value (small means drift); false for distances (large means drift).
    pub fn yields_p_value(self) -> bool {
        matches!(
            self,
            DriftMethod::KolmogorovSmirnov
                | DriftMethod::ChiSquared
                | DriftMethod::ProportionZTest
                | DriftMethod::AndersonDarling
        )
    }

    /// Whether `value` (a p-value or a distance, per the method) means the column drifted.
    pub fn is_drift(self, value: f64, threshold: f64) -> bool {
        if self.yields_p_value() {
            value < threshold
        } else {
            value >= threshold
        }
    }
}

/// A method with the threshold that decides it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodChoice {
    /// The method.
    pub method: DriftMethod,
    /// p-value below which, or distance from which, the column drifted.
    pub threshold: f64,
}

/// Reference size up to which the tests with p-values are used.
pub const SMALL_REFERENCE_ROWS: usize = 1000;
/// Distinct values up to which a numerical column is treated like a categorical one.
pub const FEW_DISTINCT_VALUES: usize = 5;
/// Default p-value threshold.
pub const DEFAULT_P_VALUE_THRESHOLD: f64 = 0.05;
/// Default distance threshold.
pub const DEFAULT_DISTANCE_THRESHOLD: f64 = 0.1;
/// Default share of drifted columns at which the dataset drifts.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;

/// Evidently's default method for a column.
pub fn default_method(kind: ColumnKind, reference_rows: usize, distinct_values: usize) -> MethodChoice {
    let behaves_numerically = kind == ColumnKind::Numerical && distinct_values > FEW_DISTINCT_VALUES;
    if reference_rows <= SMALL_REFERENCE_ROWS {
        let method = if behaves_numerically {
            DriftMethod::KolmogorovSmirnov
        } else if distinct_values <= 2 {
            DriftMethod::ProportionZTest
        } else {
            DriftMethod::ChiSquared
        };
        return MethodChoice {
            method,
            threshold: DEFAULT_P_VALUE_THRESHOLD,
        };
    }
    let method = if behaves_numerically {
        DriftMethod::NormedWasserstein
    } else {
        DriftMethod::JensenShannon
    };
    MethodChoice {
        method,
        threshold: DEFAULT_DISTANCE_THRESHOLD,
    }
}

/// Wasserstein distance scaled by the reference's population standard deviation (floored at 0.001 so a
/// constant reference does not divide by zero), as Evidently's `wasserstein` method.
pub fn normed_wasserstein_distance(reference: &[f64], current: &[f64]) -> Result<f64, StatisticError> {
    check_sample(reference, "reference")?;
    let count = reference.len() as f64;
    let mean = reference.iter().sum::<f64>() / count;
    let variance = reference.iter().map(|value| (value - mean).powi(2)).sum::<f64>() / count;
    Ok(wasserstein_distance(reference, current)? / variance.sqrt().max(0.001))
}

/// Whether the dataset drifted: the share of drifted columns reaches `drift_share`.
pub fn dataset_drift(drifted_columns: usize, total_columns: usize, drift_share: f64) -> bool {
    total_columns > 0 && drifted_columns as f64 / total_columns as f64 >= drift_share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_table() {
        let choose = |kind, rows, distinct| default_method(kind, rows, distinct).method;
        assert_eq!(choose(ColumnKind::Numerical, 1000, 50), DriftMethod::KolmogorovSmirnov);
        assert_eq!(choose(ColumnKind::Numerical, 1000, 5), DriftMethod::ChiSquared);
        assert_eq!(choose(ColumnKind::Numerical, 500, 2), DriftMethod::ProportionZTest);
        assert_eq!(choose(ColumnKind::Categorical, 200, 2), DriftMethod::ProportionZTest);
        assert_eq!(choose(ColumnKind::Categorical, 200, 9), DriftMethod::ChiSquared);
        assert_eq!(choose(ColumnKind::Numerical, 1001, 50), DriftMethod::NormedWasserstein);
        assert_eq!(choose(ColumnKind::Numerical, 5000, 3), DriftMethod::JensenShannon);
        assert_eq!(choose(ColumnKind::Categorical, 5000, 40), DriftMethod::JensenShannon);
        assert_eq!(default_method(ColumnKind::Categorical, 5000, 40).threshold, 0.1);
        assert_eq!(default_method(ColumnKind::Categorical, 50, 40).threshold, 0.05);
    }

    #[test]
    fn names_round_trip() {
        for method in ALL_METHODS {
            assert_eq!(DriftMethod::from_name(method.name()), Some(method));
        }
        assert_eq!(DriftMethod::from_name("nope"), None);
    }

    #[test]
    fn verdicts_read_p_values_and_distances_the_right_way_round() {
        assert!(DriftMethod::KolmogorovSmirnov.is_drift(0.01, 0.05));
        assert!(!DriftMethod::KolmogorovSmirnov.is_drift(0.05, 0.05));
        assert!(DriftMethod::JensenShannon.is_drift(0.1, 0.1));
        assert!(!DriftMethod::NormedWasserstein.is_drift(0.09, 0.1));
        assert!(dataset_drift(5, 10, DEFAULT_DRIFT_SHARE));
        assert!(!dataset_drift(4, 10, DEFAULT_DRIFT_SHARE));
        assert!(!dataset_drift(0, 0, DEFAULT_DRIFT_SHARE));
    }

    #[test]
    fn normed_wasserstein_scales_by_the_reference_spread() {
        let reference = [0.0, 2.0, 4.0, 6.0];
        let shifted: Vec<f64> = reference.iter().map(|value| value + 1.0).collect();
        let spread = 5.0f64.sqrt();
        let normed = normed_wasserstein_distance(&reference, &shifted).unwrap();
        assert!((normed - 1.0 / spread).abs() < 1e-12, "{normed}");
        assert_eq!(normed_wasserstein_distance(&[3.0, 3.0], &[3.0, 3.0]).unwrap(), 0.0);
        assert!((normed_wasserstein_distance(&[3.0, 3.0], &[3.001, 3.001]).unwrap() - 1.0).abs() < 1e-9);
    }
}
