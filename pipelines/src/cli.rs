//! The `vigil` command line: `vigil run CONFIG.yaml`, `vigil check CONFIG.yaml`,
//! `vigil models list|validate|show REPO [MODEL]`, `vigil bench [--quick] [--soak SECONDS]`, `vigil --version`.
//!
//! Errors are printed as one line, `error: …`, and exit with status 1; usage errors exit with 2.
//! Panics are reported the same way (no backtrace), so a bug never dumps a trace on a user.

use crate::config::{Config, one_line};
use crate::pipeline::{RunOptions, run};
use crate::shard::Shard;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Vigil: video analytics pipelines (detection, tracking, overlay) from a YAML file.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline described by a YAML config until its sources end (Ctrl-C stops cleanly).
    Run(RunArgs),
    /// Check a YAML config (media, model, classes, outputs) without running it.
    Check(CheckArgs),
    /// Inspect a Triton-style model repository: list, validate, show.
    Models(crate::models_cli::ModelsArgs),
    /// Benchmark Vigil against the hardware's limits and the peers a user would run instead
    /// (run from the repository root; see README "Performance").
    Bench(Box<crate::bench::BenchArgs>),
    /// Serve a model repository with Triton's protocol (KServe v2 over HTTP/REST, Triton's
    /// metrics), for Triton's clients and for remote inference.
    Serve(crate::serve::ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline config (see configs/README.md).
    pub config: PathBuf,
    /// Seconds between progress lines on stderr (0 = none).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub progress: f64,
    /// Only print errors and warnings (no start-up lines, progress or summary).
    #[arg(long, short)]
    pub quiet: bool,
    /// Run shard I of N (0-based, e.g. `0/2`): the sources whose name hashes into it (README
    /// "Deploying on Kubernetes"). Default: the environment (`VIGIL_SHARD=I/N`, or
    /// `VIGIL_SHARD_COUNT=N` with `VIGIL_SHARD_INDEX` or a StatefulSet pod's `HOSTNAME`), else all.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The pipeline config.
    pub config: PathBuf,
    /// Also print which shard of N each source runs in, marking shard I's (as `run --shard`; the
    /// environment's shard when not given).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

/// The shard to run: `--shard`, else the environment's, else the whole fleet.
fn resolve_shard(arg: Option<&str>) -> anyhow::Result<Shard> {
    if let Some(a) = arg {
        return Shard::parse(a).map_err(|e| anyhow::anyhow!("--shard {e}"));
    }
    let env = Shard::from_env(|k| std::env::var(k).ok()).map_err(|e| anyhow::anyhow!(e))?;
    Ok(env.unwrap_or(Shard::WHOLE))
}

/// Runs the CLI with the process arguments and returns the exit status.
pub fn main() -> ExitCode {
    limit_malloc_arenas();
    disable_onnxruntime_telemetry();
    // Python-backend models' configurations are completed by their own auto_complete_config.
    vigil_engine::python::register_autocomplete();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error: {}{at}", one_line(&msg));
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
        }
    };
    match std::panic::catch_unwind(|| execute(&cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Executes a parsed command.
pub fn execute(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Run(args) => {
            let shard = resolve_shard(args.shard.as_deref())?;
            let plan = Config::load_and_validate(&args.config)?.for_shard(shard);
            if shard.is_split() && !args.quiet {
                eprintln!("{}", shard_line(&plan));
            }
            let interval = (args.progress > 0.0 && !args.quiet)
                .then(|| Duration::from_secs_f64(args.progress));
            let opts = RunOptions {
                handle_signals: true,
                progress_interval: interval,
                verbose: !args.quiet,
                ..Default::default()
            };
            run(&plan, &opts)?;
            Ok(())
        }
        Command::Models(args) => crate::models_cli::execute(args),
        Command::Bench(args) => crate::bench::execute(args),
        Command::Serve(args) => crate::serve::run(args),
        Command::Check(args) => {
            let shard = resolve_shard(args.shard.as_deref())?;
            let plan = Config::load_and_validate(&args.config)?;
            if shard.is_split() {
                print!("{}", assignment(&plan, shard));
            }
            // A source that cannot start would fail alone in a run; `check` reports it as an error.
            let mut problems: Vec<&String> = plan
                .sources
                .iter()
                .filter_map(|s| s.problem.as_ref())
                .collect();
            if let Some(last) = problems.pop() {
                for p in problems {
                    eprintln!("error: {p}");
                }
                anyhow::bail!("{last}");
            }
            let secondary: String = plan
                .secondary
                .iter()
                .map(|s| format!(", secondary {} v{}", s.model.name, s.model.version))
                .collect();
            let model = match &plan.model {
                Some(m) => format!(", model {} v{}", m.name, m.version),
                None => String::new(),
            };
            let ocr = match &plan.ocr {
                Some(o) => format!(", ocr {}/{}", o.det_model, o.rec_model),
                None => String::new(),
            };
            let inspection = match &plan.inspection {
                Some(i) => format!(", rules {}", i.rules.display()),
                None => String::new(),
            };
            println!(
                "{}: ok: {} source(s){model}{secondary}{ocr}{inspection}",
                args.config.display(),
                plan.sources.len(),
            );
            Ok(())
        }
    }
}

/// `vigil: NAME: shard I/N: K of M sources (a, b)`, or that the shard has none.
fn shard_line(plan: &crate::config::Plan) -> String {
    let name = &plan.config.name;
    let shard = plan.shard;
    if plan.sources.is_empty() {
        return format!(
            "vigil: {name}: shard {shard}: none of the fleet's {} sources; idle until stopped \
             (streams added through the API run here)",
            plan.fleet_sources
        );
    }
    let names: Vec<&str> = plan.sources.iter().map(|s| s.name.as_str()).collect();
    format!(
        "vigil: {name}: shard {shard}: {} of {} sources ({})",
        names.len(),
        plan.fleet_sources,
        names.join(", ")
    )
}

/// `vigil check --shard I/N`: one line per source with its shard (`*` marks shard I's), then the
/// count per shard.
fn assignment(plan: &crate::config::Plan, shard: Shard) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut per = vec![0usize; shard.count as usize];
    let width = plan.sources.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &plan.sources {
        let of = crate::shard::shard_of(&s.name, shard.count);
        per[of as usize] += 1;
        let mark = if of == shard.index { "*" } else { " " };
        let _ = writeln!(out, "{mark} {:width$}  shard {of}/{}", s.name, shard.count);
    }
    let counts: Vec<String> = per
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i}: {n}"))
        .collect();
    let _ = writeln!(
        out,
        "shards of {}: {} (* = shard {shard})",
        shard.count,
        counts.join(", ")
    );
    out
}

/// glibc gives each new thread its own malloc arena (up to 8 per core) and never returns an arena's
/// fragmented free memory: a process whose streams come and go (`POST`/`DELETE /streams`, reconnecting
/// cameras) then keeps growing until every arena is warm. Four arenas keep the resident size flat at a
/// small cost in allocation contention (buffers are pooled). `MALLOC_ARENA_MAX` in the environment
/// overrides this.
/// Microsoft's ONNX Runtime builds (1.32 here) start a telemetry uploader when the environment is
/// created: DNS look-ups and HTTPS to a Microsoft collector, every few seconds, even with telemetry
/// events disabled through the API (`runtime::environment` does that too). Only the
/// `ORT_DISABLE_TELEMETRY` environment variable, read when the library creates its environment, stops
/// it; `tests/tests/api_schema.rs` fails if `vigil run` sends any packet off loopback.
fn disable_onnxruntime_telemetry() {
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing reads the
        // environment concurrently.
        unsafe {
            std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
        }
    }
}

fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes an allocator tunable; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 4);
        }
    }
}
