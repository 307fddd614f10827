//! `MONITOR`: every command any client sends a Redis, in the order it runs them — commands a
//! script runs included (as the client `lua`).

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::RedisServer;

/// One command as `MONITOR` shows it: the client's address and the words.
#[derive(Debug)]
pub struct Seen {
    pub client: String,
    pub words: Vec<String>,
}

impl Seen {
    /// The command's name, upper case.
    pub fn name(&self) -> String {
        self.words.first().map(|w| w.to_ascii_uppercase()).unwrap_or_default()
    }

    /// Whether it is `command` (any case).
    pub fn is(&self, command: &str) -> bool {
        self.words.first().is_some_and(|w| w.eq_ignore_ascii_case(command))
    }
}

/// A `MONITOR` connection to `redis`: every command any client sends, in the order Redis runs
/// them.
pub struct Monitor {
    lines: tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
}

impl Monitor {
    pub async fn start(redis: &RedisServer) -> Monitor {
        let url = redis.url();
        let addr = url.trim_start_matches("redis://");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"MONITOR\r\n").await.unwrap();
        let mut lines = BufReader::new(tcp).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("+OK"));
        Monitor { lines }
    }

    /// Commands seen until `done` holds for them (or `within` passes: then it fails).
    pub async fn until(&mut self, within: Duration, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while !done(&seen) {
            // Checked here, not only by the timeout: a busy server's lines never keep it waiting.
            assert!(Instant::now() < deadline, "MONITOR: not seen within {within:?}");
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.next_line()).await;
            let Ok(Ok(Some(line))) = line else {
                panic!("MONITOR: not seen within {within:?}; saw {seen:#?}")
            };
            if let Some(parsed) = parse_monitor_line(&line) {
                seen.push(parsed);
            }
        }
        seen
    }

    /// Every command seen until none came for `quiet`.
    pub async fn until_quiet(&mut self, quiet: Duration) -> Vec<Seen> {
        let mut seen = Vec::new();
        while let Ok(Ok(Some(line))) = tokio::time::timeout(quiet, self.lines.next_line()).await {
            if let Some(parsed) = parse_monitor_line(&line) {
                seen.push(parsed);
            }
        }
        seen
    }
}

/// `+1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "ab…" "9"` → client and words.
pub fn parse_monitor_line(line: &str) -> Option<Seen> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let client = line[open + 1..close].split_whitespace().last()?.to_owned();
    let mut words = Vec::new();
    let mut rest = &line[close + 1..];
    while let Some(start) = rest.find('"') {
        let mut word = String::new();
        let mut chars = rest[start + 1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        word.push(escaped);
                    }
                }
                '"' => {
                    end = Some(start + 1 + i + 1);
                    break;
                }
                c => word.push(c),
            }
        }
        words.push(word);
        rest = &rest[end?..];
    }
    Some(Seen { client, words })
}

#[cfg(test)]
mod tests {
    use super::parse_monitor_line;

    #[test]
    fn monitor_lines_are_read_word_by_word() {
        let seen = parse_monitor_line(
            r#"+1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "ab\"c" "9" "x y""#,
        )
        .unwrap();
        assert_eq!(seen.client, "127.0.0.1:5555");
        assert_eq!(seen.words, ["EVALSHA", "ab\"c", "9", "x y"]);
    }
}
