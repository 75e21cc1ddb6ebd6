//! An incremental parser of `text/event-stream` bodies (server-sent events), free of I/O so
//! that any chunking of the bytes can be tested; `follow` reads the block stream with it.

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    pub id: Option<String>,
}

/// Incremental parser of a `text/event-stream` body; chunks may split lines, UTF-8
/// sequences and `\r\n` pairs anywhere.
#[derive(Default, Debug)]
pub struct SseParser {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    /// The previous chunk ended in `\r`: a `\n` that starts the next one belongs to it.
    after_cr: bool,
}

/// Longest accepted line (a block's JSON is one `data:` line).
const MAX_SSE_LINE: usize = 128 * 1024 * 1024;

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, String> {
        let mut out = Vec::new();
        if self.after_cr {
            self.after_cr = false;
            if chunk.first() == Some(&b'\n') {
                chunk = &chunk[1..];
            }
        }
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..pos]);
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut out);
            let mut next = pos + 1;
            if chunk[pos] == b'\r' {
                match chunk.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            chunk = &chunk[next..];
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() > MAX_SSE_LINE {
            return Err(format!(
                "event stream line longer than {MAX_SSE_LINE} bytes"
            ));
        }
        Ok(out)
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            // dispatch
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    event: event
                        .filter(|e| !e.is_empty())
                        .unwrap_or_else(|| "message".into()),
                    data,
                    id: self.id.clone(),
                });
            }
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {} // retry and unknown fields
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend(p.push(c).unwrap());
        }
        out
    }

    #[test]
    fn sse_events_survive_any_chunking() {
        let stream = "retry: 1000\n: keep-alive\n\nevent: block\nid: 0\ndata: {\"n\":0}\n\n\
                      event: block\r\nid: 1\r\ndata: {\"n\":\r\ndata: \"é\"}\r\n\r\n\
                      data:plain\rid:2\r\r";
        let expect = vec![
            SseEvent {
                event: "block".into(),
                data: "{\"n\":0}".into(),
                id: Some("0".into()),
            },
            SseEvent {
                event: "block".into(),
                data: "{\"n\":\n\"é\"}".into(),
                id: Some("1".into()),
            },
            SseEvent {
                event: "message".into(),
                data: "plain".into(),
                id: Some("2".into()),
            },
        ];
        let bytes = stream.as_bytes();
        assert_eq!(feed(&[bytes]), expect);
        // every split point, including inside "\r\n" and inside the two-byte "é"
        for i in 0..=bytes.len() {
            assert_eq!(feed(&[&bytes[..i], &bytes[i..]]), expect, "split at {i}");
        }
        // one byte at a time
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(feed(&singles), expect);
    }

    #[test]
    fn sse_incomplete_event_is_held_back() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: block\ndata: x\n").unwrap().is_empty());
        let ev = p.push(b"\n").unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].data, "x");
        // an event without data is dropped, and its name does not leak into the next one
        assert!(p.push(b"event: ping\n\n").unwrap().is_empty());
        assert_eq!(p.push(b"data: y\n\n").unwrap()[0].event, "message");
    }
}
