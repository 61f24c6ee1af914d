//! `faulty`: a plugin that misbehaves on demand, for the fault-injection suite.
//!
//! Start-up faults come from the environment (they happen before any config
//! can arrive over gRPC):
//! - `FAULTY_STARTUP=garbage`    print a garbage handshake line, then wait
//! - `FAULTY_STARTUP=hang`       never print a handshake
//! - `FAULTY_STARTUP=exit`       exit with status 3 at once
//! - `FAULTY_STARTUP=grandchild` leave a `sleep` holding stdout/stderr, then exit 3
//! - `FAULTY_STALL_AFTER=300ms`  serve, then stop answering anything (health included)
//! - `FAULTY_IGNORE_SHUTDOWN=1`  keep running after Shutdown and SIGTERM
//!
//! The same refusal to stop can come from the instance config
//! (`ignore_shutdown: true`) or a command (`faulty ignore-shutdown`), so one
//! instance misbehaves without an environment every instance would share.
//!
//! Runtime faults come from the instance config (source) or the command (executor).
//! As a source it emits `dev.plugboard.faulty.event` with an increasing index
//! (cursor = index, resumable) and, at event `fault_at`, does `fault`.
//! As an executor (`faulty MODE [ARG]`): ok, pid, sleep DURATION, hang, hang-hard,
//! stall, stop-self, panic, segv, exit CODE, alloc, fork N, big-output BYTES,
//! flood-stderr BYTES, flood-stdout BYTES, grandchild, ignore-shutdown.

mod env;
mod forks;
mod spin;

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use plugboard_sdk::goplugin::{self, ServeOptions};
use plugboard_sdk::prelude::*;
use serde::Deserialize;

/// The process's stdout before the SDK redirected it to GRPCStdio: floods
/// written here reach the host's pipe directly.
static RAW_STDOUT: OnceLock<OwnedFd> = OnceLock::new();

/// Set to ignore SIGTERM and keep running after the host's Shutdown.
static IGNORE_SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// From now on SIGTERM does nothing and Shutdown does not end the process:
/// only SIGKILL does.
fn ignore_shutdown() {
    IGNORE_SHUTDOWN.store(true, Ordering::SeqCst);
    // SAFETY: replaces the SDK's SIGTERM handler with SIG_IGN; no handler runs.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceConfig {
    /// Time between events.
    #[serde(default = "default_interval")]
    interval: String,
    /// Index of the event at which `fault` happens (before it is sent).
    #[serde(default)]
    fault_at: Option<u64>,
    #[serde(default)]
    fault: Option<String>,
    /// Argument of the fault (exit code, byte count).
    #[serde(default)]
    arg: Option<String>,
    /// Inject the fault only on a fresh start (no resume cursor), so a
    /// restarted instance runs on: a one-off crash rather than a crash loop.
    #[serde(default)]
    once: bool,
    /// Ignore SIGTERM and the host's Shutdown from the start of the stream.
    #[serde(default)]
    ignore_shutdown: bool,
}

fn default_interval() -> String {
    "10ms".into()
}

#[derive(Clone)]
struct Faulty;

#[plugboard_sdk::async_trait]
impl Source for Faulty {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let config: SourceConfig = ctx.config()?;
        if config.ignore_shutdown {
            tracing::warn!("ignoring SIGTERM and Shutdown from now on");
            ignore_shutdown();
        }
        let interval = humantime::parse_duration(&config.interval)
            .map_err(|e| PluginError::invalid_config(format!("interval: {e}")))?;
        let mut index = match ctx.resume_cursor.as_deref() {
            Some(c) => c.parse::<u64>().map_err(|_| PluginError::invalid_argument("bad cursor"))? + 1,
            None => 0,
        };
        let source = format!("/plugboard/faulty/{}", ctx.instance);
        loop {
            let armed = !config.once || ctx.resume_cursor.is_none();
            if armed
                && config.fault_at == Some(index)
                && let Some(fault) = &config.fault
            {
                tracing::warn!(index, fault = %fault, "injecting fault");
                if let Some(big) = fault_now(fault, config.arg.as_deref()).await? {
                    let event = EventBuilder::new("dev.plugboard.faulty.big", source.as_str())
                        .id(format!("{}-{index}-big", ctx.instance))
                        .binary("application/octet-stream", big)
                        .build();
                    events.send(event, String::new()).await?;
                }
            }
            let event = EventBuilder::new("dev.plugboard.faulty.event", source.as_str())
                .id(format!("{}-{index}", ctx.instance))
                .json(&serde_json::json!({ "index": index }))
                .build();
            events.send(event, index.to_string()).await?;
            index += 1;
            tokio::time::sleep(interval).await;
        }
    }
}

#[plugboard_sdk::async_trait]
impl Executor for Faulty {
    async fn execute(&self, cmd: Command, out: Output) -> Result<Reply, PluginError> {
        let mode = cmd.args.first().map(String::as_str).unwrap_or("ok");
        let arg = cmd.args.get(1).map(String::as_str);
        match mode {
            "ok" => Ok(Reply::text("ok\n")),
            "ignore-shutdown" => {
                ignore_shutdown();
                Ok(Reply::text("ignoring SIGTERM and Shutdown\n"))
            }
            "env" => Ok(Reply::text(env::report())),
            "spin" => spin::forever(),
            "fork" => {
                let n = arg.unwrap_or("100").parse().map_err(|_| PluginError::invalid_argument("fork N: a count"))?;
                Ok(Reply::text(forks::up_to(n)))
            }
            "pid" => Ok(Reply::text(format!("pid {}\n", std::process::id()))),
            "sleep" => {
                let d = humantime::parse_duration(arg.unwrap_or("1s")).map_err(PluginError::invalid_argument)?;
                // Logged, so a test knows the command reached this process.
                tracing::info!(pid = std::process::id(), "sleeping for {}", humantime::format_duration(d));
                tokio::time::sleep(d).await;
                Ok(Reply::text(format!("slept in pid {}\n", std::process::id())))
            }
            "big-output" => {
                let n = parse_size(arg)?;
                out.write(vec![b'x'; n]).await?;
                Ok(Reply::done())
            }
            other => match fault_now(other, arg).await? {
                Some(big) => {
                    out.write(big).await?;
                    Ok(Reply::done())
                }
                None => Ok(Reply::text(format!("{other}: done\n"))),
            },
        }
    }
}

fn parse_size(arg: Option<&str>) -> Result<usize, PluginError> {
    let text = arg.unwrap_or("1048576");
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: usize = digits.parse().map_err(|_| PluginError::invalid_argument(format!("bad size {text:?}")))?;
    let factor = match unit {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        _ => return Err(PluginError::invalid_argument(format!("bad size unit {unit:?}"))),
    };
    Ok(n * factor)
}

/// Does the fault. Returns a payload for `oversize` (the caller sends it).
async fn fault_now(fault: &str, arg: Option<&str>) -> Result<Option<Vec<u8>>, PluginError> {
    match fault {
        "panic" => panic!("faulty: injected panic"),
        // SAFETY: none, deliberately: a real invalid write, so the kernel
        // delivers SIGSEGV (raise() would be swallowed by std's handler).
        "segv" => unsafe {
            std::ptr::null_mut::<u8>().write_volatile(1);
        },
        "exit" => std::process::exit(arg.and_then(|a| a.parse().ok()).unwrap_or(3)),
        // SAFETY: as above; the host (or the test) sends SIGCONT or kills us.
        "stop-self" => unsafe {
            libc::raise(libc::SIGSTOP);
        },
        "hang" => std::future::pending::<()>().await,
        "hang-hard" => loop {
            // Blocks a runtime worker: cancellation cannot reach us.
            std::thread::sleep(Duration::from_secs(3600));
        },
        "stall" => stall(),
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really resident.
                hoard.push(vec![7u8; 16 << 20]);
                tokio::task::yield_now().await;
            }
        }
        "oversize" => return Ok(Some(vec![b'x'; parse_size(arg.or(Some("8M")))?])),
        "flood-stderr" => {
            let n = parse_size(arg.or(Some("100M")))?;
            flood(std::io::stderr().lock(), n);
        }
        "flood-stdout" => {
            let n = parse_size(arg.or(Some("100M")))?;
            if let Some(fd) = RAW_STDOUT.get().and_then(|fd| fd.try_clone().ok()) {
                flood(std::fs::File::from(fd), n);
            }
        }
        "grandchild" => {
            let _ = std::process::Command::new("sleep").arg("3600").spawn();
            std::process::exit(3);
        }
        other => return Err(PluginError::invalid_argument(format!("unknown fault {other:?}"))),
    }
    Ok(None)
}

fn flood(mut w: impl Write, mut n: usize) {
    let line = [b'z'; 1023];
    while n > 0 {
        let k = n.min(line.len());
        if w.write_all(&line[..k]).is_err() || w.write_all(b"\n").is_err() {
            return;
        }
        n = n.saturating_sub(k + 1);
    }
    let _ = w.flush();
}

/// Stops answering: every runtime worker blocks, so nothing is served,
/// health checks included, while the process stays alive.
fn stall() -> ! {
    for _ in 0..4 {
        tokio::spawn(async {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        });
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() {
    goplugin::check_cookie_or_exit(&plugboard_sdk::proto::handshake::HANDSHAKE);
    match std::env::var("FAULTY_STARTUP").as_deref() {
        Ok("garbage") => {
            println!("this is not a handshake");
            std::thread::sleep(Duration::from_secs(3600));
        }
        Ok("hang") => std::thread::sleep(Duration::from_secs(3600)),
        Ok("exit") => std::process::exit(3),
        Ok("grandchild") => {
            let _ = std::process::Command::new("sleep").arg("3600").spawn();
            eprintln!("faulty: leaving a grandchild behind");
            std::process::exit(3);
        }
        _ => {}
    }
    // SAFETY: dup of our own fd 1, owned from here on.
    let raw = unsafe { libc::dup(1) };
    if raw >= 0 {
        let _ = RAW_STDOUT.set(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    plugboard_sdk::log::init("faulty");
    let plugin = Plugin::new("faulty", env!("CARGO_PKG_VERSION"))
        .description("misbehaves on demand, for fault-injection tests")
        .help("usage: faulty MODE [ARG]\nmodes: ok, pid, ignore-shutdown, sleep D, hang, hang-hard, stall, stop-self, panic, segv, exit CODE, alloc, fork N, big-output BYTES, flood-stderr BYTES, flood-stdout BYTES, grandchild")
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {
                "interval": {"type": "string"},
                "fault_at": {"type": "integer", "minimum": 0},
                "fault": {"enum": ["panic", "segv", "exit", "stop-self", "hang", "hang-hard", "stall", "alloc", "oversize", "flood-stderr", "flood-stdout", "grandchild"]},
                "arg": {"type": "string"},
                "once": {"type": "boolean"},
                "ignore_shutdown": {"type": "boolean"}
            },
            "additionalProperties": false
        }))
        .source(Faulty)
        .executor(Faulty, ["faulty"]);
    let rt = goplugin::runtime();
    let routes = plugin.routes();
    rt.block_on(async move {
        if let Some(after) = std::env::var("FAULTY_STALL_AFTER").ok().and_then(|v| humantime::parse_duration(&v).ok()) {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                tracing::warn!("stalling: no more answers");
                stall();
            });
        }
        let options =
            ServeOptions { reflection: vec![plugboard_sdk::proto::FILE_DESCRIPTOR_SET], ..Default::default() };
        let result = goplugin::serve_async(plugboard_sdk::proto::handshake::HANDSHAKE, routes, options).await;
        if std::env::var_os("FAULTY_IGNORE_SHUTDOWN").is_some() || IGNORE_SHUTDOWN.load(Ordering::SeqCst) {
            tracing::warn!("ignoring the request to stop");
            std::future::pending::<()>().await;
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "serve failed");
            std::process::exit(1);
        }
    });
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size(Some("10")).unwrap(), 10);
        assert_eq!(parse_size(Some("2K")).unwrap(), 2048);
        assert_eq!(parse_size(Some("3M")).unwrap(), 3 << 20);
        assert!(parse_size(Some("3X")).is_err());
    }

    #[tokio::test]
    async fn without_a_fault_it_is_a_resumable_counter() {
        let events =
            testing::collect_events(Faulty, serde_json::json!({"interval": "1ms"}), Some("4".into()), 2).await.unwrap();
        let cursors: Vec<_> = events.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(cursors, ["5", "6"]);
    }

    #[tokio::test]
    async fn executor_modes() {
        assert_eq!(testing::execute(Faulty, "faulty", "faulty ok").await.output, "ok\n");
        let run = testing::execute(Faulty, "faulty", "faulty big-output 3K").await;
        assert_eq!(run.output.len(), 3072);
        let run = testing::execute(Faulty, "faulty", "faulty nonsense").await;
        assert_eq!(run.exit_code, 1);
        assert!(run.error.contains("unknown fault"), "{}", run.error);
    }
}
