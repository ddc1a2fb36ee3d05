//! `loopline stats`: computes statistics from JSON lines on standard input, one result line per input line,
//! for scripting and for checking the statistics against other implementations (the scipy comparison suite
//! drives it). Each input line names a function and its arguments, for example
//! `{"function": "ks_2samp", "reference": [1, 2, 3], "current": [2, 3, 4]}`; each output line holds
//! `statistic`, `p_value` (when the function has one) or `error`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Args;
use loopline_drift_statistics::anderson_darling::anderson_darling_k_sample;
use loopline_drift_statistics::distances::{
    hellinger_distance, jensen_shannon_distance, kullback_leibler_divergence, population_stability_index,
    wasserstein_distance,
};
use loopline_drift_statistics::hypothesis_tests::{
    chi_squared_contingency, chi_squared_goodness_of_fit, two_proportion_z_test,
};
use loopline_drift_statistics::kolmogorov_distribution::kolmogorov_survival;
use loopline_drift_statistics::kolmogorov_smirnov::kolmogorov_smirnov_test;
use serde_json::{Value, json};

use super::{OK, input_error};

/// Arguments of `loopline stats` (none: requests come on standard input).
#[derive(Debug, Args)]
pub struct StatsArgs {}

fn numbers(request: &Value, name: &str) -> Result<Vec<f64>, String> {
    number_list(request.get(name), name)
}

/// A JSON list of numbers (`"NaN"`, `"inf"` and `"-inf"` spelled as strings); `name` is for messages.
fn number_list(list: Option<&Value>, name: &str) -> Result<Vec<f64>, String> {
    list.and_then(Value::as_array)
        .ok_or_else(|| format!("'{name}' must be a list of numbers"))?
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("'{name}' holds {n}")),
            Value::String(s) if s == "NaN" => Ok(f64::NAN),
            Value::String(s) if s == "inf" => Ok(f64::INFINITY),
            Value::String(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
            other => Err(format!("'{name}' holds {other}, not a number")),
        })
        .collect()
}

fn integer(request: &Value, name: &str) -> Result<u64, String> {
    request
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("'{name}' must be a non-negative integer"))
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value)
        .map(Value::Number)
        .unwrap_or_else(|| Value::from(value.to_string()))
}

/// Evaluates one request.
pub fn evaluate(request: &Value) -> Result<Value, String> {
    let function = request
        .get("function")
        .and_then(Value::as_str)
        .ok_or("'function' is required")?;
    let error = |e: loopline_drift_statistics::StatisticError| e.to_string();
    let pair = || -> Result<(Vec<f64>, Vec<f64>), String> {
        Ok((numbers(request, "reference")?, numbers(request, "current")?))
    };
    let test = |statistic: f64, p_value: f64| json!({"statistic": number(statistic), "p_value": number(p_value)});
    let distance = |statistic: f64| json!({"statistic": number(statistic)});
    match function {
        "ks_2samp" => {
            let (reference, current) = pair()?;
            let result = kolmogorov_smirnov_test(&reference, &current).map_err(error)?;
            Ok(test(result.statistic, result.p_value))
        }
        "anderson_ksamp" => {
            let samples: Vec<Vec<f64>> = request
                .get("samples")
                .and_then(Value::as_array)
                .ok_or("'samples' must be a list of lists of numbers")?
                .iter()
                .map(|sample| number_list(Some(sample), "samples"))
                .collect::<Result<_, _>>()?;
            let slices: Vec<&[f64]> = samples.iter().map(Vec::as_slice).collect();
            let result = anderson_darling_k_sample(&slices).map_err(error)?;
            Ok(test(result.statistic, result.p_value))
        }
        "kstwo_sf" => {
            let d = request.get("d").and_then(Value::as_f64).ok_or("'d' must be a number")?;
            Ok(distance(kolmogorov_survival(integer(request, "n")?, d)))
        }
        "wasserstein_distance" => {
            let (reference, current) = pair()?;
            Ok(distance(wasserstein_distance(&reference, &current).map_err(error)?))
        }
        "chisquare" => {
            let result = chi_squared_goodness_of_fit(&numbers(request, "observed")?, &numbers(request, "expected")?)
                .map_err(error)?;
            Ok(test(result.statistic, result.p_value))
        }
        "chi2_contingency" => {
            let (reference, current) = pair()?;
            let result = chi_squared_contingency(&reference, &current).map_err(error)?;
            Ok(test(result.statistic, result.p_value))
        }
        "proportions_ztest" => {
            let result = two_proportion_z_test(
                integer(request, "reference_successes")?,
                integer(request, "reference_trials")?,
                integer(request, "current_successes")?,
                integer(request, "current_trials")?,
            )
            .map_err(error)?;
            Ok(test(result.statistic, result.p_value))
        }
        "jensenshannon" => {
            let (reference, current) = pair()?;
            let base = request.get("base").and_then(Value::as_f64);
            Ok(distance(
                jensen_shannon_distance(&reference, &current, base).map_err(error)?,
            ))
        }
        "entropy" => {
            let (reference, current) = pair()?;
            Ok(distance(
                kullback_leibler_divergence(&reference, &current).map_err(error)?,
            ))
        }
        "psi" => {
            let (reference, current) = pair()?;
            Ok(distance(
                population_stability_index(&reference, &current).map_err(error)?,
            ))
        }
        "hellinger" => {
            let (reference, current) = pair()?;
            Ok(distance(hellinger_distance(&reference, &current).map_err(error)?))
        }
        other => Err(format!(
            "unknown function '{other}'; use ks_2samp, kstwo_sf, anderson_ksamp, wasserstein_distance, chisquare, chi2_contingency, \
             proportions_ztest, jensenshannon, entropy, psi or hellinger"
        )),
    }
}

/// Runs `loopline stats`.
pub fn run(_args: StatsArgs) -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for (number, line) in stdin.lock().lines().enumerate() {
        let line = match line {
            Ok(line) => line,
            Err(error) => return input_error(format!("cannot read standard input: {error}")),
        };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(request) => evaluate(&request).unwrap_or_else(|message| json!({"error": message})),
            Err(error) => json!({"error": format!("line {}: not JSON: {error}", number + 1)}),
        };
        if writeln!(stdout, "{answer}").is_err() {
            break;
        }
    }
    ExitCode::from(OK)
}
