//! The order deployments are tried in. Each model's `strategy` orders its own deployments: `weighted` draws
//! them by weight, `least-busy` puts the one with the fewest calls in flight first, `lowest-latency` the one
//! answering fastest lately (a moving average of whole answers and of streams' first events; one not yet
//! measured goes first, to be measured), `cheapest` the one with the lowest price. Ties keep the weighted draw.
//! Deployments resting after repeated failures go last whatever the strategy; fallback models follow, each
//! ordered by its own strategy.

use crate::config::{GatewayConfig, ModelGroup};
use rand::Rng;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a model orders its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Drawn by weight.
    #[default]
    Weighted,
    /// Fewest calls in flight first.
    LeastBusy,
    /// Fastest lately first.
    LowestLatency,
    /// Lowest price first (deployments without a price last).
    Cheapest,
}

/// Weight of the newest measure in a deployment's latency average.
const LATENCY_WEIGHT: f64 = 0.3;

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    resting_until: Option<Instant>,
    in_flight: u32,
    /// Moving average of answer times, in seconds.
    latency: Option<f64>,
}

/// What the gateway knows of each deployment, shared with the streams it hands out (a stream is in flight
/// until it ends).
#[derive(Debug, Clone)]
pub struct Board {
    health: Arc<Mutex<Vec<Vec<Health>>>>,
}

/// A call in flight on one deployment; dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    board: Board,
    group: usize,
    deployment: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.board.with(self.group, self.deployment, |state| {
            state.in_flight = state.in_flight.saturating_sub(1)
        });
    }
}

impl Board {
    /// A board for `config`'s deployments.
    pub fn new(config: &GatewayConfig) -> Board {
        let health = config
            .models
            .iter()
            .map(|model| vec![Health::default(); model.deployments.len()])
            .collect();
        Board {
            health: Arc::new(Mutex::new(health)),
        }
    }

    fn with<T>(&self, group: usize, deployment: usize, change: impl FnOnce(&mut Health) -> T) -> T {
        change(&mut self.health.lock().expect("gateway health")[group][deployment])
    }

    /// A call starts on a deployment.
    pub fn begin(&self, group: usize, deployment: usize) -> InFlight {
        self.with(group, deployment, |state| state.in_flight += 1);
        InFlight {
            board: self.clone(),
            group,
            deployment,
        }
    }

    /// A deployment answered in `took` (a stream: its first event).
    pub fn measured(&self, group: usize, deployment: usize, took: Duration) {
        let seconds = took.as_secs_f64();
        self.with(group, deployment, |state| {
            state.latency = Some(match state.latency {
                Some(average) => average + LATENCY_WEIGHT * (seconds - average),
                None => seconds,
            });
        });
    }

    /// A deployment answered, or failed (enough failures in a row rest it).
    pub fn mark(&self, config: &GatewayConfig, group: usize, deployment: usize, succeeded: bool) {
        self.with(group, deployment, |state| {
            if succeeded {
                state.failures = 0;
                state.resting_until = None;
                return;
            }
            state.failures += 1;
            if state.failures >= config.cooldown.failures {
                state.resting_until = Some(Instant::now() + config.cooldown.duration);
                state.failures = 0;
            }
        });
    }

    /// Every (group, deployment) to try, in order: the model's deployments as its strategy orders them, then
    /// each fallback's; deployments resting after repeated failures go last within their group.
    pub fn plan(&self, config: &GatewayConfig, group: usize) -> Vec<(usize, usize)> {
        let now = Instant::now();
        let health = self.health.lock().expect("gateway health");
        let mut plan = Vec::new();
        for group_index in std::iter::once(group).chain(config.models[group].fallbacks.iter().copied()) {
            let model = &config.models[group_index];
            let states = &health[group_index];
            let mut ordered = weighted_order(model);
            match model.strategy {
                Strategy::Weighted => {}
                Strategy::LeastBusy => ordered.sort_by_key(|&index| states[index].in_flight),
                Strategy::LowestLatency => {
                    ordered.sort_by(|&a, &b| {
                        let latency = |index: usize| states[index].latency.unwrap_or(0.0);
                        latency(a).total_cmp(&latency(b))
                    });
                }
                Strategy::Cheapest => {
                    ordered.sort_by(|&a, &b| {
                        let price = |index: usize| {
                            model.deployments[index]
                                .price
                                .map_or(f64::INFINITY, |price| price.input + price.output)
                        };
                        price(a).total_cmp(&price(b))
                    });
                }
            }
            let resting = |index: &usize| states[*index].resting_until.is_some_and(|until| until > now);
            let (tired, fresh): (Vec<usize>, Vec<usize>) = ordered.into_iter().partition(resting);
            plan.extend(fresh.into_iter().chain(tired).map(|index| (group_index, index)));
        }
        plan
    }
}

/// A model's deployments drawn by weight, without replacement.
fn weighted_order(model: &ModelGroup) -> Vec<usize> {
    let mut rng = rand::rng();
    let mut left: Vec<usize> = (0..model.deployments.len()).collect();
    let mut ordered = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let total: u64 = left
            .iter()
            .map(|&index| u64::from(model.deployments[index].weight))
            .sum();
        let mut draw = rng.random_range(0..total);
        let position = left
            .iter()
            .position(|&index| {
                let weight = u64::from(model.deployments[index].weight);
                if draw < weight {
                    return true;
                }
                draw -= weight;
                false
            })
            .unwrap_or(0);
        ordered.push(left.remove(position));
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(strategy: &str, extra: &str) -> GatewayConfig {
        let text = format!(
            "providers: [{{name: a, kind: openai, base_url: 'http://127.0.0.1:9/v1'}}]\n\
             models:\n  - {{name: m, strategy: {strategy}, deployments: [{{provider: a, model: heavy, weight: 1000000{extra}}}, {{provider: a, model: light, weight: 1, price: {{input_per_million: 0.1, output_per_million: 0.2}}}}], fallbacks: [f]}}\n  - {{name: f, deployments: [{{provider: a, model: spare}}]}}\n\
             settings: {{cooldown_failures: 1}}\n"
        );
        GatewayConfig::parse(&text, &|_| None).unwrap()
    }

    #[test]
    fn weighted_draws_by_weight_and_resting_deployments_go_last() {
        let config = config("weighted", "");
        let board = Board::new(&config);
        let firsts = (0..50).filter(|_| board.plan(&config, 0)[0] == (0, 0)).count();
        assert!(firsts >= 49, "{firsts}");
        assert_eq!(board.plan(&config, 0).len(), 3);
        assert_eq!(board.plan(&config, 0)[2], (1, 0));
        board.mark(&config, 0, 0, false);
        assert_eq!(board.plan(&config, 0)[..2], [(0, 1), (0, 0)]);
        board.mark(&config, 0, 0, true);
        assert_eq!(board.plan(&config, 0)[0], (0, 0));
    }

    #[test]
    fn least_busy_goes_to_the_deployment_with_fewest_calls_in_flight() {
        let config = config("least-busy", "");
        let board = Board::new(&config);
        let held = board.begin(0, 0);
        assert_eq!(board.plan(&config, 0)[0], (0, 1));
        drop(held);
        assert_eq!(board.plan(&config, 0)[0], (0, 0), "the weight decides a tie");
    }

    #[test]
    fn lowest_latency_measures_first_then_prefers_the_fastest() {
        let config = config("lowest-latency", "");
        let board = Board::new(&config);
        board.measured(0, 0, Duration::from_millis(400));
        assert_eq!(board.plan(&config, 0)[0], (0, 1), "an unmeasured deployment is tried");
        board.measured(0, 1, Duration::from_millis(100));
        assert_eq!(board.plan(&config, 0)[0], (0, 1));
        for _ in 0..20 {
            board.measured(0, 1, Duration::from_millis(900));
        }
        assert_eq!(
            board.plan(&config, 0)[0],
            (0, 0),
            "the average follows what it measures"
        );
    }

    #[test]
    fn cheapest_puts_priced_deployments_first_by_price() {
        let config = config("cheapest", ", price: {input_per_million: 5, output_per_million: 15}");
        let board = Board::new(&config);
        assert_eq!(board.plan(&config, 0)[..2], [(0, 1), (0, 0)]);
        let unpriced = self::config("cheapest", "");
        assert_eq!(board.plan(&unpriced, 0)[0], (0, 1), "no price goes last");
    }
}
