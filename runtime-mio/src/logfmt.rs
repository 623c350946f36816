//! `--log-format json`: each log event as one JSON object on one line, for
//! log shippers (journald's, Vector, Fluent Bit, Loki's promtail).
//!
//! ```text
//! {"timestamp":"2026-12-03T07:50:00.123456Z","level":"INFO","target":"sdt::daemon::sockets","message":"peer y (key xTIBA5rb…): session up"}
//! ```
//!
//! Every line has `timestamp` (UTC, RFC 3339), `level` (`ERROR`, `WARN`,
//! `INFO`, `DEBUG`, `TRACE`), `target` (`sdt::session`, `sdt::drop`, or
//! the module) and `message`; an event's own fields follow at the top level
//! under their names (a drop line's `layer`, `reason`, `peer`, `service`
//! and `from`, say), numbers as JSON numbers. A field named like one of the
//! four is written as `field_NAME`.
//!
//! Both formats are written by [`Background`]: a thread of its own writes
//! the lines to stderr, so that the event loop never waits for a slow
//! reader of stderr (a pipe to a stalled journal); when its queue is full,
//! lines are dropped and counted, and a line says how many.

use std::fmt;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format of `tracing_subscriber::fmt`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Json;

/// The four keys every line has.
const RESERVED: [&str; 4] = ["timestamp", "level", "target", "message"];

impl<S, N> FormatEvent<S, N> for Json
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str(&line(event))?;
        writer.write_char('\n')
    }
}

/// The JSON text of one event, without the newline: the four keys first,
/// then the event's fields in the order it names them.
fn line(event: &Event<'_>) -> String {
    let meta = event.metadata();
    let mut fields = Fields {
        message: String::new(),
        rest: Vec::new(),
    };
    event.record(&mut fields);
    object(
        meta.level().as_str(),
        meta.target(),
        &fields.message,
        fields.rest.iter().map(|(k, v)| (k.as_str(), v)),
    )
}

/// An event's fields: its message, and the others by name.
struct Fields {
    message: String,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn insert(&mut self, field: &Field, value: Value) {
        let name = field.name();
        if RESERVED.contains(&name) {
            self.rest.push((format!("field_{name}"), value));
        } else {
            self.rest.push((name.to_owned(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // The message, and `%`-recorded fields, arrive here; their Debug
        // form is their text.
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.insert(field, Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.insert(field, Value::String(value.to_owned()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, Value::String(value.to_string()));
    }
}

/// Log lines the writer thread may have queued; beyond them a line is
/// dropped (and counted) rather than wait.
pub const QUEUE_LINES: usize = 4096;

/// How long [`Background::finish`] waits for the queued lines to be
/// written.
pub const FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The writer thread of the log, and the means to stop it.
#[derive(Debug)]
pub struct Background {
    writer: LogWriter,
    thread: Option<JoinHandle<()>>,
}

/// The [`MakeWriter`] of [`Background`]: each event's text goes to the
/// writer thread's queue, or is dropped and counted if it is full.
#[derive(Debug, Clone)]
pub struct LogWriter {
    queue: SyncSender<Vec<u8>>,
    lost: Arc<AtomicU64>,
}

/// One event's text, handed to the queue when the formatter is done.
#[derive(Debug)]
pub struct Line<'a> {
    text: Vec<u8>,
    writer: &'a LogWriter,
}

impl Background {
    /// Starts the writer thread; `json` chooses the form of its own line
    /// about lost lines. `None` if no thread can be started (the caller
    /// then writes to stderr itself).
    pub fn start(json: bool) -> Option<Background> {
        let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
        let lost = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&lost);
        let thread = std::thread::Builder::new()
            .name("sdt-log".into())
            .spawn(move || write_lines(&lines, &counted, json))
            .ok()?;
        Some(Background {
            writer: LogWriter { queue, lost },
            thread: Some(thread),
        })
    }

    /// The writer to give `tracing_subscriber::fmt`.
    pub fn writer(&self) -> LogWriter {
        self.writer.clone()
    }

    /// Writes out every line queued and stops the thread, waiting at most
    /// [`FINISH_TIMEOUT`] for a stderr nobody reads (the lines still
    /// queued then are lost with the process); lines logged later are
    /// written to stderr directly.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + FINISH_TIMEOUT;
        // An empty line is the end (the thread may have gone already).
        let mut end = Some(Vec::new());
        while std::time::Instant::now() < deadline {
            if let Some(e) = end.take() {
                match self.writer.queue.try_send(e) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(e)) => end = Some(e),
                }
            }
            if end.is_none() && thread.is_finished() {
                let _ = thread.join();
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread: each line to stderr, and after it the lines lost
/// since the last one, if any.
fn write_lines(lines: &Receiver<Vec<u8>>, lost: &AtomicU64, json: bool) {
    let mut stderr = io::stderr();
    while let Ok(line) = lines.recv() {
        if line.is_empty() {
            break;
        }
        let _ = stderr.write_all(&line);
        let n = lost.swap(0, Ordering::Relaxed);
        if n > 0 {
            let _ = stderr.write_all(lost_line(n, json).as_bytes());
        }
    }
    let n = lost.swap(0, Ordering::Relaxed);
    if n > 0 {
        let _ = stderr.write_all(lost_line(n, json).as_bytes());
    }
}

/// The line saying `n` lines were lost, in either format.
fn lost_line(n: u64, json: bool) -> String {
    let message = format!("{n} log lines lost: stderr was not read fast enough");
    if json {
        let lost = Value::from(n);
        format!(
            "{}\n",
            object("WARN", "sdt::log", &message, [("lost", &lost)])
        )
    } else {
        format!("{}  WARN sdt::log: {message}\n", now())
    }
}

/// A line written outside `tracing` (a command's error) in the JSON
/// format, without the newline.
pub fn json_line(level: &str, target: &str, message: &str) -> String {
    object(level, target, message, [])
}

/// One JSON object: `timestamp` (now), `level`, `target` and `message`,
/// then `fields` in their order.
fn object<'a>(
    level: &str,
    target: &str,
    message: &str,
    fields: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> String {
    let head = [
        ("timestamp", Value::String(now())),
        ("level", Value::String(level.to_owned())),
        ("target", Value::String(target.to_owned())),
        ("message", Value::String(message.to_owned())),
    ];
    let mut out = String::from("{");
    let mut push = |key: &str, value: &Value| {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&Value::String(key.to_owned()).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    };
    for (key, value) in &head {
        push(key, value);
    }
    for (key, value) in fields {
        push(key, value);
    }
    out.push('}');
    out
}

/// The time now as the log lines write it.
fn now() -> String {
    let mut time = String::new();
    if SystemTime.format_time(&mut Writer::new(&mut time)).is_err() {
        time.clear();
    }
    time
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            text: Vec::new(),
            writer: self,
        }
    }
}

impl io::Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        match self.writer.queue.try_send(std::mem::take(&mut self.text)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.writer.lost.fetch_add(1, Ordering::Relaxed);
            }
            // The thread has finished: the process is ending, and nothing
            // waits on this line any more.
            Err(TrySendError::Disconnected(text)) => {
                let _ = io::stderr().write_all(&text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn each_event_is_one_json_object_with_its_fields() {
        let out = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(Json)
            .with_writer(out.clone())
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("peer {}: session up", "y");
            tracing::debug!(
                layer = "link",
                reason = %"malformed",
                suppressed = 41u64,
                level = 3,
                "datagram \"dropped\"\nnext line"
            );
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(text.starts_with("{\"timestamp\":"), "{text}");
        assert!(
            text.lines().nth(1).unwrap().contains(
                "\"message\":\"datagram \\\"dropped\\\"\\nnext line\",\"layer\":\"link\""
            ),
            "{text}"
        );
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "peer y: session up");
        assert!(lines[0]["timestamp"].as_str().unwrap().contains('T'));
        assert_eq!(lines[1]["level"], "DEBUG");
        assert_eq!(lines[1]["message"], "datagram \"dropped\"\nnext line");
        assert_eq!(lines[1]["layer"], "link");
        assert_eq!(lines[1]["reason"], "malformed");
        assert_eq!(lines[1]["suppressed"], 41);
        // A field cannot overwrite one of the four every line has.
        assert_eq!(lines[1]["field_level"], 3);
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines_instead_of_waiting() {
        let (queue, lines) = mpsc::sync_channel(2);
        let writer = LogWriter {
            queue,
            lost: Arc::new(AtomicU64::new(0)),
        };
        for i in 0..5 {
            let mut line = writer.make_writer();
            let _ = writeln!(line, "line {i}");
        }
        // Nobody reads: two queued, three counted, none waited for.
        assert_eq!(writer.lost.load(Ordering::Relaxed), 3);
        assert_eq!(lines.try_recv().unwrap(), b"line 0\n");
        assert_eq!(lines.try_recv().unwrap(), b"line 1\n");
        assert!(lines.try_recv().is_err());
        let json: Value = serde_json::from_str(lost_line(3, true).trim()).unwrap();
        assert_eq!(json["lost"], 3);
        assert_eq!(json["level"], "WARN");
    }
}
