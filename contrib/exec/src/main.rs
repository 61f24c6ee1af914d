//! `exec` executor: runs allow-listed local programs.
//!
//! `exec PROGRAM ARGS...` runs PROGRAM with ARGS — directly, never through a
//! shell, so no word is ever interpreted (`;`, `$(...)`, globs are plain
//! arguments). PROGRAM must be on the instance's `allow` list; it is looked
//! up only in the configured `path`, and runs with a scrubbed environment
//! (PATH, LANG and the configured `env`, nothing inherited). An operator may
//! also give a program its own prefix (`prefixes: [uptime]`): then `uptime`
//! runs `uptime`.
//!
//! When the host cancels the command (its timeout, or the caller going
//! away), the program's whole process group is killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use plugboard_sdk::prelude::*;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Program names (looked up in `path`) or absolute paths.
    allow: Vec<String>,
    #[serde(default)]
    path: Option<String>,
    /// Extra environment for the programs (values are secret: masked by the host).
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    workdir: Option<PathBuf>,
}

struct Exec;

#[plugboard_sdk::async_trait]
impl Executor for Exec {
    async fn execute(&self, cmd: Command, out: Output) -> Result<Reply, PluginError> {
        let config: Config = cmd.config()?;
        let (program, args) = if cmd.prefix == "exec" {
            match cmd.args.split_first() {
                Some((program, args)) => (program.clone(), args.to_vec()),
                None => {
                    return Ok(Reply::failed(
                        2,
                        format!("usage: exec PROGRAM ARGS... (allowed: {})", config.allow.join(", ")),
                    ));
                }
            }
        } else {
            let program = cmd.prefix.split(' ').next().unwrap_or_default().to_owned();
            (program, cmd.args.clone())
        };
        if !config.allow.iter().any(|a| a == &program) {
            return Ok(Reply::failed(
                126,
                format!("{program:?} is not on this executor's allow list ({})", config.allow.join(", ")),
            ));
        }
        let search = config.path.as_deref().unwrap_or(DEFAULT_PATH);
        let Some(path) = locate(&program, search) else {
            return Ok(Reply::failed(127, format!("{program:?} is allowed but not found in {search}")));
        };
        tracing::info!(program = %path.display(), args = ?args, user = %cmd.context.user, "exec running");
        run(&path, &args, search, &config, &out).await
    }
}

/// `program` as an absolute path, or found in the `search` directories.
fn locate(program: &str, search: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return (p.is_absolute() && executable(&p)).then_some(p);
    }
    search.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(program)).find(|p| executable(p))
}

/// Kills the program's process group unless it has exited: a cancelled
/// command leaves nothing running.
struct GroupKill {
    pgid: Option<i32>,
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            tracing::warn!(pgid, "command cancelled: killing its process group");
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

async fn run(path: &Path, args: &[String], search: &str, config: &Config, out: &Output) -> Result<Reply, PluginError> {
    let mut command = tokio::process::Command::new(path);
    command
        .args(args)
        .env_clear()
        .env("PATH", search)
        .env("LANG", "C.UTF-8")
        .envs(&config.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &config.workdir {
        command.current_dir(dir);
    }
    let mut child =
        command.spawn().map_err(|e| PluginError::internal(format!("cannot run {}: {e}", path.display())))?;
    let mut guard = GroupKill { pgid: child.id().map(|p| p as i32) };
    let mut stdout = child.stdout.take().ok_or_else(|| PluginError::internal("no stdout pipe"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| PluginError::internal("no stderr pipe"))?;
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            n = stdout.read(&mut out_buf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => out.write(out_buf[..n].to_vec()).await?,
            },
            n = stderr.read(&mut err_buf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => out.write(err_buf[..n].to_vec()).await?,
            },
        }
    }
    let status = child.wait().await.map_err(|e| PluginError::internal(format!("waiting for the program: {e}")))?;
    guard.pgid = None;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => Reply::done().with_exit_code(code),
        (None, Some(signal)) => Reply::failed(128 + signal, format!("killed by signal {signal}")),
        (None, None) => Reply::failed(1, "ended without an exit status"),
    })
}

fn main() {
    Plugin::new("exec", env!("CARGO_PKG_VERSION"))
        .description("runs allow-listed local programs (never through a shell)")
        .help(
            "usage: exec PROGRAM ARGS...\n\
             Runs PROGRAM (which must be on the allow list) with ARGS, without a shell,\n\
             in a scrubbed environment. Output streams as it comes; the exit code is PROGRAM's.",
        )
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {
                "allow": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "programs that may run: names looked up in path, or absolute paths"},
                "path": {"type": "string", "description": "directories searched for programs (default /usr/local/bin:/usr/bin:/bin)"},
                "env": {"type": "object", "additionalProperties": {"type": "string", "writeOnly": true}, "description": "environment given to the programs (secret: masked by the host)"},
                "workdir": {"type": "string"}
            },
            "required": ["allow"],
            "additionalProperties": false
        }))
        .executor(Exec, ["exec"])
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    fn config() -> serde_json::Value {
        serde_json::json!({"allow": ["echo", "env", "sh"], "env": {"GREETING": "hi"}})
    }

    async fn run(line: &str) -> testing::CommandRun {
        testing::execute_with(Exec, "exec", line, config(), CommandContext::default()).await
    }

    #[tokio::test]
    async fn runs_allowed_programs_without_a_shell() {
        let r = run("exec echo 'a;b' '$(id)' *").await;
        assert_eq!(r.output, "a;b $(id) *\n");
        assert_eq!(r.exit_code, 0);
    }

    #[tokio::test]
    async fn refuses_programs_not_on_the_allow_list() {
        let r = run("exec rm -rf /tmp/x").await;
        assert_eq!(r.exit_code, 126);
        assert!(r.error.contains("\"rm\" is not on this executor's allow list (echo, env, sh)"), "{}", r.error);
        let r = run("exec /bin/echo x").await;
        assert_eq!(r.exit_code, 126, "an absolute path must be allowed as written");
    }

    #[tokio::test]
    async fn the_environment_is_scrubbed() {
        // SAFETY: set before any thread of this test reads the environment.
        unsafe { std::env::set_var("PLUGBOARD_EXEC_TEST_LEAK", "leaked") };
        let r = run("exec env").await;
        assert!(!r.output.contains("PLUGBOARD_EXEC_TEST_LEAK"), "{}", r.output);
        assert!(r.output.contains("GREETING=hi"), "{}", r.output);
        assert!(r.output.contains("PATH=/usr/local/bin:/usr/bin:/bin"), "{}", r.output);
    }

    #[tokio::test]
    async fn exit_codes_are_the_programs() {
        let r = run("exec sh -c 'echo out; echo err >&2; exit 3'").await;
        assert_eq!(r.exit_code, 3);
        assert!(r.output.contains("out\n") && r.output.contains("err\n"), "{}", r.output);
    }
}
