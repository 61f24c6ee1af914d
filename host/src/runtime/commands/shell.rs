//! `plugboard shell`: an interactive prompt. Commands run on a running host
//! (through its API, output streamed) or, when none runs, on an embedded
//! command service that starts executors as commands need them. Line editing
//! and history come from rustyline; piped stdin works too (one command a line).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use rustyline::error::ReadlineError;

use super::client::RemoteClient;
use super::http::CommandBody;
use super::{Caller, CommandReply, CommandRequest, CommandService};

/// Where the shell's commands run.
pub enum Backend {
    Remote(RemoteClient),
    Embedded(Arc<CommandService>),
}

/// Who the shell's commands run as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub channel: String,
}

/// Runs the prompt until `exit`, `quit` or end of input.
pub async fn run(backend: Backend, identity: Identity) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        match &backend {
            Backend::Remote(c) => println!("plugboard shell on {} — `help` lists commands, `exit` leaves", c.url()),
            Backend::Embedded(_) => {
                println!("plugboard shell (embedded: no host running) — `help` lists commands, `exit` leaves")
            }
        }
    }
    loop {
        let line = tokio::task::block_in_place(|| editor.readline("plugboard> "));
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        if matches!(command, "exit" | "quit") {
            break;
        }
        let _ = editor.add_history_entry(command);
        run_one(&backend, &identity, command).await;
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

async fn run_one(backend: &Backend, identity: &Identity, command: &str) {
    let mut ended_with_newline = true;
    let mut print = |chunk: &[u8]| {
        if chunk.is_empty() {
            return;
        }
        ended_with_newline = chunk.ends_with(b"\n");
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(chunk);
        let _ = out.flush();
    };
    let reply: Result<CommandReply, String> = match backend {
        Backend::Remote(client) => {
            let body = CommandBody {
                command: command.to_owned(),
                user: Some(identity.user.clone()),
                channel: Some(identity.channel.clone()),
                platform: Some("shell".into()),
            };
            client.run(&body, |text| print(text.as_bytes())).await.map_err(|e| e.to_string())
        }
        Backend::Embedded(service) => {
            let request = CommandRequest {
                command: command.to_owned(),
                caller: Caller {
                    user: identity.user.clone(),
                    channel: identity.channel.clone(),
                    platform: "shell".into(),
                    ..Caller::default()
                },
                event: None,
            };
            Ok(service.run(request, &mut print).await)
        }
    };
    let mut out = std::io::stdout().lock();
    if !ended_with_newline {
        let _ = writeln!(out);
    }
    match reply {
        Ok(reply) if !reply.error.is_empty() => {
            let _ = writeln!(out, "error: {} (exit code {})", reply.error, reply.exit_code);
        }
        Ok(reply) if reply.exit_code != 0 => {
            let _ = writeln!(out, "exit code {}", reply.exit_code);
        }
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
        }
    }
    let _ = out.flush();
}

/// `$PLUGBOARD_HISTORY`, else `~/.plugboard_history`.
fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PLUGBOARD_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".plugboard_history"))
}
