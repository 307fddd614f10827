//! Server-sent events as the benchmark clients read them (`examples/sse_bench`,
//! `examples/watch_bench`): a minimal `text/event-stream` parser and the two fields of a
//! transaction event they time.

/// Minimal `text/event-stream` parser: lines end with `\n` (a trailing `\r` is dropped), an empty
/// line dispatches the event, `field:value` with an optional single space after the colon, lines
/// starting with `:` are comments. Holds only the unfinished line and the current event.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    id: String,
    pub comments: usize,
}

impl SseParser {
    /// Feeds one network chunk (any boundaries); calls `on_event(event, data, id)` per event.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut impl FnMut(&str, &str, &str)) {
        self.buf.extend_from_slice(chunk);
        let SseParser { buf, event, data, id, comments } = self;
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let mut line = &buf[start..start + pos];
            start += pos + 1;
            if let [rest @ .., b'\r'] = line {
                line = rest;
            }
            if line.is_empty() {
                if !data.is_empty() || !event.is_empty() {
                    on_event(event, data, id);
                }
                event.clear();
                data.clear();
                id.clear();
                continue;
            }
            if line[0] == b':' {
                *comments += 1;
                continue;
            }
            let Ok(line) = std::str::from_utf8(line) else { continue };
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => {
                    event.clear();
                    event.push_str(value);
                }
                "data" => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                "id" => {
                    id.clear();
                    id.push_str(value);
                }
                _ => {} // retry and unknown fields
            }
        }
        buf.drain(..start);
    }
}

/// The two fields of a transaction event this benchmark needs.
#[derive(serde::Deserialize)]
pub struct TxLite {
    pub id: u64,
    pub date: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_split_chunks_and_rocket_format() {
        let stream = concat!(
            "retry:3000\n\n",
            "id:1-0\nevent:transaction\ndata:{\"id\":5,\"date\":7}\n\n",
            ":heartbeat\n\n",
            "id:1-0\r\nevent: balance\r\ndata:{}\r\n\r\n",
        )
        .as_bytes();
        for split in 0..stream.len() {
            let mut p = SseParser::default();
            let mut got: Vec<(String, String, String)> = Vec::new();
            let mut on = |e: &str, d: &str, i: &str| got.push((e.into(), d.into(), i.into()));
            p.feed(&stream[..split], &mut on);
            p.feed(&stream[split..], &mut on);
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(
                got[0],
                ("transaction".into(), "{\"id\":5,\"date\":7}".into(), "1-0".into())
            );
            assert_eq!(got[1].0, "balance");
            assert_eq!(p.comments, 1);
        }
    }
}
