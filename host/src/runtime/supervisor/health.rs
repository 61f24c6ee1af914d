//! Periodic health checks of a running plugin: go-plugin's `Ping`
//! (grpc.health.v1, service "plugin") every `interval`. A plugin that
//! stops answering — hung, deadlocked, stopped with SIGSTOP — fails its
//! checks; after `failures` in a row this returns, and the supervisor kills it.

use super::instance::Instance;
use super::instance_log;
use crate::launcher::PluginProcess;

/// Runs the checks; returns why the plugin is considered dead. Never
/// returns when checks are off.
pub(super) async fn watch(instance: &Instance, process: &PluginProcess) -> String {
    let config = &instance.spec.supervision.health;
    if config.interval.is_zero() {
        return std::future::pending().await;
    }
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(config.interval).await;
        let result = process.ping(config.timeout).await;
        match &result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                instance_log!(
                    warn,
                    &instance.spec,
                    pid = process.pid(),
                    "health check failed ({failures} of {} in a row): {e}",
                    config.failures
                );
            }
        }
        instance.record_health(&result, failures);
        if let Err(e) = result
            && failures >= config.failures
        {
            return format!("health check failed {failures} times in a row ({e})");
        }
    }
}
