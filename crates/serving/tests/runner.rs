//! The batching task with a model that the test holds inside `predict`: requests that arrive while every
//! slot is busy run together as one batch, each caller gets its own rows, a full queue refuses at once, and
//! one bad request does not spoil the batch it shares.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loopline_model_runtime_api::{DataType, Model, ModelMetadata, PredictError, Tensor, TensorData};
use loopline_serving::batching::BatchingConfig;
use loopline_serving::runner::InferError;
use loopline_serving::{Metrics, ModelRunner, RunnerConfig};

/// Doubles its input; reports each call's row count, then waits for the test's go-ahead.
struct HeldModel {
    metadata: ModelMetadata,
    entered: Mutex<Sender<usize>>,
    release: Mutex<Receiver<()>>,
}

impl Model for HeldModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, PredictError> {
        let TensorData::F64(values) = &inputs[0].data else {
            return Err(PredictError::Input("numbers only".to_string()));
        };
        if values.iter().any(|v| v.is_nan()) {
            return Err(PredictError::Input("NaN is not allowed".to_string()));
        }
        let _ = self.entered.lock().unwrap().send(values.len());
        self.release.lock().unwrap().recv().unwrap();
        let doubled = values.iter().map(|v| v * 2.0).collect::<Vec<_>>();
        Ok(vec![
            Tensor::new("y", DataType::Fp64, vec![doubled.len()], TensorData::F64(doubled)).unwrap(),
        ])
    }
}

fn rows(values: &[f64]) -> Vec<Tensor> {
    vec![
        Tensor::new(
            "x",
            DataType::Fp64,
            vec![values.len()],
            TensorData::F64(values.to_vec()),
        )
        .unwrap(),
    ]
}

struct Harness {
    runner: Arc<ModelRunner>,
    entered: Receiver<usize>,
    release: Sender<()>,
    metrics: Arc<Metrics>,
}

fn start(max_batch_rows: usize, max_queued_rows: usize) -> Harness {
    start_with(max_batch_rows, max_queued_rows, None)
}

fn start_with(max_batch_rows: usize, max_queued_rows: usize, timeout: Option<Duration>) -> Harness {
    let (entered_sender, entered) = channel();
    let (release, release_receiver) = channel();
    let model = HeldModel {
        metadata: ModelMetadata {
            platform: "test".to_string(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        },
        entered: Mutex::new(entered_sender),
        release: Mutex::new(release_receiver),
    };
    let metrics = Arc::new(Metrics::default());
    let config = RunnerConfig {
        batching: BatchingConfig {
            max_batch_rows,
            max_wait: Duration::ZERO,
            max_queued_rows,
        },
        concurrency: 1,
        inline_budget: Duration::ZERO,
        timeout,
        ..RunnerConfig::default()
    };
    let runner = ModelRunner::start("m", "1", Arc::new(model), config, metrics.clone());
    Harness {
        runner,
        entered,
        release,
        metrics,
    }
}

/// Waits (without a clock) until the runner has `rows` rows queued.
async fn until_queued(runner: &ModelRunner, rows: usize) {
    while runner.queued_rows() != rows {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_while_busy_share_one_batch_and_get_their_own_rows() {
    let harness = start(64, 1024);
    let first = tokio::spawn({
        let runner = harness.runner.clone();
        async move { runner.infer(rows(&[1.0])).await }
    });
    let entered = tokio::task::spawn_blocking(move || harness.entered.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(entered, 1, "the first request runs alone");
    // The slot is held: these three queue up behind it.
    let mut waiting = Vec::new();
    for values in [vec![10.0, 11.0], vec![20.0], vec![30.0, 31.0, 32.0]] {
        let runner = harness.runner.clone();
        waiting.push(tokio::spawn(async move { runner.infer(rows(&values)).await }));
    }
    until_queued(&harness.runner, 6).await;
    harness.release.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap()[0].data, TensorData::F64(vec![2.0]));
    harness.release.send(()).unwrap();
    let answers: Vec<Vec<Tensor>> = futures_join(waiting).await;
    assert_eq!(answers[0][0].data, TensorData::F64(vec![20.0, 22.0]));
    assert_eq!(answers[1][0].data, TensorData::F64(vec![40.0]));
    assert_eq!(answers[2][0].data, TensorData::F64(vec![60.0, 62.0, 64.0]));
    assert_eq!(answers[2][0].shape, vec![3]);
    let text = harness.metrics.render(&[]);
    assert!(
        text.contains("loopline_inference_batches_total{model=\"m\",version=\"1\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("loopline_inference_batch_rows_bucket{model=\"m\",version=\"1\",le=\"4.0\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("loopline_inference_batch_rows_bucket{model=\"m\",version=\"1\",le=\"8.0\"} 2"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_past_their_timeout_are_answered_and_abandoned() {
    let limit = Duration::from_secs(60);
    let harness = start_with(64, 1024, Some(limit));
    let runner = harness.runner.clone();
    let held = tokio::spawn(async move { runner.infer(rows(&[1.0])).await });
    let entered = harness.entered;
    let (entered, rows_entered) = tokio::task::spawn_blocking(move || {
        let rows = entered.recv().unwrap();
        (entered, rows)
    })
    .await
    .unwrap();
    assert_eq!(rows_entered, 1);
    // While the model holds the first request, a second one (two rows) waits in the queue.
    let runner = harness.runner.clone();
    let waiting = tokio::spawn(async move { runner.infer(rows(&[2.0, 2.5])).await });
    until_queued(&harness.runner, 2).await;
    // The paused clock moves past the limit by hand: both callers are answered with the timeout.
    tokio::time::advance(limit + Duration::from_secs(1)).await;
    let timed_out = held.await.unwrap().unwrap_err();
    assert_eq!(timed_out, InferError::Timeout(limit));
    assert!(timed_out.to_string().contains("--timeout"), "{timed_out}");
    assert_eq!(waiting.await.unwrap().unwrap_err(), InferError::Timeout(limit));
    // The model finishes the first request; the abandoned queued one is skipped, so the next call the model
    // sees is the new one-row request.
    harness.release.send(()).unwrap();
    let runner = harness.runner.clone();
    let next = tokio::spawn(async move { runner.infer(rows(&[3.0])).await });
    let rows_entered = tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(rows_entered, 1, "the abandoned two-row request was not computed");
    harness.release.send(()).unwrap();
    assert_eq!(next.await.unwrap().unwrap()[0].data, TensorData::F64(vec![6.0]));
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<Result<Vec<Tensor>, InferError>>>) -> Vec<Vec<Tensor>> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once() {
    let harness = start(2, 2);
    let runner = harness.runner.clone();
    let first = tokio::spawn(async move { runner.infer(rows(&[1.0])).await });
    let entered = tokio::task::spawn_blocking(move || harness.entered.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(entered, 1);
    let runner = harness.runner.clone();
    let queued = tokio::spawn(async move { runner.infer(rows(&[2.0, 3.0])).await });
    until_queued(&harness.runner, 2).await;
    let refused = harness.runner.infer(rows(&[4.0])).await.unwrap_err();
    assert_eq!(refused, InferError::Busy { queued: 2, limit: 2 });
    assert!(refused.to_string().contains("queue is full"));
    harness.release.send(()).unwrap();
    harness.release.send(()).unwrap();
    assert!(first.await.unwrap().is_ok());
    assert_eq!(queued.await.unwrap().unwrap()[0].data, TensorData::F64(vec![4.0, 6.0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_fails_alone() {
    let harness = start(64, 1024);
    let runner = harness.runner.clone();
    let first = tokio::spawn(async move { runner.infer(rows(&[1.0])).await });
    let entered = harness.entered;
    let entered = tokio::task::spawn_blocking(move || {
        entered.recv().unwrap();
        entered
    })
    .await
    .unwrap();
    let good = {
        let runner = harness.runner.clone();
        tokio::spawn(async move { runner.infer(rows(&[5.0])).await })
    };
    until_queued(&harness.runner, 1).await;
    let bad = {
        let runner = harness.runner.clone();
        tokio::spawn(async move { runner.infer(rows(&[f64::NAN])).await })
    };
    until_queued(&harness.runner, 2).await;
    harness.release.send(()).unwrap();
    // The stacked batch fails on NaN before reaching the hold; the good request is re-run alone.
    harness.release.send(()).unwrap();
    assert!(first.await.unwrap().is_ok());
    assert_eq!(good.await.unwrap().unwrap()[0].data, TensorData::F64(vec![10.0]));
    assert_eq!(
        bad.await.unwrap().unwrap_err(),
        InferError::Input("NaN is not allowed".to_string())
    );
    drop(entered);
    assert_eq!(
        harness.runner.infer(Vec::new()).await.unwrap_err(),
        InferError::Input("the request has no inputs".to_string())
    );
}

/// Answers at once, noting the thread it ran on.
struct QuickModel(ModelMetadata, Mutex<Option<std::thread::ThreadId>>);

impl Model for QuickModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.0
    }

    fn predict(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, PredictError> {
        *self.1.lock().unwrap() = Some(std::thread::current().id());
        Ok(inputs.to_vec())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheap_requests_run_in_the_callers_task_once_their_cost_is_known() {
    let metadata = ModelMetadata {
        platform: "test".to_string(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    for (budget, inline) in [(Duration::from_secs(1), true), (Duration::ZERO, false)] {
        let config = RunnerConfig {
            inline_budget: budget,
            ..RunnerConfig::default()
        };
        let model = Arc::new(QuickModel(metadata.clone(), Mutex::new(None)));
        let runner = ModelRunner::start("m", "1", model.clone(), config, Arc::new(Metrics::default()));
        // The first request measures the model on the batching path, on a blocking thread.
        let caller = std::thread::current().id();
        assert_eq!(
            runner.infer(rows(&[1.0])).await.unwrap()[0].data,
            TensorData::F64(vec![1.0])
        );
        assert_ne!(*model.1.lock().unwrap(), Some(caller));
        // The next one runs inline: on the thread that polled the request (no await comes before the model).
        let caller = std::thread::current().id();
        assert_eq!(
            runner.infer(rows(&[2.0])).await.unwrap()[0].data,
            TensorData::F64(vec![2.0])
        );
        assert_eq!(*model.1.lock().unwrap() == Some(caller), inline, "budget {budget:?}");
    }
}
