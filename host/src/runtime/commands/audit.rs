//! Audit records: every command, allowed or denied, becomes a host
//! CloudEvent (`dev.plugboard.command.executed` / `.denied`) that flows
//! through the event pipeline like any other event.

use std::time::Duration;

use plugboard_proto::CloudEvent;
use plugboard_proto::event::string_attr;
use plugboard_proto::io::cloudevents::v1::cloud_event::Data;

use super::{Caller, CommandReply, Status};
use crate::runtime::host_events::HostEvents;

pub const EXECUTED: &str = "dev.plugboard.command.executed";
pub const DENIED: &str = "dev.plugboard.command.denied";
pub const OUTPUT: &str = "dev.plugboard.command.output";

/// The audit event for one command (never its output: that may be large or sensitive).
pub fn event(caller: &Caller, command: &str, reply: &CommandReply, took: Duration) -> CloudEvent {
    let ty = if reply.status == Status::Denied { DENIED } else { EXECUTED };
    let data = serde_json::json!({
        "user": caller.user,
        "groups": caller.groups,
        "channel": caller.channel,
        "platform": caller.platform,
        "command": command,
        "executor": reply.executor,
        "status": reply.status,
        "exit_code": reply.exit_code,
        "error": reply.error,
        "duration_ms": took.as_secs_f64() * 1000.0,
    });
    json_event(ty, &data)
}

/// A host event with JSON data.
pub fn json_event(ty: &str, data: &serde_json::Value) -> CloudEvent {
    let mut event = HostEvents::event(ty);
    event.attributes.insert("datacontenttype".to_owned(), string_attr("application/json"));
    event.data = Some(Data::TextData(data.to_string()));
    event
}
