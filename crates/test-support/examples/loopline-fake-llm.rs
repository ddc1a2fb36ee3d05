//! A fake LLM provider for the Python suites and bench/gateway: `loopline-fake-llm [--port N] [--key KEY]
//! [--latency-ms N] [--token-ms N]` serves OpenAI's and
//! Anthropic's wire formats on 127.0.0.1, prints its base URL on one line, and runs until killed. Scripted
//! through `POST /fake/script`; `GET /fake/calls` lists what it received. An example rather than a binary, so
//! `cargo run` at the workspace root still means `loopline`.

use loopline_test_support::fake_llm::{FakeLlm, Pace};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut port = 0;
    let mut key = None;
    let mut pace = Pace::default();
    let mut arguments = std::env::args().skip(1);
    let millis = |text: Option<String>| -> anyhow::Result<std::time::Duration> {
        Ok(std::time::Duration::from_millis(text.unwrap_or_default().parse()?))
    };
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--port" => port = arguments.next().unwrap_or_default().parse()?,
            "--key" => key = arguments.next(),
            "--latency-ms" => pace.latency = millis(arguments.next())?,
            "--token-ms" => pace.token_gap = millis(arguments.next())?,
            other => {
                anyhow::bail!("unknown argument {other}; use --port N, --key KEY, --latency-ms N and --token-ms N")
            }
        }
    }
    let fake = FakeLlm::start_paced(key.as_deref(), port, pace).await?;
    println!("{}", fake.base_url);
    fake.serve_forever().await;
    Ok(())
}
