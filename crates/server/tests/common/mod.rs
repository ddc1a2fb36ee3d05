//! Helpers shared by the tests that run the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts the binary on a free port and returns it with its base URL, read from its own log line.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not every one starts a plain server"
)]
pub fn start_server(data_dir: &std::path::Path) -> (Child, String) {
    start_server_with(data_dir, &[], &[])
}

/// [`start_server`] with more arguments and environment variables.
pub fn start_server_with(data_dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopline"))
        .args(["server", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(env.iter().copied())
        .env("LOOPLINE_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the loopline binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server prints its address before anything fails")
            .expect("readable log");
        if let Some(position) = line.find("127.0.0.1:") {
            let address: String = line[position..]
                .chars()
                .take_while(|character| character.is_ascii_digit() || *character == '.' || *character == ':')
                .collect();
            break address;
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{address}"))
}
