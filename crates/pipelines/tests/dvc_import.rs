//! Importing a DVC project laid out as DVC 3 and 2.x write it: `.dvc` files become pointers, cached objects
//! enter Loopline's cache after their DVC md5 is checked (the 2.x rule normalises CRLF in text), directory
//! listings become manifests, and `dvc.yaml` stages become a pipeline that reads back.

use std::path::Path;

use loopline_pipelines::data::dvc::{dvc_md5, import};
use loopline_pipelines::data::{Pointer, Project, Quiet, TreeState};
use loopline_pipelines::pipeline::Pipeline;
use md5::{Digest, Md5};

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Stores `bytes` in a DVC cache the way DVC 3 (`files/md5/..`) or 2.x (`..`) does.
fn cache(root: &Path, bytes: &[u8], md5: &str, legacy: bool) {
    let base = if legacy {
        root.join(".dvc/cache")
    } else {
        root.join(".dvc/cache/files/md5")
    };
    write(&base.join(&md5[..2]).join(&md5[2..]), bytes);
}

#[test]
fn a_dvc_project_becomes_pointers_cache_and_a_pipeline() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(root.join(".dvc")).unwrap();
    // A DVC 3 file output.
    let table = b"x,y\n1,2\n";
    cache(root, table, &md5_hex(table), false);
    write(
        &root.join("data/train.csv.dvc"),
        format!(
            "outs:\n- md5: {}\n  size: 8\n  hash: md5\n  path: train.csv\n",
            md5_hex(table)
        )
        .as_bytes(),
    );
    // A 2.x text file with CRLF: its md5 is of the text with LF.
    let legacy_text = b"a\r\nb\r\n";
    let legacy_md5 = md5_hex(b"a\nb\n");
    cache(root, legacy_text, &legacy_md5, true);
    write(
        &root.join("notes.txt.dvc"),
        format!("outs:\n- md5: {legacy_md5}\n  path: notes.txt\n").as_bytes(),
    );
    // A DVC 3 directory: its listing (sorted, as json.dumps writes it) and two files.
    let (one, two) = (b"first".as_slice(), b"second".as_slice());
    let listing = format!(
        r#"[{{"md5": "{}", "relpath": "a.bin"}}, {{"md5": "{}", "relpath": "sub/b.bin"}}]"#,
        md5_hex(one),
        md5_hex(two)
    );
    let listing_md5 = format!("{}.dir", md5_hex(listing.as_bytes()));
    cache(root, listing.as_bytes(), &listing_md5, false);
    cache(root, one, &md5_hex(one), false);
    cache(root, two, &md5_hex(two), false);
    write(
        &root.join("images.dvc"),
        format!("outs:\n- md5: {listing_md5}\n  size: 11\n  nfiles: 2\n  hash: md5\n  path: images\n").as_bytes(),
    );
    // An output whose object was never pulled.
    write(
        &root.join("big.bin.dvc"),
        b"outs:\n- md5: 0123456789abcdef0123456789abcdef\n  hash: md5\n  path: big.bin\n",
    );
    // Stages.
    write(&root.join("params.yaml"), b"train:\n  lr: 0.1\n");
    write(
        &root.join("dvc.yaml"),
        b"stages:\n  prepare:\n    cmd: python prepare.py\n    deps: [data/train.csv, prepare.py]\n    outs: [prepared.csv]\n  train:\n    cmd:\n    - python train.py\n    - echo done\n    deps: [prepared.csv]\n    params: [train.lr]\n    outs:\n    - model.pkl:\n        cache: true\n    metrics:\n    - metrics.json: {cache: false}\n  sweep:\n    foreach: [1, 2]\n    do:\n      cmd: echo ${item}\n",
    );

    let project = Project::find(root).unwrap();
    let imported = import(&project).unwrap();
    assert_eq!(imported.pointers.len(), 3, "{:?}", imported.skipped);
    assert_eq!(imported.skipped.len(), 1);
    assert!(
        imported.skipped[0].contains("run `dvc pull` first"),
        "{:?}",
        imported.skipped
    );

    // Each pointer checks out the exact bytes DVC had.
    for (pointer, data, bytes) in [
        ("data/train.csv.loopline", "data/train.csv", table.as_slice()),
        ("notes.txt.loopline", "notes.txt", legacy_text.as_slice()),
    ] {
        project.checkout(&root.join(pointer), false, &Quiet).unwrap();
        assert_eq!(std::fs::read(root.join(data)).unwrap(), bytes, "{data}");
    }
    project.checkout(&root.join("images.loopline"), false, &Quiet).unwrap();
    assert_eq!(std::fs::read(root.join("images/sub/b.bin")).unwrap(), b"second");
    assert_eq!(
        project.status(&root.join("images.loopline")).unwrap().tree,
        TreeState::Unchanged
    );
    assert_eq!(Pointer::read(&root.join("images.loopline")).unwrap().files, 2);

    let text = imported.pipeline.unwrap();
    let pipeline = Pipeline::parse(&text, "imported").unwrap();
    assert_eq!(
        pipeline.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["prepare", "train"]
    );
    let train = pipeline.step("train").unwrap();
    assert_eq!(train.run.as_ref().unwrap()[0], "python train.py && echo done");
    assert_eq!(train.outputs, ["model.pkl", "metrics.json"]);
    assert_eq!(pipeline.params["train.lr"], serde_json::json!(0.1));
    assert_eq!(pipeline.dependencies["train"], ["prepare".to_string()].into());
    assert!(imported.stages_skipped.iter().any(|s| s.starts_with("sweep")));
}

#[test]
fn damaged_caches_and_hostile_files_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    std::fs::create_dir_all(root.join(".dvc")).unwrap();
    let bytes = b"payload";
    // The cached object does not match the md5 the .dvc file gives.
    cache(root, b"tampered", &md5_hex(bytes), false);
    write(
        &root.join("p.dvc"),
        format!("outs:\n- md5: {}\n  hash: md5\n  path: p\n", md5_hex(bytes)).as_bytes(),
    );
    // An output leading out of the project, and one into .git.
    write(
        &root.join("escape.dvc"),
        format!("outs:\n- md5: {}\n  hash: md5\n  path: ../outside\n", md5_hex(bytes)).as_bytes(),
    );
    write(
        &root.join("hook.dvc"),
        format!(
            "outs:\n- md5: {}\n  hash: md5\n  path: .git/hooks/pre-commit\n",
            md5_hex(bytes)
        )
        .as_bytes(),
    );
    let project = Project::find(root).unwrap();
    let imported = import(&project).unwrap();
    assert!(imported.pointers.is_empty());
    assert_eq!(imported.skipped.len(), 3, "{:?}", imported.skipped);
    assert!(
        imported.skipped.iter().any(|s| s.contains("does not match")),
        "{:?}",
        imported.skipped
    );
    assert!(!root.join("../outside.loopline").exists());
    // The 2.x rule: a binary file (a NUL in its first 512 bytes) is hashed as it is.
    let binary = root.join("binary");
    std::fs::write(&binary, b"\0\r\n").unwrap();
    assert_eq!(dvc_md5(&binary, true).unwrap(), md5_hex(b"\0\r\n"));
    let text = root.join("text");
    std::fs::write(&text, b"x\r\n").unwrap();
    assert_eq!(dvc_md5(&text, true).unwrap(), md5_hex(b"x\n"));
    assert_eq!(dvc_md5(&text, false).unwrap(), md5_hex(b"x\r\n"));
}
