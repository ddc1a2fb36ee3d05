//! A monitor's evaluation state, stored with its specification: where the next window begins, each alert
//! rule's state (and its state before the newest window, so late labels can evaluate that window again
//! without counting it twice), the notifications still to deliver, and posted business figures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alerts::RuleState;
use crate::notify::AlertNotice;
use crate::window_data::LogCursor;

/// Business figures kept per window, newest last.
pub const KEPT_BUSINESS_WINDOWS: usize = 1_000;
/// Notifications waiting at most; the oldest go first when more pile up.
pub const MAX_OUTBOX: usize = 1_000;

/// Where evaluation stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    /// Time windows: the start of the next window (ms); count windows: its number.
    pub next_key: i64,
    /// Count windows: where the next window's rows begin in the log.
    #[serde(default)]
    pub cursor: LogCursor,
    /// Rule states by rule name.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleState>,
    /// Rule states before the newest window was applied.
    #[serde(default)]
    pub rules_before_last: BTreeMap<String, RuleState>,
    /// The newest window applied to the rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<i64>,
    /// Notifications still to deliver.
    #[serde(default)]
    pub outbox: Vec<Outgoing>,
    /// The newest feedback file read (labels arriving later evaluate recent windows again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_mark: Option<String>,
    /// When recent windows were last evaluated again for late labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_relabel_ms: Option<i64>,
    /// Business figures posted, by window key then name.
    #[serde(default)]
    pub business: BTreeMap<i64, BTreeMap<String, f64>>,
}

/// A notification waiting for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Unique id.
    pub id: String,
    /// The channel's name, or `action:<rule>:<index>` for a webhook action.
    pub channel: String,
    /// What is told.
    pub notice: AlertNotice,
    /// Attempts so far.
    pub attempts: u32,
    /// Not before then, ms since the epoch.
    pub next_attempt_ms: i64,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl MonitorState {
    /// Queues a notification, dropping the oldest beyond [`MAX_OUTBOX`].
    pub fn enqueue(&mut self, outgoing: Outgoing) {
        self.outbox.push(outgoing);
        if self.outbox.len() > MAX_OUTBOX {
            let excess = self.outbox.len() - MAX_OUTBOX;
            self.outbox.drain(..excess);
        }
    }

    /// Records a business figure for a window, keeping the newest windows only.
    pub fn post_business(&mut self, window_key: i64, name: &str, value: f64) {
        self.business
            .entry(window_key)
            .or_default()
            .insert(name.to_string(), value);
        while self.business.len() > KEPT_BUSINESS_WINDOWS {
            self.business.pop_first();
        }
    }
}
