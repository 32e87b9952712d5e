//! One event file, `events.out.tfevents.{unix secs}.{host}.{pid}.{n}` as
//! `torch.utils.tensorboard` names it: the version record first, then events.
//!
//! Events wait in memory until [`EventWriter::flush`] appends them to the file, so the
//! file holds exactly what its writer has declared done (for training, the epochs whose
//! checkpoint is written): a run killed in between leaves nothing that its resumption
//! logs again.

use super::proto::{
    Dim, Event, Kind, PluginData, SessionLog, SessionStatus, Summary, SummaryMetadata, TensorProto,
    TensorShapeProto, Value, What, DT_STRING,
};
use super::record;
use crate::fsio;
use anyhow::{Context, Result};
use prost::Message;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The version TensorBoard reads from the first record (2: restarts are marked by a
/// session's start).
pub const FILE_VERSION: &str = "brain.Event:2";

/// Event files this process has opened: the name's last part.
static OPENED: AtomicU64 = AtomicU64::new(0);

/// An event file open for appending.
pub struct EventWriter {
    file: File,
    path: PathBuf,
    /// Framed records not yet in the file.
    pending: Vec<u8>,
}

impl EventWriter {
    /// A new event file in `dir` (made if missing), its version record written.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        let name = format!(
            "events.out.tfevents.{:010}.{}.{}.{}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            hostname(),
            std::process::id(),
            OPENED.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        // Not fsio's atomic write, which replaces a whole file at once: an event file is an
        // append-only log that TensorBoard tails while the run writes it. fsio::open_log
        // is that one exception (the folder made, the file opened for appending).
        let file = fsio::open_log(&path)?;
        let mut writer = EventWriter {
            file,
            path,
            pending: vec![],
        };
        writer.write(0, What::FileVersion(FILE_VERSION.into()));
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scalars of one step, one summary value each (tag, value; stored as float32).
    pub fn scalars(&mut self, step: i64, values: &[(String, f32)]) {
        let value = values
            .iter()
            .map(|(tag, v)| Value {
                tag: tag.clone(),
                metadata: None,
                kind: Some(Kind::SimpleValue(*v)),
            })
            .collect();
        self.write(step, What::Summary(Summary { value }));
    }

    /// Text for TensorBoard's text dashboard (markdown), as `add_text` of
    /// `torch.utils.tensorboard` writes it: tag `{tag}/text_summary`, a one-element
    /// string tensor for the `text` plugin.
    pub fn text(&mut self, step: i64, tag: &str, text: &str) {
        let value = Value {
            tag: format!("{tag}/text_summary"),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                    content: vec![],
                }),
            }),
            kind: Some(Kind::Tensor(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShapeProto {
                    dim: vec![Dim { size: 1 }],
                }),
                string_val: vec![text.as_bytes().to_vec()],
            })),
        };
        self.write(step, What::Summary(Summary { value: vec![value] }));
    }

    /// Marks a session starting at `step`: TensorBoard then drops what earlier files of
    /// the folder logged at `step` or later (a killed run's, a run started over).
    pub fn session_start(&mut self, step: i64) {
        let log = SessionLog {
            status: SessionStatus::Start.into(),
        };
        self.write(step, What::SessionLog(log));
    }

    /// Appends the events written so far to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .write_all(&self.pending)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.pending.clear();
        Ok(())
    }

    fn write(&mut self, step: i64, what: What) {
        let event = Event {
            wall_time: unix_time(),
            step,
            what: Some(what),
        };
        record::frame(&event.encode_to_vec(), &mut self.pending);
    }
}

fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This machine's name, as Python's `socket.gethostname()` gives it.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits an event file into its records, checking the framing.
    fn records(bytes: &[u8]) -> Vec<Event> {
        let mut out = vec![];
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            assert_eq!(rest[8..12], record::masked_crc(&rest[..8]).to_le_bytes());
            let data = &rest[12..12 + len];
            assert_eq!(
                rest[12 + len..16 + len],
                record::masked_crc(data).to_le_bytes()
            );
            out.push(Event::decode(data).unwrap());
            rest = &rest[16 + len..];
        }
        out
    }

    // Bytes from tensorboard's own protobuf classes (`Event(...).SerializeToString()`).
    #[test]
    fn events_encode_as_tensorboards() {
        let event = |step, what| Event {
            wall_time: 1.5,
            step,
            what: Some(what),
        };
        let hex = |e: Event| -> String {
            e.encode_to_vec()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        assert_eq!(
            hex(event(0, What::FileVersion(FILE_VERSION.into()))),
            "09000000000000f83f1a0d627261696e2e4576656e743a32"
        );
        let zero = Value {
            tag: "step/train_loss".into(),
            metadata: None,
            kind: Some(Kind::SimpleValue(0.0)),
        };
        assert_eq!(
            hex(event(10, What::Summary(Summary { value: vec![zero] }))),
            "09000000000000f83f100a2a180a160a0f737465702f747261696e5f6c6f73731500000000"
        );
        let start = SessionLog {
            status: SessionStatus::Start.into(),
        };
        assert_eq!(
            hex(event(9, What::SessionLog(start))),
            "09000000000000f83f10093a020801"
        );
    }

    #[test]
    fn nothing_reaches_the_file_before_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(&dir.path().join("tb")).unwrap();
        let name = w.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let read = |w: &EventWriter| records(&std::fs::read(w.path()).unwrap());
        let first = read(&w);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        w.session_start(3);
        w.scalars(3, &[("a".into(), 1.25), ("b".into(), -2.0)]);
        w.text(3, "settings", "hello");
        assert_eq!(read(&w).len(), 1);
        w.flush().unwrap();
        let events = read(&w);
        assert_eq!(events.len(), 4);
        assert!(events[1..].iter().all(|e| e.step == 3));
        let Some(What::Summary(s)) = &events[2].what else {
            panic!("{:?}", events[2]);
        };
        assert_eq!(s.value.len(), 2);
        assert_eq!(s.value[1].kind, Some(Kind::SimpleValue(-2.0)));
        let Some(What::Summary(t)) = &events[3].what else {
            panic!("{:?}", events[3]);
        };
        assert_eq!(t.value[0].tag, "settings/text_summary");
    }
}
