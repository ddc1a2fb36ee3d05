//! Server-sent events read from a provider's stream, a piece at a time as bytes arrive. Bounded: an event
//! larger than the limit (a provider that never sends a blank line) is an error, not a growing buffer.

/// The largest event accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (Anthropic names its events; OpenAI sends none).
    pub event: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// The event being gathered.
    event: Option<String>,
    data: String,
    has_data: bool,
    /// Bytes held for the current event (line and fields).
    held: usize,
    /// The last byte seen was a `\r` (a `\n` right after it ends nothing more).
    after_cr: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Takes the next bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    if let Some(event) = self.end_line() {
                        events.push(event);
                    }
                }
                _ => {
                    self.held += 1;
                    if self.held > MAX_EVENT_BYTES {
                        return Err(format!(
                            "the provider sent an event larger than {MAX_EVENT_BYTES} bytes"
                        ));
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(events)
    }

    /// True when bytes of an unfinished event are held (a stream that ends here was cut).
    pub fn is_mid_event(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn end_line(&mut self) -> Option<SseEvent> {
        if self.line.is_empty() {
            self.held = 0;
            let event = self.event.take();
            if !self.has_data {
                return None;
            }
            self.has_data = false;
            return Some(SseEvent {
                event,
                data: std::mem::take(&mut self.data),
            });
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            // Comments (`: ping`), `id` and `retry` carry nothing the gateway uses.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn events_are_split_on_blank_lines_whatever_the_line_endings() {
        let mut parser = SseParser::new();
        let text = b": ping\n\ndata: {\"a\":1}\n\nevent: message_stop\r\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\r\r";
        let events = parser.feed(text).unwrap();
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: None,
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: Some("message_stop".into()),
                    data: "x\ny".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
        assert!(!parser.is_mid_event());
        assert!(parser.feed(b"data: cut").unwrap().is_empty());
        assert!(parser.is_mid_event());
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut parser = SseParser::new();
        let chunk = vec![b'x'; 1 << 20];
        let mut failed = false;
        for _ in 0..8 {
            if parser.feed(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
    }

    proptest! {
        #[test]
        fn any_split_of_the_bytes_gives_the_same_events(bytes in proptest::collection::vec(any::<u8>(), 0..2000), cuts in proptest::collection::vec(0usize..2000, 0..10)) {
            let whole = SseParser::new().feed(&bytes);
            let mut parser = SseParser::new();
            let mut pieces = Vec::new();
            let mut points: Vec<usize> = cuts.into_iter().map(|cut| cut.min(bytes.len())).collect();
            points.sort_unstable();
            let mut start = 0;
            for point in points.into_iter().chain(std::iter::once(bytes.len())) {
                pieces.extend(parser.feed(&bytes[start..point]).unwrap());
                start = point;
            }
            prop_assert_eq!(whole.unwrap(), pieces);
        }
    }
}
