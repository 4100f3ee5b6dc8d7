//! Tracing setup. While serving: JSON lines to a daily-rolling file in the profile's data folder
//! (level from `LASTMILE_LOG`, default `info`) and warnings on stderr. Never stdout.
//!
//! Every event passes through the installed [`LineScrubber`] before it is written anywhere, so a
//! secret that slips into a log field is redacted at the last moment.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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

/// Scrub `text` with the installed scrubber, if any.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let scrubber = SCRUBBER.read().ok().and_then(|g| g.clone());
    match scrubber {
        Some(s) => Cow::Owned(s.scrub(text).into_owned()),
        None => Cow::Borrowed(text),
    }
}

/// Keeps the file writer alive; dropping it flushes the log.
pub struct LogGuard {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Logging for `serve`: JSON file (if the folder can be made) plus warnings on stderr.
pub fn init_serving(log_dir: &Path) -> LogGuard {
    // rmcp logs every message at info: far too much for a file written on every call.
    let filter = EnvFilter::try_from_env("LASTMILE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let file = std::fs::create_dir_all(log_dir).ok().and_then(|_| {
        tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("lastmile")
            .filename_suffix("jsonl")
            .max_log_files(14)
            .build(log_dir)
            .ok()
    });
    match file {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .finish(appender);
            let file_layer = tracing_subscriber::fmt::layer()
                .json()
                .with_ansi(false)
                .with_current_span(true)
                .with_writer(ScrubbingMakeWriter(writer));
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

fn stderr_warnings<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
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
        let text = String::from_utf8_lossy(&self.buf);
        let clean = scrub(&text);
        let _ = self.inner.write_all(clean.as_bytes());
        let _ = self.inner.flush();
    }
}
