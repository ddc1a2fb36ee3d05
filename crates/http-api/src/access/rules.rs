//! What a route needs: the vocabulary of the one permission table (in the server crate, beside the router).

use loopline_access::{Action, Level};
use loopline_metadata_store::Owned;
use std::collections::HashMap;

/// Where a resource's id is found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A request field: the query string for GET (and for DELETE without a JSON body), the top level of the
    /// JSON body otherwise. The first name present is used (`run_id` or its legacy twin `run_uuid`).
    Field(&'static [&'static str]),
    /// A request field, or the default the handler uses when it is absent (runs go to experiment 0).
    FieldOr(&'static [&'static str], &'static str),
    /// A path parameter.
    Path(&'static str),
    /// The first segment of an artifact path (`{experiment_id}/{run_id}/artifacts/...`): the path parameter,
    /// or the `path` query field when the route has none (listing).
    ArtifactPath,
    /// A request header.
    Header(&'static str),
    /// A JSON pointer into the body (for ids nested below the top level).
    Pointer(&'static str),
    /// Nowhere: the route acts on the kind as a whole.
    Nothing,
}

/// How the id found leads to the resource whose grants apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// It is the resource's own id or name.
    Itself,
    /// It names a resource owned by another (a run, a trace, a logged model, a pipeline run).
    Owner(Owned),
}

/// How a created resource's id is found once the handler succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// In a request field (the name the caller chose).
    Request(&'static [&'static str]),
    /// In the JSON response (an id the server chose): a top-level field, or a JSON pointer (`/dataset/id`).
    Response(&'static str),
    /// In a path parameter.
    Path(&'static str),
}

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Need {
    /// Nothing: health probes and static files carry no data.
    Public,
    /// Any authenticated caller whose credentials' scopes cover the action (their own account, server facts).
    Signed(Action),
    /// An admin.
    Admin,
    /// A level on one resource.
    On {
        /// Resource kind the grants name.
        kind: &'static str,
        /// Where the id is.
        source: Source,
        /// How the id leads to the resource.
        via: Via,
        /// Level required.
        level: Level,
        /// Scope the credentials need.
        action: Action,
    },
    /// Creating a resource: EDIT on its kind as a whole; the creator then gets MANAGE on what was created.
    Create {
        /// Resource kind.
        kind: &'static str,
        /// Where the new resource's id is.
        created: Created,
    },
    /// A level on every resource a list field names (bulk reads): all must pass.
    Each {
        /// Resource kind the grants name.
        kind: &'static str,
        /// The list field (repeated in the query, or a JSON array).
        field: &'static str,
        /// How each id leads to the resource.
        via: Via,
        /// Level required.
        level: Level,
    },
    /// A level on what a URI in a request field refers to (`models:/NAME/...`, `models:/m-<id>`,
    /// `runs:/<run>/...`, `mlflow-artifacts:/<experiment>/...`): registering a version of someone else's
    /// files, or deploying someone else's model, needs the right to them.
    Refers {
        /// The field holding the URI (under any of these names).
        field: &'static [&'static str],
        /// Level required on what it refers to.
        level: Level,
    },
    /// A level on the resource a request field names, when the field is given (a monitor's deployment).
    Named {
        /// Resource kind.
        kind: &'static str,
        /// The field (under any of these names).
        field: &'static [&'static str],
        /// Level required.
        level: Level,
    },
    /// A level on a resource when it exists (serving routes also answer under a deployment's name).
    IfExists {
        /// Resource kind.
        kind: &'static str,
        /// Where its name is.
        source: Source,
        /// The lookup that says whether it exists (and its id).
        owned: Owned,
        /// Level required.
        level: Level,
    },
    /// A monitor's definition: alert actions move aliases and roll back deployments (EDIT on each), and
    /// outbound URLs (webhook actions, notification channels) reach other systems from the server's network
    /// position (admins only).
    MonitorSpec,
    /// Prometheus text: lines labelled with a model or deployment the caller may not read are dropped.
    MetricsText,
    /// A search or list: any caller with read scope; the handler shows only what the caller may read.
    Listing {
        /// Resource kind listed.
        kind: &'static str,
    },
    /// A whole list (no pages) in a JSON array: the guard removes the items the caller may not read.
    List {
        /// Resource kind listed.
        kind: &'static str,
        /// The field holding the array: a top-level name, or a JSON pointer (`/result/collections`) to one
        /// inside the answer.
        items: &'static str,
        /// Each item's id field.
        id: &'static str,
    },
    /// The handler decides, with the caller's principal (the access API: a user may read their own account,
    /// MANAGE on a resource lets one grant on it).
    Handler(Action),
}

impl Need {
    /// The scope the credentials must cover.
    pub fn action(&self) -> Action {
        match *self {
            Need::Public => Action::Read,
            Need::Signed(action) | Need::Handler(action) => action,
            Need::Admin => Action::Admin,
            Need::On { action, .. } => action,
            Need::Create { .. } => Action::Write,
            Need::Listing { .. }
            | Need::List { .. }
            | Need::Refers { .. }
            | Need::Named { .. }
            | Need::MetricsText
            | Need::IfExists { .. } => Action::Read,
            Need::MonitorSpec => Action::Write,
            Need::Each { level, .. } => {
                if level >= Level::Edit {
                    Action::Write
                } else {
                    Action::Read
                }
            }
        }
    }
}

/// Reading a resource found by its own id.
pub const fn read(kind: &'static str, source: Source) -> Need {
    Need::On {
        kind,
        source,
        via: Via::Itself,
        level: Level::Read,
        action: Action::Read,
    }
}

/// Changing a resource found by its own id.
pub const fn edit(kind: &'static str, source: Source) -> Need {
    Need::On {
        kind,
        source,
        via: Via::Itself,
        level: Level::Edit,
        action: Action::Write,
    }
}

/// Deleting a resource (or a change as strong): MANAGE.
pub const fn manage(kind: &'static str, source: Source) -> Need {
    Need::On {
        kind,
        source,
        via: Via::Itself,
        level: Level::Manage,
        action: Action::Write,
    }
}

/// Calling a served model or deployment: USE.
pub const fn predict(kind: &'static str, source: Source) -> Need {
    Need::On {
        kind,
        source,
        via: Via::Itself,
        level: Level::Use,
        action: Action::Predict,
    }
}

/// A level on the kind as a whole (routes that name no single resource).
pub const fn kind_wide(kind: &'static str, level: Level, action: Action) -> Need {
    Need::On {
        kind,
        source: Source::Nothing,
        via: Via::Itself,
        level,
        action,
    }
}

/// Deleting something an experiment (or pipeline) owns.
pub const fn manage_owned(owned: Owned, source: Source) -> Need {
    Need::On {
        kind: owner_kind(owned),
        source,
        via: Via::Owner(owned),
        level: Level::Manage,
        action: Action::Write,
    }
}

/// Reading something an experiment (or pipeline) owns.
pub const fn read_owned(owned: Owned, source: Source) -> Need {
    Need::On {
        kind: owner_kind(owned),
        source,
        via: Via::Owner(owned),
        level: Level::Read,
        action: Action::Read,
    }
}

/// Changing something an experiment (or pipeline) owns.
pub const fn edit_owned(owned: Owned, source: Source) -> Need {
    Need::On {
        kind: owner_kind(owned),
        source,
        via: Via::Owner(owned),
        level: Level::Edit,
        action: Action::Write,
    }
}

/// The kind of the owner.
pub const fn owner_kind(owned: Owned) -> &'static str {
    match owned {
        Owned::Run | Owned::Trace | Owned::LoggedModel => "experiment",
        Owned::PipelineRun => "pipeline",
        Owned::ExperimentName | Owned::Issue => "experiment",
        Owned::Deployment | Owned::MonitorDeployment => "deployment",
        Owned::MonitorModel => "registered_model",
    }
}

/// Request field names.
pub const EXPERIMENT_ID: Source = Source::Field(&["experiment_id"]);
/// `run_id` or its legacy twin.
pub const RUN_ID: Source = Source::Field(&["run_id", "run_uuid"]);
/// A registered model's name.
pub const NAME: Source = Source::Field(&["name"]);
/// A trace id (MLflow 2 calls it the request id).
pub const TRACE_ID: Source = Source::Field(&["trace_id", "request_id"]);
/// A logged model id.
pub const MODEL_ID: Source = Source::Field(&["model_id"]);

/// What a successful request changes about grants: a resource renamed or deleted takes its grants along,
/// so a new resource of the old name does not inherit them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum After {
    /// Grants on the resource named by the first field move to the name in the second.
    Rename {
        /// Resource kind.
        kind: &'static str,
        /// Field with the old name.
        from: &'static [&'static str],
        /// Field with the new name.
        to: &'static [&'static str],
    },
    /// Grants on the resource named by the field (or path parameter) are removed.
    Delete {
        /// Resource kind.
        kind: &'static str,
        /// Where its name is.
        source: Source,
    },
}

/// The table: method and route path (as registered, `{param}` included) to what the route needs. A request
/// finds its row with one lookup by path and a scan of the few methods declared there, with nothing
/// allocated: the table is read on every request.
#[derive(Debug, Default)]
pub struct RouteTable {
    // The keys are this server's own route patterns, so a fast hash needs no protection from chosen keys.
    routes: HashMap<String, Vec<Declared>, foldhash::fast::RandomState>,
}

/// One method of one route.
#[derive(Debug)]
pub struct Declared {
    /// `GET`, `POST`, ... or `*` for every method.
    pub method: String,
    /// What the request needs.
    pub need: Need,
    /// Needs checked after the main one (all must pass).
    pub also: Vec<Need>,
    /// What a successful request changes about grants.
    pub after: Option<After>,
}

impl RouteTable {
    /// A table from its rows. A row listed twice is a mistake in the table: the test that builds it fails.
    pub fn new(rows: &[(&str, &str, Need)]) -> Result<RouteTable, String> {
        let mut routes: HashMap<String, Vec<Declared>, foldhash::fast::RandomState> = HashMap::default();
        for (method, path, need) in rows {
            let declared = routes.entry(path.to_string()).or_default();
            if declared.iter().any(|row| row.method == *method) {
                return Err(format!("{method} {path} is declared twice"));
            }
            declared.push(Declared {
                method: method.to_string(),
                need: *need,
                also: Vec::new(),
                after: None,
            });
        }
        Ok(RouteTable { routes })
    }

    fn declared_mut(&mut self, method: &str, path: &str) -> Option<&mut Declared> {
        self.routes.get_mut(path)?.iter_mut().find(|row| row.method == method)
    }

    /// Adds needs checked after a route's main one (all must pass).
    pub fn with_also(mut self, rows: &[(&str, &str, Need)]) -> Result<RouteTable, String> {
        for (method, path, need) in rows {
            let Some(declared) = self.declared_mut(method, path) else {
                return Err(format!("{method} {path} has a further need but no declaration"));
            };
            declared.also.push(*need);
        }
        Ok(self)
    }

    /// Adds what successful requests to some routes change about grants.
    pub fn with_after(mut self, rows: &[(&str, &str, After)]) -> Result<RouteTable, String> {
        for (method, path, after) in rows {
            let Some(declared) = self.declared_mut(method, path) else {
                return Err(format!("{method} {path} has an after-effect but no declaration"));
            };
            declared.after = Some(*after);
        }
        Ok(self)
    }

    /// The row a request to `path` with `method` falls under (`None`: not declared, so refused). HEAD is
    /// read as GET; a `*` row covers the methods the route has no row of its own for.
    pub fn route(&self, method: &str, path: &str) -> Option<&Declared> {
        let method = if method == "HEAD" { "GET" } else { method };
        let declared = self.routes.get(path)?;
        declared
            .iter()
            .find(|row| row.method == method)
            .or_else(|| declared.iter().find(|row| row.method == "*"))
    }

    /// What a route needs (`None`: not declared, so refused).
    pub fn need(&self, method: &str, path: &str) -> Option<&Need> {
        self.route(method, path).map(|row| &row.need)
    }

    /// The further needs of a route.
    pub fn also(&self, method: &str, path: &str) -> &[Need] {
        self.route(method, path).map_or(&[], |row| row.also.as_slice())
    }

    /// What a successful request to the route changes about grants.
    pub fn after(&self, method: &str, path: &str) -> Option<&After> {
        self.route(method, path).and_then(|row| row.after.as_ref())
    }

    /// The methods declared for a route path (for a 405 naming them).
    pub fn methods(&self, path: &str) -> Vec<String> {
        let mut methods: Vec<String> = self
            .routes
            .get(path)
            .map(|declared| declared.iter().map(|row| row.method.clone()).collect())
            .unwrap_or_default();
        methods.sort();
        methods
    }

    /// Every declared row: (method, path) and its need.
    pub fn rows(&self) -> impl Iterator<Item = ((String, String), &Need)> {
        self.routes.iter().flat_map(|(path, declared)| {
            declared
                .iter()
                .map(move |row| ((row.method.clone(), path.clone()), &row.need))
        })
    }
}
