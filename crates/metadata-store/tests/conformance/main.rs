//! The metadata-store conformance suite: every case runs against every implementation (SQLite always;
//! PostgreSQL when `LOOPLINE_TEST_POSTGRES_URL` names a server, which `scripts/test.sh` always provides).

mod cases;
mod dataset_cases;
mod deployment_cases;
mod gateway_cases;
mod model_cases;
mod monitor_cases;
mod trace_cases;

use loopline_metadata_store::SqlStore;

/// A store plus whatever keeps its storage alive for the test.
pub struct StoreUnderTest {
    pub store: SqlStore,
    _temporary: Option<tempfile::TempDir>,
}

pub async fn sqlite_store() -> Option<StoreUnderTest> {
    let temporary = tempfile::tempdir().unwrap();
    let uri = format!("sqlite:///{}", temporary.path().join("meta.db").display());
    let store = SqlStore::connect(&uri, "mlflow-artifacts:").await.unwrap();
    Some(StoreUnderTest {
        store,
        _temporary: Some(temporary),
    })
}

pub async fn postgres_store() -> Option<StoreUnderTest> {
    let Ok(admin_url) = std::env::var("LOOPLINE_TEST_POSTGRES_URL") else {
        eprintln!("LOOPLINE_TEST_POSTGRES_URL is not set: the PostgreSQL cases did not run (scripts/test.sh sets it)");
        return None;
    };
    sqlx::any::install_default_drivers();
    let database = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(&admin_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let store = SqlStore::connect(&format!("{base}/{database}"), "mlflow-artifacts:")
        .await
        .unwrap();
    Some(StoreUnderTest {
        store,
        _temporary: None,
    })
}

macro_rules! conformance_suite {
    ($backend:ident, $constructor:ident, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    if let Some(under_test) = super::$constructor().await {
                        super::cases::$case(&under_test.store).await;
                        under_test.store.close().await;
                    }
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($case:ident),* $(,)?) => {
        conformance_suite!(sqlite, sqlite_store, [$($case),*]);
        conformance_suite!(postgres, postgres_store, [$($case),*]);
    };
}

every_backend!(
    default_experiment_exists,
    experiment_lifecycle_and_search,
    runs_log_and_read_back,
    latest_metric_is_by_step_then_timestamp_then_value,
    sampled_history_keeps_each_interval_extremes,
    a_metric_ordered_search_over_many_runs_pages_like_a_full_sort,
    params_are_immutable_and_batches_idempotent,
    deleted_runs_refuse_writes,
    run_search_filters_order_and_pages,
    concurrent_batches_to_one_run,
    logged_models_and_linked_metrics,
    registry_versions_stages_aliases,
    registry_rename_and_search,
    traces_round_trip,
    deployments_update_by_revision,
    concurrent_updates_have_one_winner,
    alias_history_follows_the_registry,
    sealed_versions_are_found_by_artifact_path,
    monitors_store_windows_with_their_revision,
    references_are_set_per_version,
    dataset_versions_number_per_name_and_content,
    concurrent_registrations_make_distinct_versions,
    gate_policies_evaluations_and_overrides,
    pipelines_and_their_runs,
    spans_make_and_finish_their_trace,
    background_span_writes_land_beside_ordinary_ones,
    evaluation_datasets_keep_one_record_per_inputs,
    scorers_are_versioned_per_experiment_and_name,
    traces_are_found_by_spans_assessments_and_issues,
    webhooks_are_listed_matched_and_soft_deleted,
    logged_models_are_searched_by_dataset_and_latest_metric,
    traces_are_found_by_request_id_and_prompt_and_ordered_by_tags,
    gateway_usage_is_reserved_all_or_nothing_and_settled,
    racing_reservations_never_pass_a_limit,
    gateway_catalog_is_compare_and_swap,
);
