"""The web UI as a person sees it: Playwright driving Debian's Chromium against the quickstart's server.

Every page of the stock MLflow UI (served from the installed mlflow wheel), with the server filled by the stock
client: experiments, the runs table, the chart view, a run's overview, metrics and artifacts (an image, text,
JSON), compare runs, registered models, a model version and its schema, traces and a trace's spans, logged
models and datasets. Then every Loopline page, including a rollback and a promote done by clicking. Each page
must show its real content, with no failed request and no console error; a screenshot of each is kept in
LOOPLINE_SCREENSHOTS (default target/browser-screenshots) as the run's artefact."""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from playwright.sync_api import expect, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loopline_process import REPO_ROOT  # noqa: E402

SCREENSHOTS = Path(os.environ.get("LOOPLINE_SCREENSHOTS", REPO_ROOT / "target" / "browser-screenshots"))
# The UI asks for the basic-auth plugin's current user; MLflow's own server answers 404 too.
EXPECTED_404 = ("/ajax-api/2.0/mlflow/users/current",)
PAGE_TIMEOUT_MS = 60_000
# Names made once per session, so the suite can run again against a server it already filled.
TAG = time.strftime("%H%M%S")
EXPERIMENT, MODEL, DEPLOYMENT = f"browser-suite-{TAG}", f"browser-model-{TAG}", f"browser-canary-{TAG}"


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium package is needed for the browser suite (scripts/test.sh installs it)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


class Visit:
    """One page open in a fresh tab, recording what went wrong in it."""

    def __init__(self, browser, url):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.problems = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("response", self._response)
        self.page.on("requestfailed", self._failed)
        self.page.goto(url)

    def _console(self, message):
        if message.type != "error":
            return
        # The browser reports each refused request on the console too; those are judged by _response.
        if "Failed to load resource" in message.text:
            return
        # Chromium's note that a layout observer skipped a frame; MLflow's own server page shows it too.
        if "ResizeObserver loop" in message.text:
            return
        self.problems.append(f"console error: {message.text}")

    def _response(self, response):
        path = response.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        if response.status >= 400 and not ("/" + path).startswith(EXPECTED_404):
            self.problems.append(f"{response.status} {response.request.method} {response.url}")

    def _failed(self, request):
        # Navigations away from a page abort its pending requests; that is not a failure.
        if "ERR_ABORTED" not in (request.failure or ""):
            self.problems.append(f"request failed: {request.url} {request.failure}")

    def shows(self, *texts, name="failed"):
        for text in texts:
            try:
                expect(self.page.get_by_text(text, exact=False).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
            except AssertionError:
                self.page.screenshot(path=str(SCREENSHOTS / f"{name}-missing.png"), full_page=True)
                raise
        return self

    def done(self, name):
        # Late requests of the page (charts, lazy panels) are judged too.
        self.page.wait_for_timeout(1500)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        self.context.close()
        assert not self.problems, f"{name}: " + "\n".join(self.problems)


@pytest.fixture(scope="module")
def filled(quickstart):
    """An experiment filled by the stock client, as a user's training code fills it."""
    url, _, _ = quickstart
    mlflow.set_tracking_uri(url)
    experiment_id = mlflow.create_experiment(EXPERIMENT)
    mlflow.set_experiment(experiment_id=experiment_id)
    frame = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0) * 2})
    runs = []
    for index, learning_rate in enumerate([0.1, 0.01]):
        with mlflow.start_run(run_name=f"sweep-{index}") as run:
            mlflow.log_params({"learning_rate": learning_rate, "depth": 4 + index})
            for step in range(50):
                mlflow.log_metric("loss", 1.0 / (1 + step * learning_rate), step=step)
            mlflow.log_metric("accuracy", 0.8 + index / 10)
            mlflow.log_input(mlflow.data.from_pandas(frame, name="sweep-data"), context="training")
            mlflow.log_text("every step converged\n", "notes/summary.txt")
            mlflow.log_dict({"threshold": 0.5, "classes": ["stay", "churn"]}, "config/settings.json")
            mlflow.log_image(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1)), "plots/gradient.png")
            with mlflow.start_run(run_name=f"fold-{index}", nested=True):
                mlflow.log_metric("fold_loss", 0.3)
            runs.append(run.info.run_id)
    from sklearn.linear_model import LinearRegression

    with mlflow.start_run(run_name="model-run") as run:
        model = LinearRegression().fit(frame[["x"]], frame["y"])
        logged = mlflow.sklearn.log_model(model, name="model", input_example=frame[["x"]].head(3))
        runs.append(run.info.run_id)
    version = mlflow.register_model(logged.model_uri, MODEL)

    @mlflow.trace(name="answer")
    def answer(question):
        return retrieve(question) + " -> done"

    @mlflow.trace(name="retrieve", span_type="RETRIEVER")
    def retrieve(question):
        return f"context for {question}"

    answer("what is drift?")
    mlflow.flush_trace_async_logging() if hasattr(mlflow, "flush_trace_async_logging") else None
    traces = mlflow.search_traces(locations=[experiment_id], return_type="list")
    assert traces, "the trace was not stored"
    return {
        "url": url,
        "experiment": experiment_id,
        "runs": runs,
        "model_id": logged.model_id,
        "model_uri": logged.model_uri,
        "version": version.version,
        "trace": traces[0].info.trace_id,
    }


def metric_query(runs, experiment):
    """The metric page's query, as the UI's own links build it."""
    compact = {"separators": (",", ":")}
    return "&".join([
        f"runs={json.dumps(runs, **compact)}", "metric=%22loss%22", f"experiments=[%22{experiment}%22]",
        "plot_metric_keys=%5B%22loss%22%5D", "plot_layout={}", "x_axis=step", "y_axis_scale=linear",
        "line_smoothness=1", "show_point=false", "deselected_curves=[]", "last_linear_y_axis_range=[]",
    ])


def mlflow_pages(f):
    e, runs = f["experiment"], f["runs"]
    compact = {"separators": (",", ":")}
    compare = f"runs={json.dumps(runs[:2], **compact)}&experiments={json.dumps([e], **compact)}"
    return [
        ("mlflow-01-experiments", "#/experiments", [EXPERIMENT]),
        ("mlflow-02-runs-table", f"#/experiments/{e}/runs", ["sweep-0", "sweep-1"]),
        ("mlflow-03-chart-view", f"#/experiments/{e}/runs?compareRunsMode=CHART", ["loss"]),
        ("mlflow-04-run-overview", f"#/experiments/{e}/runs/{runs[0]}", ["sweep-0", "learning_rate"]),
        ("mlflow-05-run-metrics", f"#/experiments/{e}/runs/{runs[0]}/model-metrics", ["loss"]),
        ("mlflow-06-artifact-image", f"#/experiments/{e}/runs/{runs[0]}/artifacts/plots/gradient.png",
         ["gradient.png"]),
        ("mlflow-07-artifact-text", f"#/experiments/{e}/runs/{runs[0]}/artifacts/notes/summary.txt",
         ["every step converged"]),
        ("mlflow-08-artifact-json", f"#/experiments/{e}/runs/{runs[0]}/artifacts/config/settings.json",
         ["threshold"]),
        ("mlflow-09-compare-runs", f"#/compare-runs?{compare}", ["learning_rate"]),
        ("mlflow-10-metric-page", f"#/metric?{metric_query(runs[:2], e)}", ["loss"]),
        ("mlflow-11-models", "#/models", [MODEL]),
        ("mlflow-12-registered-model", f"#/models/{MODEL}", [f"Version {f['version']}"]),
        ("mlflow-13-model-version", f"#/models/{MODEL}/versions/{f['version']}", ["Schema"]),
        ("mlflow-14-traces", f"#/experiments/{e}/traces", ["what is drift?"]),
        ("mlflow-15-trace-spans", f"#/experiments/{e}/traces/{f['trace']}", ["retrieve"]),
        ("mlflow-16-logged-models", f"#/experiments/{e}/models", ["model"]),
        ("mlflow-17-logged-model", f"#/experiments/{e}/models/{f['model_id']}", ["model"]),
        ("mlflow-18-logged-model-artifacts", f"#/experiments/{e}/models/{f['model_id']}/artifacts", ["MLmodel"]),
        ("mlflow-19-datasets", f"#/experiments/{e}/runs/{runs[0]}", ["sweep-data"]),
    ]


@pytest.mark.parametrize("index", range(19))
def test_stock_mlflow_ui_pages_show_their_content(browser, filled, index):
    name, route, texts = mlflow_pages(filled)[index]
    Visit(browser, f"{filled['url']}/{route}").shows(*texts, name=name).done(name)


def api(url, method, path, body=None):
    answer = requests.request(method, f"{url}{path}", json=body, timeout=60)
    assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
    return answer.json()


def until_rollout(url, name):
    deadline = time.monotonic() + 300
    while True:
        deployment = api(url, "GET", f"/api/loopline/v1/deployments/{name}")["deployment"]
        if (deployment.get("rollout") or {}).get("phase") == "running":
            return deployment
        assert time.monotonic() < deadline, f"the rollout never started: {deployment}"
        time.sleep(0.5)


def new_version(url, model_uri, alias):
    version = mlflow.register_model(model_uri, MODEL)
    mlflow.MlflowClient(url).set_registered_model_alias(MODEL, alias, version.version)
    return version.version


@pytest.fixture(scope="module")
def canary(filled):
    """A canary of browser-model's newest version in progress (an hour's dwell keeps it on its first step)."""
    url = filled["url"]
    client = mlflow.MlflowClient(url)
    client.set_registered_model_alias(MODEL, "live", filled["version"])
    api(url, "POST", "/api/loopline/v1/deployments", {
        "name": DEPLOYMENT, "model": f"models:/{MODEL}@live",
        "policy": {"type": "canary", "steps": [20, 100], "min_dwell_seconds": 3600, "min_requests": 5},
    })
    new_version(url, filled["model_uri"], "live")
    until_rollout(url, DEPLOYMENT)
    return {"url": url, "model_uri": filled["model_uri"], "stable": filled["version"]}


def test_loopline_pages_show_what_mlflow_does_not(browser, quickstart, canary):
    url, _, _ = quickstart
    run = api(url, "GET", "/api/loopline/v1/pipelines/quickstart")["recent_runs"][0]["run_id"]
    champion = mlflow.MlflowClient(url).get_model_version_by_alias("churn", "champion").version
    pages = [
        ("loopline-01-overview", "/loopline/", ["Deployments", DEPLOYMENT]),
        ("loopline-02-deployments", "/loopline/deployments", [DEPLOYMENT, "step 1 of 2"]),
        ("loopline-03-canary", f"/loopline/deployments/{DEPLOYMENT}", ["1 of 2 (20% → 100%)", "Event trail"]),
        ("loopline-04-monitors", "/loopline/monitors", ["churn-drift"]),
        ("loopline-05-monitor", "/loopline/monitors/churn-drift", ["Drift score per feature", "Windows"]),
        ("loopline-06-data", "/loopline/data", ["churn-train", "Drift and data-quality reports"]),
        ("loopline-07-dataset", "/loopline/data/churn-train", ["Profile of version", "monthly_charges"]),
        ("loopline-08-pipelines", "/loopline/pipelines", ["quickstart"]),
        ("loopline-09-pipeline", "/loopline/pipelines/quickstart", ["Recent runs"]),
        ("loopline-10-pipeline-run", f"/loopline/pipeline-runs/{run}", ["Each step's outcome", "train"]),
        ("loopline-11-models", "/loopline/models", ["churn", MODEL]),
        ("loopline-12-model", "/loopline/models/churn", ["Versions"]),
        ("loopline-13-model-version", f"/loopline/models/churn/versions/{champion}",
         ["Quality gate evidence", "Deployments of this model"]),
        ("loopline-14-predictions", "/loopline/predictions?model=churn", ["Prediction log of churn"]),
    ]
    for name, path, texts in pages:
        Visit(browser, f"{url}{path}").shows(*texts, name=name).done(name)


def test_a_rollback_and_a_promote_by_clicking(browser, canary):
    url = canary["url"]
    visit = Visit(browser, f"{url}/loopline/deployments/{DEPLOYMENT}").shows("Roll back…")
    visit.page.get_by_role("link", name="Roll back…").click()
    visit.shows(f"Roll back deployment {DEPLOYMENT}?")
    visit.page.get_by_label("Reason (kept in the event trail)").fill("checked by the browser suite")
    visit.page.get_by_role("button", name="Roll back").click()
    visit.shows("Rolled back.", "checked by the browser suite")
    visit.done("loopline-15-rolled-back")
    deployment = api(url, "GET", f"/api/loopline/v1/deployments/{DEPLOYMENT}")["deployment"]
    assert deployment["rollout"] is None and deployment["stable_version"] == canary["stable"], deployment

    version = new_version(url, canary["model_uri"], "live")
    until_rollout(url, DEPLOYMENT)
    visit = Visit(browser, f"{url}/loopline/deployments/{DEPLOYMENT}").shows("Promote…")
    visit.page.get_by_role("link", name="Promote…").click()
    visit.page.get_by_label("Version to promote").select_option(str(version))
    visit.page.get_by_role("button", name="Promote").click()
    visit.shows("Promoted.")
    visit.done("loopline-16-promoted")
    deployment = api(url, "GET", f"/api/loopline/v1/deployments/{DEPLOYMENT}")["deployment"]
    assert deployment["rollout"] is None and deployment["stable_version"] == str(version), deployment
