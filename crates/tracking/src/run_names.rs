//! Friendly run names (`adjective-noun-123`) for runs created without one, as MLflow's server does.

use rand::Rng;
use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "able", "bold", "brave", "bright", "calm", "clever", "crisp", "daring", "eager", "fair", "gentle", "glad", "grand",
    "happy", "keen", "kind", "lively", "lucky", "merry", "nimble", "polite", "proud", "quick", "quiet", "rare",
    "silent", "smart", "steady", "swift", "tidy", "vast", "warm", "wise", "witty", "zesty",
];

const NOUNS: &[&str] = &[
    "ant", "bass", "bear", "bird", "calf", "carp", "cat", "colt", "crane", "crow", "deer", "dove", "eel", "elk",
    "finch", "fox", "frog", "goat", "hare", "hawk", "heron", "lark", "lynx", "mole", "moth", "newt", "owl", "panda",
    "robin", "rook", "seal", "shark", "slug", "snail", "squid", "stork", "swan", "toad", "trout", "wolf", "wren",
];

/// A new random run name.
pub fn generate_run_name() -> String {
    let mut random = rand::rng();
    let adjective = ADJECTIVES.choose(&mut random).copied().unwrap_or("quick");
    let noun = NOUNS.choose(&mut random).copied().unwrap_or("fox");
    let number: u16 = random.random_range(0..1000);
    format!("{adjective}-{noun}-{number}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_have_three_parts() {
        let name = super::generate_run_name();
        assert_eq!(name.split('-').count(), 3, "{name}");
    }
}
