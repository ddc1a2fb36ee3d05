//! Permission levels (MLflow's, plus DENY) and the kinds of resource they are granted on.

use std::fmt;

/// A level of access to one resource. Ordered: each level allows what the ones below it allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Nothing.
    NoPermissions,
    /// See it.
    Read,
    /// Read, and use it: call a model, invoke a gateway endpoint.
    Use,
    /// Use, and change it.
    Edit,
    /// Edit, delete it, and grant or revoke access to it.
    Manage,
}

impl Level {
    /// MLflow's name.
    pub fn name(self) -> &'static str {
        match self {
            Level::NoPermissions => "NO_PERMISSIONS",
            Level::Read => "READ",
            Level::Use => "USE",
            Level::Edit => "EDIT",
            Level::Manage => "MANAGE",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a grant says: a level, or DENY, which overrides every other grant on the same resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    /// Grants this level.
    Level(Level),
    /// Refuses everything, whatever else is granted.
    Deny,
}

impl Grant {
    /// Parses MLflow's names (case-insensitive).
    pub fn parse(text: &str) -> Option<Grant> {
        Some(match text.to_ascii_uppercase().as_str() {
            "NO_PERMISSIONS" => Grant::Level(Level::NoPermissions),
            "READ" => Grant::Level(Level::Read),
            "USE" => Grant::Level(Level::Use),
            "EDIT" => Grant::Level(Level::Edit),
            "MANAGE" => Grant::Level(Level::Manage),
            "DENY" => Grant::Deny,
            _ => return None,
        })
    }

    /// MLflow's name.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Level(level) => level.name(),
            Grant::Deny => "DENY",
        }
    }
}

/// The kinds of resource grants name. MLflow's names where MLflow has the kind.
pub const RESOURCE_TYPES: &[&str] = &[
    "experiment",
    "registered_model",
    "deployment",
    "monitor",
    "pipeline",
    "dataset",
    "gateway_key",
    "prompt",
    "scorer",
    "gateway_secret",
    "gateway_endpoint",
    "gateway_model_definition",
    "collection",
    "feature_store",
];

/// True for a kind grants may name.
pub fn is_resource_type(name: &str) -> bool {
    RESOURCE_TYPES.contains(&name)
}

/// One grant as it applies to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Resource kind.
    pub resource_type: String,
    /// Resource id or name, or `*`.
    pub pattern: String,
    /// What it grants.
    pub grant: Grant,
}

/// The form of an id the store itself uses: experiment ids are numbers, and the store reads `02`, ` 2` and
/// `+2` as experiment 2, so grants must be compared on that number, not on the text sent.
pub fn canonical_id<'a>(resource_type: &str, id: &'a str) -> std::borrow::Cow<'a, str> {
    if resource_type == "experiment" {
        let trimmed = id.trim();
        let unsigned = trimmed.strip_prefix('+').unwrap_or(trimmed);
        if let Ok(number) = unsigned.parse::<i64>() {
            return std::borrow::Cow::Owned(number.to_string());
        }
    }
    std::borrow::Cow::Borrowed(id)
}

/// The level a set of grants gives on one resource: DENY on it (or on `*`) wins; otherwise the highest level
/// granted on it or on `*`; otherwise `default`. `resource_id` `None` asks about the kind as a whole (creating
/// one), which only `*` grants answer.
pub fn effective_level(held: &[Held], default: Level, resource_type: &str, resource_id: Option<&str>) -> Level {
    let canonical = resource_id.map(|id| canonical_id(resource_type, id));
    let resource_id = canonical.as_deref();
    let mut best: Option<Level> = None;
    for grant in held.iter().filter(|grant| grant.resource_type == resource_type) {
        let applies = grant.pattern == "*" || Some(grant.pattern.as_str()) == resource_id;
        if !applies {
            continue;
        }
        match grant.grant {
            Grant::Deny => return Level::NoPermissions,
            Grant::Level(level) => best = Some(best.map_or(level, |best| best.max(level))),
        }
    }
    best.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(resource_type: &str, pattern: &str, grant: &str) -> Held {
        Held {
            resource_type: resource_type.into(),
            pattern: pattern.into(),
            grant: Grant::parse(grant).unwrap(),
        }
    }

    #[test]
    fn deny_overrides_every_grant_and_the_default() {
        let grants = vec![
            held("experiment", "*", "MANAGE"),
            held("experiment", "7", "DENY"),
            held("experiment", "8", "READ"),
        ];
        assert_eq!(
            effective_level(&grants, Level::Edit, "experiment", Some("7")),
            Level::NoPermissions
        );
        assert_eq!(
            effective_level(&grants, Level::Read, "experiment", Some("8")),
            Level::Manage
        );
        assert_eq!(
            effective_level(&grants, Level::Read, "registered_model", Some("8")),
            Level::Read
        );
        let denied_kind = vec![held("experiment", "*", "DENY"), held("experiment", "1", "MANAGE")];
        assert_eq!(
            effective_level(&denied_kind, Level::Read, "experiment", Some("1")),
            Level::NoPermissions
        );
    }

    #[test]
    fn experiment_ids_are_compared_as_the_store_reads_them() {
        let grants = vec![held("experiment", "*", "READ"), held("experiment", "2", "DENY")];
        for spelled in ["2", "02", " 2", "2 ", "+2", "002"] {
            assert_eq!(
                effective_level(&grants, Level::Read, "experiment", Some(spelled)),
                Level::NoPermissions
            );
        }
        assert_eq!(canonical_id("registered_model", "02"), "02");
    }

    #[test]
    fn a_grant_on_one_resource_says_nothing_about_creating_another() {
        let grants = vec![held("experiment", "3", "MANAGE")];
        assert_eq!(effective_level(&grants, Level::Read, "experiment", None), Level::Read);
        assert_eq!(
            effective_level(&grants, Level::Read, "experiment", Some("3")),
            Level::Manage
        );
    }

    #[test]
    fn levels_parse_as_mlflow_names_them() {
        for name in ["READ", "use", "Edit", "MANAGE", "NO_PERMISSIONS", "DENY"] {
            assert_eq!(Grant::parse(name).unwrap().name(), name.to_ascii_uppercase());
        }
        assert_eq!(Grant::parse("ADMIN"), None);
        assert_eq!(Grant::parse(""), None);
    }
}
