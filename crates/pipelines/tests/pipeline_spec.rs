//! Pipeline files read into a DAG, and every bad one refused before anything runs, naming the step and field.

use loopline_pipelines::pipeline::{Input, Pipeline, StepKind, Trigger};

const GOOD: &str = r#"
pipeline: churn
params:
  train:
    lr: 0.1
    trees: 100
  seed: 7
steps:
  train:
    kind: train
    run: python train.py --lr ${train.lr} --trees ${params.train.trees}
    inputs: [data/prepared.parquet, train.py]
    params: [train.lr, train.trees]
  prepare:
    run: [python, prepare.py, --seed, "${seed}"]
    inputs: [data/raw.csv, {dataset: raw@3}]
    outputs: [data/prepared.parquet]
    retries: 2
    timeout_seconds: 60
    resources: {cpus: 1, memory_mb: 512}
  check:
    kind: validate
    with: {data: data/prepared.parquet, suite: suite.json}
  evaluate:
    kind: evaluate
    with: {model: "step:train", data: "dataset:holdout@2", target: label, slices: [region]}
  gate:
    kind: gate
    with:
      model: churn
      candidate: "step:train"
      policy:
        dataset: holdout@2
        target: label
        checks: [{metric: accuracy, min: 0.8}]
        no_regression: [{metric: f1, margin: 0.02}]
triggers:
  - schedule: "0 3 * * *"
  - alert: churn-monitor
  - dataset: raw
"#;

#[test]
fn parameter_values_cannot_become_shell_code() {
    let overrides = [("lr".to_string(), serde_json::json!("1; touch pwned #"))].into();
    let pipeline = Pipeline::parse_with_params(
        "params: {lr: 0.1}\nsteps: {a: {run: 'train --lr ${lr}'}}",
        "p",
        &overrides,
    )
    .unwrap();
    assert_eq!(
        pipeline.step("a").unwrap().run.as_ref().unwrap()[0],
        "train --lr '1; touch pwned #'"
    );
    let quoted = [("lr".to_string(), serde_json::json!("it's"))].into();
    let pipeline =
        Pipeline::parse_with_params("params: {lr: 0.1}\nsteps: {a: {run: 'echo ${lr}'}}", "p", &quoted).unwrap();
    assert_eq!(pipeline.step("a").unwrap().run.as_ref().unwrap()[0], "echo 'it'\\''s'");
}

#[test]
fn a_pipeline_reads_into_an_ordered_dag() {
    let pipeline = Pipeline::parse(GOOD, "default").unwrap();
    assert_eq!(pipeline.name, "churn");
    let order: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(order, ["prepare", "check", "train", "evaluate", "gate"]);
    let train = pipeline.step("train").unwrap();
    assert_eq!(train.kind, StepKind::Train);
    // Values enter a shell line quoted, so a value given with --param stays one word.
    assert_eq!(
        train.run.as_ref().unwrap()[0],
        "python train.py --lr '0.1' --trees '100'"
    );
    assert!(train.shell);
    let prepare = pipeline.step("prepare").unwrap();
    assert_eq!(prepare.run.as_ref().unwrap(), &["python", "prepare.py", "--seed", "7"]);
    assert!(!prepare.shell);
    assert_eq!((prepare.retry.retries, prepare.timeout_seconds), (2, 60));
    assert!(prepare.inputs.contains(&Input::Dataset("raw@3".into())));
    let check = pipeline.step("check").unwrap();
    assert!(check.inputs.contains(&Input::Path("suite.json".into())));
    assert_eq!(pipeline.dependencies["check"], ["prepare".to_string()].into());
    assert_eq!(pipeline.dependencies["evaluate"], ["train".to_string()].into());
    assert_eq!(
        pipeline.step("evaluate").unwrap().inputs,
        [Input::Dataset("holdout@2".into())]
    );
    assert_eq!(
        pipeline.downstream_of("prepare"),
        ["check", "evaluate", "gate", "prepare", "train"]
            .map(String::from)
            .into()
    );
    assert_eq!(pipeline.downstream_of("check"), ["check".to_string()].into());
    assert_eq!(pipeline.triggers[0], Trigger::Schedule("0 3 * * *".into()));
    assert_eq!(
        Pipeline::parse("steps: {a: {run: 'true'}}", "from-file").unwrap().name,
        "from-file"
    );
}

#[test]
fn bad_pipelines_are_refused_naming_the_step_and_field() {
    let cases = [
        (
            "params: {msg: hi}\nsteps: {a: {run: 'echo \"Hello ${msg}\"'}}",
            "step 'a', run: '${msg}' is inside quotes",
        ),
        (
            "params: {msg: hi}\nsteps: {a: {run: \"echo 'Hello ${msg}'\"}}",
            "step 'a', run: '${msg}' is inside quotes",
        ),
        (
            "steps: {a: {run: x, inputs: [{dataset: train@1}, {dataset: train@2}]}}",
            "step 'a', inputs: datasets 'train@1' and 'train@2' would both be given as LOOPLINE_DATASET_TRAIN",
        ),
        (
            "steps: {a: {run: x, inputs: [{dataset: a-b}, {dataset: a.b}]}}",
            "would both be given as LOOPLINE_DATASET_A_B",
        ),
        (
            "steps: {a: {run: x, inputs: [b.out], outputs: [a.out]}, b: {run: y, inputs: [a.out], outputs: [b.out]}}",
            "cycle (each needs the next): a -> b -> a",
        ),
        ("steps: {a: {kind: magic}}", "step 'a', kind: unknown step kind 'magic'"),
        (
            "steps: {a: {run: x, outputs: [out]}, b: {run: y, outputs: [out/model.pkl]}}",
            "step 'b', outputs: 'out/model.pkl' overlaps 'out'",
        ),
        (
            "steps: {a: {run: x}}\ntriggers: [{schedule: '61 * * * *'}]",
            "triggers: schedule '61 * * * *': minute field",
        ),
        (
            "steps: {g: {kind: gate, with: {model: m, candidate: '1', policy: {dataset: h@1, target: y, checks: [{metric: acuracy, min: 1}]}}}}",
            "step 'g', with.policy: checks: unknown metric 'acuracy'",
        ),
        (
            "steps: {a: {run: x, params: [lr]}}",
            "step 'a', params: 'lr' is not among",
        ),
        ("steps: {a: {run: x, colour: red}}", "step 'a', colour: unknown field"),
        ("steps: {m: {kind: materialize}}", "step 'm', with.project: is required"),
        (
            "steps: {m: {kind: materialize, with: {project: p, start: '2024-01-01'}}}",
            "step 'm', with.start: needs an end too",
        ),
        (
            "steps: {m: {kind: materialize, with: {project: p, views: driver}}}",
            "step 'm', with.views: is a list of feature view names",
        ),
        (
            "steps: {a: {run: 'x ${nope}'}}",
            "step 'a', run: '${nope}' names no parameter",
        ),
        (
            "steps: {a: {run: x, after: [ghost]}}",
            "step 'a', after: 'ghost' is not a step",
        ),
        ("steps: {a: {run: x, inputs: [../secret]}}", "step 'a', inputs:"),
        ("steps: {a: {run: x, outputs: [/etc/passwd]}}", "step 'a', outputs:"),
        ("steps: {a: {run: x, timeout_seconds: -1}}", "step 'a', timeout_seconds"),
        (
            "steps: {a: {run: x, executor: k8s}}",
            "step 'a', executor: unknown executor",
        ),
        (
            "steps: {a: {kind: validate, with: {data: d.csv}}}",
            "step 'a', with.suite: is required",
        ),
        (
            "steps: {a: {kind: train}}",
            "step 'a', run: a train step needs a command",
        ),
        (
            "steps: {a: {kind: profile, run: x, with: {data: d, output: p}}}",
            "step 'a', run: a built-in step runs no command",
        ),
        (
            "steps: {a: {run: x, inputs: [{dataset: 'raw@x'}]}}",
            "step 'a', inputs: 'raw@x'",
        ),
        ("steps: {}", "steps: a pipeline has 1 to"),
        ("stages: {}", "stages: unknown field"),
        ("a: &a [*a, *a]\nsteps: {x: {run: y}}", "unknown field"),
        ("[1, 2]", "a mapping with 'steps'"),
        (
            "steps: {a: {run: x, outputs: [.git/hooks/pre-commit]}}",
            "step 'a', outputs: '.git/hooks/pre-commit' goes through '.git'",
        ),
        (
            "steps: {a: {kind: profile, with: {data: /etc/passwd, output: p.json}}}",
            "step 'a', with.data:",
        ),
        (
            "steps: {a: {kind: profile, with: {data: d.csv, output: .loopline/x}}}",
            "step 'a', with.output:",
        ),
    ];
    for (text, expected) in cases {
        let error = Pipeline::parse(text, "p").unwrap_err();
        assert!(
            error.contains(expected),
            "{text}\n  gave: {error}\n  expected: {expected}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn parsing_never_panics(text in "[a-z{}:\\[\\], \\n'$@/.-]{0,200}") {
        let _ = Pipeline::parse(&text, "p");
    }
}
