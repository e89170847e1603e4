//! `reef`: the command line. See `reef --help` and README.md.

mod bench;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
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
    /// Merge all segments into one (takes over like flush; on a mount use `.compact`).
    Compact { source: String, namespace: String },
    /// Measure write, flush, compaction and read speed against the raw store.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reef: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("reef: {message}");
            ExitCode::from(2)
        }
    }
}

fn store(source: &str) -> Result<Arc<dyn ObjectStore>, String> {
    open_store(source).map_err(|e| format!("cannot open {source}: {e}"))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
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
            let docs = engine.scan_all().await.map_err(|e| e.to_string())?;
            let mut stats = engine.stats();
            stats["live_documents"] = docs.len().into();
            stats["live_bytes"] = docs.iter().map(|d| d.json.len()).sum::<usize>().into();
            stats["store_requests_for_this_command"] =
                serde_json::to_value(metered.snapshot()).map_err(|e| e.to_string())?;
            print_json(&stats)?;
        }
        Command::Verify { source, namespace } => {
            let report = reef::admin::verify(store(&source)?, &namespace)
                .await
                .map_err(|e| e.to_string())?;
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
        Command::Bench(args) => bench::run(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
