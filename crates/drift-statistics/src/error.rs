//! Why a statistic cannot be computed for the given input.

/// Input a statistic cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatisticError {
    /// A sample or frequency vector is empty.
    #[error("the {which} input is empty")]
    Empty {
        /// Which input ("reference", "current", ...).
        which: &'static str,
    },
    /// A value is NaN or infinite where only finite numbers make sense.
    #[error("the {which} input holds a non-finite value ({value}) at position {position}")]
    NonFinite {
        /// Which input.
        which: &'static str,
        /// The offending value.
        value: f64,
        /// Its index.
        position: usize,
    },
    /// A frequency or weight is negative.
    #[error("the {which} input holds a negative frequency ({value}) at position {position}")]
    Negative {
        /// Which input.
        which: &'static str,
        /// The offending value.
        value: f64,
        /// Its index.
        position: usize,
    },
    /// Two frequency vectors over different categories or bins.
    #[error("the reference has {reference} bins but the current data has {current}; both must use the same bins")]
    LengthMismatch {
        /// Bins in the reference.
        reference: usize,
        /// Bins in the current data.
        current: usize,
    },
    /// All frequencies are zero.
    #[error("the {which} frequencies sum to zero")]
    ZeroTotal {
        /// Which input.
        which: &'static str,
    },
    /// A parameter is out of its range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What is allowed.
        reason: &'static str,
    },
}

/// Checks a sample: not empty, every value finite.
pub(crate) fn check_sample(sample: &[f64], which: &'static str) -> Result<(), StatisticError> {
    if sample.is_empty() {
        return Err(StatisticError::Empty { which });
    }
    if let Some((position, value)) = sample.iter().enumerate().find(|(_, value)| !value.is_finite()) {
        return Err(StatisticError::NonFinite {
            which,
            value: *value,
            position,
        });
    }
    Ok(())
}

/// Checks frequencies: not empty, finite, non-negative, positive total; returns the total.
pub(crate) fn check_frequencies(frequencies: &[f64], which: &'static str) -> Result<f64, StatisticError> {
    check_sample(frequencies, which)?;
    if let Some((position, value)) = frequencies.iter().enumerate().find(|(_, value)| **value < 0.0) {
        return Err(StatisticError::Negative {
            which,
            value: *value,
            position,
        });
    }
    let total: f64 = frequencies.iter().sum();
    if total == 0.0 {
        return Err(StatisticError::ZeroTotal { which });
    }
    Ok(total)
}
