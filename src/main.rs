//! The `proxyfn` command: `serve` (default; what Lambda's `bootstrap` runs), `check`, `openapi`,
//! `health`, and the Redis administration commands `keys` and `limits`.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::{Parser, Subcommand};
use proxyfn::{
    ConfigError, Plan,
    admin::AdminError,
    auth::admin::KeysAction,
    config,
    observability::init_logging,
    ratelimit::admin::LimitsAction,
    runtime::{self, lambda, server},
};

/// mimalloc instead of glibc malloc: the request path allocates and frees small buffers on
/// every worker thread, where glibc's arenas contend (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "proxyfn",
    version,
    about = "An API gateway for AWS Lambda and plain HTTP servers"
)]
struct Cli {
    /// Configuration file [default: $PROXYFN_CONFIG, else ./proxyfn.toml, else built-in]
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: in AWS Lambda when AWS_LAMBDA_RUNTIME_API is set, else an HTTP server
    Serve,
    /// Validate the configuration and exit (status 2 when invalid), listing every problem
    Check {
        /// `text`, or `json` for CI and editors
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Lint without the production secrets: a secret_env that is not set is a note, not
        /// a problem
        #[arg(long)]
        without_secrets: bool,
    },
    /// Print the OpenAPI document of the configuration
    Openapi,
    /// Print the IAM policy (JSON) the configured AWS routes need, and nothing more
    Iam,
    /// Print the JSON Schema of the configuration file
    Schema,
    /// Write a starting configuration (and its JSON Schema, for editors)
    Init {
        /// minimal, jwt, shared-redis, lambda or aws
        #[arg(long, default_value = "minimal")]
        template: String,
        /// Where to write it; `-` prints it instead
        #[arg(long, default_value = "proxyfn.toml")]
        output: PathBuf,
        /// Replace a file that exists
        #[arg(long)]
        force: bool,
    },
    /// Print the effective configuration (file, environment overrides and defaults), with
    /// passwords masked
    Config,
    /// Ask the gateway of this configuration for GET /health (exit 0 when it answers 200);
    /// for container health checks
    Health,
    /// Make the running gateway of this configuration re-read and validate it, through its
    /// admin listener (server.admin_listen); exit 0 when the new configuration serves
    Reload,
    /// Manage API keys kept in Redis (providers with store = "redis")
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Per-key rate-limit overrides kept in Redis ([rate_limit] store = "redis")
    #[command(subcommand)]
    Limits(LimitsCommand),
}

/// KEY is the value a policy counts by: a user or API key id, `ip:ADDRESS`, a header's
/// value, or `global`.
#[derive(Subcommand)]
enum LimitsCommand {
    /// Give KEY its own quota under POLICY, from the next request on
    Set {
        /// The policy, as in [rate_limits.POLICY]
        policy: String,
        key: String,
        /// Requests per period
        #[arg(long)]
        limit: u32,
        /// The period, e.g. "1m"
        #[arg(long, value_parser = humantime::parse_duration)]
        per: std::time::Duration,
        /// Requests allowed at once [default: the limit]
        #[arg(long)]
        burst: Option<u32>,
    },
    /// Show KEY's override under POLICY
    Get { policy: String, key: String },
    /// Remove KEY's override; its count starts afresh under the configured quota
    Clear { policy: String, key: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a key; prints it once (only its SHA-256 is stored)
    Add {
        /// The api_keys provider, as in [auth.api_keys.PROVIDER]
        provider: String,
        /// The principal the key identifies
        #[arg(long)]
        id: String,
        /// A scope the key grants (repeatable)
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Use this key instead of generating one
        #[arg(long)]
        key: Option<String>,
    },
    /// Revoke every key of a principal
    Revoke {
        provider: String,
        #[arg(long)]
        id: String,
    },
    /// List the keys' principals and scopes (never the keys)
    List { provider: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Exit status for an invalid configuration.
const CONFIG_INVALID: u8 = 2;

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let in_lambda = runtime::in_lambda();

    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Init {
        template,
        output,
        force,
    } = &command
    {
        return init(template, output, *force);
    }
    if let Command::Check {
        format,
        without_secrets,
    } = command
    {
        return check(cli.config.as_deref(), format, without_secrets);
    }
    let (config, source) = match config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            init_logging(
                in_lambda,
                &proxyfn::observability::config::LogConfig::default(),
            );
            return config_failure(&error, in_lambda);
        }
    };
    init_logging(in_lambda, &config.log);
    match command {
        Command::Check { .. } | Command::Init { .. } => unreachable!("handled above"),
        Command::Openapi => match Plan::new(&config) {
            Ok(plan) => {
                let document = proxyfn::docs::openapi(&plan);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&document).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(&error.locate(&source), false),
        },
        Command::Iam => match Plan::validate(&config, config::Secrets::MayBeMissing) {
            Ok(plan) => {
                if !plan.routes.iter().any(|route| route.aws().is_some()) {
                    eprintln!("proxyfn: no route calls an AWS service; the policy grants nothing");
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&proxyfn::aws::iam::policy(&plan))
                        .unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(&error.locate(&source), false),
        },
        Command::Serve => run_gateway(&config, &source, started),
        Command::Config => match config.to_masked_toml() {
            Ok(text) => {
                println!("# The effective configuration of {source}, every default written out.");
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("proxyfn: cannot print the configuration: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Schema => {
            let document = config::json_schema::document();
            println!(
                "{}",
                serde_json::to_string_pretty(&document).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Health => match Plan::new(&config) {
            Ok(plan) => health(&plan),
            Err(error) => config_failure(&error.locate(&source), false),
        },
        Command::Reload => match Plan::new(&config) {
            Ok(plan) => reload(&plan),
            Err(error) => config_failure(&error.locate(&source), false),
        },
        Command::Keys(command) => match Plan::new(&config) {
            Ok(plan) => keys(&plan, command),
            Err(error) => config_failure(&error.locate(&source), false),
        },
        Command::Limits(command) => match Plan::new(&config) {
            Ok(plan) => limits(&plan, command),
            Err(error) => config_failure(&error.locate(&source), false),
        },
    }
}

/// `proxyfn init`: writes a template, and the schema its `#:schema` line names beside it.
fn init(name: &str, output: &std::path::Path, force: bool) -> ExitCode {
    let Some(template) = config::templates::template(name) else {
        let known: Vec<String> = config::templates::TEMPLATES
            .iter()
            .map(|t| format!("  {:<13} {}", t.name, t.about))
            .collect();
        eprintln!(
            "proxyfn init: no template {name:?}; the templates are:\n{}",
            known.join("\n")
        );
        return ExitCode::from(CONFIG_INVALID);
    };
    if output.as_os_str() == "-" {
        print!("{}", template.text);
        return ExitCode::SUCCESS;
    }
    if output.exists() && !force {
        eprintln!(
            "proxyfn init: {} exists; pass --force to replace it",
            output.display()
        );
        return ExitCode::FAILURE;
    }
    let schema = output.with_file_name("proxyfn.schema.json");
    let document =
        serde_json::to_string_pretty(&config::json_schema::document()).unwrap_or_default();
    let written = std::fs::write(output, template.text).and_then(|()| {
        if schema.exists() && !force {
            Ok(())
        } else {
            std::fs::write(&schema, document + "\n")
        }
    });
    match written {
        Ok(()) => {
            println!(
                "wrote {} (template {name}: {}) and {}; check it with: proxyfn check --config {}",
                output.display(),
                template.about,
                schema.display(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("proxyfn init: cannot write {}: {error}", output.display());
            ExitCode::FAILURE
        }
    }
}

/// `proxyfn check`: every problem of the configuration, as text or JSON; status 2 when any.
fn check(explicit: Option<&std::path::Path>, format: Format, without_secrets: bool) -> ExitCode {
    let secrets = if without_secrets {
        config::Secrets::MayBeMissing
    } else {
        config::Secrets::Required
    };
    let checked = config::load_with(explicit, secrets).and_then(|(config, source)| {
        Plan::validate(&config, secrets)
            .map(|plan| (plan, source.clone()))
            .map_err(|error| error.locate(&source))
    });
    let source_name = |source: Option<&config::ConfigSource>| {
        source.map_or_else(
            || {
                explicit
                    .map(|p| p.display().to_string())
                    .or_else(|| std::env::var("PROXYFN_CONFIG").ok())
                    .unwrap_or_else(|| "proxyfn.toml".to_owned())
            },
            ToString::to_string,
        )
    };
    match (format, checked) {
        (Format::Text, Ok((plan, source))) => {
            println!(
                "{source}: OK ({} routes, {} upstreams)",
                plan.routes.len(),
                plan.upstreams.len()
            );
            for note in &plan.notes {
                println!("  note: {note}");
            }
            ExitCode::SUCCESS
        }
        (Format::Text, Err(error)) => {
            for note in &error.notes {
                eprintln!("  note: {note}");
            }
            config_failure(&error, false)
        }
        (Format::Json, checked) => {
            let (valid, problems, notes, source) = match &checked {
                Ok((plan, source)) => (true, vec![], &plan.notes, Some(source)),
                Err(error) => (false, error.problems.iter().collect(), &error.notes, None),
            };
            let report = serde_json::json!({
                "config": source_name(source),
                "valid": valid,
                "problems": problems.iter().map(|p| p.to_json()).collect::<Vec<_>>(),
                "notes": notes.iter().map(config::ConfigProblem::to_json).collect::<Vec<_>>(),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(CONFIG_INVALID)
            }
        }
    }
}

fn keys(plan: &Plan, command: KeysCommand) -> ExitCode {
    let (provider, action) = match command {
        KeysCommand::Add {
            provider,
            id,
            scopes,
            key,
        } => (provider, KeysAction::Add { id, scopes, key }),
        KeysCommand::Revoke { provider, id } => (provider, KeysAction::Revoke { id }),
        KeysCommand::List { provider } => (provider, KeysAction::List),
    };
    admin(proxyfn::auth::admin::run(plan, &provider, action))
}

fn limits(plan: &Plan, command: LimitsCommand) -> ExitCode {
    let (policy, action) = match command {
        LimitsCommand::Set {
            policy,
            key,
            limit,
            per,
            burst,
        } => (
            policy,
            LimitsAction::Set {
                key,
                limit,
                per,
                burst,
            },
        ),
        LimitsCommand::Get { policy, key } => (policy, LimitsAction::Get { key }),
        LimitsCommand::Clear { policy, key } => (policy, LimitsAction::Clear { key }),
    };
    admin(proxyfn::ratelimit::admin::run(plan, &policy, action))
}

/// `proxyfn health`: the health endpoint where this configuration serves it (the admin
/// listener when there is one).
fn health(plan: &Plan) -> ExitCode {
    let Some(endpoint) = &plan.builtins.health else {
        eprintln!("proxyfn health: [endpoints.health] is turned off");
        return ExitCode::FAILURE;
    };
    let listen = plan.server.admin_listen.unwrap_or(plan.server.listen);
    let runtime = match cli_runtime() {
        Ok(runtime) => runtime,
        Err(failed) => return failed,
    };
    let probe = server::probe_health(listen, &endpoint.path, std::time::Duration::from_secs(3));
    match runtime.block_on(probe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("proxyfn health: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The one-thread async runtime of a CLI command that talks to the network.
fn cli_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("proxyfn: {error}");
            ExitCode::FAILURE
        })
}

/// `proxyfn reload`: `POST /reload` on the admin listener, which answers when the new
/// configuration serves (200, its generation) or was refused (422, every problem).
fn reload(plan: &Plan) -> ExitCode {
    let Some(admin) = plan.server.admin_listen else {
        eprintln!(
            "proxyfn reload: needs server.admin_listen (or send the gateway SIGHUP: kill -HUP PID)"
        );
        return ExitCode::from(CONFIG_INVALID);
    };
    let runtime = match cli_runtime() {
        Ok(runtime) => runtime,
        Err(failed) => return failed,
    };
    let asked = server::request(admin, "POST", "/reload", std::time::Duration::from_secs(60));
    match runtime.block_on(asked) {
        Ok((200, body)) => {
            println!("{}", body.trim());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("proxyfn reload: {status} {}", body.trim());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("proxyfn reload: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an administrative command against Redis within 10 s; prints what it says. A command
/// the configuration does not allow exits 2, one that failed 1.
fn admin(work: impl std::future::Future<Output = Result<String, AdminError>>) -> ExitCode {
    let runtime = match cli_runtime() {
        Ok(runtime) => runtime,
        Err(failed) => return failed,
    };
    let bounded = async {
        tokio::time::timeout(std::time::Duration::from_secs(10), work)
            .await
            .unwrap_or_else(|_| Err(AdminError::Failed("Redis did not answer within 10s".into())))
    };
    match runtime.block_on(bounded) {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(AdminError::Config(message)) => {
            eprintln!("proxyfn: {message}");
            ExitCode::from(CONFIG_INVALID)
        }
        Err(AdminError::Failed(message)) => {
            eprintln!("proxyfn: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the gateway in the runtime the environment selects until it stops.
fn run_gateway(
    config: &config::Config,
    source: &config::ConfigSource,
    started: Instant,
) -> ExitCode {
    match runtime::run(config, source, runtime::selected(), started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(runtime::Stopped::ConfigInvalid(error)) => config_failure(&error, false),
        Err(runtime::Stopped::Failed(message)) => {
            eprintln!("proxyfn: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every problem and returns exit status 2. In Lambda the problems are also sent to
/// the Runtime API's init-error endpoint.
fn config_failure(error: &ConfigError, report_to_lambda: bool) -> ExitCode {
    eprintln!("proxyfn: {error}");
    if report_to_lambda
        && let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    {
        runtime.block_on(lambda::report_init_error(
            "Runtime.ConfigError",
            &error.to_string(),
        ));
    }
    ExitCode::from(CONFIG_INVALID)
}
