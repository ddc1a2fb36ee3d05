//! A fake LLM provider for the Python suites: `loopline-fake-llm [--port N] [--key KEY]` serves OpenAI's and
//! Anthropic's wire formats on 127.0.0.1, prints its base URL on one line, and runs until killed. Scripted
//! through `POST /fake/script`; `GET /fake/calls` lists what it received. An example rather than a binary, so
//! `cargo run` at the workspace root still means `loopline`.

use loopline_test_support::fake_llm::FakeLlm;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut port = 0;
    let mut key = None;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--port" => port = arguments.next().unwrap_or_default().parse()?,
            "--key" => key = arguments.next(),
            other => anyhow::bail!("unknown argument {other}; use --port N and --key KEY"),
        }
    }
    let fake = FakeLlm::start_on(key.as_deref(), port).await?;
    println!("{}", fake.base_url);
    fake.serve_forever().await;
    Ok(())
}
