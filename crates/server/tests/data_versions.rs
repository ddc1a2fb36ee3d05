//! `loopline data` as a user runs it against a real server: add and push, a second checkout that pulls the
//! same bytes back, versions numbered on the server, status exit codes, a damaged object refused on pull,
//! and garbage collection.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::start_server;

struct Cli {
    server: String,
}

impl Cli {
    fn run(&self, directory: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_loopline"))
            .arg("data")
            .args(args)
            .current_dir(directory)
            .env("MLFLOW_TRACKING_URI", &self.server)
            .env("NO_COLOR", "1")
            .output()
            .expect("the binary runs")
    }

    fn ok(&self, directory: &Path, args: &[&str]) -> String {
        let output = self.run(directory, args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "loopline data {args:?} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn new_project(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root.join(".git")).unwrap();
    root.to_path_buf()
}

#[test]
fn data_pushed_from_one_checkout_is_pulled_into_another() {
    let temporary = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(&temporary.path().join("server"));
    let cli = Cli { server: url.clone() };
    let first = new_project(&temporary.path().join("first"));
    let table = "x,label\n".to_string() + &(0..200).map(|i| format!("{i},{}\n", i % 2)).collect::<String>();
    write(&first.join("data/train.csv"), table.as_bytes());
    write(&first.join("data/images/a.bin"), &[1u8; 5_000]);
    write(&first.join("data/images/sub/b.bin"), &[2u8; 7_000]);

    let added = cli.ok(&first, &["add", "data/train.csv", "data/images", "--push"]);
    assert!(added.contains("registered as v1"), "{added}");
    let pointer = std::fs::read_to_string(first.join("data/train.csv.loopline")).unwrap();
    assert!(pointer.contains("version: 1"), "{pointer}");
    assert_eq!(
        std::fs::read_to_string(first.join("data/.gitignore")).unwrap(),
        "/train.csv\n/images\n"
    );
    assert_eq!(cli.run(&first, &["status", "--remote"]).status.code(), Some(0));

    // The server knows the table's rows and schema.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let version: serde_json::Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let address = format!("{url}/api/loopline/v1/datasets/train.csv/versions/latest");
        reqwest::get(address).await.unwrap().json().await.unwrap()
    });
    assert_eq!(version["version"]["rows"], 200);
    assert_eq!(version["version"]["schema"][0]["name"], "x");
    assert!(version["version"]["profile"]["columns"].is_array(), "{version}");

    // A new version of the table: the status says so (exit 1), adding and pushing makes v2.
    write(&first.join("data/train.csv"), format!("{table}999,1\n").as_bytes());
    let status = cli.run(&first, &["status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stdout).contains("modified"));
    cli.ok(&first, &["add", "data/train.csv"]);
    assert!(cli.ok(&first, &["push"]).contains("registered as v2"));
    let listed = cli.ok(&first, &["versions", "train.csv"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    // Another checkout has only the pointers (as a git clone would): pull brings the same bytes.
    let second = new_project(&temporary.path().join("second"));
    for name in ["data/train.csv.loopline", "data/images.loopline"] {
        write(&second.join(name), &std::fs::read(first.join(name)).unwrap());
    }
    assert_eq!(cli.run(&second, &["status"]).status.code(), Some(1));
    cli.ok(&second, &["pull"]);
    for name in ["data/train.csv", "data/images/a.bin", "data/images/sub/b.bin"] {
        assert_eq!(
            std::fs::read(second.join(name)).unwrap(),
            std::fs::read(first.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(cli.run(&second, &["status", "--remote"]).status.code(), Some(0));
    server.kill().unwrap();
}

#[test]
fn a_damaged_object_on_the_server_never_enters_the_cache() {
    let temporary = tempfile::tempdir().unwrap();
    let server_dir = temporary.path().join("server");
    let (mut server, url) = start_server(&server_dir);
    let cli = Cli { server: url };
    let first = new_project(&temporary.path().join("first"));
    write(&first.join("model-input.bin"), b"the right bytes");
    cli.ok(&first, &["add", "model-input.bin", "--push"]);
    let hash = blake3::hash(b"the right bytes").to_hex().to_string();
    let stored: Vec<PathBuf> = walk(&server_dir)
        .into_iter()
        .filter(|p| p.ends_with(&hash[2..]))
        .collect();
    assert_eq!(stored.len(), 1, "the object is stored once under its id");
    let mut permissions = std::fs::metadata(&stored[0]).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&stored[0], permissions).unwrap();
    std::fs::write(&stored[0], b"tampered bytes!").unwrap();

    let second = new_project(&temporary.path().join("second"));
    write(
        &second.join("model-input.bin.loopline"),
        &std::fs::read(first.join("model-input.bin.loopline")).unwrap(),
    );
    let pulled = cli.run(&second, &["pull"]);
    assert_eq!(pulled.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&pulled.stderr).contains("hash to"),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    assert!(!second.join("model-input.bin").exists());
    assert!(walk(&second.join(".loopline/cache/objects")).is_empty());
    server.kill().unwrap();
}

#[test]
fn garbage_collection_keeps_what_pointers_and_versions_need() {
    let temporary = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(&temporary.path().join("server"));
    let cli = Cli { server: url };
    let project = new_project(&temporary.path().join("project"));
    write(&project.join("a.csv"), b"1");
    cli.ok(&project, &["add", "a.csv", "--push"]);
    write(&project.join("a.csv"), b"2");
    cli.ok(&project, &["add", "a.csv", "--push"]);
    // The cache holds both versions; the working tree points at the second.
    let dry = cli.ok(&project, &["gc", "--dry-run"]);
    assert!(dry.contains("would remove 1 object"), "{dry}");
    assert_eq!(walk(&project.join(".loopline/cache/objects")).len(), 2);
    assert!(cli.ok(&project, &["gc"]).contains("removed 1 object"));
    assert_eq!(walk(&project.join(".loopline/cache/objects")).len(), 1);
    // Both versions are registered on the server: nothing there is garbage.
    let on_server = cli.ok(&project, &["gc", "--on-server", "--grace-seconds", "0"]);
    assert!(
        on_server.contains("2 object(s) stored") && on_server.contains("0 no version needs"),
        "{on_server}"
    );
    server.kill().unwrap();
}

fn walk(directory: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found
}
