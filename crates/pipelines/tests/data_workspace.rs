//! Adding, checking and checking out datasets in a project directory, as `loopline data` does.

use std::path::Path;

use loopline_pipelines::data::files::Stamp;
use loopline_pipelines::data::{ContentId, LinkMode, Pointer, Project, Quiet, TreeState};

/// Writes a file dated a minute ago (a file modified within two seconds is hashed every time).
fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
        .unwrap();
}

fn project() -> (tempfile::TempDir, Project) {
    let directory = tempfile::tempdir().unwrap();
    std::fs::create_dir(directory.path().join(".git")).unwrap();
    let project = Project::find(directory.path()).unwrap();
    (directory, project)
}

#[test]
fn a_file_is_cached_pointed_at_and_ignored_by_git() {
    let (directory, project) = project();
    let data = directory.path().join("data/train.csv");
    write(&data, b"x,y\n1,2\n");
    let added = project.add(&data, None, &Quiet).unwrap();
    assert_eq!(added.pointer.dataset, "train.csv");
    assert_eq!(added.pointer.hash, blake3::hash(b"x,y\n1,2\n").to_hex().to_string());
    assert_eq!((added.pointer.size, added.pointer.files, added.new_objects), (8, 1, 1));
    assert_eq!(
        added.pointer_path,
        directory.path().join("data/train.csv.loopline").canonicalize().unwrap()
    );
    assert_eq!(Pointer::read(&added.pointer_path).unwrap(), added.pointer);
    assert_eq!(
        std::fs::read_to_string(directory.path().join("data/.gitignore")).unwrap(),
        "/train.csv\n"
    );
    // Adding again reads nothing (the stamp is remembered) and changes nothing.
    let again = Project::find(&directory.path().join("data"))
        .unwrap()
        .add(&data, None, &Quiet)
        .unwrap();
    assert!(again.unchanged);
    assert_eq!((again.hashed_bytes, again.new_objects), (0, 0));
    assert_eq!(
        std::fs::read_to_string(directory.path().join("data/.gitignore")).unwrap(),
        "/train.csv\n"
    );
    assert_eq!(project.status(&added.pointer_path).unwrap().tree, TreeState::Unchanged);
}

#[test]
fn directories_are_deduplicated_and_their_changes_listed() {
    let (directory, project) = project();
    let data = directory.path().join("images");
    write(&data.join("a/1.bin"), b"same");
    write(&data.join("a/2.bin"), b"same");
    write(&data.join("b.bin"), b"other");
    let added = project.add(&data, Some("images"), &Quiet).unwrap();
    assert!(added.pointer.hash.ends_with(".dir"));
    assert_eq!((added.pointer.size, added.pointer.files, added.new_objects), (13, 3, 2));
    let pointer = added.pointer_path.clone();
    assert_eq!(project.objects_of(&added.pointer).unwrap().len(), 4);
    let status = project.status(&pointer).unwrap();
    assert_eq!((status.tree, status.missing_from_cache), (TreeState::Unchanged, 0));

    write(&data.join("a/2.bin"), b"changed");
    write(&data.join("c.bin"), b"new");
    std::fs::remove_file(data.join("b.bin")).unwrap();
    assert_eq!(
        project.status(&pointer).unwrap().tree,
        TreeState::ModifiedDirectory {
            added: vec!["c.bin".into()],
            removed: vec!["b.bin".into()],
            modified: vec!["a/2.bin".into()],
        }
    );
    // Without --force nothing is touched; with it the version comes back exactly.
    let refused = project.checkout(&pointer, false, &Quiet).unwrap_err();
    assert!(refused.contains("1 changed and 1 unversioned"), "{refused}");
    assert_eq!(std::fs::read(data.join("a/2.bin")).unwrap(), b"changed");
    let done = project.checkout(&pointer, true, &Quiet).unwrap();
    assert_eq!((done.written, done.kept, done.removed), (2, 1, 1));
    assert_eq!(std::fs::read(data.join("a/2.bin")).unwrap(), b"same");
    assert_eq!(std::fs::read(data.join("b.bin")).unwrap(), b"other");
    assert!(!data.join("c.bin").exists());
    assert_eq!(project.status(&pointer).unwrap().tree, TreeState::Unchanged);
}

#[test]
fn an_older_pointer_checks_out_the_older_version() {
    let (directory, project) = project();
    let data = directory.path().join("table.csv");
    write(&data, b"v1");
    let first = project.add(&data, None, &Quiet).unwrap();
    let old_pointer = std::fs::read_to_string(&first.pointer_path).unwrap();
    write(&data, b"version two");
    let second = project.add(&data, None, &Quiet).unwrap();
    assert!(!second.unchanged && second.pointer.hash != first.pointer.hash);
    // As `git checkout` of the older commit would: the old pointer is back, the data is not.
    std::fs::write(&first.pointer_path, old_pointer).unwrap();
    assert_eq!(
        project.status(&first.pointer_path).unwrap().tree,
        TreeState::ModifiedFile
    );
    assert!(project.checkout(&first.pointer_path, false, &Quiet).is_err());
    project.checkout(&first.pointer_path, true, &Quiet).unwrap();
    assert_eq!(std::fs::read(&data).unwrap(), b"v1");
    std::fs::remove_file(&data).unwrap();
    assert_eq!(project.status(&first.pointer_path).unwrap().tree, TreeState::Missing);
    project.checkout(&first.pointer_path, false, &Quiet).unwrap();
    assert_eq!(std::fs::read(&data).unwrap(), b"v1");
    // The restored file is the user's to edit; the cache's copy stays read-only.
    std::fs::write(&data, b"edited").unwrap();
    let id = first.pointer.id().unwrap();
    assert!(project.cache().verify(&id));
}

#[test]
fn paths_outside_the_project_and_pointer_files_are_refused() {
    let (directory, project) = project();
    let elsewhere = tempfile::tempdir().unwrap();
    write(&elsewhere.path().join("x.csv"), b"1");
    assert!(
        project
            .add(&elsewhere.path().join("x.csv"), None, &Quiet)
            .unwrap_err()
            .contains("outside the project")
    );
    write(&directory.path().join("y.csv"), b"1");
    let added = project.add(&directory.path().join("y.csv"), None, &Quiet).unwrap();
    assert!(
        project
            .add(&added.pointer_path, None, &Quiet)
            .unwrap_err()
            .contains("pointer file")
    );
    assert!(project.add(&directory.path().join(".git"), None, &Quiet).is_err());
    assert!(
        project
            .add(&directory.path().join("y.csv"), Some("../bad"), &Quiet)
            .unwrap_err()
            .contains("dataset name")
    );
    // A pointer edited to lead out of its directory is refused before anything is written.
    let text = std::fs::read_to_string(&added.pointer_path)
        .unwrap()
        .replace("\"y.csv\"", "\"../../etc/passwd\"");
    std::fs::write(&added.pointer_path, text).unwrap();
    assert!(project.checkout(&added.pointer_path, true, &Quiet).is_err());
    assert_eq!(project.pointers().unwrap(), vec![added.pointer_path]);
}

#[test]
fn checkout_never_writes_through_links_or_into_git() {
    let (directory, project) = project();
    let data = directory.path().join("d");
    write(&data.join("post-commit"), b"#!/bin/sh\necho owned\n");
    let added = project.add(&data, None, &Quiet).unwrap();
    // As a cloned repository could carry it: the data's place is a link into .git/hooks.
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(directory.path().join(".git/hooks")).unwrap();
    std::os::unix::fs::symlink(directory.path().join(".git/hooks"), &data).unwrap();
    let refused = project.checkout(&added.pointer_path, false, &Quiet).unwrap_err();
    assert!(refused.contains("symbolic link"), "{refused}");
    assert!(!directory.path().join(".git/hooks/post-commit").exists());
    // With --force the link itself is replaced; nothing lands in .git.
    project.checkout(&added.pointer_path, true, &Quiet).unwrap();
    assert!(!directory.path().join(".git/hooks/post-commit").exists());
    assert!(std::fs::symlink_metadata(&data).unwrap().is_dir());
    assert_eq!(
        std::fs::read(data.join("post-commit")).unwrap(),
        b"#!/bin/sh\necho owned\n"
    );
}

#[test]
fn files_and_directories_trade_places_between_versions() {
    let (directory, project) = project();
    let data = directory.path().join("d");
    write(&data.join("s"), b"a file");
    let first = project.add(&data, None, &Quiet).unwrap();
    let first_text = std::fs::read_to_string(&first.pointer_path).unwrap();
    std::fs::remove_file(data.join("s")).unwrap();
    write(&data.join("s/x"), b"now a directory");
    let second = project.add(&data, None, &Quiet).unwrap();
    let second_text = std::fs::read_to_string(&second.pointer_path).unwrap();
    std::fs::write(&first.pointer_path, &first_text).unwrap();
    project.checkout(&first.pointer_path, true, &Quiet).unwrap();
    assert_eq!(std::fs::read(data.join("s")).unwrap(), b"a file");
    std::fs::write(&first.pointer_path, &second_text).unwrap();
    project.checkout(&first.pointer_path, true, &Quiet).unwrap();
    assert_eq!(std::fs::read(data.join("s/x")).unwrap(), b"now a directory");
}

#[test]
fn ignore_entries_match_only_the_data() {
    let (directory, project) = project();
    for name in ["x*", "[ab]", "#hash", "trailing "] {
        write(&directory.path().join(name), b"1");
        project.add(&directory.path().join(name), None, &Quiet).unwrap();
    }
    let ignore = std::fs::read_to_string(directory.path().join(".gitignore")).unwrap();
    assert_eq!(ignore, "/x\\*\n/\\[ab\\]\n/\\#hash\n/trailing\\ \n");
    write(&directory.path().join("new\nline"), b"1");
    assert!(
        project
            .add(&directory.path().join("new\nline"), None, &Quiet)
            .unwrap_err()
            .contains("control character")
    );
}

#[test]
fn hard_linked_data_shares_its_bytes_with_the_cache_read_only_until_unprotected() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (directory, project) = project();
    let project = project.with_link(LinkMode::Hardlink);
    let data = directory.path().join("images");
    write(&data.join("a.bin"), b"alpha");
    write(&data.join("b.bin"), b"beta");
    std::fs::set_permissions(data.join("b.bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let added = project.add(&data, None, &Quiet).unwrap();
    assert_eq!((added.new_objects, added.hashed_bytes), (2, 9));
    let linked = |name: &str| {
        let file = std::fs::metadata(data.join(name)).unwrap();
        let id = ContentId::file(blake3::hash(&std::fs::read(data.join(name)).unwrap()));
        let object = std::fs::metadata(project.cache().path_of(&id)).unwrap();
        (file.ino() == object.ino(), file.permissions().mode() & 0o777)
    };
    // One file under two names, protected; an executable stays executable.
    assert_eq!(linked("a.bin"), (true, 0o444));
    assert_eq!(linked("b.bin"), (true, 0o555));
    assert_eq!(project.status(&added.pointer_path).unwrap().tree, TreeState::Unchanged);
    assert!(
        std::fs::OpenOptions::new()
            .write(true)
            .open(data.join("a.bin"))
            .is_err()
            || is_root()
    );

    // Unprotected: writable copies of their own, the cache untouched by an edit.
    assert_eq!(project.unprotect(&data).unwrap(), 2);
    assert_eq!(linked("a.bin"), (false, 0o644));
    assert_eq!(linked("b.bin"), (false, 0o755));
    assert_eq!(project.unprotect(&data).unwrap(), 0);
    assert_eq!(project.status(&added.pointer_path).unwrap().tree, TreeState::Unchanged);
    std::fs::write(data.join("a.bin"), b"edited").unwrap();
    assert!(project.cache().verify(&ContentId::file(blake3::hash(b"alpha"))));

    // A checkout links again (an executable is copied: the cache's object is not the working file's mode).
    std::fs::remove_dir_all(&data).unwrap();
    project.checkout(&added.pointer_path, false, &Quiet).unwrap();
    assert_eq!(linked("a.bin"), (true, 0o444));
    assert!(!linked("b.bin").0);
    assert_eq!(std::fs::read(data.join("a.bin")).unwrap(), b"alpha");
    // Copy mode (the default) gives the working tree copies of its own.
    std::fs::remove_dir_all(&data).unwrap();
    Project::find(directory.path())
        .unwrap()
        .checkout(&added.pointer_path, false, &Quiet)
        .unwrap();
    assert_eq!(linked("a.bin"), (false, 0o644));
}

#[test]
fn a_symbolic_link_in_linked_data_is_copied_not_linked_itself() {
    let (directory, project) = project();
    let project = project.with_link(LinkMode::Hardlink);
    write(&directory.path().join("elsewhere/real.bin"), b"real bytes");
    let data = directory.path().join("set");
    write(&data.join("plain.bin"), b"plain");
    std::os::unix::fs::symlink(directory.path().join("elsewhere/real.bin"), data.join("link.bin")).unwrap();
    project.add(&data, None, &Quiet).unwrap();
    let object = project.cache().path_of(&ContentId::file(blake3::hash(b"real bytes")));
    // The cache holds the bytes, not a link that would follow later edits of the file it names.
    assert!(std::fs::symlink_metadata(&object).unwrap().file_type().is_file());
    assert!(project.cache().verify(&ContentId::file(blake3::hash(b"real bytes"))));
    assert_eq!(project.unprotect(&data).unwrap(), 1);
    assert!(
        std::fs::symlink_metadata(data.join("link.bin"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_file_changed_while_it_is_added_is_refused_in_either_mode() {
    let (directory, project) = project();
    let data = directory.path().join("table.csv");
    write(&data, b"v1");
    let listed = Stamp::of(&std::fs::metadata(&data).unwrap());
    write(&data, b"v2, longer");
    let id = ContentId::file(blake3::hash(b"v1"));
    let linked = project.cache().link_file(&id, &data, &listed).unwrap_err();
    assert!(linked.contains("changed while it was being added"), "{linked}");
    let copied = project.cache().insert_new_file(&data, &listed).unwrap_err();
    assert!(copied.contains("changed while it was being added"), "{copied}");
    assert!(project.cache().objects().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(directory.path().join(".loopline/cache/staging"))
            .unwrap()
            .count(),
        0
    );
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[test]
fn damaged_objects_are_refused_at_checkout_and_replaced_by_the_next_add() {
    use std::os::unix::fs::PermissionsExt;
    let (directory, project) = project();
    let data = directory.path().join("set");
    write(&data.join("a.bin"), b"alpha");
    let added = project.add(&data, None, &Quiet).unwrap();
    let id = ContentId::file(blake3::hash(b"alpha"));
    let object = project.cache().path_of(&id);
    // Damaged in place, same size and larger.
    for bad in [b"ALPHA".as_slice(), b"alpha and more".as_slice()] {
        std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&object, bad).unwrap();
        std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::remove_dir_all(&data).unwrap();
        for link in [LinkMode::Copy, LinkMode::Hardlink] {
            let opened = Project::find(directory.path()).unwrap().with_link(link);
            let refused = opened.checkout(&added.pointer_path, true, &Quiet).unwrap_err();
            assert!(refused.contains("damaged") || refused.contains("lacks"), "{refused}");
            assert!(!data.join("a.bin").exists());
        }
        // Removed when found, so the right bytes come back with the next add (or pull).
        assert!(!project.cache().contains(&id));
        write(&data.join("a.bin"), b"alpha");
        project.add(&data, None, &Quiet).unwrap();
        assert!(project.cache().verify(&id));
    }
    // An object of the wrong size is replaced by an add even when nothing reads it first.
    std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&object, b"alp").unwrap();
    write(&data.join("b.bin"), b"alpha");
    write(&data.join("a.bin"), b"beta!");
    write(&data.join("a.bin"), b"alpha");
    project.add(&data, None, &Quiet).unwrap();
    assert!(project.cache().verify(&id));
}

#[test]
fn linked_adds_copy_files_with_other_names_and_hidden_folders_are_refused() {
    use std::os::unix::fs::MetadataExt;
    let (directory, project) = project();
    let project = project.with_link(LinkMode::Hardlink);
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("shared.bin"), b"shared");
    let data = directory.path().join("set");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::hard_link(outside.path().join("shared.bin"), data.join("shared.bin")).unwrap();
    project.add(&data, None, &Quiet).unwrap();
    // The file outside keeps its mode and is not the cache's object.
    let shared = std::fs::metadata(outside.path().join("shared.bin")).unwrap();
    let object = std::fs::metadata(project.cache().path_of(&ContentId::file(blake3::hash(b"shared")))).unwrap();
    assert_ne!(shared.ino(), object.ino());
    assert_eq!(shared.nlink(), 2);
    assert_ne!(shared.mode() & 0o200, 0);

    write(&directory.path().join(".hidden/d/f.bin"), b"h");
    let refused = project
        .add(&directory.path().join(".hidden/d"), None, &Quiet)
        .unwrap_err();
    assert!(refused.contains("hidden folder"), "{refused}");
}

#[test]
fn collection_waits_for_nobody_else_using_the_cache() {
    let (directory, project) = project();
    let other = Project::find(directory.path()).unwrap();
    assert!(
        project
            .lock_exclusively()
            .unwrap_err()
            .contains("using this project's cache")
    );
    drop(other);
    project.lock_exclusively().unwrap();
}

#[test]
fn a_pointer_with_the_wrong_size_is_refused_and_the_good_object_kept() {
    let (directory, project) = project();
    let good = directory.path().join("good.txt");
    write(&good, b"VICTIM\n");
    let added = project.add(&good, None, &Quiet).unwrap();
    let id = added.pointer.id().unwrap();
    // A committed pointer naming the same object with another size.
    let evil = directory.path().join("evil.loopline");
    std::fs::write(
        &evil,
        format!(
            "dataset: evil\npath: evil\nhash: \"{}\"\nsize: 3\nfiles: 1\n",
            added.pointer.hash
        ),
    )
    .unwrap();
    let error = project.checkout(&evil, false, &Quiet).unwrap_err();
    assert!(error.contains("is wrong; nothing was removed"), "{error}");
    assert!(
        project.cache().verify(&id),
        "a good object was removed on a pointer's word"
    );
    std::fs::remove_file(&good).unwrap();
    project.checkout(&added.pointer_path, false, &Quiet).unwrap();
    assert_eq!(std::fs::read(&good).unwrap(), b"VICTIM\n");
}

#[test]
fn a_gitignore_that_is_a_link_is_not_written_through() {
    let (directory, project) = project();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("target");
    std::fs::write(&target, "ORIG\n").unwrap();
    std::os::unix::fs::symlink(&target, directory.path().join(".gitignore")).unwrap();
    let data = directory.path().join("f.txt");
    write(&data, b"hi\n");
    let error = project.add(&data, None, &Quiet).unwrap_err();
    assert!(error.contains("is a symbolic link"), "{error}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "ORIG\n");
    // Nor one whose target does not exist yet (it would create a file outside).
    std::fs::remove_file(&target).unwrap();
    assert!(project.add(&data, None, &Quiet).is_err());
    assert!(!target.exists());
}

#[test]
fn a_remembered_hash_that_proves_wrong_is_forgotten_for_the_next_add() {
    let (directory, project) = project();
    let data = directory.path().join("st.txt");
    write(&data, b"AAAA");
    let first = project.add(&data, None, &Quiet).unwrap();
    let stamp = std::fs::metadata(&data).unwrap().modified().unwrap();
    // The object goes, and the file changes in place keeping its size and time (as `cp -p` or
    // `rsync -t --inplace` can): its stamp is the remembered one, its bytes are not.
    let object = project.cache().path_of(&first.pointer.id().unwrap());
    std::fs::remove_file(&object).unwrap();
    rewrite_keeping_time(&data, b"BBBB", stamp);
    let error = Project::find(directory.path())
        .unwrap()
        .add(&data, None, &Quiet)
        .unwrap_err();
    assert!(error.contains("changed while it was being added"), "{error}");
    let again = Project::find(directory.path())
        .unwrap()
        .add(&data, None, &Quiet)
        .unwrap();
    assert_eq!(again.pointer.hash, blake3::hash(b"BBBB").to_hex().to_string());
    // Linking, which reads nothing, checks a remembered id against the bytes before the file becomes the
    // cache's object.
    let object = project.cache().path_of(&again.pointer.id().unwrap());
    std::fs::remove_file(&object).unwrap();
    rewrite_keeping_time(&data, b"CCCC", stamp);
    let linking = || Project::find(directory.path()).unwrap().with_link(LinkMode::Hardlink);
    let error = linking().add(&data, None, &Quiet).unwrap_err();
    assert!(error.contains("changed while it was being added"), "{error}");
    assert!(
        !project.cache().contains(&again.pointer.id().unwrap()),
        "other bytes were stored under an id"
    );
    let linked = linking().add(&data, None, &Quiet).unwrap();
    assert_eq!(linked.pointer.hash, blake3::hash(b"CCCC").to_hex().to_string());
}

/// Rewrites a file in place with its modification time put back.
fn rewrite_keeping_time(path: &Path, bytes: &[u8], time: std::time::SystemTime) {
    std::fs::write(path, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(time).unwrap();
}

#[test]
fn datasets_do_not_overlap() {
    let (directory, project) = project();
    let data = directory.path().join("data");
    write(&data.join("train.csv"), b"a\n1\n");
    write(&data.join("big/part.bin"), b"big");
    project.add(&data.join("train.csv"), None, &Quiet).unwrap();
    // The folder holding a dataset is not a dataset too (its .gitignore line would hide the inner pointer).
    let error = project.add(&data, None, &Quiet).unwrap_err();
    assert!(error.contains("the pointer of a dataset of its own"), "{error}");
    assert!(!directory.path().join("data.loopline").exists());
    // Nor is a part of a dataset.
    project.add(&data.join("big"), None, &Quiet).unwrap();
    write(&data.join("big/more.bin"), b"more");
    let error = project.add(&data.join("big/more.bin"), None, &Quiet).unwrap_err();
    assert!(error.contains("is a dataset of its own"), "{error}");
    // Side by side is fine.
    write(&data.join("holdout.csv"), b"a\n2\n");
    project.add(&data.join("holdout.csv"), None, &Quiet).unwrap();
}

#[test]
fn the_projects_own_folder_keeps_its_working_files_out_of_git() {
    let (directory, _project) = project();
    let ignore = directory.path().join(".loopline/.gitignore");
    let text = std::fs::read_to_string(&ignore).unwrap();
    for line in [
        "/cache",
        "/state.json",
        "/run-cache",
        "/pipeline-runs",
        "/datasets",
        "/pipeline.lock",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from {text}");
    }
    // A project made before the lock was listed gains it once.
    std::fs::write(&ignore, "/cache\n/state.json").unwrap();
    Project::find(directory.path()).unwrap();
    Project::find(directory.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&ignore).unwrap(),
        "/cache\n/state.json\n/pipeline.lock\n"
    );
}
