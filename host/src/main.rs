//! The `plughost` command: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use plughost::RuntimeKind;
use plughost::admin::AdminSettings;
use plughost::cli::client::{self, Change, Client, ClientError};
use plughost::cli::logging::{self, LogFormat};
use plughost::cli::run::{InputSource, RunOptions, exit};
use plughost::cli::{check, list, new, schema};
use plughost::config::{self, HostConfig};
use plughost::telemetry::export::Export;

/// Events are many small allocations freed on another thread than the one
/// that made them (a line parsed on the input thread, handled on a plugin's):
/// mimalloc's per-thread free lists take them far faster than the system
/// allocator (docs/performance/cli.md). A script plugin's thread builds its
/// interpreter on the system allocator, whose shared arenas reuse what one load
/// frees for the next: mimalloc would keep every page a load touched
/// resident on each idle plugin's thread (docs/performance/scale.md).
#[global_allocator]
static ALLOC: Split = Split;

/// mimalloc, or the system allocator on a thread that asks for it
/// ([`plughost_bindings::system_alloc::on_system_allocator`]). A block goes back to
/// the allocator that owns it, whichever thread frees it: mimalloc knows its
/// own blocks (`mi_is_in_heap_region`, a look-up in its page map), every
/// other block is the system allocator's.
struct Split;

/// Whether mimalloc owns `ptr`.
#[inline]
fn mimalloc_owns(ptr: *mut u8) -> bool {
    // SAFETY: a read-only look-up of an address in mimalloc's page map;
    // any address may be asked about.
    unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr.cast()) }
}

// SAFETY: each block is allocated by exactly one of the two allocators and
// freed or resized by the same one (`mimalloc_owns`); both uphold the
// `GlobalAlloc` contract for the layouts they are given.
unsafe impl std::alloc::GlobalAlloc for Split {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plughost_bindings::system_alloc::on_system_allocator() {
            unsafe { std::alloc::System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plughost_bindings::system_alloc::on_system_allocator() {
            unsafe { std::alloc::System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if mimalloc_owns(ptr) {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if mimalloc_owns(ptr) {
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        } else {
            unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "plughost",
    version,
    about = "A host for plugins written in Lua, Rhai or Rust"
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, global = true, default_value = "text")]
    log_format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Runtime {
    Lua,
    Rhai,
    Native,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the host on one or more plugins directories.
    Run {
        /// A plugins directory (repeatable; replaces the config's; default ./plugins).
        #[arg(long = "plugins", value_name = "DIR")]
        plugins: Vec<PathBuf>,
        /// Read the host config (plughost.yaml) FILE; flags override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Publish each JSON line {"topic":…, "payload":…} of FILE, or of stdin with `-`.
        #[arg(long, value_name = "FILE|-")]
        input: Option<String>,
        /// Print every bus event matching PATTERN as a JSON line on stdout (repeatable).
        #[arg(long = "tap", value_name = "PATTERN")]
        taps: Vec<String>,
        /// Exit once the input is done and every queue is empty.
        #[arg(long, requires = "input")]
        exit_when_idle: bool,
        /// Do not watch the plugins directories (no live reload).
        #[arg(long)]
        no_watch: bool,
        /// How long shutdown waits for queues to drain, e.g. `10s`, `500ms` [default: 10s].
        #[arg(long, value_name = "DURATION", value_parser = humantime_duration)]
        drain_timeout: Option<Duration>,
        /// Serve the admin HTTP endpoint on ADDR, e.g. `127.0.0.1:9090` (overrides the config's
        /// `admin.listen`). A non-loopback ADDR needs a bearer token in $PLUGHOST_ADMIN_TOKEN
        /// (or the variable named by the config's `admin.token_env`).
        #[arg(long, value_name = "ADDR")]
        admin: Option<String>,
    },
    /// Validate manifests and compile scripts; exit 1 on any error.
    Check {
        /// Plugins directories (default: the config's `plugins`, else ./plugins).
        dirs: Vec<PathBuf>,
        /// Also check this host config (plughost.yaml); its `plugins` are the
        /// directories checked when none is given.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// List the plugins: name, version, runtime, enabled, subscriptions, errors.
    List {
        /// Plugins directories (default ./plugins).
        dirs: Vec<PathBuf>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Publish an event on a running host (through its admin endpoint); prints the event id.
    Publish {
        /// The topic, e.g. `text.raw`.
        topic: String,
        /// The payload as JSON, e.g. '{"text": "hi"}'.
        #[arg(default_value = "null")]
        payload: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Enable (start) a plugin of a running host; answers once it runs.
    Enable {
        /// The plugin's name.
        name: String,
        /// Also write `enabled: true` into its plugin.yaml (comments kept).
        #[arg(long)]
        persist: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Disable (stop) a plugin of a running host; answers once it stopped.
    Disable {
        /// The plugin's name.
        name: String,
        /// Also write `enabled: false` into its plugin.yaml (comments kept).
        #[arg(long)]
        persist: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Reload a plugin of a running host from its files; answers once reloaded.
    Reload {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Make a plugin's new version (its rollout's candidate) the running one;
    /// answers once in effect.
    Promote {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Discard a plugin's new version (its rollout's candidate); the running
    /// version goes on alone.
    Rollback {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Change the share of events a plugin's gradual rollout gives the new
    /// version; 100 promotes it.
    Rollout {
        /// The plugin's name.
        name: String,
        /// The new version's share of the events, 1 to 100.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=100))]
        percent: u8,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Show the plugins of a running host: state (running, suspended, failed,
    /// disabled), version, queue depth, errors and restarts, and each rollout
    /// in progress.
    Status {
        /// One plugin, with its last error and crash; every plugin when left out.
        name: Option<String>,
        /// Print the host's JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// List or replay a running host's last dead letters.
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(DeadLettersCommand),
    /// Print a running host's bus events matching any PATTERN as JSON lines
    /// (`GET /stream`), until the host stops.
    Tap {
        /// A topic pattern (`*` one token, `>` the rest), e.g. `text.*`.
        #[arg(required = true, value_name = "PATTERN")]
        patterns: Vec<String>,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Show a running host's plugins live: state, events/s, errors, queue
    /// depth, p50/p99 processing time, restarts and rollouts.
    Top {
        /// Print the table once and exit.
        #[arg(long)]
        once: bool,
        /// How often the table is refreshed, e.g. `500ms` or `2s`.
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime_duration)]
        interval: Duration,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Scaffold a working plugin folder DIR/NAME.
    New {
        /// The plugin's name: lowercase letters, digits, `_` and `-`.
        name: String,
        /// The plugin's language.
        #[arg(long, value_enum)]
        runtime: Runtime,
        /// The plugins directory to create it in.
        #[arg(long, value_name = "DIR", default_value = "plugins")]
        dir: PathBuf,
    },
    /// Run one plugin in isolation against recorded events; print what it
    /// published and each event's outcome; compare with --expect.
    Test {
        /// The plugin folder (holding plugin.yaml).
        plugin: PathBuf,
        /// The input events: one JSON object {"topic":…, "payload":…} per line.
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// The expected output lines; on a mismatch a diff is printed and the exit code is 1.
        #[arg(long, value_name = "FILE")]
        expect: Option<PathBuf>,
    },
    /// Print the shell completion script for SHELL on stdout, e.g.
    /// `plughost completions bash > /etc/bash_completion.d/plughost`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, e.g. `plughost man > plughost.1`.
    Man,
    /// Print the JSON Schema (draft-07) of plugin.yaml or plughost.yaml on
    /// stdout, for editors, e.g. `plughost schema plugin > plugin.schema.json`.
    Schema {
        /// The file the schema describes.
        #[arg(value_enum)]
        of: SchemaOf,
    },
}

/// The files `plughost schema` has a schema of.
#[derive(Copy, Clone, Debug, ValueEnum)]
enum SchemaOf {
    /// A plugin's manifest, plugin.yaml.
    Plugin,
    /// The host config, plughost.yaml.
    Host,
}

/// `plughost dead-letters …`.
#[derive(Subcommand, Debug)]
enum DeadLettersCommand {
    /// List the kept dead letters, oldest first: id, plugin, topic, attempts, error.
    List {
        /// Only this plugin's.
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
        /// Print the host's JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Deliver each dead letter's event again to the plugin that dead-lettered
    /// it (once fixed); prints each replayed event's id.
    Replay {
        /// Dead letter ids, as `list` shows them.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        target: AdminTarget,
    },
}

/// Runs `plughost dead-letters list|replay`; returns the exit code.
fn dead_letters(command: DeadLettersCommand) -> i32 {
    use plughost::cli::dead_letters as dl;
    match command {
        DeadLettersCommand::List {
            plugin,
            json,
            target,
        } => client_command(
            &target,
            |c| dl::list(c, plugin.as_deref()),
            |letters| {
                if json {
                    format!("{}\n", serde_json::Value::Array(letters))
                } else {
                    dl::table(&letters)
                }
            },
        ),
        DeadLettersCommand::Replay { ids, target } => {
            let client = match target.client() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("plughost: {e}");
                    return match e {
                        ClientError::Usage(_) => exit::USAGE,
                        ClientError::Failed(_) => exit::ERRORS,
                    };
                }
            };
            let report = dl::replay_all(&client, &ids);
            print_stdout(&report.replayed);
            for failure in &report.failed {
                eprintln!("plughost: {failure}");
            }
            match (report.failed.is_empty(), report.usage) {
                (true, _) => exit::OK,
                (false, false) => exit::ERRORS,
                (false, true) => exit::USAGE,
            }
        }
    }
}

/// Where a running host's admin endpoint is.
#[derive(Args, Debug)]
struct AdminTarget {
    /// The admin endpoint's address, HOST:PORT [default: $PLUGHOST_ADMIN, else the config's
    /// `admin.listen`]. The bearer token is read from $PLUGHOST_ADMIN_TOKEN (or the variable
    /// named by the config's `admin.token_env`).
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Read the admin address and token variable from this host config (plughost.yaml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl AdminTarget {
    fn client(&self) -> Result<Client, ClientError> {
        let config = match &self.config {
            Some(path) => Some(config::load(path).map_err(|errors| {
                ClientError::Usage(
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            })?),
            None => None,
        };
        Client::resolve(
            self.admin.as_deref(),
            config.as_ref().and_then(|c| c.admin.as_ref()),
        )
    }
}

/// Runs one admin client command: prints `ok` on stdout, or the error on
/// stderr, and returns the exit code.
fn client_command<T>(
    target: &AdminTarget,
    call: impl FnOnce(&Client) -> Result<T, ClientError>,
    ok: impl FnOnce(T) -> String,
) -> i32 {
    match target.client().and_then(|c| call(&c)) {
        Ok(answer) => {
            print_stdout(&ok(answer));
            exit::OK
        }
        Err(e) => {
            eprintln!("plughost: {e}");
            match e {
                ClientError::Usage(_) => exit::USAGE,
                ClientError::Failed(_) => exit::ERRORS,
            }
        }
    }
}

/// `plughost enable|disable|reload|promote|rollback NAME`: prints the
/// host's answer as JSON.
fn change(target: &AdminTarget, what: Change, name: &str, persist: bool) -> i32 {
    client_command(
        target,
        |c| c.change(what, name, persist),
        |answer| format!("{answer}\n"),
    )
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn or_default(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    if dirs.is_empty() {
        vec![PathBuf::from("plugins")]
    } else {
        dirs
    }
}

/// Writes `text` on stdout. A closed stdout (`plughost list | head`) is not
/// worth a panic: the reader has what it wanted.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `plughost completions SHELL`: the completion script, from the same
/// command definition the parser uses.
fn completions(shell: clap_complete::Shell) -> i32 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "plughost", &mut script);
    print_stdout(&String::from_utf8_lossy(&script));
    exit::OK
}

/// `plughost man`: the man page in roff, from the same command definition
/// the parser uses.
fn man_page() -> i32 {
    let mut page = Vec::new();
    match clap_mangen::Man::new(Cli::command()).render(&mut page) {
        Ok(()) => {
            print_stdout(&String::from_utf8_lossy(&page));
            exit::OK
        }
        Err(e) => {
            eprintln!("plughost: cannot render the man page: {e}");
            exit::ERRORS
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    };
    // The host config first: its telemetry settings feed the export. A bad
    // file is a configuration error, reported before anything starts.
    let host_config = match &cli.command {
        Command::Run {
            config: Some(path), ..
        } => match config::load(path) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                eprintln!("plughost: the host config has {} error(s)", errors.len());
                return ExitCode::from(exit::USAGE as u8);
            }
        },
        _ => HostConfig::default(),
    };
    // OTLP export (traces and metrics) only for `run`, only when configured.
    // Built before the async runtime: its HTTP client is a blocking one.
    let (export, export_error) = match &cli.command {
        Command::Run { .. } => match Export::from_env_and(&host_config.telemetry) {
            Ok(e) => (e.map(Arc::new), None),
            Err(e) => (None, Some(e)),
        },
        _ => (None, None),
    };
    logging::init_with(format, export.as_ref().map(|e| e.tracer()));
    if let Some(e) = export_error {
        tracing::error!("telemetry export is off: {e}");
    }
    let code = match cli.command {
        Command::Run {
            plugins,
            config: _,
            input,
            taps,
            exit_when_idle,
            no_watch,
            drain_timeout,
            admin,
        } => {
            let token_env = host_config
                .admin
                .as_ref()
                .and_then(|a| a.token_env.as_deref());
            let listen = admin.or_else(|| host_config.admin.as_ref().map(|a| a.listen.clone()));
            let admin = match listen.map(|l| AdminSettings::resolve(&l, token_env)) {
                None => None,
                Some(Ok(settings)) => Some(settings),
                Some(Err(e)) => {
                    eprintln!("plughost: {e}");
                    return ExitCode::from(exit::USAGE as u8);
                }
            };
            let opts = RunOptions {
                plugins: host_config.plugins_dirs(plugins),
                input: input.map(|i| {
                    if i == "-" {
                        InputSource::Stdin
                    } else {
                        InputSource::File(i.into())
                    }
                }),
                taps,
                exit_when_idle,
                drain_timeout: host_config.drain_timeout_or(drain_timeout),
                watch: !no_watch,
                export: export.clone(),
                admin,
            };
            match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let code = rt.block_on(async {
                        // Listen before anything runs: a signal that arrives
                        // while plugins start must stop the host cleanly.
                        let signal = plughost::cli::run::shutdown_signal();
                        let settings = plughost::cli::run::HostSettings::from_config(&host_config);
                        match plughost::cli::run::run_with_settings(opts, settings, signal).await {
                            Ok(report) if report.had_errors() => exit::ERRORS,
                            Ok(_) => exit::OK,
                            Err(e) => {
                                tracing::error!("{e}");
                                exit::USAGE
                            }
                        }
                    });
                    // Tokio reads stdin on a blocking thread whose read cannot
                    // be cancelled: waiting for it would keep a signalled host
                    // alive until the next input line or EOF.
                    rt.shutdown_background();
                    code
                }
                Err(e) => {
                    eprintln!("plughost: cannot start the async runtime: {e}");
                    exit::USAGE
                }
            }
        }
        Command::Check { dirs, config } => {
            match check::check_with_config(dirs, config.as_deref()) {
                Ok((count, problems)) => {
                    print_stdout(
                        &problems
                            .iter()
                            .map(|p| format!("{p}\n"))
                            .collect::<String>(),
                    );
                    eprintln!("checked {count} plugin(s): {} error(s)", problems.len());
                    if problems.is_empty() {
                        exit::OK
                    } else {
                        exit::ERRORS
                    }
                }
                Err(e) => {
                    eprintln!("plughost: {e}");
                    exit::USAGE
                }
            }
        }
        Command::List { dirs, json } => match plughost::catalog::Catalog::load(&or_default(dirs)) {
            Ok(catalog) => {
                let rows = list::rows(&catalog);
                if json {
                    let text = serde_json::to_string_pretty(&rows).expect("rows serialize");
                    print_stdout(&format!("{text}\n"));
                } else {
                    print_stdout(&list::table(&rows));
                }
                if rows.iter().any(|r| !r.errors.is_empty()) {
                    exit::ERRORS
                } else {
                    exit::OK
                }
            }
            Err(e) => {
                eprintln!("plughost: {e}");
                exit::USAGE
            }
        },
        Command::Publish {
            topic,
            payload,
            target,
        } => client_command(
            &target,
            |c| c.publish(&topic, &payload),
            |id| format!("{id}\n"),
        ),
        Command::Enable {
            name,
            persist,
            target,
        } => change(&target, Change::Enable, &name, persist),
        Command::Disable {
            name,
            persist,
            target,
        } => change(&target, Change::Disable, &name, persist),
        Command::Reload { name, target } => change(&target, Change::Reload, &name, false),
        Command::Promote { name, target } => change(&target, Change::Promote, &name, false),
        Command::Rollback { name, target } => change(&target, Change::Rollback, &name, false),
        Command::Rollout {
            name,
            percent,
            target,
        } => client_command(
            &target,
            |c| c.set_rollout_percent(&name, percent),
            |answer| format!("{answer}\n"),
        ),
        Command::Status { name, json, target } => client_command(
            &target,
            |c| {
                let answer = c.status(name.as_deref())?;
                // Every plugin's table ends with the cluster's state, if any.
                let health = match (json, &answer) {
                    (false, Value::Array(_)) => c.health().ok(),
                    _ => None,
                };
                Ok((answer, health))
            },
            |(answer, health)| match (json, &answer) {
                (true, _) => format!("{answer}\n"),
                (false, Value::Array(all)) => {
                    let cluster = health.as_ref().and_then(client::cluster_line);
                    client::status_table(all)
                        + client::rollout_lines(all).as_str()
                        + cluster.as_deref().unwrap_or_default()
                }
                (false, one) => client::status_of(one),
            },
        ),
        Command::Tap { patterns, target } => client_command(
            &target,
            |c| plughost::cli::tap::run(c, &patterns),
            |()| String::new(),
        ),
        Command::Top {
            once,
            interval,
            target,
        } => client_command(
            &target,
            |c| plughost::cli::top::run(c, once, interval),
            |()| String::new(),
        ),
        Command::New { name, runtime, dir } => {
            let runtime = match runtime {
                Runtime::Lua => RuntimeKind::Lua,
                Runtime::Rhai => RuntimeKind::Rhai,
                Runtime::Native => RuntimeKind::Native,
            };
            match new::create(&dir, &name, runtime) {
                Ok(written) => {
                    print_stdout(&new::summary(&dir, &name, runtime, &written));
                    exit::OK
                }
                Err(e) => {
                    eprintln!("plughost: {e}");
                    exit::USAGE
                }
            }
        }
        Command::Test {
            plugin,
            events,
            expect,
        } => match plughost::cli::test::test(&plughost::cli::test::TestOptions {
            plugin,
            events,
            expect,
        }) {
            Ok(report) if report.passed() => exit::OK,
            Ok(_) => exit::ERRORS,
            Err(e) => {
                eprintln!("plughost test: {e}");
                if e.is_usage() {
                    exit::USAGE
                } else {
                    exit::ERRORS
                }
            }
        },
        Command::DeadLetters(command) => dead_letters(command),
        Command::Completions { shell } => completions(shell),
        Command::Man => man_page(),
        Command::Schema { of } => {
            print_stdout(
                match of {
                    SchemaOf::Plugin => schema::SchemaFile::Plugin,
                    SchemaOf::Host => schema::SchemaFile::Host,
                }
                .text(),
            );
            exit::OK
        }
    };
    ExitCode::from(code as u8)
}
