//! The quickstart's synthetic customers: a churn table whose market shifts (prices rise, newer customers,
//! more support calls, and a different reason to leave), so a monitor sees drift and a model trained on the
//! new data beats the old one on it. Deterministic for a seed.

/// SplitMix64: small, fast and good enough to make example data.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// One customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    /// Months as a customer.
    pub tenure: i64,
    /// Monthly bill.
    pub monthly_charges: f64,
    /// Calls to support in the last quarter.
    pub support_calls: i64,
    /// `month`, `year` or `two_year`.
    pub contract: &'static str,
    /// Whether they left.
    pub churn: i64,
}

/// `n` customers of the market before (`shifted` false) or after the shift.
pub fn customers(n: usize, seed: u64, shifted: bool) -> Vec<Customer> {
    let mut random = Random(seed);
    (0..n)
        .map(|_| {
            let tenure = if shifted {
                (1.0 + random.uniform().powi(2) * 30.0) as i64
            } else {
                (1.0 + random.uniform() * 71.0) as i64
            };
            let (mean, spread) = if shifted { (105.0, 18.0) } else { (65.0, 20.0) };
            let monthly_charges = ((mean + spread * random.normal()).clamp(18.0, 180.0) * 100.0).round() / 100.0;
            let calls_mean: f64 = if shifted { 4.0 } else { 1.5 };
            let support_calls = (calls_mean + calls_mean.sqrt() * random.normal())
                .round()
                .clamp(0.0, 15.0) as i64;
            let draw = random.uniform();
            let contract = match (shifted, draw) {
                (false, d) if d < 0.55 => "month",
                (false, d) if d < 0.85 => "year",
                (true, d) if d < 0.75 => "month",
                (true, d) if d < 0.92 => "year",
                _ => "two_year",
            };
            let contract_effect = match contract {
                "month" => 1.0,
                "year" => -0.6,
                _ => -1.6,
            };
            // Before: expensive bills drive customers away. After: price no longer matters (everyone pays
            // more); long waits on support do.
            let logit = if shifted {
                -0.4 - 0.03 * (tenure as f64 - 15.0) + 0.9 * (support_calls as f64 - 4.0) + 0.6 * contract_effect
            } else {
                -0.6 - 0.05 * (tenure as f64 - 36.0)
                    + 0.07 * (monthly_charges - 65.0)
                    + 0.2 * (support_calls as f64 - 1.5)
                    + contract_effect
            };
            let churn = i64::from(random.uniform() < 1.0 / (1.0 + (-logit).exp()));
            Customer {
                tenure,
                monthly_charges,
                support_calls,
                contract,
                churn,
            }
        })
        .collect()
}

/// The columns a model reads.
pub const FEATURES: [&str; 4] = ["tenure", "monthly_charges", "support_calls", "contract"];

/// Customers as CSV with the label.
pub fn csv(customers: &[Customer]) -> String {
    let mut text = String::from("tenure,monthly_charges,support_calls,contract,churn\n");
    for c in customers {
        text.push_str(&format!(
            "{},{},{},{},{}\n",
            c.tenure, c.monthly_charges, c.support_calls, c.contract, c.churn
        ));
    }
    text
}

/// Customers as an MLflow scoring request (features only).
pub fn scoring_request(customers: &[Customer]) -> serde_json::Value {
    let data: Vec<serde_json::Value> = customers
        .iter()
        .map(|c| serde_json::json!([c.tenure, c.monthly_charges, c.support_calls, c.contract]))
        .collect();
    serde_json::json!({"dataframe_split": {"columns": FEATURES, "data": data}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_customers_and_the_market_shifts() {
        assert_eq!(customers(50, 7, false), customers(50, 7, false));
        let before = customers(4_000, 1, false);
        let after = customers(4_000, 1, true);
        let mean = |rows: &[Customer]| rows.iter().map(|c| c.monthly_charges).sum::<f64>() / rows.len() as f64;
        assert!(mean(&after) - mean(&before) > 30.0);
        let share = |rows: &[Customer]| rows.iter().filter(|c| c.churn == 1).count() as f64 / rows.len() as f64;
        for rows in [&before, &after] {
            assert!((0.15..0.7).contains(&share(rows)), "churn share {}", share(rows));
        }
        assert!(csv(&before[..2]).starts_with("tenure,monthly_charges,support_calls,contract,churn\n"));
        assert_eq!(
            scoring_request(&before[..3])["dataframe_split"]["data"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
}
