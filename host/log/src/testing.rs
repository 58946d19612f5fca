//! What the tests of [`crate::format`] and [`crate::json`] share: a
//! subscriber's output captured in memory.

use std::io;
use std::sync::{Arc, Mutex};

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
pub(crate) struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` under the subscriber that `subscriber` builds around a
/// [`Sink`]; returns what was written.
pub(crate) fn capture<S>(subscriber: impl FnOnce(Sink) -> S, f: impl FnOnce()) -> String
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    let sink = Sink::default();
    let out = sink.clone();
    tracing::subscriber::with_default(subscriber(sink), f);
    let bytes = out.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}
