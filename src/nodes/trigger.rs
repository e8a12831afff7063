//! Trigger nodes: the entry points of a triggered run.
//!
//! CasareRPA has 16 `*TriggerNode` types (webhook, schedule, file watch, e-mail, chat, ...). On
//! this robot a trigger does not listen for anything: listening for events is the
//! orchestrator's job. A job started by an event carries the event as the run variable
//! [`PAYLOAD_VAR`] (`trigger_payload`, a dict keyed by output port name) and optionally
//! [`METADATA_VAR`] (`trigger_metadata`). When the run reaches a trigger node, each output port
//! takes the payload field of its name, else the metadata field of its name, else null; then the
//! path continues along `exec_out`.
//!
//! Invariants:
//! - a trigger has no exec input: it is where a path starts (the loader rejects exec edges into a
//!   trigger, see [`is_trigger`]), and a workflow without a `StartNode` starts at every trigger;
//! - without a payload every output is null and the node logs exactly one warning naming itself;
//! - a payload that is not a dict (or a JSON text holding one) fails the node with an error
//!   naming the variable and what it holds.
//!
//! The properties each trigger declares (endpoint, cron, credentials, ...) are the listener's
//! configuration; they are accepted as config and not used here. Parameters, defaults and outputs
//! are exactly the catalogue's.

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::{Dict, Value};
use std::sync::Arc;

/// The run variable holding the trigger event's fields.
pub const PAYLOAD_VAR: &str = "trigger_payload";
/// The run variable holding the trigger event's metadata.
pub const METADATA_VAR: &str = "trigger_metadata";

/// True when `node_type` is one of the trigger types (an entry node without exec input).
pub fn is_trigger(node_type: &str) -> bool {
    NODES.iter().any(|d| d.node_type == node_type)
}

/// Node types of this family (catalogue order by name).
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "AppEventTriggerNode",
        &[
            opt("event_source", Lit::Str("windows")),
            opt("window_event", Lit::Str("focus")),
            opt("window_title_pattern", Lit::Str("")),
            opt("process_name", Lit::Str("")),
            opt("browser_event", Lit::Str("tab_open")),
            opt("url_pattern", Lit::Str("")),
            opt("rpa_event", Lit::Str("workflow_complete")),
            opt("custom_event_name", Lit::Str("")),
        ],
        &[
            "event_data",
            "event_type",
            "window_title",
            "process_name",
            "url",
            "timestamp",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "ChatTriggerNode",
        &[
            opt("welcome_message", Lit::Str("Hello! How can I help you?")),
            opt("input_placeholder", Lit::Str("Type your message...")),
            opt("platform", Lit::Str("web")),
            opt("channel_id", Lit::Str("")),
            opt("bot_token", Lit::Str("")),
            opt("message_pattern", Lit::Str("")),
            opt("allow_dm", Lit::Bool(true)),
            opt("allow_mentions", Lit::Bool(true)),
        ],
        &[
            "message",
            "user_id",
            "user_name",
            "channel_id",
            "platform",
            "timestamp",
            "reply_to",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "DriveTriggerNode",
        &[
            opt("credential_name", Lit::Str("google")),
            opt("polling_interval", Lit::Int(60)),
            opt("folder_id", Lit::Str("")),
            opt("include_subfolders", Lit::Bool(true)),
            opt("event_types", Lit::Str("created,modified")),
            opt("file_types", Lit::Str("")),
            opt("mime_types", Lit::Str("")),
            opt("name_pattern", Lit::Str("")),
            opt("ignore_own_changes", Lit::Bool(true)),
        ],
        &[
            "file_id",
            "file_name",
            "mime_type",
            "event_type",
            "modified_time",
            "size",
            "parent_id",
            "parent_name",
            "web_view_link",
            "download_url",
            "changed_by",
            "raw_change",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "EmailTriggerNode",
        &[
            opt("provider", Lit::Str("imap")),
            opt("server", Lit::Str("")),
            opt("port", Lit::Int(993)),
            opt("username", Lit::Str("")),
            opt("password", Lit::Str("")),
            opt("use_ssl", Lit::Bool(true)),
            opt("folder", Lit::Str("INBOX")),
            opt("filter_subject", Lit::Str("")),
            opt("filter_from", Lit::Str("")),
            opt("unread_only", Lit::Bool(true)),
            opt("mark_as_read", Lit::Bool(true)),
            opt("poll_interval_seconds", Lit::Int(60)),
            opt("download_attachments", Lit::Bool(false)),
            opt("attachment_dir", Lit::Str("")),
        ],
        &[
            "email",
            "subject",
            "sender",
            "body",
            "html_body",
            "attachments",
            "received_at",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "ErrorTriggerNode",
        &[
            opt("error_types", Lit::Str("*")),
            opt("workflow_filter", Lit::Str("")),
            opt("severity", Lit::Str("all")),
            opt("error_pattern", Lit::Str("")),
            opt("include_warnings", Lit::Bool(false)),
        ],
        &[
            "error",
            "error_type",
            "error_message",
            "workflow_id",
            "node_id",
            "stack_trace",
            "timestamp",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "FileWatchTriggerNode",
        &[
            opt("watch_path", Lit::Null),
            opt("patterns", Lit::Str("*")),
            opt("events", Lit::Str("created,modified")),
            opt("recursive", Lit::Bool(true)),
            opt("ignore_patterns", Lit::Str("*.tmp,~*")),
            opt("debounce_ms", Lit::Int(500)),
            opt("include_hidden", Lit::Bool(false)),
        ],
        &[
            "file_path",
            "file_name",
            "event_type",
            "directory",
            "old_path",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "FormTriggerNode",
        &[
            opt("form_title", Lit::Str("Submit Data")),
            opt("form_description", Lit::Str("")),
            opt("form_fields", Lit::Str("[{\"name\": \"data\", \"type\": \"text\", \"label\": \"Data\", \"required\": true}]")),
            opt("submit_button_text", Lit::Str("Submit")),
            opt("success_message", Lit::Str("Form submitted successfully")),
            opt("require_auth", Lit::Bool(false)),
        ],
        &[
            "form_data",
            "submitted_at",
            "user_id",
            "ip_address",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "GmailTriggerNode",
        &[
            opt("credential_name", Lit::Str("google")),
            opt("polling_interval", Lit::Int(60)),
            opt("label_ids", Lit::Str("INBOX")),
            opt("query", Lit::Str("is:unread")),
            opt("from_filter", Lit::Str("")),
            opt("subject_contains", Lit::Str("")),
            opt("mark_as_read", Lit::Bool(true)),
            opt("include_attachments", Lit::Bool(true)),
            opt("max_results", Lit::Int(10)),
        ],
        &[
            "message_id",
            "thread_id",
            "subject",
            "from_email",
            "from_name",
            "to_email",
            "date",
            "snippet",
            "body_text",
            "body_html",
            "labels",
            "has_attachments",
            "attachments",
            "raw_message",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "RSSFeedTriggerNode",
        &[
            opt("feed_url", Lit::Null),
            opt("poll_interval_minutes", Lit::Int(15)),
            opt("filter_keywords", Lit::Str("")),
            opt("filter_mode", Lit::Str("any")),
            opt("max_items_per_check", Lit::Int(10)),
            opt("include_description", Lit::Bool(true)),
        ],
        &[
            "item",
            "title",
            "link",
            "description",
            "published",
            "author",
            "categories",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "SSETriggerNode",
        &[
            opt("sse_url", Lit::Null),
            opt("event_types", Lit::Str("")),
            opt("headers", Lit::Str("{}")),
            opt("reconnect_delay_seconds", Lit::Int(5)),
            opt("max_reconnect_attempts", Lit::Int(10)),
            opt("timeout_seconds", Lit::Int(0)),
        ],
        &[
            "event_type",
            "data",
            "raw_data",
            "event_id",
            "retry",
            "timestamp",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "ScheduleTriggerNode",
        &[
            opt("frequency", Lit::Str("daily")),
            opt("time_hour", Lit::Int(9)),
            opt("time_minute", Lit::Int(0)),
            opt("interval_seconds", Lit::Int(60)),
            opt("day_of_week", Lit::Str("mon")),
            opt("day_of_month", Lit::Int(1)),
            opt("cron_expression", Lit::Str("0 9 * * *")),
            opt("timezone", Lit::Str("UTC")),
            opt("max_runs", Lit::Int(0)),
            opt("start_time", Lit::Str("")),
        ],
        &[
            "trigger_time",
            "run_number",
            "scheduled_time",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "SheetsTriggerNode",
        &[
            opt("credential_name", Lit::Str("google")),
            opt("spreadsheet_id", Lit::Str("")),
            opt("sheet_name", Lit::Str("Sheet1")),
            opt("range", Lit::Str("")),
            opt("polling_interval", Lit::Int(30)),
            opt("trigger_on_new_row", Lit::Bool(true)),
            opt("trigger_on_cell_change", Lit::Bool(true)),
            opt("trigger_on_delete", Lit::Bool(false)),
            opt("watch_columns", Lit::Str("")),
            opt("ignore_empty_rows", Lit::Bool(true)),
        ],
        &[
            "spreadsheet_id",
            "sheet_name",
            "event_type",
            "row_number",
            "column",
            "old_value",
            "new_value",
            "row_data",
            "row_dict",
            "changed_cells",
            "timestamp",
            "raw_data",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "TelegramTriggerNode",
        &[
            opt("bot_token", Lit::Str("")),
            opt("credential_name", Lit::Str("")),
            opt("mode", Lit::Str("auto")),
            opt("webhook_url", Lit::Str("")),
            opt("polling_interval", Lit::Int(2)),
            opt("filter_chat_ids", Lit::Str("")),
            opt("filter_user_ids", Lit::Str("")),
            opt("commands_only", Lit::Bool(false)),
            opt("filter_commands", Lit::Str("")),
            opt("allowed_updates", Lit::Str("message")),
        ],
        &[
            "message_id",
            "chat_id",
            "user_id",
            "username",
            "first_name",
            "text",
            "is_command",
            "command",
            "command_args",
            "message_type",
            "raw_update",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "WebhookTriggerNode",
        &[
            opt("endpoint", Lit::Str("")),
            opt("methods", Lit::Str("POST")),
            opt("auth_type", Lit::Str("none")),
            opt("auth_header_name", Lit::Str("X-API-Key")),
            opt("auth_header_value", Lit::Str("")),
            opt("basic_username", Lit::Str("")),
            opt("basic_password", Lit::Str("")),
            opt("jwt_secret", Lit::Str("")),
            opt("cors_enabled", Lit::Bool(false)),
            opt("cors_origins", Lit::Str("*")),
            opt("ip_whitelist", Lit::Str("")),
            opt("ip_blacklist", Lit::Str("")),
            opt("response_mode", Lit::Str("immediate")),
            opt("response_code", Lit::Int(200)),
            opt("response_body", Lit::Str("{\"status\": \"received\"}")),
            opt("binary_data_enabled", Lit::Bool(false)),
            opt("max_payload_size", Lit::Int(16777216)),
        ],
        &[
            "payload",
            "headers",
            "query_params",
            "method",
            "path",
            "client_ip",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "WhatsAppTriggerNode",
        &[
            opt("access_token", Lit::Str("")),
            opt("phone_number_id", Lit::Str("")),
            opt("credential_name", Lit::Str("")),
            opt("verify_token", Lit::Str("")),
            opt("webhook_path", Lit::Str("/whatsapp/webhook")),
            opt("filter_phone_numbers", Lit::Str("")),
            opt("message_types", Lit::Str("text,image,document,audio,video,location")),
            opt("include_status_updates", Lit::Bool(false)),
        ],
        &[
            "message_id",
            "from_number",
            "to_number",
            "timestamp",
            "text",
            "message_type",
            "media_id",
            "media_url",
            "caption",
            "contact_name",
            "raw_message",
        ],
        fill_from_payload,
    ),
    NodeDef::plain(
        "WorkflowCallTriggerNode",
        &[
            opt("call_alias", Lit::Null),
            opt("input_schema", Lit::Str("{}")),
            opt("output_schema", Lit::Str("{}")),
            opt("wait_for_completion", Lit::Bool(true)),
            opt("timeout_seconds", Lit::Int(300)),
        ],
        &[
            "params",
            "caller_workflow_id",
            "caller_node_id",
            "call_id",
        ],
        fill_from_payload,
    ),
];

/// A trigger at run time: fill every output port from the payload (see the module doc).
fn fill_from_payload(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let payload = event_dict(ctx, PAYLOAD_VAR)?;
    let metadata = event_dict(ctx, METADATA_VAR)?;
    if payload.is_none() && metadata.is_none() {
        let message = format!(
            "trigger {} ({}) has no trigger payload: its outputs are null (the job carries none; \
             set the `{PAYLOAD_VAR}` variable or, for `casare-robot run`, --trigger-payload FILE)",
            ctx.node_id(),
            ctx.node_type()
        );
        ctx.log(log::Level::Warn, message);
    }
    let outputs = ctx.workflow().nodes[ctx.node_index()].def.outputs;
    for port in outputs {
        let value = [&payload, &metadata]
            .into_iter()
            .flatten()
            .find_map(|d| d.get(*port).cloned())
            .unwrap_or(Value::Null);
        ctx.set_output(port, value);
    }
    Ok(Flow::Next)
}

/// The run variable `name` as a dict: `None` when absent or null; a JSON text holding an object
/// is parsed; anything else is an error naming the variable.
fn event_dict(ctx: &NodeCtx<'_>, name: &str) -> Result<Option<Arc<Dict>>, NodeError> {
    match ctx.var(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Dict(d)) => Ok(Some(d.clone())),
        Some(Value::Str(text)) => match Value::parse_json(text) {
            Ok(Value::Dict(d)) => Ok(Some(d)),
            _ => Err(NodeError::type_error(format!(
                "variable `{name}` must be a dict of event fields (or JSON text of one); \
                 it holds text that is not a JSON object"
            ))),
        },
        Some(other) => Err(NodeError::type_error(format!(
            "variable `{name}` must be a dict of event fields, not {}",
            other.type_name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::engine::load_str;
    use serde_json::json;

    /// The catalogue's `trigger_nodes` family minus the abstract `BaseTriggerNode`.
    const CATALOGUE_TRIGGERS: [&str; 16] = [
        "AppEventTriggerNode",
        "ChatTriggerNode",
        "DriveTriggerNode",
        "EmailTriggerNode",
        "ErrorTriggerNode",
        "FileWatchTriggerNode",
        "FormTriggerNode",
        "GmailTriggerNode",
        "RSSFeedTriggerNode",
        "SSETriggerNode",
        "ScheduleTriggerNode",
        "SheetsTriggerNode",
        "TelegramTriggerNode",
        "WebhookTriggerNode",
        "WhatsAppTriggerNode",
        "WorkflowCallTriggerNode",
    ];

    /// A trigger `t` wired to a LogNode `l` printing `message`, with workflow `variables`.
    fn triggered(trigger: &str, message: &str, variables: serde_json::Value) -> String {
        json!({
            "nodes": {
                "t": {"node_id": "t", "node_type": trigger, "config": {}},
                "l": {"node_id": "l", "node_type": "LogNode", "config": {"message": message}},
            },
            "connections": [{"source_node": "t", "source_port": "exec_out",
                             "target_node": "l", "target_port": "exec_in"}],
            "variables": variables,
        })
        .to_string()
    }

    #[test]
    fn all_sixteen_catalogue_triggers_are_registered_entry_nodes() {
        assert_eq!(NODES.len(), CATALOGUE_TRIGGERS.len());
        for name in CATALOGUE_TRIGGERS {
            let def = crate::nodes::lookup(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(is_trigger(name));
            assert_eq!(def.routes, ["exec_out"], "{name}");
            assert!(!def.outputs.is_empty(), "{name} has no outputs");
            // Without a StartNode the run starts at the trigger and follows its exec_out.
            let ran = run_json(&triggered(name, "after", json!({})));
            ok(&ran);
            assert_eq!(ran.started, ["__auto_start__", "t", "l"], "{name}");
        }
        assert!(!is_trigger("BaseTriggerNode"));
        assert!(!is_trigger("LogNode"));
    }

    #[test]
    fn outputs_come_from_the_payload_by_port_name() {
        let payload = json!({"payload": {"order": 7}, "method": "POST", "path": "/hook",
                             "headers": {"X-Id": "a"}, "extra": "ignored"});
        let ran = run_json(&triggered(
            "WebhookTriggerNode",
            "{{t.method}} {{t.path}} {{t.payload}}",
            json!({"trigger_payload": payload}),
        ));
        ok(&ran);
        assert_eq!(ran.logs, ["[l] POST /hook {'order': 7}"]);
        assert_eq!(ran.out("t", "headers"), v(r#"{"X-Id": "a"}"#));
        assert_eq!(ran.out("t", "query_params"), Value::Null);
        assert_eq!(ran.out("t", "extra"), Value::Null, "not an output port");
    }

    #[test]
    fn metadata_fills_ports_the_payload_lacks_and_json_text_is_accepted() {
        let ran = run_json(&triggered(
            "ScheduleTriggerNode",
            "{{t.run_number}} at {{t.trigger_time}}",
            json!({"trigger_payload": "{\"run_number\": 3}",
                   "trigger_metadata": {"trigger_time": "09:00", "run_number": 99}}),
        ));
        ok(&ran);
        assert_eq!(ran.logs, ["[l] 3 at 09:00"]);
        assert_eq!(ran.out("t", "run_number"), Value::Int(3));
    }

    #[test]
    fn without_a_payload_outputs_are_null_with_one_warning_naming_the_node() {
        let ran = run_json(&triggered("FormTriggerNode", "{{t.form_data}}", json!({})));
        ok(&ran);
        assert_eq!(ran.out("t", "form_data"), Value::Null);
        let warnings: Vec<&String> = ran
            .logs
            .iter()
            .filter(|l| l.contains("no trigger payload"))
            .collect();
        assert_eq!(warnings.len(), 1, "{:?}", ran.logs);
        assert!(
            warnings[0].contains("t (FormTriggerNode)"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn a_payload_that_is_not_a_dict_fails_naming_the_variable() {
        for bad in [json!([1, 2]), json!("not json"), json!(5)] {
            let ran = run_json(&triggered(
                "ChatTriggerNode",
                "x",
                json!({ "trigger_payload": bad }),
            ));
            assert!(!ran.outcome.success());
            let err = ran.error();
            assert!(err.starts_with("t (ChatTriggerNode): "), "{err}");
            assert!(err.contains("`trigger_payload` must be a dict"), "{err}");
        }
    }

    #[test]
    fn an_exec_edge_into_a_trigger_is_rejected_naming_the_mistake() {
        let doc = chain(&[
            ("log", "LogNode", json!({"message": "x"})),
            ("hook", "WebhookTriggerNode", json!({})),
        ]);
        let err = load_str(&doc).unwrap_err().to_string();
        assert!(
            err.contains("hook (WebhookTriggerNode): exec edge from log.exec_out: a trigger node has no exec input"),
            "{err}"
        );
    }
}
