//! `vigil models list|validate|show|quantize REPO [MODEL]`: inspect a Triton-style model repository.
//!
//! - `list` prints each model with its platform/backend, served versions and state (`READY` or the error).
//! - `validate` loads every model (or one) as `vigil run` would — parse, auto-complete (unless `--strict`),
//!   normalise, validate, resolve versions and files — and exits non-zero if any is broken, printing
//!   Triton's message (and the engine's checks of execution-accelerator parameters); `--config-only`
//!   checks the configurations without version folders and files.
//! - `show` prints the completed, normalised configuration of a model as protobuf text.
//! - `quantize` writes an INT8 version calibrated on the user's media (`crate::quantize`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use vigil_modelrepo::ModelRepository;

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the models of a repository with their versions and state.
    List(RepoArgs),
    /// Load and validate every model of a repository (or one), as Triton would.
    Validate(ModelArgs),
    /// Print the completed, normalised configuration of a model.
    Show(ShowArgs),
    /// Write an INT8 version of a model calibrated on your own media, checked against the original.
    #[command(disable_version_flag = true)]
    Quantize(Box<crate::quantize::QuantizeArgs>),
}

#[derive(Debug, clap::Args)]
pub struct RepoArgs {
    /// The model repository folder.
    pub repo: PathBuf,
    /// Strict model configuration: no auto-complete from the model file (Triton's --strict-model-config).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Check the configurations only (parse, normalise, validate), not the version folders and model
    /// files — e.g. for configs written for another machine.
    #[arg(long)]
    pub config_only: bool,
    /// One model (default: all).
    pub model: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The model to show.
    pub model: String,
}

/// What the engine checks at load beyond Triton's validation: the execution-accelerator parameters
/// (`vigil_engine::accel`).
fn engine_checks(config: &vigil_modelrepo::ModelConfig) -> Result<(), String> {
    vigil_engine::accel::provider_options(config, std::path::Path::new("")).map(|_| ())
}

fn open(args: &RepoArgs) -> anyhow::Result<ModelRepository> {
    let mut repo = ModelRepository::open(&args.repo)
        .with_context(|| format!("model repository {}", args.repo.display()))?;
    repo.set_strict(args.strict);
    Ok(repo)
}

pub fn execute(args: &ModelsArgs) -> anyhow::Result<()> {
    match &args.command {
        ModelsCommand::List(a) => {
            let repo = open(a)?;
            let names = repo.model_names()?;
            if names.is_empty() {
                println!("{}: no models", repo.root().display());
            }
            for name in names {
                match repo
                    .load(&name, None)
                    .map_err(|e| e.to_string())
                    .and_then(|m| engine_checks(&m.config).map(|()| m))
                {
                    Ok(m) => {
                        let kind = if m.config.platform.is_empty() {
                            m.config.backend.clone()
                        } else {
                            m.config.platform.clone()
                        };
                        let versions = repo.served_versions(&name).unwrap_or_default();
                        let versions: Vec<String> = versions.iter().map(u64::to_string).collect();
                        println!(
                            "{name}\t{kind}\tversions {}\tmax_batch_size {}\tREADY",
                            versions.join(","),
                            m.config.max_batch_size
                        );
                    }
                    Err(e) => println!("{name}\t-\t-\t-\tUNAVAILABLE: {e}"),
                }
            }
            Ok(())
        }
        ModelsCommand::Validate(a) => {
            let repo = open(&a.repo)?;
            let names = match &a.model {
                Some(m) => vec![m.clone()],
                None => repo.model_names()?,
            };
            let mut failed = Vec::new();
            for name in &names {
                if a.config_only {
                    match repo
                        .model_config(name)
                        .map_err(|e| e.to_string())
                        .and_then(|c| engine_checks(&c).map(|()| c))
                    {
                        Ok(c) => println!("{name}: configuration ok ({})", c.platform),
                        Err(e) => {
                            eprintln!("{name}: {e}");
                            failed.push(name.clone());
                        }
                    }
                    continue;
                }
                match repo
                    .load(name, None)
                    .map_err(|e| e.to_string())
                    .and_then(|m| engine_checks(&m.config).map(|()| m))
                {
                    Ok(m) => println!(
                        "{name}: ok (version {}, {})",
                        m.version,
                        m.model_path.display()
                    ),
                    Err(e) => {
                        eprintln!("{name}: {e}");
                        failed.push(name.clone());
                    }
                }
            }
            if !failed.is_empty() {
                bail!(
                    "{} of {} model(s) invalid: {}",
                    failed.len(),
                    names.len(),
                    failed.join(", ")
                );
            }
            Ok(())
        }
        ModelsCommand::Quantize(a) => crate::quantize::execute(a),
        ModelsCommand::Show(a) => {
            let repo = open(&a.repo)?;
            let config = repo.model_config(&a.model)?;
            print!("{}", config.to_pbtxt());
            Ok(())
        }
    }
}
