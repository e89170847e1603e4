//! `reef`: the command line. See `reef --help` and README.md.

mod bench;
mod cli_docs;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use reef::engine::{self, Engine, EngineOptions};
use reef::store::{open_store, MeteredStore, ObjectStore};

#[derive(Parser)]
#[command(
    name = "reef",
    version,
    about = "JSON documents in object storage, as plain files",
    after_help = "SOURCE is a directory path, file:///abs/path, memory:// or s3://bucket/prefix \
                  (credentials and endpoint from the AWS_* variables).\n\
                  mount(8) runs `reef SOURCE MOUNTPOINT -o OPTIONS`; that form works too."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the namespaces in SOURCE.
    Ls { source: String },
    /// Print a namespace's counters and object-store request counts as JSON (read-only).
    Stats { source: String, namespace: String },
    /// Check every object of a namespace; prints a JSON report, exits 1 when unhealthy.
    Verify { source: String, namespace: String },
    /// Quarantine corrupt objects, delete orphans, rebuild a broken manifest.
    /// Fences the namespace: a live mount of it stops accepting writes.
    Repair { source: String, namespace: String },
    /// Recreate the manifest from segments and the WAL (fences like repair).
    RebuildManifest { source: String, namespace: String },
    /// Index the WAL into a segment. Takes the namespace over from a live
    /// mount; on a mount, `touch NAMESPACE/.flush` instead.
    Flush { source: String, namespace: String },
    /// Major compaction: merge every segment into bounded outputs, dropping
    /// tombstones and overwritten versions (takes over like flush; on a mount use `.compact`).
    Compact { source: String, namespace: String },
    /// Delete garbage: WAL covered by segments and outside retention,
    /// replaced segments, old manifests, old orphans. Prints a JSON report.
    /// Takes over like flush (on a mount, `touch NAMESPACE/.gc` instead).
    Gc {
        source: String,
        namespace: String,
        /// History to keep readable: 0, 90s, 30m, 24h, 7d (default 1h).
        #[arg(long, value_name = "DURATION")]
        retain: Option<String>,
        /// Report what would be deleted without deleting (and without
        /// taking the namespace over).
        #[arg(long)]
        dry_run: bool,
    },
    /// Create, list or delete named checkpoints: pinned states that GC keeps.
    Checkpoint {
        #[arg(value_enum)]
        action: CheckpointAction,
        source: String,
        namespace: String,
        /// Required for create and delete.
        name: Option<String>,
    },
    /// Print committed operations as JSON lines in sequence order, read-only:
    /// one object per operation with its seq, time, op (upsert or delete)
    /// and id.
    /// Resume with `--from` the last `seq` seen: no gap, no duplicate.
    Changes {
        source: String,
        namespace: String,
        /// Start after this WAL sequence (default: the oldest retained).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Keep running and print new commits as they land.
        #[arg(long)]
        follow: bool,
    },
    /// Measure write, flush, compaction and read speed against the raw store.
    Bench(bench::BenchArgs),
    /// Mount SOURCE at MOUNTPOINT: namespaces as directories of <id>.json files.
    /// Returns once the mount is live; the daemon runs on in the background.
    Mount(MountArgs),
    /// Load documents from a directory tree of .json files (named and nested
    /// as the mount shows them; bytes and mtimes kept), a JSON Lines file, or
    /// JSON Lines on stdin (PATH `-`; each line an object with an "id").
    /// Prints a JSON report: imported, skipped (already stored), refused
    /// (each with its reason); exits 1 if any was refused. Takes the
    /// namespace over like flush: a live mount of it is fenced.
    Import {
        source: String,
        namespace: String,
        /// A directory, a .jsonl file, or `-` for stdin.
        path: PathBuf,
        /// Documents per engine write (one WAL object each).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
    },
    /// Write one state of a namespace out: a directory tree (bytes as
    /// stored, mtimes kept) or JSON Lines (`--format jsonl`, or PATH `-` for
    /// stdout). Read-only: a live mount keeps writing.
    Export {
        source: String,
        namespace: String,
        /// A new or empty directory, a file, or `-` for stdout.
        path: PathBuf,
        #[arg(long, value_enum)]
        format: Option<ExportFormatArg>,
        /// The state just after this WAL sequence, or the newest committed
        /// at or before this RFC 3339 time (`2026-12-01T07:00:00Z`), within
        /// retention.
        #[arg(long, value_name = "SEQ|TIME", conflicts_with = "checkpoint")]
        at: Option<String>,
        /// The state a checkpoint pins.
        #[arg(long, value_name = "NAME")]
        checkpoint: Option<String>,
    },
    /// Print a shell completion script: `reef completions bash > /etc/bash_completion.d/reef`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the reef(1) man page (roff), or write one page per subcommand
    /// into DIR: `reef man | man -l -`.
    Man {
        /// Write reef.1 and reef-SUBCOMMAND.1 into this directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CheckpointAction {
    Create,
    List,
    Delete,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormatArg {
    Tree,
    Jsonl,
}

#[derive(clap::Args)]
struct MountArgs {
    source: String,
    mountpoint: PathBuf,
    /// Mount options, comma-separated, as mount(8) passes them: ro, allow_other,
    /// auto_unmount, uid=N, gid=N, file_mode=0644, dir_mode=0755, cache=DIR,
    /// threads=N, max_inodes=N, refresh=MS (ro mounts), log_file=PATH, metrics=ADDR:PORT; fstab-only options (noauto, _netdev, nofail,
    /// x-systemd.*, ...) are accepted and ignored.
    #[arg(short = 'o', value_name = "OPT[,OPT..]")]
    options: Vec<String>,
    /// Stay in the foreground (log to stderr) instead of detaching.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Same as -o ro.
    #[arg(long)]
    read_only: bool,
    /// Same as -o allow_other.
    #[arg(long)]
    allow_other: bool,
    /// Same as -o auto_unmount.
    #[arg(long)]
    auto_unmount: bool,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (a bare PORT
    /// binds to 127.0.0.1). Same as -o metrics=ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    /// Same as -o retain=DURATION: history kept readable (default 1h).
    #[arg(long, value_name = "DURATION")]
    retain: Option<String>,
}

const SUBCOMMANDS: [&str; 18] = [
    "changes",
    "ls",
    "gc",
    "checkpoint",
    "stats",
    "verify",
    "repair",
    "rebuild-manifest",
    "flush",
    "compact",
    "bench",
    "mount",
    "completions",
    "man",
    "import",
    "export",
    "help",
    "version",
];

/// mount(8) and mount.fuse3 run `reef SOURCE MOUNTPOINT -o OPTS`: read that
/// as `reef mount …`.
fn normalized_args() -> Vec<String> {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(first) = args.get(1) {
        if !first.starts_with('-') && !SUBCOMMANDS.contains(&first.as_str()) && args.len() >= 3 {
            args.insert(1, "mount".to_string());
        }
    }
    args
}

fn mount_command(args: MountArgs) -> ExitCode {
    let mut options = args.options.join(",");
    for (set, name) in [
        (args.read_only, "ro"),
        (args.allow_other, "allow_other"),
        (args.auto_unmount, "auto_unmount"),
    ] {
        if set {
            options.push(',');
            options.push_str(name);
        }
    }
    if let Some(addr) = &args.metrics {
        options.push_str(",metrics=");
        options.push_str(addr);
    }
    if let Some(retain) = &args.retain {
        options.push_str(",retain=");
        options.push_str(retain);
    }
    let mut opts = match reef::fs::MountOptions::parse_o(options.trim_matches(',')) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("reef: {e}");
            return ExitCode::from(2);
        }
    };
    opts.foreground |= args.foreground;
    match reef::fs::run_mount_command(&args.source, &args.mountpoint, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reef: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,fuser=error"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse_from(normalized_args());
    // Mounting may fork to detach, which must happen before any thread
    // (the runtime's) exists.
    let command = match cli.command {
        Command::Mount(args) => return mount_command(args),
        other => other,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reef: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(command)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("reef: {message}");
            ExitCode::from(2)
        }
    }
}

/// Opens SOURCE for an admin command. A local directory must exist: these
/// commands inspect a store, and creating an empty one for a mistyped path
/// would only hide the typo (`reef mount` creates it).
fn store(source: &str) -> Result<Arc<dyn ObjectStore>, String> {
    let local = match source.strip_prefix("file://") {
        Some(path) => Some(path),
        None => (!source.contains("://")).then_some(source),
    };
    if let Some(path) = local {
        if !std::path::Path::new(path).is_dir() {
            return Err(format!("{source} is not a directory; check the path"));
        }
    }
    open_store(source).map_err(|e| format!("cannot open {source}: {e}"))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// Live documents and their bytes, counted page by page: memory stays at
/// one page (and the engine's bounded caches) whatever the namespace size.
async fn live_totals(engine: &Engine) -> Result<(u64, u64), engine::EngineError> {
    const PAGE: usize = 1024;
    let (mut docs, mut bytes) = (0u64, 0u64);
    let mut after = None;
    loop {
        let page = engine.scan(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else {
            return Ok((docs, bytes));
        };
        docs += page.len() as u64;
        bytes += page.iter().map(|d| d.json.len() as u64).sum::<u64>();
        after = Some(last.id.clone());
    }
}

async fn open_writer(source: &str, ns: &str) -> Result<Engine, String> {
    Engine::open(store(source)?, ns, EngineOptions::default())
        .await
        .map_err(|e| format!("cannot open namespace {ns}: {e}"))
}

async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Ls { source } => {
            let names = engine::list_namespaces(&store(&source)?)
                .await
                .map_err(|e| e.to_string())?;
            for name in names {
                println!("{name}");
            }
        }
        Command::Stats { source, namespace } => {
            let metered = Arc::new(MeteredStore::new(store(&source)?));
            let opts = EngineOptions {
                read_only: true,
                ..EngineOptions::default()
            };
            let engine = Engine::open(metered.clone(), &namespace, opts)
                .await
                .map_err(|e| format!("cannot open namespace {namespace}: {e}"))?;
            let (live_documents, live_bytes) =
                live_totals(&engine).await.map_err(|e| e.to_string())?;
            let mut stats = engine.stats();
            stats["live_documents"] = live_documents.into();
            stats["live_bytes"] = live_bytes.into();
            stats["store_requests_for_this_command"] =
                serde_json::to_value(metered.snapshot()).map_err(|e| e.to_string())?;
            print_json(&stats)?;
        }
        Command::Verify { source, namespace } => {
            let bar = verify_bar();
            let report = reef::admin::verify_with_progress(store(&source)?, &namespace, &|d, t| {
                bar.set_length(t);
                bar.set_position(d);
            })
            .await
            .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            print_json(&report)?;
            if !report.healthy {
                eprintln!(
                    "reef: namespace {namespace} is unhealthy ({} issues); `reef repair {source} {namespace}` sets damage aside",
                    report.issues.len()
                );
                return Ok(ExitCode::from(1));
            }
        }
        Command::Repair { source, namespace } => {
            let report = reef::admin::repair(store(&source)?, &namespace)
                .await
                .map_err(|e| e.to_string())?;
            print_json(&report)?;
        }
        Command::RebuildManifest { source, namespace } => {
            let report = reef::admin::rebuild_manifest(store(&source)?, &namespace)
                .await
                .map_err(|e| e.to_string())?;
            print_json(&report)?;
        }
        Command::Flush { source, namespace } => {
            let engine = open_writer(&source, &namespace).await?;
            engine.flush().await.map_err(|e| e.to_string())?;
            print_json(&engine.stats())?;
        }
        Command::Compact { source, namespace } => {
            let engine = open_writer(&source, &namespace).await?;
            engine.compact().await.map_err(|e| e.to_string())?;
            print_json(&engine.stats())?;
        }
        Command::Gc {
            source,
            namespace,
            retain,
            dry_run,
        } => {
            let retain = match retain {
                Some(text) => engine::gc::parse_duration(&text).map_err(|e| e.to_string())?,
                None => engine::DEFAULT_RETAIN,
            };
            let opts = EngineOptions {
                read_only: dry_run,
                retain,
                ..EngineOptions::default()
            };
            let engine = Engine::open(store(&source)?, &namespace, opts)
                .await
                .map_err(|e| format!("cannot open namespace {namespace}: {e}"))?;
            let gc = engine::GcOptions {
                dry_run,
                ..engine.gc_options()
            };
            let report = engine.gc(gc).await.map_err(|e| e.to_string())?;
            print_json(&report)?;
        }
        Command::Checkpoint {
            action,
            source,
            namespace,
            name,
        } => {
            let store = store(&source)?;
            let need_name = || {
                name.clone()
                    .ok_or_else(|| "this action needs a checkpoint NAME".to_string())
            };
            match action {
                CheckpointAction::Create => {
                    let name = need_name()?;
                    // Read-only: a checkpoint is taken without fencing a
                    // live mount of the namespace.
                    let opts = EngineOptions {
                        read_only: true,
                        ..EngineOptions::default()
                    };
                    let engine = Engine::open(store, &namespace, opts)
                        .await
                        .map_err(|e| format!("cannot open namespace {namespace}: {e}"))?;
                    let cp = engine
                        .create_checkpoint(&name)
                        .await
                        .map_err(|e| e.to_string())?;
                    print_json(&cp)?;
                }
                CheckpointAction::List => {
                    reef::engine::layout::check_namespace(&namespace).map_err(|e| e.to_string())?;
                    // Pending ones too (`"pending": true`): an abandoned one
                    // holds GC back until deleted.
                    let cps = engine::checkpoint::list_all(&store, &namespace)
                        .await
                        .map_err(|e| e.to_string())?;
                    print_json(&cps)?;
                }
                CheckpointAction::Delete => {
                    let name = need_name()?;
                    reef::engine::layout::check_namespace(&namespace).map_err(|e| e.to_string())?;
                    engine::checkpoint::delete(&store, &namespace, &name)
                        .await
                        .map_err(|e| e.to_string())?;
                    eprintln!("reef: deleted checkpoint {name:?} of {namespace}; the next gc frees what it pinned");
                }
            }
        }
        Command::Import {
            source,
            namespace,
            path,
            batch,
        } => return import_command(&source, &namespace, &path, batch).await,
        Command::Export {
            source,
            namespace,
            path,
            format,
            at,
            checkpoint,
        } => {
            let at = match (at, checkpoint) {
                (Some(at), _) => Some(match at.parse::<u64>() {
                    Ok(seq) => engine::At::Seq(seq),
                    Err(_) => engine::At::Time(engine::timeline::parse_time(
                        at.strip_prefix('@').unwrap_or(&at),
                    )?),
                }),
                (None, Some(name)) => Some(engine::At::Checkpoint(name)),
                (None, None) => None,
            };
            export_command(&source, &namespace, &path, format, at).await?;
        }
        Command::Changes {
            source,
            namespace,
            from,
            follow,
        } => {
            let store = store(&source)?;
            let every = follow.then_some(std::time::Duration::from_millis(200));
            let mut out = std::io::stdout();
            match engine::changes::copy_to(&store, &namespace, from, every, &mut out).await {
                Ok(_) => {}
                // A consumer that stopped reading (`| head`) is not an error.
                Err(engine::EngineError::WriteFailed { message, .. })
                    if message.contains("Broken pipe") => {}
                Err(e) => return Err(format!("changes of {namespace}: {e}")),
            }
        }
        Command::Bench(args) => bench::run(args).await?,
        Command::Completions { shell } => cli_docs::completions(Cli::command(), shell)?,
        Command::Man { dir } => cli_docs::man(Cli::command(), dir.as_deref())?,
        Command::Mount(_) => unreachable!("mount runs before the runtime starts"),
    }
    Ok(ExitCode::SUCCESS)
}

/// A spinner with counts and rates on stderr when it is a terminal
/// (indicatif draws nothing otherwise, so pipes and logs stay clean).
fn transfer_bar(verb: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {prefix} {pos} documents, {msg} ({per_sec}, {elapsed})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(verb);
    bar
}

fn show_progress(bar: &indicatif::ProgressBar, p: reef::transfer::Progress) {
    // Updating a hidden bar costs next to nothing, but formatting the
    // byte count does: do it every 1024 items.
    bar.set_position(p.items);
    if p.items.is_multiple_of(1024) {
        bar.set_message(indicatif::HumanBytes(p.bytes).to_string());
    }
}

async fn import_command(
    source: &str,
    ns: &str,
    path: &std::path::Path,
    batch: usize,
) -> Result<ExitCode, String> {
    use reef::transfer::{self, ImportOptions, TransferError};
    let opts = ImportOptions {
        batch_ops: batch.max(1),
        ..ImportOptions::default()
    };
    let is_stdin = path.as_os_str() == "-";
    let is_dir = !is_stdin && path.is_dir();
    // Open the input before taking the namespace over, so a typo in PATH
    // does not fence a mount for nothing.
    let mut reader: Option<Box<dyn std::io::BufRead + Send>> = if is_stdin {
        Some(Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::io::stdin(),
        )))
    } else if is_dir {
        None
    } else {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Some(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
    };
    let engine = open_writer(source, ns).await?;
    let bar = transfer_bar("importing");
    let progress = |p| show_progress(&bar, p);
    let result = match reader.as_mut() {
        None => transfer::import_tree(&engine, path, opts, &progress).await,
        Some(r) => transfer::import_jsonl(&engine, r.as_mut(), path, opts, &progress).await,
    };
    // An automatic flush cut off at exit would log a failure (and leave
    // more WAL for the next open to replay).
    engine.finish_background_work().await;
    bar.finish_and_clear();
    match result {
        Ok(report) => {
            print_json(&report)?;
            if report.refused > 0 {
                eprintln!(
                    "reef: {} files or lines were refused (see \"refusals\"); the rest is stored",
                    report.refused
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(TransferError::Interrupted { done, source }) => {
            print_json(&done)?;
            Err(TransferError::Interrupted { done, source }.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn export_command(
    source: &str,
    ns: &str,
    path: &std::path::Path,
    format: Option<ExportFormatArg>,
    at: Option<engine::At>,
) -> Result<(), String> {
    use reef::transfer::{self, ExportFormat};
    let to_stdout = path.as_os_str() == "-";
    let format = format.unwrap_or(if to_stdout {
        ExportFormatArg::Jsonl
    } else {
        ExportFormatArg::Tree
    });
    let store = store(source)?;
    let bar = transfer_bar("exporting");
    let progress = |p| show_progress(&bar, p);
    let result = match (format, to_stdout) {
        (ExportFormatArg::Tree, true) => {
            return Err("a tree export needs a directory, not `-`; use --format jsonl".into())
        }
        (ExportFormatArg::Tree, false) => {
            let to = ExportFormat::Tree(path.to_path_buf());
            transfer::export(store, ns, at, to, &progress).await
        }
        (ExportFormatArg::Jsonl, true) => {
            let mut out = std::io::stdout();
            transfer::export(store, ns, at, ExportFormat::JsonLines(&mut out), &progress).await
        }
        (ExportFormatArg::Jsonl, false) => {
            let mut file = std::fs::File::create_new(path)
                .map_err(|e| format!("{}: {e} (export writes a new file)", path.display()))?;
            let result =
                transfer::export(store, ns, at, ExportFormat::JsonLines(&mut file), &progress)
                    .await;
            if result.is_ok() {
                file.sync_all()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            result
        }
    };
    bar.finish_and_clear();
    let report = result.map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    // The documents may be on stdout: the report goes to stderr then.
    if to_stdout {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}

/// A bar of objects checked on stderr when it is a terminal (indicatif
/// draws nothing otherwise, so pipes and logs stay clean).
fn verify_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(
        "verify [{bar:30}] {pos}/{len} objects ({per_sec}, {elapsed}, eta {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
