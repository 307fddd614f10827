//! The process's subscriber connection, spoken by hand: `SSUBSCRIBE` and `SUNSUBSCRIBE` while
//! messages arrive. The redis crate this app is pinned to (0.25) can neither change a
//! subscription while reading messages nor read sharded messages (`smessage`), so this is a plain
//! socket, the client's `AUTH`, and a reader for the few reply shapes a subscribed connection
//! gets (RESP2 arrays of bulk strings and integers, `+PONG`, errors).
//!
//! The reader runs in a task of its own and hands over whole replies: the bridge waits for a
//! reply beside a timer and its interest changes (`select!`), and reading a reply is not
//! cancel-safe — a reply half-read when another branch won would be lost, and every later read
//! would start in the middle of one.

use std::io;

use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The largest message accepted (an announcement is about a kilobyte).
const MAX_BULK: usize = 1 << 20;

/// Replies read ahead of the bridge; a full queue stops the reading (Redis then buffers, and
/// drops a subscriber that falls too far behind: the bridge reconnects and catches up).
const READ_AHEAD: usize = 1024;

type Reader = BufReader<Box<dyn AsyncRead + Unpin + Send>>;
type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A connection in subscriber mode: commands are written here, replies read by a task of its
/// own (ended when this is dropped).
pub struct Subscriber {
    writer: Writer,
    heard: tokio::sync::mpsc::Receiver<io::Result<Heard>>,
    reading: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.reading.abort();
    }
}

/// What a subscriber connection is told.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// A message on a shard channel: (channel, payload).
    Message(Vec<u8>, Vec<u8>),
    /// Redis confirms the subscription to a channel: from now on its messages arrive.
    Subscribed(Vec<u8>),
    Unsubscribed(Vec<u8>),
    Pong,
    /// An error reply (a refused command): the connection stays usable.
    Refused(String),
    Other,
}

impl Subscriber {
    /// Connects as `info` says (TCP or a Unix socket) and authenticates.
    pub async fn connect(info: &ConnectionInfo) -> io::Result<Subscriber> {
        let (read, write): (Box<dyn AsyncRead + Unpin + Send>, Writer) = match &info.addr {
            ConnectionAddr::Tcp(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                let (r, w) = tcp.into_split();
                (Box::new(r), Box::new(w))
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => {
                let (r, w) = tokio::net::UnixStream::connect(path).await?.into_split();
                (Box::new(r), Box::new(w))
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("no subscriber over {other}"),
                ));
            }
        };
        let (mut reader, mut writer): (Reader, Writer) = (BufReader::new(read), write);
        if let Some(password) = &info.redis.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &info.redis.username {
                auth.arg(user);
            }
            writer.write_all(&auth.arg(password).get_packed_command()).await?;
            match read_value(&mut reader).await? {
                Value::Simple(_) => {}
                Value::Error(e) => return Err(io::Error::other(format!("AUTH: {e}"))),
                other => return Err(io::Error::other(format!("AUTH: unexpected {other:?}"))),
            }
        }
        let (tx, heard) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reading = tokio::spawn(async move {
            loop {
                let reply = read_reply(&mut reader).await;
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Subscriber { writer, heard, reading })
    }

    /// Writes one command (its reply comes through [`Subscriber::hear`]).
    pub async fn send(&mut self, cmd: &redis::Cmd) -> io::Result<()> {
        self.writer.write_all(&cmd.get_packed_command()).await
    }

    /// The next thing Redis says; an error means the connection is gone. Cancel-safe.
    pub async fn hear(&mut self) -> io::Result<Heard> {
        self.heard.recv().await.unwrap_or_else(|| Err(io::ErrorKind::UnexpectedEof.into()))
    }
}

/// Reads one reply and says what it is.
async fn read_reply(reader: &mut Reader) -> io::Result<Heard> {
    Ok(match read_value(reader).await? {
        Value::Array(items) => {
            let mut items = items.into_iter();
            let kind = match items.next() {
                Some(Value::Bulk(kind)) => kind.to_ascii_lowercase(),
                _ => return Ok(Heard::Other),
            };
            let mut bulk = || match items.next() {
                Some(Value::Bulk(b)) => b,
                _ => Vec::new(),
            };
            match kind.as_slice() {
                b"smessage" | b"message" => {
                    let channel = bulk();
                    Heard::Message(channel, bulk())
                }
                b"ssubscribe" => Heard::Subscribed(bulk()),
                b"sunsubscribe" => Heard::Unsubscribed(bulk()),
                b"pong" => Heard::Pong,
                _ => Heard::Other,
            }
        }
        Value::Simple(s) if s.eq_ignore_ascii_case("pong") => Heard::Pong,
        Value::Error(e) => Heard::Refused(e),
        _ => Heard::Other,
    })
}

/// One RESP2 value.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> io::Result<String> {
    let mut line = Vec::with_capacity(32);
    // Bounded: a header line is a type byte and a number, or a short status.
    let n = (&mut *reader).take(64 * 1024).read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "RESP: line without CRLF"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "RESP: not UTF-8"))
}

fn number(text: &str) -> io::Result<i64> {
    text.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "RESP: bad length"))
}

/// Reads one value (arrays nest: boxed recursion).
fn read_value<'a, R: AsyncRead + Unpin + Send>(
    reader: &'a mut BufReader<R>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Value>> + Send + 'a>> {
    Box::pin(async move {
        let line = read_line(reader).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        Ok(match kind {
            "+" => Value::Simple(rest.to_owned()),
            "-" => Value::Error(rest.to_owned()),
            ":" => Value::Int(number(rest)?),
            "$" => match number(rest)? {
                -1 => Value::Nil,
                len if len < 0 || len as usize > MAX_BULK => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "RESP: bulk too long"));
                }
                len => {
                    let mut bytes = vec![0; len as usize + 2];
                    reader.read_exact(&mut bytes).await?;
                    bytes.truncate(len as usize);
                    Value::Bulk(bytes)
                }
            },
            "*" => match number(rest)? {
                -1 => Value::Nil,
                len if !(0..=1024).contains(&len) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "RESP: array too long"));
                }
                len => {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(read_value(reader).await?);
                    }
                    Value::Array(items)
                }
            },
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "RESP: unknown type")),
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn parse(bytes: &'static [u8]) -> io::Result<Value> {
        let mut reader = BufReader::new(bytes);
        read_value(&mut reader).await
    }

    #[rocket::async_test]
    async fn replies_of_a_subscribed_connection_are_read() {
        let msg = parse(b"*3\r\n$8\r\nsmessage\r\n$3\r\na{1\r\n$5\r\nhe\r\nl\r\n").await.unwrap();
        let expected = vec![
            Value::Bulk(b"smessage".to_vec()),
            Value::Bulk(b"a{1".to_vec()),
            Value::Bulk(b"he\r\nl".to_vec()),
        ];
        assert_eq!(msg, Value::Array(expected));
        assert_eq!(parse(b":-3\r\n").await.unwrap(), Value::Int(-3));
        assert_eq!(parse(b"+PONG\r\n").await.unwrap(), Value::Simple("PONG".into()));
        assert_eq!(parse(b"-ERR no\r\n").await.unwrap(), Value::Error("ERR no".into()));
        assert_eq!(parse(b"$-1\r\n").await.unwrap(), Value::Nil);
        assert_eq!(
            parse(b"*1\r\n*1\r\n:1\r\n").await.unwrap(),
            Value::Array(vec![Value::Array(vec![Value::Int(1)])])
        );
    }

    #[rocket::async_test]
    async fn malformed_or_oversized_replies_are_errors_not_allocations() {
        for bad in [&b"$99999999999\r\n"[..], b"*99999\r\n", b"$3\r\nab", b"?x\r\n", b":1\n", b""] {
            let mut reader = BufReader::new(bad);
            assert!(read_value(&mut reader).await.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// The bridge waits for a reply beside a timer: a wait that gives up while a reply is half
    /// read must not lose that half.
    #[rocket::async_test]
    async fn a_reply_half_read_when_a_wait_gives_up_is_read_whole_by_the_next() {
        use redis::IntoConnectionInfo;
        use std::time::Duration;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let redis = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            socket.write_all(b"$5\r\nhello\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let info = format!("redis://127.0.0.1:{port}").into_connection_info().unwrap();
        let mut conn = Subscriber::connect(&info).await.unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(100), conn.hear()).await;
        assert!(gave_up.is_err(), "{gave_up:?}");
        let heard = tokio::time::timeout(Duration::from_secs(2), conn.hear()).await.unwrap();
        assert_eq!(heard.unwrap(), Heard::Message(b"ch".to_vec(), b"hello".to_vec()));
        redis.abort();
    }
}
