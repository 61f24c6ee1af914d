//! Exercising the kind under test: a source's stream, an executor's
//! command, a sink's publish.

use std::time::Instant;

use plugboard_proto::plugboard::v1::PluginKind;

use super::{CheckOptions, EVENTS_TO_READ, Report};
use crate::launcher::PluginProcess;
use crate::plugin::{CommandRequest, Described, ExecuteError, ExecutorClient, SinkClient, SourceClient, kind_name};

pub(super) async fn check_kind(
    process: &PluginProcess,
    described: &Described,
    options: &CheckOptions,
    report: &mut Report,
) {
    let kind = options.kind.unwrap_or_else(|| described.kinds[0]);
    if !described.has_kind(kind) {
        report.fail(
            "kind",
            format!("--kind {} was asked for, but the plugin declares {}", kind_name(kind), described.kinds_text()),
            "declare the kind in PluginInfo.kinds",
        );
        return;
    }
    match kind {
        PluginKind::Source => check_source(process, options, report).await,
        PluginKind::Executor => check_executor(process, described, options, report).await,
        PluginKind::Sink => check_sink(process, options, report).await,
        PluginKind::Unspecified => {}
    }
}

async fn check_source(process: &PluginProcess, options: &CheckOptions, report: &mut Report) {
    const ITEM: &str = "source stream";
    const HINT: &str =
        "send StreamResponse{event, cursor} with a valid CloudEvent (id, source, spec_version 1.0, type)";
    let mut client = SourceClient::new(process.channel());
    let deadline = Instant::now() + options.timeout;
    let mut stream = match tokio::time::timeout_at(deadline.into(), client.stream("check", &options.config, None)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(status)) => {
            report.fail(ITEM, format!("Stream failed: {:?} {}", status.code(), status.message()), HINT);
            return;
        }
        Err(_) => {
            report.fail(ITEM, format!("Stream did not open within {:?}", options.timeout), HINT);
            return;
        }
    };
    let mut ids = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.message()).await {
            Ok(Ok(Some(resp))) => {
                let Some(event) = resp.event else {
                    report.fail(ITEM, "a StreamResponse without an event", HINT);
                    return;
                };
                if let Err(e) = plugboard_proto::event::validate(&event) {
                    report.fail(ITEM, format!("invalid CloudEvent {:?}: {e}", event.id), HINT);
                    return;
                }
                ids.push(event.id);
                if ids.len() == EVENTS_TO_READ {
                    break;
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(status)) => {
                report.fail(ITEM, format!("the stream failed: {:?} {}", status.code(), status.message()), HINT);
                return;
            }
            Err(_) => break,
        }
    }
    if ids.is_empty() {
        report.fail(ITEM, format!("no event within {:?}", options.timeout), HINT);
    } else {
        report.pass(ITEM, format!("{} valid CloudEvent(s): {}", ids.len(), ids.join(", ")));
    }
}

async fn check_executor(process: &PluginProcess, described: &Described, options: &CheckOptions, report: &mut Report) {
    const ITEM: &str = "executor execute";
    let prefix = described.info.command_prefixes.first().cloned().unwrap_or_default();
    let request = CommandRequest {
        instance: "check".into(),
        config: serde_json::to_vec(&options.config).unwrap_or_default(),
        command: prefix.clone(),
        prefix: prefix.clone(),
        ..Default::default()
    };
    let mut output = 0usize;
    match ExecutorClient::new(process.channel()).execute(request, options.timeout, |chunk| output += chunk.len()).await
    {
        Ok(outcome) => report.pass(
            ITEM,
            format!("{prefix:?} ended with a result: exit code {}, {output} bytes of output", outcome.exit_code),
        ),
        Err(e @ ExecuteError::NoResult) => {
            report.fail(ITEM, e.to_string(), "end every Execute stream with ExecuteResponse{result}")
        }
        Err(e) => report.fail(ITEM, format!("{prefix:?}: {e}"), "answer Execute with output chunks, then a result"),
    }
}

async fn check_sink(process: &PluginProcess, options: &CheckOptions, report: &mut Report) {
    const ITEM: &str = "sink publish";
    let event = plugboard_proto::CloudEvent {
        id: "check-1".into(),
        source: "/plugboard/check".into(),
        spec_version: "1.0".into(),
        r#type: "dev.plugboard.check".into(),
        ..Default::default()
    };
    let mut client = SinkClient::new(process.channel());
    match tokio::time::timeout(options.timeout, client.publish("check", &options.config, vec![event])).await {
        Ok(Ok(())) => report.pass(ITEM, "accepted a batch of one event"),
        Ok(Err(status)) => report.fail(
            ITEM,
            format!("Publish failed: {:?} {}", status.code(), status.message()),
            "answer Publish with OK once the events are delivered",
        ),
        Err(_) => report.fail(ITEM, format!("Publish did not answer within {:?}", options.timeout), "answer Publish"),
    }
}
