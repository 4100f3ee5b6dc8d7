//! Tracing setup. While serving: JSON lines to a daily-rolling file in the profile's data folder
//! (level from `LASTMILE_LOG`, default `info`) and warnings on stderr. Never stdout.
//!
//! Logs are redacted **before** they are encoded: each field value of an event (and of its
//! spans) passes through the installed [`LineScrubber`] before the JSON encoder escapes it, so a
//! child's JSON stderr line, escaped again inside the log line, is still read in the form the
//! redactor knows. The encoded line is then scrubbed once more as bytes, a second net for
//! anything a formatter added.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

mod private_file;

/// Rewrites text before it is logged (the secrets redactor implements it).
pub trait LineScrubber: Send + Sync {
    /// The text with every secret replaced.
    fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str>;

    /// The bytes with every secret replaced (for text that may not be UTF-8).
    fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match std::str::from_utf8(bytes) {
            Ok(text) => match self.scrub(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
            Err(_) => Cow::Owned(
                self.scrub(&String::from_utf8_lossy(bytes))
                    .into_owned()
                    .into_bytes(),
            ),
        }
    }

    /// The scrubbed form of `bytes[..cut]`, the rest of `bytes` read as context, and where the
    /// input was read up to (past `cut` when a secret replaced whole straddles it; see
    /// `Redactor::scrub_prefix_reach`).
    fn scrub_prefix_reach<'a>(&self, bytes: &'a [u8], cut: usize) -> (Cow<'a, [u8]>, usize) {
        let cut = cut.min(bytes.len());
        (self.scrub_bytes(&bytes[..cut]), cut)
    }

    /// How many bytes one secret can span in its encoded forms (see `Redactor::window`).
    fn window(&self) -> usize {
        0
    }
}

static SCRUBBER: RwLock<Option<Arc<dyn LineScrubber>>> = RwLock::new(None);

/// Install the scrubber every log event passes through (replacing any earlier one).
pub fn set_scrubber(scrubber: Arc<dyn LineScrubber>) {
    if let Ok(mut slot) = SCRUBBER.write() {
        *slot = Some(scrubber);
    }
}

fn installed() -> Option<Arc<dyn LineScrubber>> {
    SCRUBBER.read().ok().and_then(|g| g.clone())
}

/// Scrub `text` with the installed scrubber, if any.
pub fn scrub(text: &str) -> Cow<'_, str> {
    match installed() {
        Some(s) => Cow::Owned(s.scrub(text).into_owned()),
        None => Cow::Borrowed(text),
    }
}

/// Scrub `bytes` with the installed scrubber, if any.
pub fn scrub_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match installed() {
        Some(s) => Cow::Owned(s.scrub_bytes(bytes).into_owned()),
        None => Cow::Borrowed(bytes),
    }
}

/// [`LineScrubber::scrub_prefix_reach`] with the installed scrubber, if any.
pub fn scrub_prefix_reach(bytes: &[u8], cut: usize) -> (Cow<'_, [u8]>, usize) {
    let cut = cut.min(bytes.len());
    match installed() {
        Some(s) => {
            let (out, reach) = s.scrub_prefix_reach(bytes, cut);
            (Cow::Owned(out.into_owned()), reach)
        }
        None => (Cow::Borrowed(&bytes[..cut]), cut),
    }
}

/// The installed scrubber's [`LineScrubber::window`] (0 when none is installed).
pub fn scrub_window() -> usize {
    installed().map_or(0, |s| s.window())
}

/// How many log lines may wait for the file writer.
const LOG_QUEUE_LINES: usize = 1024;

/// Keeps the file writer alive; dropping it flushes the log.
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Logging for `serve`: JSON file (if the folder can be made) plus warnings on stderr.
pub fn init_serving(log_dir: &Path) -> LogGuard {
    // rmcp logs every message at info: far too much for a file written on every call.
    let filter = EnvFilter::try_from_env("LASTMILE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    // The data folder and its logs are the user's alone: folders 0700, files 0600.
    let private = |dir| crate::config::perms::create_private_dir(dir);
    let file = log_dir
        .parent()
        .map_or(Ok(None), private)
        .and_then(|_| private(log_dir))
        .and_then(|_| private_file::DailyFile::open(log_dir, "lastmile", "jsonl", 14))
        .ok();
    match file {
        Some(appender) => {
            // The default channel preallocates 128,000 lines (about 4 MB resident); a gateway
            // logs a few lines a minute, and a burst waits for the writer rather than drop.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(LOG_QUEUE_LINES)
                .lossy(false)
                .finish(appender);
            let file_layer = json_lines(ScrubbingMakeWriter(writer));
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(file_layer)
                .with(stderr_warnings())
                .try_init();
            LogGuard { _file: Some(guard) }
        }
        None => {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(stderr_warnings())
                .try_init();
            tracing::warn!(dir = %log_dir.display(), "cannot create the log folder; logging to stderr only");
            LogGuard { _file: None }
        }
    }
}

/// JSON lines, every field scrubbed before it is encoded.
fn json_lines<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .fmt_fields(JsonFields::new())
        .event_format(ScrubbedJson)
        .with_writer(writer)
}

fn stderr_warnings<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .fmt_fields(ScrubbedFields)
        .with_writer(ScrubbingMakeWriter(std::io::stderr))
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN)
}

/// Logging for the other commands: warnings (or `LASTMILE_LOG`) on stderr.
pub fn init_cli() {
    let filter = EnvFilter::try_from_env("LASTMILE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .fmt_fields(ScrubbedFields)
        .with_writer(ScrubbingMakeWriter(std::io::stderr))
        .try_init();
}

/// Wraps a writer so each event is buffered whole, scrubbed, then written once.
#[derive(Clone)]
struct ScrubbingMakeWriter<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for ScrubbingMakeWriter<M> {
    type Writer = ScrubbingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter {
            inner: self.0.make_writer(),
            buf: Vec::new(),
        }
    }
}

struct ScrubbingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ScrubbingWriter<W> {
    fn drop(&mut self) {
        let clean = scrub_bytes(&self.buf);
        let _ = self.inner.write_all(&clean);
        let _ = self.inner.flush();
    }
}

/// Collects an event's or a span's fields as JSON values, each text scrubbed before it is
/// encoded.
struct ScrubbingVisitor<'a>(&'a mut Map<String, Value>);

impl ScrubbingVisitor<'_> {
    fn text(&mut self, field: &Field, text: &str) {
        self.0.insert(
            field.name().to_string(),
            Value::String(scrub(text).into_owned()),
        );
    }

    /// A number is kept as a number unless it holds a secret.
    fn number(&mut self, field: &Field, n: Value) {
        let text = n.to_string();
        match scrub(&text) {
            Cow::Owned(clean) if clean != text => {
                self.0
                    .insert(field.name().to_string(), Value::String(clean));
            }
            _ => {
                self.0.insert(field.name().to_string(), n);
            }
        }
    }
}

impl Visit for ScrubbingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, &value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.number(field, value.into());
    }
}

/// The JSON log line, fields scrubbed before encoding: `timestamp`, `level`, `fields`, `target`,
/// and `span`/`spans` (name and fields of the current span and of every span it is in).
struct ScrubbedJson;

impl<S, N> FormatEvent<S, N> for ScrubbedJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = Map::new();
        event.record(&mut ScrubbingVisitor(&mut fields));
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert("fields".into(), Value::Object(fields));
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().to_string()),
        );
        let span_json = |span: &tracing_subscriber::registry::SpanRef<'_, S>| {
            let mut map = match span
                .extensions()
                .get::<FormattedFields<N>>()
                .and_then(|f| serde_json::from_str::<Value>(f).ok())
            {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            };
            // Span fields were encoded when the span was made: scrub their decoded values.
            for v in map.values_mut() {
                if let Value::String(s) = v
                    && let Cow::Owned(clean) = scrub(s)
                {
                    *s = clean;
                }
            }
            map.insert(
                "name".into(),
                Value::String(span.metadata().name().to_string()),
            );
            Value::Object(map)
        };
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope.from_root().map(|s| span_json(&s)).collect();
            if let Some(current) = spans.last() {
                line.insert("span".into(), current.clone());
            }
            line.insert("spans".into(), Value::Array(spans));
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Text fields (`message key=value …`) for stderr, each value scrubbed before it is formatted.
struct ScrubbedFields;

impl<'w> FormatFields<'w> for ScrubbedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut map = Map::new();
        fields.record(&mut ScrubbingVisitor(&mut map));
        let mut first = true;
        if let Some(Value::String(message)) = map.remove("message") {
            write!(writer, "{message}")?;
            first = false;
        }
        for (k, v) in map {
            if !first {
                writer.write_char(' ')?;
            }
            first = false;
            match v {
                Value::String(s) => write!(writer, "{k}={s}")?,
                other => write!(writer, "{k}={other}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Redactor, leaked_form};
    use secrecy::SecretString;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt;

    const SECRET: &str = "sk-live\"tok/en-4242";

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// Log the secret every way it reaches a log: JSON-escaped, `\u`-escaped character by
    /// character, and inside a child's JSON stderr line (which the log line escapes again).
    fn log_every_form() {
        let escaped = serde_json::to_string(SECRET).unwrap();
        let u_escaped: String = SECRET
            .encode_utf16()
            .map(|u| format!("\\u{u:04x}"))
            .collect();
        let stderr_line =
            serde_json::json!({ "level": "error", "msg": format!("auth with {SECRET}") })
                .to_string();
        let span = tracing::info_span!("call", arg = %SECRET);
        let _in = span.enter();
        tracing::info!("body was {escaped}");
        tracing::info!(detail = %u_escaped, "python json.dumps");
        tracing::info!(target: "lastmile::child", server = "alpha", cut = false, "{stderr_line}");
        tracing::warn!(error = ?SECRET, "debug-formatted");
    }

    fn install() {
        let r = Redactor::new([("K".to_string(), SecretString::from(SECRET))]).unwrap();
        set_scrubber(Arc::new(r));
    }

    #[test]
    fn fields_are_scrubbed_before_the_json_encoder_sees_them() {
        install();
        // No final byte-level net here: the field scrub alone must do it.
        let buf = Buf::default();
        let subscriber = tracing_subscriber::registry().with(json_lines(buf.clone()));
        tracing::subscriber::with_default(subscriber, log_every_form);
        let out = buf.0.lock().unwrap().clone();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON lines");
            assert!(v["fields"].is_object(), "{line}");
            assert_eq!(v["span"]["name"], "call", "{line}");
        }
        assert!(text.contains("[REDACTED:K]"), "{text}");
        assert_eq!(leaked_form(SECRET, &out), None, "{text}");
    }

    #[test]
    fn the_whole_file_pipeline_and_stderr_text_hold_no_form() {
        install();
        let file = Buf::default();
        let stderr = Buf::default();
        let subscriber = tracing_subscriber::registry()
            .with(json_lines(ScrubbingMakeWriter(file.clone())))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .fmt_fields(ScrubbedFields)
                    .with_writer(stderr.clone()),
            );
        tracing::subscriber::with_default(subscriber, log_every_form);
        for buf in [file, stderr] {
            let out = buf.0.lock().unwrap().clone();
            assert!(!out.is_empty());
            assert_eq!(
                leaked_form(SECRET, &out),
                None,
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }
}
