//! The supervision loop of one instance.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::instance::{Instance, Phase};
use super::lifecycle::exit_json;
use super::policy::{Decision, RestartPolicy};
use super::{Transition, WorkEnd, Workload, health, instance_log};
use crate::launcher::{ExitReason, LaunchError};
use crate::plugin::{self, PluginHandle, StartError};

/// How long a failed workload waits for the process's exit to show, so a
/// crash is reported as one rather than as a broken stream.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How one run of the process ended.
enum End {
    /// The instance is stopping.
    Stop,
    Finished,
    /// An operator asked for a restart.
    Restart(String),
    Failed(String),
}

/// A failed start or run.
struct Failure {
    reason: String,
    exit: Option<ExitReason>,
    pid: Option<u32>,
    during: &'static str,
}

pub(super) async fn supervise(
    instance: Arc<Instance>,
    mut work: Box<dyn Workload>,
    stop: CancellationToken,
) -> Box<dyn Workload> {
    let spec = &instance.spec;
    let mut policy = RestartPolicy::new(spec.supervision.restart.clone());
    loop {
        instance.set_phase(Phase::Starting);
        let started = Instant::now();
        let launched = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            launched = plugin::launch(&spec.name, &spec.path, &spec.start) => launched,
        };
        let failure = match launched {
            Err(e) => {
                let exit = match &e {
                    StartError::Launch(LaunchError::ExitedEarly { reason, .. }) => Some(*reason),
                    _ => None,
                };
                Failure {
                    reason: format!("cannot start plugin {:?}: {e}", spec.plugin),
                    exit,
                    pid: None,
                    during: "start",
                }
            }
            Ok(handle) => {
                let pid = handle.process().pid();
                started_ok(&instance, &handle);
                let end = run_once(&instance, &handle, work.as_mut(), &stop).await;
                work.detached();
                match end {
                    End::Stop => {
                        let reason = handle.shutdown().await;
                        instance.record_exit(Some(reason), None);
                        instance_log!(info, spec, pid, "{} stopped ({reason})", spec.kind);
                        emit(
                            &instance,
                            Transition::Exited,
                            json!({ "pid": pid, "exit": exit_json(Some(&reason)), "reason": "stopped", "during": "stop" }),
                        );
                        break;
                    }
                    End::Finished => {
                        let reason = handle.shutdown().await;
                        instance.record_exit(Some(reason), None);
                        instance.set_phase(Phase::Finished);
                        instance_log!(info, spec, pid, "{} finished its stream", spec.kind);
                        emit(&instance, Transition::Finished, json!({ "pid": pid, "exit": exit_json(Some(&reason)) }));
                        return work;
                    }
                    End::Restart(reason) => {
                        let exit = handle.shutdown().await;
                        instance.record_exit(Some(exit), Some(&reason));
                        instance_log!(info, spec, pid, "restarting on request: {reason}");
                        emit(
                            &instance,
                            Transition::Exited,
                            json!({ "pid": pid, "exit": exit_json(Some(&exit)), "reason": reason, "during": "run" }),
                        );
                        continue;
                    }
                    End::Failed(reason) => {
                        // Whatever state it is in, nothing of this run is left behind
                        // (children in its process group included).
                        let exit = handle.shutdown().await;
                        Failure { reason, exit: Some(exit), pid: Some(pid), during: "run" }
                    }
                }
            }
        };
        let decision = policy.on_failure(started.elapsed(), Instant::now());
        failed(&instance, &failure, decision, &policy);
        match decision {
            Decision::Restart(delay) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = instance.signals.restart.notified() => {}
                    _ = stop.cancelled() => break,
                }
            }
            Decision::Deactivate => {
                tokio::select! {
                    _ = instance.signals.enable.notified() => {
                        policy.reset();
                        instance_log!(info, spec, "{} enabled again by an operator", spec.kind);
                        emit(&instance, Transition::Enabled, json!({}));
                    }
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
    instance.set_phase(Phase::Stopped);
    if instance.operator_stop.load(Ordering::SeqCst) {
        instance_log!(info, spec, "{} stopped", spec.kind);
        emit(&instance, Transition::Stopped, json!({}));
    }
    work
}

/// Reports a transition; every event carries `pid` (null when no process
/// runs) and `restarts`.
fn emit(instance: &Instance, transition: Transition, mut data: serde_json::Value) {
    let spec = &instance.spec;
    if let serde_json::Value::Object(map) = &mut data {
        map.entry("pid").or_insert(serde_json::Value::Null);
        let restarts = instance.info().restarts;
        map.entry("restarts").or_insert_with(|| json!(restarts));
    }
    instance.lifecycle.emit(spec.kind, &spec.name, &spec.plugin, transition, data);
}

fn started_ok(instance: &Instance, handle: &PluginHandle) {
    let spec = &instance.spec;
    let pid = handle.process().pid();
    instance.record_start(pid, handle.process().limits_shared());
    instance.set_phase(Phase::Running(handle.clone()));
    instance.was_running.store(true, Ordering::SeqCst);
    let restarts = instance.info().restarts;
    // Logged once it is usable: "started" means commands and events reach it.
    instance_log!(info, spec, pid, restarts, "{} started", spec.kind);
    emit(instance, Transition::Started, json!({ "pid": pid, "restarts": restarts }));
}

async fn run_once(
    instance: &Instance,
    handle: &PluginHandle,
    work: &mut dyn Workload,
    stop: &CancellationToken,
) -> End {
    let process = handle.process();
    let pid = process.pid();
    let signals = &instance.signals;
    tokio::select! {
        biased;
        _ = stop.cancelled() => End::Stop,
        reason = process.wait() => End::Failed(format!("plugin process {pid} exited ({reason})")),
        _ = signals.restart.notified() => {
            let reason = signals.restart_reason.lock().unwrap_or_else(|e| e.into_inner()).take();
            End::Restart(reason.unwrap_or_else(|| "restart requested".into()))
        }
        _ = signals.fail.notified() => {
            let reason = signals.fail_reason.lock().unwrap_or_else(|e| e.into_inner()).take();
            End::Failed(reason.unwrap_or_else(|| "reported as failed".into()))
        }
        unhealthy = health::watch(instance, process) => {
            instance_log!(warn, &instance.spec, pid, "{unhealthy}; killing plugin process {pid}");
            emit(instance, Transition::Unhealthy, json!({ "pid": pid, "reason": unhealthy }));
            // SIGKILL to the process group reaches a hung or SIGSTOPped process alike.
            process.kill();
            let reason = process.wait().await;
            End::Failed(format!("{unhealthy}; killed plugin process {pid} ({reason})"))
        }
        end = work.run(handle) => match end {
            WorkEnd::Finished => End::Finished,
            WorkEnd::Failed(message) => match tokio::time::timeout(EXIT_GRACE, process.wait()).await {
                Ok(reason) => End::Failed(format!("plugin process {pid} exited ({reason})")),
                Err(_) => End::Failed(message),
            },
        },
    }
}

fn failed(instance: &Instance, failure: &Failure, decision: Decision, policy: &RestartPolicy) {
    let spec = &instance.spec;
    instance.record_exit(failure.exit, Some(&failure.reason));
    emit(
        instance,
        Transition::Exited,
        json!({
            "pid": failure.pid,
            "exit": exit_json(failure.exit.as_ref()),
            "reason": failure.reason,
            "during": failure.during,
        }),
    );
    let recent = policy.recent_failures();
    match decision {
        Decision::Restart(delay) => {
            let restarts = {
                let mut info = instance.info();
                info.restarts += 1;
                info.restarts
            };
            instance.set_phase(Phase::Backoff { reason: failure.reason.clone(), until: Instant::now() + delay });
            instance_log!(warn, spec, restarts, "{} failed: {}; restarting in {delay:?}", spec.kind, failure.reason);
            emit(
                instance,
                Transition::Restarting,
                json!({
                    "reason": failure.reason,
                    "delay_ms": delay.as_millis() as u64,
                    "restarts": restarts,
                    "failures_in_window": recent,
                }),
            );
        }
        Decision::Deactivate => {
            let window = humantime::format_duration(policy.config().window).to_string();
            instance.set_phase(Phase::Deactivated { reason: failure.reason.clone() });
            instance_log!(
                error,
                spec,
                "{} deactivated: {recent} failures within {window} (max_restarts {}); last: {}; enable it again with `plugboard plugins enable {}`",
                spec.kind,
                policy.config().max_restarts,
                failure.reason,
                spec.name
            );
            emit(
                instance,
                Transition::Deactivated,
                json!({
                    "reason": failure.reason,
                    "failures_in_window": recent,
                    "window": window,
                    "max_restarts": policy.config().max_restarts,
                }),
            );
        }
    }
}
