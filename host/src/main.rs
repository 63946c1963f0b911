//! `collector`: parse the command line, validate config (exit 64), run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use collector::cli;
use collector::config::{self, Config, LogFormat, LogLevel};

/// mimalloc: the receive path allocates and frees many small strings per sample,
/// and glibc's per-thread arenas hand freed pages back to the kernel too eagerly.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives OpenStack Ceilometer samples and hands them in batches to wasm dispatcher plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (without --config: UDP on 127.0.0.1:4952 → ./collector-data/samples.jsonl).
    Run {
        /// TOML configuration file (see collector.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a plugin against the ABI: imports, exports, init, golden batches.
    Check(cli::check::CheckArgs),
    /// Send realistic signed Ceilometer samples (for demos and benchmarks).
    Send {
        #[command(subcommand)]
        transport: SendTransport,
    },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Summarise a running daemon (sources, dispatchers and their versions, rates).
    Status(cli::status::StatusArgs),
}

#[derive(Subcommand)]
enum SendTransport {
    /// One msgpack datagram per sample, like Ceilometer's udp:// publisher.
    Udp(cli::send::UdpArgs),
    /// Length-prefixed msgpack frames on one connection, like its tcp:// publisher.
    Tcp(cli::send::TcpArgs),
    /// JSON lists of Sample.as_dict(), like its http:// publisher (unsigned).
    Http(cli::send_http::HttpArgs),
    /// OTLP JSON, one sample per request, like its opentelemetryhttp:// publisher.
    Otlp(cli::send_http::OtlpArgs),
}

/// Exit status for a bad configuration (64, `EX_USAGE` in sysexits.h).
const EXIT_CONFIG: u8 = 64;
/// Exit status after a run in which a worker panicked (70, `EX_SOFTWARE`).
const EXIT_SOFTWARE: u8 = 70;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config),
        Command::Check(args) => {
            init_tracing(LogLevel::Warn, LogFormat::Human);
            cli::check::main(&args)
        }
        Command::Send { transport } => match transport {
            SendTransport::Udp(args) => cli::send::main(&args),
            SendTransport::Tcp(args) => cli::send::main_tcp(&args),
            SendTransport::Http(args) => cli::send_http::main_http(&args),
            SendTransport::Otlp(args) => cli::send_http::main_otlp(&args),
        },
        Command::Status(args) => cli::status::main(&args),
        Command::DefaultConfig => {
            print!("{}", config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let path = path.map(|p| std::path::absolute(&p).unwrap_or(p));
    let loaded = match &path {
        Some(p) => Config::load(p),
        None => Config::default_config(),
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("collector: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_tracing(cfg.log.level, cfg.log.format);
    match collector::huge_pages::disable_for_this_process() {
        collector::huge_pages::Outcome::Disabled => {
            tracing::debug!("Transparent huge pages off for this process")
        }
        collector::huge_pages::Outcome::LeftToEnvironment => {
            tracing::info!("MIMALLOC_ALLOW_THP is set: transparent huge pages left to mimalloc")
        }
        collector::huge_pages::Outcome::Failed(e) => {
            tracing::warn!("Cannot turn transparent huge pages off (prctl PR_SET_THP_DISABLE): {e}")
        }
    }
    if path.is_none() {
        tracing::info!(
            "No --config: using the embedded default (UDP 127.0.0.1:4952, secret = Ceilometer's default); \
             samples go to ./collector-data/samples.jsonl"
        );
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("collector: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = {
        let _runtime = rt.enter();
        shutdown_signal()
    };
    let shutdown = match shutdown {
        Ok(s) => s,
        Err(e) => {
            eprintln!("collector: cannot listen for SIGTERM and SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(collector::run(cfg, path, shutdown));
    // The run kept its grace period; nothing still running in the background
    // (a message being decoded, a plugin being compiled) may hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(summary) if summary.worker_panics > 0 => {
            let n = summary.worker_panics;
            tracing::error!(
                panics = n,
                "Exiting with status {EXIT_SOFTWARE}: workers panicked during this run \
                 (each was restarted; see the log above)"
            );
            eprintln!(
                "collector: {n} worker panic(s) during this run; exit status {EXIT_SOFTWARE}"
            );
            ExitCode::from(EXIT_SOFTWARE)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("collector: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Listens for SIGINT and SIGTERM from now on, and completes on the first.
/// Registered before the daemon starts (and says it is ready), so that a
/// signal sent at once is neither lost nor deadly (the default action).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

fn init_tracing(level: LogLevel, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    if format == LogFormat::Json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return;
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
