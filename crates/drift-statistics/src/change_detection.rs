//! Change detectors for a stream of values (a metric over time, a feature's mean per window). Each keeps
//! constant state, takes one value at a time and says when the stream's level has shifted.

use crate::error::StatisticError;

/// What a detector concluded after one more value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// No change so far.
    Stable,
    /// The level rose.
    Increase,
    /// The level fell.
    Decrease,
}

fn positive(name: &'static str, value: f64) -> Result<f64, StatisticError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(StatisticError::InvalidParameter {
            name,
            value,
            reason: "must be a positive finite number",
        })
    }
}

fn non_negative(name: &'static str, value: f64) -> Result<f64, StatisticError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(StatisticError::InvalidParameter {
            name,
            value,
            reason: "must be a non-negative finite number",
        })
    }
}

/// Two-sided tabular CUSUM around a known target: `high = max(0, high + x − target − slack)` and
/// `low = max(0, low + target − x − slack)`; a sum above `threshold` signals a change and both sums restart.
#[derive(Debug, Clone)]
pub struct Cusum {
    target: f64,
    slack: f64,
    threshold: f64,
    high: f64,
    low: f64,
}

impl Cusum {
    /// `slack` (often half the shift worth detecting) and `threshold` are in the stream's units.
    pub fn new(target: f64, slack: f64, threshold: f64) -> Result<Self, StatisticError> {
        if !target.is_finite() {
            return Err(StatisticError::InvalidParameter {
                name: "target",
                value: target,
                reason: "must be finite",
            });
        }
        Ok(Self {
            target,
            slack: non_negative("slack", slack)?,
            threshold: positive("threshold", threshold)?,
            high: 0.0,
            low: 0.0,
        })
    }

    /// Takes one value; non-finite values are refused without changing the state.
    pub fn update(&mut self, value: f64) -> Result<Detection, StatisticError> {
        if !value.is_finite() {
            return Err(StatisticError::NonFinite {
                which: "stream",
                value,
                position: 0,
            });
        }
        self.high = (self.high + value - self.target - self.slack).max(0.0);
        self.low = (self.low + self.target - value - self.slack).max(0.0);
        let detection = if self.high > self.threshold {
            Detection::Increase
        } else if self.low > self.threshold {
            Detection::Decrease
        } else {
            Detection::Stable
        };
        if detection != Detection::Stable {
            self.high = 0.0;
            self.low = 0.0;
        }
        Ok(detection)
    }
}

/// Page–Hinkley test for a rise in the mean of a stream with an unknown level. It accumulates
/// `Σ (x − running mean − delta)` and signals when the sum exceeds its running minimum by `threshold`;
/// `delta` is the tolerated drift per value. After a signal it restarts from the next value.
#[derive(Debug, Clone)]
pub struct PageHinkley {
    delta: f64,
    threshold: f64,
    count: u64,
    mean: f64,
    cumulative: f64,
    minimum: f64,
}

impl PageHinkley {
    /// Typical values: `delta` a small fraction of the stream's scale, `threshold` tens of those.
    pub fn new(delta: f64, threshold: f64) -> Result<Self, StatisticError> {
        Ok(Self {
            delta: non_negative("delta", delta)?,
            threshold: positive("threshold", threshold)?,
            count: 0,
            mean: 0.0,
            cumulative: 0.0,
            minimum: 0.0,
        })
    }

    /// Takes one value; non-finite values are refused without changing the state.
    pub fn update(&mut self, value: f64) -> Result<Detection, StatisticError> {
        if !value.is_finite() {
            return Err(StatisticError::NonFinite {
                which: "stream",
                value,
                position: self.count as usize,
            });
        }
        self.count += 1;
        self.mean += (value - self.mean) / self.count as f64;
        self.cumulative += value - self.mean - self.delta;
        self.minimum = self.minimum.min(self.cumulative);
        if self.cumulative - self.minimum > self.threshold {
            *self = Self {
                delta: self.delta,
                threshold: self.threshold,
                count: 0,
                mean: 0.0,
                cumulative: 0.0,
                minimum: 0.0,
            };
            return Ok(Detection::Increase);
        }
        Ok(Detection::Stable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random stream in [-0.5, 0.5).
    fn noise(length: usize) -> Vec<f64> {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    fn first_alarm(mut update: impl FnMut(f64) -> Detection, stream: &[f64]) -> Option<(usize, Detection)> {
        stream
            .iter()
            .enumerate()
            .find_map(|(index, value)| match update(*value) {
                Detection::Stable => None,
                detection => Some((index, detection)),
            })
    }

    #[test]
    fn cusum_is_quiet_on_noise_and_catches_shifts_both_ways() {
        let quiet = noise(2000);
        let mut detector = Cusum::new(0.0, 0.5, 5.0).unwrap();
        assert_eq!(first_alarm(|value| detector.update(value).unwrap(), &quiet), None);
        let mut rising: Vec<f64> = noise(500);
        rising.extend(noise(500).iter().map(|value| value + 2.0));
        let mut detector = Cusum::new(0.0, 0.5, 5.0).unwrap();
        let (index, detection) = first_alarm(|value| detector.update(value).unwrap(), &rising).unwrap();
        assert_eq!(detection, Detection::Increase);
        assert!((500..510).contains(&index), "alarm at {index}");
        let falling: Vec<f64> = rising.iter().map(|value| -value).collect();
        let mut detector = Cusum::new(0.0, 0.5, 5.0).unwrap();
        assert_eq!(
            first_alarm(|value| detector.update(value).unwrap(), &falling)
                .unwrap()
                .1,
            Detection::Decrease
        );
    }

    #[test]
    fn page_hinkley_is_quiet_on_noise_and_catches_a_rise() {
        let mut detector = PageHinkley::new(0.05, 20.0).unwrap();
        assert_eq!(first_alarm(|value| detector.update(value).unwrap(), &noise(3000)), None);
        let mut stream = noise(1000);
        stream.extend(noise(1000).iter().map(|value| value + 1.0));
        let mut detector = PageHinkley::new(0.05, 20.0).unwrap();
        let (index, detection) = first_alarm(|value| detector.update(value).unwrap(), &stream).unwrap();
        assert_eq!(detection, Detection::Increase);
        assert!((1000..1100).contains(&index), "alarm at {index}");
    }

    #[test]
    fn bad_parameters_and_values_are_refused() {
        assert!(Cusum::new(0.0, -1.0, 5.0).is_err());
        assert!(Cusum::new(f64::NAN, 1.0, 5.0).is_err());
        assert!(PageHinkley::new(0.1, 0.0).is_err());
        let mut detector = Cusum::new(0.0, 0.5, 5.0).unwrap();
        assert!(detector.update(f64::INFINITY).is_err());
        assert_eq!(detector.update(0.0).unwrap(), Detection::Stable);
    }
}
