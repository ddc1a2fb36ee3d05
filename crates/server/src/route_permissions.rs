//! Who may call each route: the one table the access guard reads, beside the router it guards. A route
//! the router answers without a row here is refused at run time, and the test that enumerates the router
//! fails, so no route can be added without saying who may call it.

use loopline_access::{Action, Level};
use loopline_http_api::access::Via;
use loopline_http_api::access::rules::{
    After, Created, EXPERIMENT_ID, NAME, Need, RUN_ID, RouteTable, Source, TRACE_ID, edit, edit_owned, kind_wide,
    manage, manage_owned, predict, read, read_owned,
};
use loopline_metadata_store::Owned;

const API2: &str = "/api/2.0/mlflow";
const API3: &str = "/api/3.0/mlflow";
const OWN: &str = "/api/loopline/v1";

const EXPERIMENT: &str = "experiment";
const MODEL: &str = "registered_model";
const DEPLOYMENT: &str = "deployment";
const MONITOR: &str = "monitor";
const PIPELINE: &str = "pipeline";
const DATASET: &str = "dataset";
const GATEWAY: &str = loopline_http_api::openai::GATEWAY_ENDPOINT;

const SIGNED_READ: Need = Need::Signed(Action::Read);
const SIGNED_WRITE: Need = Need::Signed(Action::Write);

fn path(name: &'static str) -> Source {
    Source::Path(name)
}

/// A level on a model served under `/v2/models/{name}` or `/models/{name}`.
const fn serving(level: Level) -> Need {
    Need::On {
        kind: MODEL,
        source: Source::Path("name"),
        via: loopline_http_api::access::Via::Itself,
        level,
        action: Action::Predict,
    }
}

/// MLflow's tracking, registry, logged-model, trace and artifact routes.
fn mlflow_rows() -> Vec<(String, &'static str, Need)> {
    let experiment_name = Need::On {
        kind: EXPERIMENT,
        source: Source::Field(&["experiment_name"]),
        via: loopline_http_api::access::Via::Owner(Owned::ExperimentName),
        level: Level::Read,
        action: Action::Read,
    };
    let rows: Vec<(&str, &str, &'static str, Need)> = vec![
        // Experiments.
        (API2, "/experiments/get", "GET", read(EXPERIMENT, EXPERIMENT_ID)),
        (API2, "/experiments/get-by-name", "GET", experiment_name),
        (
            API2,
            "/experiments/create",
            "POST",
            Need::Create {
                kind: EXPERIMENT,
                created: Created::Response("experiment_id"),
            },
        ),
        (API2, "/experiments/delete", "POST", manage(EXPERIMENT, EXPERIMENT_ID)),
        (API2, "/experiments/restore", "POST", manage(EXPERIMENT, EXPERIMENT_ID)),
        (API2, "/experiments/update", "POST", edit(EXPERIMENT, EXPERIMENT_ID)),
        (
            API2,
            "/experiments/set-experiment-tag",
            "POST",
            edit(EXPERIMENT, EXPERIMENT_ID),
        ),
        (
            API2,
            "/experiments/delete-experiment-tag",
            "POST",
            edit(EXPERIMENT, EXPERIMENT_ID),
        ),
        (API2, "/experiments/search", "GET", Need::Listing { kind: EXPERIMENT }),
        (API2, "/experiments/search", "POST", Need::Listing { kind: EXPERIMENT }),
        (
            API2,
            "/experiments/search-datasets",
            "POST",
            Need::Each {
                kind: EXPERIMENT,
                field: "experiment_ids",
                via: Via::Itself,
                level: Level::Read,
            },
        ),
        // Runs.
        (
            API2,
            "/runs/create",
            "POST",
            edit(EXPERIMENT, Source::FieldOr(&["experiment_id"], "0")),
        ),
        (
            API2,
            "/runs/create-promptlab-run",
            "POST",
            edit(EXPERIMENT, EXPERIMENT_ID),
        ),
        (API2, "/runs/get", "GET", read_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/delete", "POST", manage_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/restore", "POST", manage_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/update", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/log-batch", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/log-metric", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/log-parameter", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/log-inputs", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/outputs", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/set-tag", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/delete-tag", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/runs/search", "GET", Need::Listing { kind: EXPERIMENT }),
        (API2, "/runs/search", "POST", Need::Listing { kind: EXPERIMENT }),
        (API2, "/metrics/get-history", "GET", read_owned(Owned::Run, RUN_ID)),
        (
            API2,
            "/metrics/get-history-bulk",
            "GET",
            Need::Each {
                kind: EXPERIMENT,
                field: "run_id",
                via: Via::Owner(Owned::Run),
                level: Level::Read,
            },
        ),
        (
            API2,
            "/metrics/get-history-bulk-interval",
            "GET",
            Need::Each {
                kind: EXPERIMENT,
                field: "run_ids",
                via: Via::Owner(Owned::Run),
                level: Level::Read,
            },
        ),
        // Artifacts.
        (API2, "/artifacts/list", "GET", read_owned(Owned::Run, RUN_ID)),
        (API2, "/upload-artifact", "POST", edit_owned(Owned::Run, RUN_ID)),
        ("", "/get-artifact", "GET", read_owned(Owned::Run, RUN_ID)),
        ("", "/model-versions/get-artifact", "GET", read(MODEL, NAME)),
        (
            "/api/2.0/mlflow-artifacts",
            "/artifacts",
            "GET",
            read(EXPERIMENT, Source::ArtifactPath),
        ),
        (
            "/api/2.0/mlflow-artifacts",
            "/artifacts/{*path}",
            "GET",
            read(EXPERIMENT, Source::ArtifactPath),
        ),
        (
            "/api/2.0/mlflow-artifacts",
            "/artifacts/{*path}",
            "PUT",
            edit(EXPERIMENT, Source::ArtifactPath),
        ),
        (
            "/api/2.0/mlflow-artifacts",
            "/artifacts/{*path}",
            "DELETE",
            manage(EXPERIMENT, Source::ArtifactPath),
        ),
        // Registered models and versions.
        (
            API2,
            "/registered-models/create",
            "POST",
            Need::Create {
                kind: MODEL,
                created: Created::Request(&["name"]),
            },
        ),
        (API2, "/registered-models/get", "GET", read(MODEL, NAME)),
        (API2, "/registered-models/get-latest-versions", "GET", read(MODEL, NAME)),
        (
            API2,
            "/registered-models/get-latest-versions",
            "POST",
            read(MODEL, NAME),
        ),
        (API2, "/registered-models/alias", "GET", read(MODEL, NAME)),
        (API2, "/registered-models/alias", "POST", edit(MODEL, NAME)),
        (API2, "/registered-models/alias", "DELETE", edit(MODEL, NAME)),
        (API2, "/registered-models/update", "PATCH", edit(MODEL, NAME)),
        (API2, "/registered-models/set-tag", "POST", edit(MODEL, NAME)),
        (API2, "/registered-models/delete-tag", "DELETE", edit(MODEL, NAME)),
        (API2, "/registered-models/rename", "POST", manage(MODEL, NAME)),
        (API2, "/registered-models/delete", "DELETE", manage(MODEL, NAME)),
        (API2, "/registered-models/search", "GET", Need::Listing { kind: MODEL }),
        (API2, "/model-versions/create", "POST", edit(MODEL, NAME)),
        (API2, "/model-versions/get", "GET", read(MODEL, NAME)),
        (API2, "/model-versions/get-download-uri", "GET", read(MODEL, NAME)),
        (API2, "/model-versions/update", "PATCH", edit(MODEL, NAME)),
        (API2, "/model-versions/set-tag", "POST", edit(MODEL, NAME)),
        (API2, "/model-versions/delete-tag", "DELETE", edit(MODEL, NAME)),
        (API2, "/model-versions/transition-stage", "POST", edit(MODEL, NAME)),
        (API2, "/model-versions/delete", "DELETE", manage(MODEL, NAME)),
        (API2, "/model-versions/search", "GET", Need::Listing { kind: MODEL }),
        // Logged models.
        (API2, "/logged-models", "POST", edit(EXPERIMENT, EXPERIMENT_ID)),
        (
            API2,
            "/logged-models/search",
            "POST",
            Need::Listing { kind: EXPERIMENT },
        ),
        (
            API2,
            "/logged-models/{model_id}",
            "GET",
            read_owned(Owned::LoggedModel, path("model_id")),
        ),
        (
            API2,
            "/logged-models/{model_id}",
            "PATCH",
            edit_owned(Owned::LoggedModel, path("model_id")),
        ),
        (
            API2,
            "/logged-models/{model_id}",
            "DELETE",
            manage_owned(Owned::LoggedModel, path("model_id")),
        ),
        (
            API2,
            "/logged-models/{model_id}/tags",
            "PATCH",
            edit_owned(Owned::LoggedModel, path("model_id")),
        ),
        (
            API2,
            "/logged-models/{model_id}/tags/{key}",
            "DELETE",
            edit_owned(Owned::LoggedModel, path("model_id")),
        ),
        (
            API2,
            "/logged-models/{model_id}/params",
            "POST",
            edit_owned(Owned::LoggedModel, path("model_id")),
        ),
        (
            API2,
            "/logged-models/{model_id}/artifacts/directories",
            "GET",
            read_owned(Owned::LoggedModel, path("model_id")),
        ),
        (
            API2,
            "/logged-models/{model_id}/artifacts/files",
            "GET",
            read_owned(Owned::LoggedModel, path("model_id")),
        ),
        // Traces (MLflow 2 and 3 shapes).
        (API2, "/traces", "POST", edit(EXPERIMENT, EXPERIMENT_ID)),
        (API2, "/traces", "GET", Need::Listing { kind: EXPERIMENT }),
        (
            API2,
            "/traces/{request_id}",
            "PATCH",
            edit_owned(Owned::Trace, path("request_id")),
        ),
        (
            API2,
            "/traces/{request_id}/info",
            "GET",
            read_owned(Owned::Trace, path("request_id")),
        ),
        (
            API2,
            "/traces/{trace_id}/tags",
            "PATCH",
            edit_owned(Owned::Trace, path("trace_id")),
        ),
        (
            API2,
            "/traces/{trace_id}/tags",
            "DELETE",
            edit_owned(Owned::Trace, path("trace_id")),
        ),
        (API2, "/traces/delete-traces", "POST", manage(EXPERIMENT, EXPERIMENT_ID)),
        (API2, "/traces/link-prompts", "POST", edit_owned(Owned::Trace, TRACE_ID)),
        (API2, "/traces/link-to-run", "POST", edit_owned(Owned::Run, RUN_ID)),
        (API2, "/get-trace-artifact", "GET", read_owned(Owned::Trace, TRACE_ID)),
        (API3, "/get-trace-artifact", "GET", read_owned(Owned::Trace, TRACE_ID)),
        (
            API3,
            "/traces",
            "POST",
            edit(
                EXPERIMENT,
                Source::Pointer("/trace/trace_info/trace_location/mlflow_experiment/experiment_id"),
            ),
        ),
        (API3, "/traces/get", "GET", read_owned(Owned::Trace, TRACE_ID)),
        (
            API3,
            "/traces/{trace_id}",
            "GET",
            read_owned(Owned::Trace, path("trace_id")),
        ),
        (
            API3,
            "/traces/batchGet",
            "GET",
            Need::Each {
                kind: EXPERIMENT,
                field: "trace_ids",
                via: Via::Owner(Owned::Trace),
                level: Level::Read,
            },
        ),
        (
            API3,
            "/traces/batchGetInfos",
            "POST",
            Need::Each {
                kind: EXPERIMENT,
                field: "trace_ids",
                via: Via::Owner(Owned::Trace),
                level: Level::Read,
            },
        ),
        (API3, "/traces/search", "POST", Need::Listing { kind: EXPERIMENT }),
        (
            API3,
            "/traces/metrics",
            "POST",
            Need::Each {
                kind: EXPERIMENT,
                field: "experiment_ids",
                via: Via::Itself,
                level: Level::Read,
            },
        ),
        (
            API3,
            "/traces/calculate-filter-correlation",
            "POST",
            Need::Each {
                kind: EXPERIMENT,
                field: "experiment_ids",
                via: Via::Itself,
                level: Level::Read,
            },
        ),
        (
            API3,
            "/traces/{trace_id}/assessments",
            "POST",
            edit_owned(Owned::Trace, path("trace_id")),
        ),
        (
            API3,
            "/traces/{trace_id}/assessments/{assessment_id}",
            "GET",
            read_owned(Owned::Trace, path("trace_id")),
        ),
        (
            API3,
            "/traces/{trace_id}/assessments/{assessment_id}",
            "PATCH",
            edit_owned(Owned::Trace, path("trace_id")),
        ),
        (
            API3,
            "/traces/{trace_id}/assessments/{assessment_id}",
            "DELETE",
            edit_owned(Owned::Trace, path("trace_id")),
        ),
        (
            "",
            "/v1/traces",
            "POST",
            edit(EXPERIMENT, Source::Header("x-mlflow-experiment-id")),
        ),
        // Evaluation datasets, scorers and issues (MLflow 3).
        (
            API3,
            "/datasets/create",
            "POST",
            Need::Create {
                kind: DATASET,
                created: Created::Response("/dataset/dataset_id"),
            },
        ),
        (API3, "/datasets/search", "POST", Need::Listing { kind: DATASET }),
        (API3, "/datasets/{dataset_id}", "GET", read(DATASET, path("dataset_id"))),
        (
            API3,
            "/datasets/{dataset_id}",
            "DELETE",
            manage(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/experiment-ids",
            "GET",
            read(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/records",
            "GET",
            read(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/records",
            "POST",
            edit(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/records",
            "DELETE",
            edit(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/tags",
            "PATCH",
            edit(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/tags/{key}",
            "DELETE",
            edit(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/add-experiments",
            "POST",
            edit(DATASET, path("dataset_id")),
        ),
        (
            API3,
            "/datasets/{dataset_id}/remove-experiments",
            "POST",
            edit(DATASET, path("dataset_id")),
        ),
        (API3, "/scorers/register", "POST", edit(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/scorers/list", "GET", read(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/scorers/versions", "GET", read(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/scorers/get", "GET", read(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/scorers/delete", "DELETE", edit(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/scorers/online-configs", "GET", read(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/scorers/online-config", "PUT", edit(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/issues", "POST", edit(EXPERIMENT, EXPERIMENT_ID)),
        (API3, "/issues/search", "POST", read(EXPERIMENT, EXPERIMENT_ID)),
        (
            API3,
            "/issues/{issue_id}",
            "GET",
            read_owned(Owned::Issue, path("issue_id")),
        ),
        (
            API3,
            "/issues/{issue_id}",
            "PATCH",
            edit_owned(Owned::Issue, path("issue_id")),
        ),
        // Webhooks reach other systems with the server's network position: admins only.
        (API2, "/webhooks", "GET", Need::Admin),
        (API2, "/webhooks", "POST", Need::Admin),
        (API2, "/webhooks/{webhook_id}", "GET", Need::Admin),
        (API2, "/webhooks/{webhook_id}", "PATCH", Need::Admin),
        (API2, "/webhooks/{webhook_id}", "DELETE", Need::Admin),
        (API2, "/webhooks/{webhook_id}/test", "POST", Need::Admin),
        // Server facts and features that are off.
        (API3, "/server-info", "GET", SIGNED_READ),
        (API3, "/assistant/config", "GET", SIGNED_READ),
        (API3, "/assistant/providers", "GET", SIGNED_READ),
        (API3, "/ui-telemetry", "GET", SIGNED_READ),
        (API3, "/ui-telemetry", "POST", SIGNED_READ),
        (API2, "/gateway-proxy", "GET", SIGNED_READ),
        ("", "/graphql", "GET", Need::Listing { kind: EXPERIMENT }),
        ("", "/graphql", "POST", Need::Listing { kind: EXPERIMENT }),
        // MLflow's auth API: the handlers check "oneself or an admin" and "MANAGE on the resource".
        (API2, "/users/create", "POST", Need::Admin),
        (API2, "/users/get", "GET", Need::Handler(Action::Read)),
        (API2, "/users/current", "GET", SIGNED_READ),
        (API2, "/users/list", "GET", Need::Admin),
        (API2, "/users/update-password", "PATCH", Need::Handler(Action::Admin)),
        (API2, "/users/update-admin", "PATCH", Need::Admin),
        (API2, "/users/delete", "DELETE", Need::Admin),
        (API3, "/roles/create", "POST", Need::Admin),
        (API3, "/roles/get", "GET", Need::Admin),
        (API3, "/roles/list", "GET", Need::Admin),
        (API3, "/roles/update", "PATCH", Need::Admin),
        (API3, "/roles/delete", "DELETE", Need::Admin),
        (API3, "/roles/permissions/add", "POST", Need::Admin),
        (API3, "/roles/permissions/remove", "DELETE", Need::Admin),
        (API3, "/roles/permissions/list", "GET", Need::Admin),
        (API3, "/roles/permissions/update", "PATCH", Need::Admin),
        (API3, "/roles/assign", "POST", Need::Admin),
        (API3, "/roles/unassign", "DELETE", Need::Admin),
        (API3, "/roles/users/list", "GET", Need::Admin),
        (API3, "/users/roles/list", "GET", Need::Handler(Action::Read)),
        (API3, "/users/current/permissions", "GET", SIGNED_READ),
        (API3, "/users/permissions/list", "GET", Need::Handler(Action::Read)),
        (API3, "/users/permissions/grant", "POST", Need::Handler(Action::Admin)),
        (API3, "/users/permissions/revoke", "POST", Need::Handler(Action::Admin)),
        (API3, "/users/permissions/get", "GET", Need::Handler(Action::Read)),
    ];
    rows.into_iter()
        .map(|(prefix, route, method, need)| (format!("{prefix}{route}"), method, need))
        .collect()
}

/// Serving, deployments, monitoring, pipelines, data, gates, the web pages and Loopline's access API.
fn loopline_rows() -> Vec<(String, &'static str, Need)> {
    let rows: Vec<(&str, &str, &'static str, Need)> = vec![
        // Probes and static files carry no data.
        ("", "/health", "GET", Need::Public),
        ("", "/version", "GET", Need::Public),
        ("", "/v2/health/live", "GET", Need::Public),
        ("", "/v2/health/ready", "GET", Need::Public),
        ("", "/", "GET", Need::Public),
        ("", "/static-files/{*path}", "GET", Need::Public),
        ("", "/loopline/assets/live.js", "GET", Need::Public),
        ("", "/loopline/assets/loopline.css", "GET", Need::Public),
        (OWN, "/version", "GET", Need::Public),
        ("", "/metrics", "GET", Need::MetricsText),
        // Browser sign-in with the OIDC provider: reached before anyone is signed in; the callback checks
        // the sign-in's own sealed state, the provider's code and the ID token itself.
        ("", "/auth/login", "GET", Need::Public),
        ("", "/auth/callback", "GET", Need::Public),
        ("", "/auth/logout", "POST", Need::Public),
        // Serving: USE on the model (or deployment) is the `predict` permission.
        ("", "/v2", "GET", Need::Signed(Action::Predict)),
        ("", "/v2/models/{name}", "GET", serving(Level::Use)),
        ("", "/v2/models/{name}/ready", "GET", serving(Level::Use)),
        ("", "/v2/models/{name}/versions/{version}", "GET", serving(Level::Use)),
        (
            "",
            "/v2/models/{name}/versions/{version}/ready",
            "GET",
            serving(Level::Use),
        ),
        ("", "/v2/models/{name}/infer", "POST", predict(MODEL, path("name"))),
        (
            "",
            "/v2/models/{name}/versions/{version}/infer",
            "POST",
            predict(MODEL, path("name")),
        ),
        (
            "",
            "/models/{name}/versions/{version}/invocations",
            "POST",
            predict(MODEL, path("name")),
        ),
        (
            "",
            "/deployments/{name}/invocations",
            "POST",
            predict(DEPLOYMENT, path("name")),
        ),
        // The LLM gateway (OpenAI's API): USE on the gateway model a request names. The list shows only those.
        (
            "",
            "/v1/chat/completions",
            "POST",
            predict(GATEWAY, Source::Field(&["model"])),
        ),
        (
            "",
            "/v1/completions",
            "POST",
            predict(GATEWAY, Source::Field(&["model"])),
        ),
        (
            "",
            "/v1/embeddings",
            "POST",
            predict(GATEWAY, Source::Field(&["model"])),
        ),
        ("", "/v1/messages", "POST", predict(GATEWAY, Source::Field(&["model"]))),
        ("", "/v1/models", "GET", Need::Signed(Action::Predict)),
        ("", "/v1/models/{*id}", "GET", predict(GATEWAY, path("id"))),
        (OWN, "/feedback", "POST", Need::Signed(Action::Predict)),
        (OWN, "/predictions", "GET", read(MODEL, Source::Field(&["model"]))),
        (OWN, "/predictions/flush", "POST", Need::Admin),
        // Deployments.
        (
            OWN,
            "/deployments",
            "GET",
            Need::List {
                kind: DEPLOYMENT,
                items: "deployments",
                id: "name",
            },
        ),
        (
            OWN,
            "/deployments",
            "POST",
            Need::Create {
                kind: DEPLOYMENT,
                created: Created::Request(&["name"]),
            },
        ),
        (OWN, "/deployments/{name}", "GET", read(DEPLOYMENT, path("name"))),
        (OWN, "/deployments/{name}", "PUT", edit(DEPLOYMENT, path("name"))),
        (OWN, "/deployments/{name}", "PATCH", edit(DEPLOYMENT, path("name"))),
        (OWN, "/deployments/{name}", "DELETE", manage(DEPLOYMENT, path("name"))),
        (OWN, "/deployments/{name}/events", "GET", read(DEPLOYMENT, path("name"))),
        (
            OWN,
            "/deployments/{name}/promote",
            "POST",
            edit(DEPLOYMENT, path("name")),
        ),
        (
            OWN,
            "/deployments/{name}/rollback",
            "POST",
            edit(DEPLOYMENT, path("name")),
        ),
        // Monitors.
        (
            OWN,
            "/monitors",
            "GET",
            Need::List {
                kind: MONITOR,
                items: "monitors",
                id: "name",
            },
        ),
        (
            OWN,
            "/monitors",
            "POST",
            Need::Create {
                kind: MONITOR,
                created: Created::Request(&["name"]),
            },
        ),
        (OWN, "/monitors/{name}", "GET", read(MONITOR, path("name"))),
        (OWN, "/monitors/{name}", "DELETE", manage(MONITOR, path("name"))),
        (OWN, "/monitors/{name}/events", "GET", read(MONITOR, path("name"))),
        (OWN, "/monitors/{name}/windows", "GET", read(MONITOR, path("name"))),
        (
            OWN,
            "/monitors/{name}/windows/{window}/report",
            "GET",
            read(MONITOR, path("name")),
        ),
        (OWN, "/monitors/{name}/rollup", "GET", read(MONITOR, path("name"))),
        (OWN, "/monitors/{name}/review-queue", "GET", read(MONITOR, path("name"))),
        (
            OWN,
            "/monitors/{name}/review-queue/labels",
            "POST",
            edit(MONITOR, path("name")),
        ),
        (
            OWN,
            "/monitors/{name}/business-metrics",
            "POST",
            edit(MONITOR, path("name")),
        ),
        (OWN, "/monitors/{name}/run", "POST", edit(MONITOR, path("name"))),
        (
            OWN,
            "/monitors/{name}/alerts/{rule}/acknowledge",
            "POST",
            edit(MONITOR, path("name")),
        ),
        (
            OWN,
            "/monitors/{name}/alerts/{rule}/silence",
            "POST",
            edit(MONITOR, path("name")),
        ),
        // Pipelines.
        (
            OWN,
            "/pipelines",
            "GET",
            Need::List {
                kind: PIPELINE,
                items: "pipelines",
                id: "name",
            },
        ),
        (
            OWN,
            "/pipelines",
            "POST",
            Need::Create {
                kind: PIPELINE,
                created: Created::Request(&["name"]),
            },
        ),
        (OWN, "/pipelines/{name}", "GET", read(PIPELINE, path("name"))),
        (OWN, "/pipelines/{name}", "PUT", edit(PIPELINE, path("name"))),
        (OWN, "/pipelines/{name}", "DELETE", manage(PIPELINE, path("name"))),
        (OWN, "/pipelines/{name}/runs", "GET", read(PIPELINE, path("name"))),
        (OWN, "/pipelines/{name}/runs", "POST", edit(PIPELINE, path("name"))),
        (
            OWN,
            "/pipeline-runs/{run_id}",
            "GET",
            read_owned(Owned::PipelineRun, path("run_id")),
        ),
        (
            OWN,
            "/pipeline-runs/{run_id}/logs/{step}",
            "GET",
            read_owned(Owned::PipelineRun, path("run_id")),
        ),
        (
            OWN,
            "/pipeline-runs/{run_id}/cancel",
            "POST",
            edit_owned(Owned::PipelineRun, path("run_id")),
        ),
        // Versioned data (content-addressed objects belong to no one dataset: the kind as a whole).
        (
            OWN,
            "/datasets",
            "GET",
            Need::List {
                kind: DATASET,
                items: "datasets",
                id: "name",
            },
        ),
        (OWN, "/datasets/{name}/versions", "GET", read(DATASET, path("name"))),
        (OWN, "/datasets/{name}/versions", "POST", edit(DATASET, path("name"))),
        (
            OWN,
            "/datasets/{name}/versions/{version}",
            "GET",
            read(DATASET, path("name")),
        ),
        (
            OWN,
            "/data/objects/{id}",
            "GET",
            kind_wide(DATASET, Level::Read, Action::Read),
        ),
        (
            OWN,
            "/data/objects/{id}",
            "PUT",
            kind_wide(DATASET, Level::Edit, Action::Write),
        ),
        (
            OWN,
            "/data/objects/missing",
            "POST",
            kind_wide(DATASET, Level::Read, Action::Read),
        ),
        (OWN, "/data/gc", "POST", Need::Admin),
        (OWN, "/lineage", "GET", read(MODEL, Source::Field(&["model"]))),
        // Quality gates, references and alias history on registered models.
        (OWN, "/registered-models/alias-history", "GET", read(MODEL, NAME)),
        (
            OWN,
            "/registered-models/{name}/gate-policy",
            "GET",
            read(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/gate-policy",
            "PUT",
            edit(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/gate-policy",
            "DELETE",
            manage(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/gate-overrides",
            "GET",
            read(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/versions/{version}/gate",
            "GET",
            read(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/versions/{version}/gate",
            "POST",
            edit(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/versions/{version}/evaluate",
            "POST",
            edit(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/versions/{version}/reference",
            "GET",
            read(MODEL, path("name")),
        ),
        (
            OWN,
            "/registered-models/{name}/versions/{version}/reference",
            "PUT",
            edit(MODEL, path("name")),
        ),
        // Moving an alias over a failed gate is the strongest change to a model.
        (
            OWN,
            "/registered-models/{name}/aliases/{alias}/override",
            "POST",
            manage(MODEL, path("name")),
        ),
        // Loopline's pages act through the API above, in-process, with the caller's credentials.
        ("", "/loopline", "GET", SIGNED_READ),
        ("", "/loopline/", "GET", SIGNED_READ),
        ("", "/loopline/data", "GET", SIGNED_READ),
        ("", "/loopline/data/{name}", "GET", SIGNED_READ),
        ("", "/loopline/deployments", "GET", SIGNED_READ),
        ("", "/loopline/deployments/{name}", "GET", SIGNED_READ),
        ("", "/loopline/deployments/{name}/{action}", "GET", SIGNED_READ),
        ("", "/loopline/deployments/{name}/{action}", "POST", SIGNED_WRITE),
        ("", "/loopline/models", "GET", SIGNED_READ),
        ("", "/loopline/models/{name}", "GET", SIGNED_READ),
        ("", "/loopline/models/{name}/versions/{version}", "GET", SIGNED_READ),
        ("", "/loopline/monitors", "GET", SIGNED_READ),
        ("", "/loopline/monitors/{name}", "GET", SIGNED_READ),
        ("", "/loopline/pipelines", "GET", SIGNED_READ),
        ("", "/loopline/pipelines/{name}", "GET", SIGNED_READ),
        ("", "/loopline/pipeline-runs/{run}", "GET", SIGNED_READ),
        ("", "/loopline/predictions", "GET", SIGNED_READ),
        // Loopline's access API.
        (OWN, "/access/tokens", "POST", Need::Signed(Action::Admin)),
        (OWN, "/access/tokens", "GET", SIGNED_READ),
        (OWN, "/access/tokens/{token_id}", "DELETE", Need::Signed(Action::Admin)),
        (OWN, "/access/service-accounts", "POST", Need::Admin),
        (OWN, "/access/audit", "GET", Need::Admin),
        (OWN, "/access/audit/export", "GET", Need::Admin),
        // The one-time code in the request is the credential (checked by the handler).
        (OWN, "/access/bootstrap", "POST", Need::Public),
        // The LLM gateway's keys, team limits and spend.
        (OWN, "/gateway/keys", "POST", Need::Admin),
        (OWN, "/gateway/keys", "GET", Need::Admin),
        (OWN, "/gateway/keys/{token_id}", "GET", Need::Admin),
        (OWN, "/gateway/keys/{token_id}", "PATCH", Need::Admin),
        (OWN, "/gateway/keys/{token_id}", "DELETE", Need::Admin),
        (OWN, "/gateway/teams", "GET", Need::Admin),
        (OWN, "/gateway/teams/{team}", "PUT", Need::Admin),
        (OWN, "/gateway/teams/{team}", "DELETE", Need::Admin),
        (OWN, "/gateway/spend", "GET", Need::Admin),
        // MLflow's AI-gateway invocation routes: USE on the endpoint named (in the path, or as `model`).
        (
            "",
            "/gateway/{endpoint}/mlflow/invocations",
            "POST",
            predict(GATEWAY, path("endpoint")),
        ),
        (
            "",
            "/gateway/mlflow/v1/chat/completions",
            "POST",
            predict(GATEWAY, Source::Field(&["model"])),
        ),
        ("", "/gateway/mlflow/v1/models", "GET", Need::Signed(Action::Predict)),
        (
            "",
            "/gateway/openai/v1/chat/completions",
            "POST",
            predict(GATEWAY, Source::Field(&["model"])),
        ),
        (
            "",
            "/gateway/openai/v1/embeddings",
            "POST",
            predict(GATEWAY, Source::Field(&["model"])),
        ),
        (
            "",
            "/gateway/anthropic/v1/messages",
            "POST",
            predict(GATEWAY, Source::Field(&["model"])),
        ),
    ];
    rows.into_iter()
        .map(|(prefix, route, method, need)| (format!("{prefix}{route}"), method, need))
        .chain(ai_gateway_rows())
        .chain(vector_rows())
        .chain(feature_rows())
        .collect()
}

/// The feature store: Feast's routes and Loopline's. Reading features needs READ on feature stores as a
/// whole (kind `feature_store`); writing values EDIT; definitions name files the server reads, so only
/// admins apply them.
fn feature_rows() -> Vec<(String, &'static str, Need)> {
    use loopline_feature_api::Access;
    let on = |level: Level, action: Action| Need::On {
        kind: "feature_store",
        source: Source::Nothing,
        via: Via::Itself,
        level,
        action,
    };
    loopline_feature_api::ROUTES
        .iter()
        .map(|(method, route, access)| {
            let need = match access {
                Access::Read => on(Level::Read, Action::Read),
                Access::Edit => on(Level::Edit, Action::Write),
                Access::Admin => Need::Admin,
            };
            (route.to_string(), *method, need)
        })
        .collect()
}

/// Qdrant's API over the vector collections: grants on each collection (kind `collection`), the default
/// permission for the rest; the creator gets MANAGE.
fn vector_rows() -> Vec<(String, &'static str, Need)> {
    use loopline_vector_api::Access;
    let on = |level: Level, action: Action| Need::On {
        kind: "collection",
        source: Source::Path("name"),
        via: Via::Itself,
        level,
        action,
    };
    loopline_vector_api::ROUTES
        .iter()
        .map(|(method, route, access)| {
            let need = match access {
                Access::Signed => SIGNED_READ,
                Access::List => Need::List {
                    kind: "collection",
                    items: "/result/collections",
                    id: "name",
                },
                Access::Read => on(Level::Read, Action::Read),
                Access::Edit => on(Level::Edit, Action::Write),
                Access::Manage => on(Level::Manage, Action::Write),
                Access::Create => Need::Create {
                    kind: "collection",
                    created: Created::Path("name"),
                },
            };
            (route.to_string(), *method, need)
        })
        .collect()
}

/// MLflow's AI-gateway management API. Secrets hold provider keys and choose where the server's requests
/// go (as webhooks do): admins only, reads too. Model definitions and endpoints: admins change them, any
/// signed-in caller reads them, as the UI's discovery routes.
fn ai_gateway_rows() -> Vec<(String, &'static str, Need)> {
    use loopline_http_api::ai_gateway::{budgets, discovery, guardrails, management};
    let managed = management::route_list().into_iter().map(|(method, route)| {
        let need = if route.contains("/secrets/") || !management::reads_only(method) {
            Need::Admin
        } else {
            SIGNED_READ
        };
        (route, method, need)
    });
    let discovered = discovery::ROUTES
        .iter()
        .map(|route| (route.to_string(), "GET", SIGNED_READ));
    // Guardrails and budget policies: admins change them, signed-in callers read them (the UI's pages).
    let guarded = guardrails::route_list().into_iter().chain(budgets::route_list());
    let guarded = guarded.map(|(method, route)| {
        let need = if method == "GET" { SIGNED_READ } else { Need::Admin };
        (route, method, need)
    });
    managed.chain(discovered).chain(guarded).collect()
}

/// The whole table.
pub fn table() -> RouteTable {
    let rows: Vec<(String, &'static str, Need)> = mlflow_rows().into_iter().chain(loopline_rows()).collect();
    let borrowed: Vec<(&str, &str, Need)> = rows
        .iter()
        .map(|(route, method, need)| (*method, route.as_str(), *need))
        .collect();
    RouteTable::new(&borrowed)
        .and_then(|table| table.with_after(&after_rows()))
        .and_then(|table| table.with_also(&also_rows()))
        .expect("the route permission table lists each route once")
}

/// Further needs: what a request refers to besides the resource it acts on.
fn also_rows() -> Vec<(&'static str, &'static str, Need)> {
    let uses_model = Need::Refers {
        field: &["model"],
        level: Level::Use,
    };
    // A served name may be a deployment's: the deployment's own USE is needed then too.
    let deployment_of_name = Need::IfExists {
        kind: DEPLOYMENT,
        source: Source::Path("name"),
        owned: Owned::Deployment,
        level: Level::Use,
    };
    let mut rows = vec![
        // A version's files must be readable by whoever registers them (else registering would read them).
        (
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            Need::Refers {
                field: &["source"],
                level: Level::Read,
            },
        ),
        // A deployment serves its model: creating or changing one needs USE on the model.
        ("POST", "/api/loopline/v1/deployments", uses_model),
        ("PUT", "/api/loopline/v1/deployments/{name}", uses_model),
        ("PATCH", "/api/loopline/v1/deployments/{name}", uses_model),
        // A monitor reads its deployment's or model's traffic, and its actions act on others.
        (
            "POST",
            "/api/loopline/v1/monitors",
            Need::Named {
                kind: DEPLOYMENT,
                field: &["deployment"],
                level: Level::Read,
            },
        ),
        (
            "POST",
            "/api/loopline/v1/monitors",
            Need::Named {
                kind: MODEL,
                field: &["model"],
                level: Level::Read,
            },
        ),
        ("POST", "/api/loopline/v1/monitors", Need::MonitorSpec),
        // Linking traces to a run changes those traces.
        (
            "POST",
            "/api/2.0/mlflow/traces/link-to-run",
            Need::Each {
                kind: EXPERIMENT,
                field: "trace_ids",
                via: Via::Owner(Owned::Trace),
                level: Level::Edit,
            },
        ),
    ];
    for route in [
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/models/{name}/versions/{version}/invocations",
    ] {
        let method = if route.ends_with("infer") || route.ends_with("invocations") {
            "POST"
        } else {
            "GET"
        };
        rows.push((method, route, deployment_of_name));
    }
    // A monitor's figures are its target's traffic: reading them needs READ on the deployment or model too.
    for route in [
        "/api/loopline/v1/monitors/{name}",
        "/api/loopline/v1/monitors/{name}/events",
        "/api/loopline/v1/monitors/{name}/windows",
        "/api/loopline/v1/monitors/{name}/windows/{window}/report",
        "/api/loopline/v1/monitors/{name}/rollup",
        "/api/loopline/v1/monitors/{name}/review-queue",
    ] {
        for (kind, owned) in [(DEPLOYMENT, Owned::MonitorDeployment), (MODEL, Owned::MonitorModel)] {
            rows.push((
                "GET",
                route,
                Need::IfExists {
                    kind,
                    source: Source::Path("name"),
                    owned,
                    level: Level::Read,
                },
            ));
        }
    }
    rows
}

/// Renamed and deleted resources take their grants along.
fn after_rows() -> Vec<(&'static str, &'static str, After)> {
    vec![
        (
            "POST",
            "/api/2.0/mlflow/registered-models/rename",
            After::Rename {
                kind: MODEL,
                from: &["name"],
                to: &["new_name"],
            },
        ),
        (
            "DELETE",
            "/api/2.0/mlflow/registered-models/delete",
            After::Delete {
                kind: MODEL,
                source: NAME,
            },
        ),
        (
            "DELETE",
            "/api/loopline/v1/deployments/{name}",
            After::Delete {
                kind: DEPLOYMENT,
                source: Source::Path("name"),
            },
        ),
        (
            "DELETE",
            "/api/loopline/v1/monitors/{name}",
            After::Delete {
                kind: MONITOR,
                source: Source::Path("name"),
            },
        ),
        (
            "DELETE",
            "/api/loopline/v1/pipelines/{name}",
            After::Delete {
                kind: PIPELINE,
                source: Source::Path("name"),
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_route_is_declared_twice() {
        let table = super::table();
        assert!(table.rows().count() > 200);
    }
}
