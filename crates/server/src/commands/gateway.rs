//! `loopline gateway ...`: the LLM gateway's keys, team limits and spend through a server's
//! `/api/loopline/v1/gateway` API (an admin's credentials: `MLFLOW_TRACKING_USERNAME`/`PASSWORD` or
//! `MLFLOW_TRACKING_TOKEN`). A new key is printed once.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::monitor::segment;
use super::rollout::{Client, ServerArgs, runtime_block};

/// `loopline gateway`.
#[derive(Args, Debug)]
pub struct GatewayArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: GatewayCommand,
}

/// Limits of a key or a team; left out: unchanged (or none, for a new one).
#[derive(Args, Debug, Default)]
struct LimitArgs {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<i64>,
    /// Tokens (prompt and completion) per minute.
    #[arg(long)]
    tpm: Option<i64>,
    /// Calls in flight at once.
    #[arg(long)]
    max_parallel: Option<i64>,
    /// Budget in US dollars per period.
    #[arg(long)]
    budget_usd: Option<f64>,
    /// The budget's period: day, week, month (UTC) or total.
    #[arg(long)]
    budget_period: Option<String>,
    /// Remove these limits (rpm, tpm, max_parallel, budget_usd).
    #[arg(long, value_delimiter = ',')]
    clear: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum GatewayCommand {
    /// Keys: `create --user NAME [--models a,b] [limits]`, `list`, `show ID`, `update ID [limits]`, `revoke ID`.
    Keys {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Team limits, shared by every key of the team: `set TEAM [limits]`, `list`, `delete TEAM`.
    Teams {
        #[command(subcommand)]
        command: TeamCommand,
    },
    /// Spend per key, team and model since a day (the start of this month by default).
    Spend {
        /// YYYY-MM-DD, UTC.
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Make a key (printed once).
    Create {
        /// The user or service account the key belongs to (it needs USE on the models).
        #[arg(long)]
        user: String,
        /// A name for the key.
        #[arg(long)]
        name: Option<String>,
        /// The team whose limits also apply.
        #[arg(long)]
        team: Option<String>,
        /// Gateway models it may call (default: any its owner may use).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Days until it expires.
        #[arg(long)]
        expires_in_days: Option<i64>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Every key with its spend this period.
    List,
    /// One key.
    Show {
        /// Its token id.
        id: String,
    },
    /// Change a key's models, team or limits.
    Update {
        /// Its token id.
        id: String,
        /// The team whose limits also apply.
        #[arg(long)]
        team: Option<String>,
        /// Gateway models it may call.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Revoke a key for good.
    Revoke {
        /// Its token id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum TeamCommand {
    /// Set a team's limits.
    Set {
        /// The team.
        team: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Every team with limits.
    List,
    /// Remove a team's limits.
    Delete {
        /// The team.
        team: String,
    },
}

impl LimitArgs {
    fn into_body(self, body: &mut Map<String, Value>) -> Result<(), String> {
        let mut set = |name: &str, value: Value| {
            body.insert(name.to_string(), value);
        };
        if let Some(rpm) = self.rpm {
            set("rpm", json!(rpm));
        }
        if let Some(tpm) = self.tpm {
            set("tpm", json!(tpm));
        }
        if let Some(parallel) = self.max_parallel {
            set("max_parallel", json!(parallel));
        }
        if let Some(budget) = self.budget_usd {
            if !budget.is_finite() || budget <= 0.0 {
                return Err(format!("--budget-usd {budget}: a number of US dollars above 0"));
            }
            set("budget_usd", json!(budget));
        }
        if let Some(period) = self.budget_period {
            set("budget_period", json!(period));
        }
        for name in self.clear {
            if !["rpm", "tpm", "max_parallel", "budget_usd"].contains(&name.as_str()) {
                return Err(format!("--clear {name}: name rpm, tpm, max_parallel or budget_usd"));
            }
            set(&name, Value::Null);
        }
        Ok(())
    }
}

const BASE: &str = "/api/loopline/v1/gateway";

/// Runs `loopline gateway ...`.
pub fn run(args: GatewayArgs) -> ExitCode {
    let result = runtime_block(async move {
        let client = Client::new(&args.server)?;
        let get = reqwest::Method::GET;
        match args.command {
            GatewayCommand::Keys { command } => match command {
                KeyCommand::Create {
                    user,
                    name,
                    team,
                    models,
                    expires_in_days,
                    limits,
                } => {
                    let mut body = Map::new();
                    body.insert("username".into(), json!(user));
                    if let Some(name) = name {
                        body.insert("name".into(), json!(name));
                    }
                    if let Some(team) = team {
                        body.insert("team".into(), json!(team));
                    }
                    if !models.is_empty() {
                        body.insert("models".into(), json!(models));
                    }
                    if let Some(days) = expires_in_days {
                        body.insert("expires_in_days".into(), json!(days));
                    }
                    limits.into_body(&mut body)?;
                    let key = client
                        .ok(
                            reqwest::Method::POST,
                            &format!("{BASE}/keys"),
                            Some(Value::Object(body)),
                        )
                        .await?;
                    println!("{}", key["key"].as_str().unwrap_or_default());
                    eprintln!(
                        "key {} for {}: shown once, keep it now",
                        key["token_id"].as_str().unwrap_or_default(),
                        key["username"].as_str().unwrap_or_default()
                    );
                }
                KeyCommand::List => {
                    let keys = client.ok(get, &format!("{BASE}/keys"), None).await?;
                    println!(
                        "{:<34} {:<16} {:<12} {:>8} {:>10} {:>12}  models",
                        "key", "user", "team", "rpm", "tpm", "spent/budget"
                    );
                    for key in keys["keys"].as_array().into_iter().flatten() {
                        println!("{}", key_line(key));
                    }
                }
                KeyCommand::Show { id } => {
                    let key = client.ok(get, &format!("{BASE}/keys/{id}"), None).await?;
                    println!("{}", serde_json::to_string_pretty(&key).unwrap_or_default());
                }
                KeyCommand::Update {
                    id,
                    team,
                    models,
                    limits,
                } => {
                    let mut body = Map::new();
                    if let Some(team) = team {
                        body.insert("team".into(), json!(team));
                    }
                    if let Some(models) = models {
                        body.insert("models".into(), json!(models));
                    }
                    limits.into_body(&mut body)?;
                    let key = client
                        .ok(
                            reqwest::Method::PATCH,
                            &format!("{BASE}/keys/{id}"),
                            Some(Value::Object(body)),
                        )
                        .await?;
                    println!("{}", key_line(&key));
                }
                KeyCommand::Revoke { id } => {
                    client
                        .ok(reqwest::Method::DELETE, &format!("{BASE}/keys/{id}"), None)
                        .await?;
                    println!("revoked {id}");
                }
            },
            GatewayCommand::Teams { command } => match command {
                TeamCommand::Set { team, limits } => {
                    let mut body = Map::new();
                    limits.into_body(&mut body)?;
                    let path = format!("{BASE}/teams/{}", segment(&team));
                    let team = client
                        .ok(reqwest::Method::PUT, &path, Some(Value::Object(body)))
                        .await?;
                    println!("{team}");
                }
                TeamCommand::List => {
                    let teams = client.ok(get, &format!("{BASE}/teams"), None).await?;
                    for team in teams["teams"].as_array().into_iter().flatten() {
                        println!("{team}");
                    }
                }
                TeamCommand::Delete { team } => {
                    let path = format!("{BASE}/teams/{}", segment(&team));
                    client.ok(reqwest::Method::DELETE, &path, None).await?;
                    println!("deleted {team}");
                }
            },
            GatewayCommand::Spend { since } => {
                let path = match since {
                    Some(day) => format!("{BASE}/spend?since={}", segment(&day)),
                    None => format!("{BASE}/spend"),
                };
                let spend = client.ok(get, &path, None).await?;
                for (kind, label) in [("models", "model"), ("teams", "team"), ("keys", "token_id")] {
                    for row in spend[kind].as_array().into_iter().flatten() {
                        println!(
                            "{label:<9} {:<40} ${:.6}",
                            row[label].as_str().unwrap_or_default(),
                            row["spend_usd"].as_f64().unwrap_or(0.0)
                        );
                    }
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn key_line(key: &Value) -> String {
    let text = |name: &str| key[name].as_str().unwrap_or("-").to_string();
    let number = |name: &str| key[name].as_i64().map_or("-".to_string(), |value| value.to_string());
    let budget = key["budget_usd"].as_f64().map_or("-".to_string(), |budget| {
        format!("{budget:.2}/{}", text("budget_period"))
    });
    let models: Vec<&str> = key["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "{:<34} {:<16} {:<12} {:>8} {:>10} {:>12}  {}",
        text("token_id"),
        text("username"),
        text("team"),
        number("rpm"),
        number("tpm"),
        format!("{:.4}/{budget}", key["spend_usd"].as_f64().unwrap_or(0.0)),
        if models.is_empty() {
            "any".to_string()
        } else {
            models.join(",")
        }
    )
}
