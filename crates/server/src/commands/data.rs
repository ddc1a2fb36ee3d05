//! `loopline data add|status|checkout|push|pull|gc|list|versions`: versioned datasets as DVC keeps them (a
//! pointer file in git, the content in a local cache and, once pushed, in the server's artifact store), with
//! each pushed version registered on the server. The transfers are in `data_remote`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use loopline_pipelines::data::pointer::{is_pointer, pointer_path};
use loopline_pipelines::data::{LinkMode, Pointer, Progress, Project, TreeState};

use super::rollout::ServerArgs;
use super::{FINDING, OK, input_error};

/// `loopline data`.
#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Version files or directories: hash them (BLAKE3), copy new content into the project's cache and write
    /// a pointer file (`PATH.loopline`) to commit to git in place of the data.
    Add {
        /// Files or directories inside the project.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The dataset's name (default: the file or directory name, or the name its pointer already has).
        #[arg(long)]
        name: Option<String>,
        /// Push the new versions to the server right away (registering them).
        #[arg(long)]
        push: bool,
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// How each dataset stands: unchanged, modified (which files), missing from the working tree, or lacking
    /// from the cache; with --remote, also whether the server has it. Exit 1 when anything is not up to date.
    Status {
        /// Data or pointer files (default: every pointer in the project).
        paths: Vec<PathBuf>,
        /// Also ask the server which objects it lacks.
        #[arg(long)]
        remote: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Restore the versions the pointer files name, from the cache.
    Checkout {
        /// Data or pointer files (default: every pointer in the project).
        paths: Vec<PathBuf>,
        /// Replace changes that were not added and remove files the version does not hold.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Upload what the server lacks and register each version (its number is written into the pointer).
    Push {
        /// Data or pointer files (default: every pointer in the project).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Download what the cache lacks from the server, then check the versions out.
    Pull {
        /// Data or pointer files (default: every pointer in the project).
        paths: Vec<PathBuf>,
        /// As `checkout --force`.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove cached objects no pointer in the working tree needs (with --on-server: objects of the server's
    /// store that no registered version needs).
    Gc {
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Collect on the server instead of the local cache.
        #[arg(long = "on-server")]
        on_server: bool,
        /// On the server, keep unreferenced objects written this recently (a push in progress).
        #[arg(long, default_value_t = 3600)]
        grace_seconds: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Migrate a DVC project (run at its root): `.dvc` files become pointer files, the objects of DVC's local
    /// cache enter Loopline's (their md5 checked first), and `dvc.yaml` becomes `loopline.yaml`.
    ImportDvc {
        /// Replace an existing loopline.yaml.
        #[arg(long)]
        force: bool,
    },
    /// The server's datasets with their newest version.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Turn data added or checked out with `--link hardlink` back into writable files of their own (copies),
    /// so they can be edited in place.
    Unprotect {
        /// Data or pointer files (default: every pointer in the project).
        paths: Vec<PathBuf>,
    },
    /// A dataset's versions on the server, newest first.
    Versions {
        /// The dataset's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// How data shares its bytes with the cache.
#[derive(Args, Debug)]
struct LinkArgs {
    /// `copy`: the working tree and the cache each hold a copy (the default). `hardlink`: one file under two
    /// names, nothing copied (fast for large data); the files become read-only (`loopline data unprotect` to
    /// edit them in place). Falls back to copying where links cannot be made.
    #[arg(long, value_enum, default_value = "copy")]
    link: Link,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Link {
    Copy,
    Hardlink,
}

impl LinkArgs {
    fn mode(&self) -> LinkMode {
        match self.link {
            Link::Copy => LinkMode::Copy,
            Link::Hardlink => LinkMode::Hardlink,
        }
    }
}

/// Runs `loopline data`.
pub fn run(args: DataArgs) -> ExitCode {
    let outcome = match args.command {
        DataCommand::Add {
            paths,
            name,
            push,
            link,
            server,
        } => add(&paths, name.as_deref(), push.then_some(&server), link.mode()),
        DataCommand::Status { paths, remote, server } => status(&paths, remote.then_some(&server)),
        DataCommand::Checkout { paths, force, link } => {
            with_linked_project(&paths, link.mode(), |project, pointers| {
                checkout_all(project, pointers, force)
            })
        }
        DataCommand::Push { paths, server } => with_project(&paths, |project, pointers| {
            super::data_remote::push(&server, project, pointers).map(|()| OK)
        }),
        DataCommand::Pull {
            paths,
            force,
            link,
            server,
        } => with_linked_project(&paths, link.mode(), |project, pointers| {
            super::data_remote::pull(&server, project, pointers)?;
            checkout_all(project, pointers, force)
        }),
        DataCommand::Unprotect { paths } => with_project(&paths, unprotect),
        DataCommand::Gc {
            dry_run,
            on_server,
            grace_seconds,
            server,
        } => {
            if on_server {
                super::data_remote::collect_on_server(&server, dry_run, grace_seconds).map(|()| OK)
            } else {
                collect_locally(dry_run)
            }
        }
        DataCommand::ImportDvc { force } => import_dvc(force),
        DataCommand::List { server } => super::data_remote::list(&server).map(|()| OK),
        DataCommand::Versions { name, server } => super::data_remote::versions(&server, &name).map(|()| OK),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => input_error(error),
    }
}

/// A byte-counting bar on standard error (hidden when it is not a terminal).
pub(crate) struct BytesBar(ProgressBar);

impl BytesBar {
    pub(crate) fn new() -> BytesBar {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:32}] {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        BytesBar(bar)
    }

    /// A bar that draws nothing (work done inside a server or a pipeline step).
    pub(crate) fn hidden() -> BytesBar {
        BytesBar(ProgressBar::hidden())
    }

    /// The bar itself, for counting from a task of its own.
    pub(crate) fn handle(&self) -> ProgressBar {
        self.0.clone()
    }

    pub(crate) fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for BytesBar {
    fn phase(&self, what: &str, bytes: u64) {
        self.0.set_prefix(what.to_string());
        self.0.set_length(bytes);
        self.0.set_position(0);
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// The pointer files named by `paths` (data or pointers), or every pointer in the project.
pub(crate) fn pointers_for(project: &Project, paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    if paths.is_empty() {
        let found = project.pointers()?;
        if found.is_empty() {
            return Err(format!(
                "no pointer files in {}; version data with `loopline data add PATH`",
                project.root().display()
            ));
        }
        return Ok(found);
    }
    let here = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    paths
        .iter()
        .map(|path| here.join(path))
        .map(|path| {
            let path = &path;
            let pointer = if is_pointer(path) {
                path.clone()
            } else {
                pointer_path(path)
            };
            if pointer.is_file() {
                Ok(pointer)
            } else {
                Err(format!(
                    "{} has no pointer file ({}); add it first",
                    path.display(),
                    pointer.display()
                ))
            }
        })
        .collect()
}

fn with_project(
    paths: &[PathBuf],
    work: impl FnOnce(&Project, &[PathBuf]) -> Result<u8, String>,
) -> Result<u8, String> {
    with_linked_project(paths, LinkMode::Copy, work)
}

fn with_linked_project(
    paths: &[PathBuf],
    link: LinkMode,
    work: impl FnOnce(&Project, &[PathBuf]) -> Result<u8, String>,
) -> Result<u8, String> {
    let project = Project::find(Path::new("."))?.with_link(link);
    let pointers = pointers_for(&project, paths)?;
    work(&project, &pointers)
}

fn add(paths: &[PathBuf], name: Option<&str>, push: Option<&ServerArgs>, link: LinkMode) -> Result<u8, String> {
    if name.is_some() && paths.len() > 1 {
        return Err("--name names one dataset; add the paths one at a time".into());
    }
    // The project is the one the command runs in: a path elsewhere is refused, not given a project of its own.
    let project = Project::find(Path::new("."))?.with_link(link);
    let bar = BytesBar::new();
    let mut pointers = Vec::new();
    for path in paths {
        let added = project.add(path, name, &bar);
        bar.finish();
        let added = added?;
        let what = if added.unchanged { "unchanged" } else { "added" };
        println!(
            "{what:<9} {} ({} file(s), {}, {} new in the cache) -> {}",
            added.pointer.dataset,
            added.pointer.files,
            human_bytes(added.pointer.size),
            added.new_objects,
            shown(&project, &added.pointer_path)
        );
        pointers.push(added.pointer_path);
    }
    if let Some(server) = push {
        super::data_remote::push(server, &project, &pointers)?;
    } else if project.root().join(".git").exists() {
        let names: Vec<String> = pointers.iter().map(|p| shown(&project, p)).collect();
        println!("commit the pointer(s) to git: git add {}", names.join(" "));
    }
    Ok(OK)
}

fn status(paths: &[PathBuf], remote: Option<&ServerArgs>) -> Result<u8, String> {
    let project = Project::find(Path::new("."))?;
    let pointers = pointers_for(&project, paths)?;
    let mut clean = true;
    let not_pushed = match remote {
        Some(server) => Some(super::data_remote::missing_on_server(server, &project, &pointers)?),
        None => None,
    };
    for (index, pointer_path) in pointers.iter().enumerate() {
        let status = project.status(pointer_path)?;
        let version = status
            .pointer
            .version
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "not pushed".into());
        let mut notes = Vec::new();
        match &status.tree {
            TreeState::Unchanged => {}
            TreeState::Missing => notes.push("missing from the working tree (`loopline data checkout`)".to_string()),
            TreeState::ModifiedFile => {
                notes.push("modified (`loopline data add` it, or `checkout --force`)".to_string())
            }
            TreeState::ModifiedDirectory {
                added,
                removed,
                modified,
            } => notes.push(format!(
                "modified: {} added, {} removed, {} changed{}",
                added.len(),
                removed.len(),
                modified.len(),
                first_of(added, removed, modified)
            )),
        }
        if status.missing_from_cache > 0 {
            notes.push(format!(
                "{} object(s) not in the cache (`loopline data pull`)",
                status.missing_from_cache
            ));
        }
        if let Some(missing) = not_pushed.as_ref().map(|m| m[index]).filter(|m| *m > 0) {
            notes.push(format!("{missing} object(s) not on the server (`loopline data push`)"));
        }
        clean &= notes.is_empty();
        let state = if notes.is_empty() {
            "up to date".to_string()
        } else {
            notes.join("; ")
        };
        println!("{:<32} {:<11} {state}", shown(&project, pointer_path), version);
    }
    Ok(if clean { OK } else { FINDING })
}

fn first_of(added: &[String], removed: &[String], modified: &[String]) -> String {
    let first = modified.first().or(added.first()).or(removed.first());
    first.map(|path| format!(" (e.g. {path})")).unwrap_or_default()
}

fn checkout_all(project: &Project, pointers: &[PathBuf], force: bool) -> Result<u8, String> {
    let bar = BytesBar::new();
    let mut failures = Vec::new();
    for pointer_path in pointers {
        let done = project.checkout(pointer_path, force, &bar);
        bar.finish();
        match done {
            Ok(done) => println!(
                "{:<32} {} written, {} already right{}",
                shown(project, pointer_path),
                done.written,
                done.kept,
                if done.removed > 0 {
                    format!(", {} removed", done.removed)
                } else {
                    String::new()
                }
            ),
            Err(error) => failures.push(error),
        }
    }
    if failures.is_empty() {
        Ok(OK)
    } else {
        Err(failures.join("\n"))
    }
}

fn unprotect(project: &Project, pointers: &[PathBuf]) -> Result<u8, String> {
    for pointer_path in pointers {
        let pointer = Pointer::read(pointer_path)?;
        let data = loopline_pipelines::data::workspace::data_path(pointer_path, &pointer);
        let done = project.unprotect(&data)?;
        println!("{:<32} {done} file(s) made writable copies", shown(project, &data));
    }
    Ok(OK)
}

fn collect_locally(dry_run: bool) -> Result<u8, String> {
    let project = Project::find(Path::new("."))?;
    // Objects an add or a pull is writing are not yet named by any pointer: collect only when nobody is.
    if !dry_run {
        project.lock_exclusively()?;
    }
    let mut needed = std::collections::HashSet::new();
    for pointer_path in project.pointers()? {
        let pointer = Pointer::read(&pointer_path)?;
        match project.objects_of(&pointer) {
            Ok(objects) => needed.extend(objects.into_iter().map(|(id, _)| id)),
            // A directory whose manifest is not cached: its own id is kept; its files are unknown here.
            Err(_) => {
                needed.insert(pointer.id()?);
            }
        }
    }
    let (mut count, mut bytes) = (0usize, 0u64);
    for (id, size) in project.cache().objects()? {
        if needed.contains(&id) {
            continue;
        }
        count += 1;
        bytes += size;
        if !dry_run {
            project.cache().remove(&id)?;
        }
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {count} object(s), {} no pointer in {} needs (versions on the server are kept there)",
        human_bytes(bytes),
        project.root().display()
    );
    Ok(OK)
}

fn import_dvc(force: bool) -> Result<u8, String> {
    let project = Project::find(Path::new("."))?;
    let imported = loopline_pipelines::data::dvc::import(&project)?;
    for pointer in &imported.pointers {
        println!("imported  {}", shown(&project, pointer));
    }
    for skipped in &imported.skipped {
        println!("skipped   {skipped}");
    }
    if let Some(text) = &imported.pipeline {
        let target = project.root().join("loopline.yaml");
        if target.exists() && !force {
            println!("dvc.yaml converted, but loopline.yaml exists: not replaced (use --force)");
        } else {
            std::fs::write(&target, text).map_err(|e| format!("writing {}: {e}", target.display()))?;
            println!("dvc.yaml converted into loopline.yaml");
        }
        for skipped in &imported.stages_skipped {
            println!("stage     {skipped}");
        }
    }
    println!(
        "{} output(s) imported, {} skipped; commit the .loopline pointer files and `loopline data push` to share them",
        imported.pointers.len(),
        imported.skipped.len()
    );
    Ok(if imported.skipped.is_empty() { OK } else { FINDING })
}

/// A path as shown to the user: relative to the project when inside it.
pub(crate) fn shown(project: &Project, path: &Path) -> String {
    path.strip_prefix(project.root()).unwrap_or(path).display().to_string()
}

/// Bytes for a person.
pub(crate) fn human_bytes(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}
