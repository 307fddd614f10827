//! Outgoing mail: one-time codes and security notices reach a user's mailbox, the second channel
//! a password alone does not open.
//!
//! A code the user is waiting for is sent at once ([`Mailer::send`]: a failure is the user's 503).
//! A notice ("a passkey was added", "new sign-in") goes through an outbox instead ([`queue`]): a
//! Redis stream any instance's sender reads as one consumer group, so the request that caused it
//! waits for no mail server, a notice survives a restart, and one that failed is tried again (by
//! any instance) until it is sent or has failed [`MAX_DELIVERIES`] times.
//!
//! With `smtp_url` set, messages go through that server (`smtps://` is TLS from the first byte,
//! `smtp://…?tls=required` upgrades with STARTTLS and refuses a server that will not; a bare
//! `smtp://` is plain text, for a relay on the same host). Without it each message is written as
//! one `.eml` file under `mail_dir`, so a developer reads the demo's codes with `cat` and no mail
//! server is needed. Both are lettre's transports; nothing here speaks SMTP by hand.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, SinglePart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rocket::fairing::AdHoc;
use rocket::{Orbit, Rocket};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::redis::Db;
use crate::stage;

/// The longest a request waits for the mail server (a code mail is sent while the user waits).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// Sends mail; managed state, cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<Transport>,
    from: Mailbox,
}

impl Mailer {
    /// The transport `config` asks for; an `smtp_url` or `mail_from` that does not parse is an
    /// error naming the key (checked at launch, not at the first sign-up).
    pub fn new(config: &Config) -> std::result::Result<Mailer, String> {
        let from: Mailbox =
            config.mail.from.parse().map_err(|e| format!("mail_from is not an address: {e}"))?;
        if let Some(bad) = config.mail.admin_email.as_deref().filter(|a| !valid_address(a)) {
            return Err(format!("admin_email: {bad:?} is not an e-mail address"));
        }
        let transport = match config.mail.smtp_url.as_deref().filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("smtp_url is not an SMTP URL: {e}"))?;
                Transport::Smtp(builder.timeout(Some(SEND_TIMEOUT)).build())
            }
            None => {
                let dir = config.mail.dir.clone();
                Transport::Files(AsyncFileTransport::<Tokio1Executor>::new(&dir), dir)
            }
        };
        Ok(Mailer { transport: Arc::new(transport), from })
    }

    /// Where messages go, for the startup log: the SMTP server's URL without its credentials,
    /// or the folder of `.eml` files.
    pub fn describe(&self, config: &Config) -> String {
        match &*self.transport {
            Transport::Smtp(_) => {
                let url = config.mail.smtp_url.as_deref().unwrap_or_default();
                // `scheme://user:pass@host…` → `scheme://host…`: a password never reaches the log.
                match (url.split_once("://"), url.rsplit_once('@')) {
                    (Some((scheme, _)), Some((_, host))) => format!("SMTP {scheme}://{host}"),
                    _ => format!("SMTP {url}"),
                }
            }
            Transport::Files(_, dir) => format!(".eml files in {}", dir.display()),
        }
    }

    /// Sends a plain-text message to `to`. A mail server that refuses or does not answer within
    /// [`SEND_TIMEOUT`] is [`Error::MailUnavailable`] (503, logged with the server's reason);
    /// an address that does not parse is a 500 (addresses are checked before they are stored).
    pub async fn send(&self, to: &str, subject: &str, text: String) -> Result<()> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| Error::Internal(format!("stored address does not parse: {e}")))?;
        let part = SinglePart::builder().header(ContentType::TEXT_PLAIN).body(body(&text));
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .singlepart(part)
            .map_err(|e| Error::Internal(format!("mail: {e}")))?;
        let sent = async {
            match &*self.transport {
                Transport::Smtp(smtp) => {
                    smtp.send(message).await.map(|_| ()).map_err(|e| format!("SMTP: {e}"))
                }
                Transport::Files(files, dir) => {
                    create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    files.send(message).await.map(|_| ()).map_err(|e| e.to_string())
                }
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, sent).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::MailUnavailable(e)),
            Err(_) => Err(Error::MailUnavailable("no answer in time".into())),
        }
    }
}

/// Prose wrapped at 72 columns, lines ending in CRLF, sent as it is: 7bit when ASCII (readable
/// with `cat`), 8bit otherwise. Never quoted-printable, which would fold a long link across
/// lines with `=` (a link is one word, so it keeps a line of its own, well under SMTP's 998).
fn body(text: &str) -> Body {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let mut current = indent.to_owned();
        let mut words = 0;
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            if words > 0 && current.chars().count() + 1 + word.chars().count() > 72 {
                out.push_str(&current);
                out.push_str("\r\n");
                current = indent.to_owned();
                words = 0;
            }
            if words > 0 {
                current.push(' ');
            }
            current.push_str(word);
            words += 1;
        }
        out.push_str(&current);
        out.push_str("\r\n");
    }
    if out.split("\r\n").any(|l| l.len() >= 998) || out.contains('\0') {
        return Body::new(out);
    }
    let encoding = if out.is_ascii() {
        ContentTransferEncoding::SevenBit
    } else {
        ContentTransferEncoding::EightBit
    };
    Body::dangerous_pre_encoded(out.into_bytes(), encoding)
}

/// Whether `address` is one mail can be sent to (`local@domain`, at most 254 bytes).
pub fn valid_address(address: &str) -> bool {
    address.len() <= 254 && address.parse::<lettre::Address>().is_ok()
}

/// The mail folder, readable by this user only (it holds one-time codes).
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

// ---- the outbox ------------------------------------------------------------------------------

/// The consumer group of every instance's sender.
const GROUP: &str = "mailers";
/// How often the sender looks for new mail (a notice may wait this long).
const POLL: Duration = Duration::from_millis(250);
/// A message not acknowledged this long (its sender failed or died) is taken over by another.
const RETRY_IDLE_MS: u64 = 30_000;
/// A message that failed this often is dropped, with an error in the log.
pub const MAX_DELIVERIES: i64 = 20;
/// Messages kept waiting at most (a mail server down for long must not fill Redis).
const MAX_QUEUED: usize = 10_000;

/// Puts a message in the outbox; a sender sends it within [`POLL`] when the mail server answers.
pub async fn queue(db: &Db, to: &str, subject: &str, text: &str) -> Result<()> {
    let fields = [("to", to), ("subject", subject), ("text", text)];
    db.append(&db.keys.mail_outbox(), MAX_QUEUED, &fields).await
}

type Entry = (String, std::collections::HashMap<String, String>);

/// Stream entries (`[[id, [field, value, …]], …]`) read from a reply; parsed by hand because the
/// redis crate's tuple conversions take a two-element list for a flat pair list.
fn entries(reply: &redis::Value) -> Vec<Entry> {
    use crate::redis::value_text;
    let redis::Value::Bulk(items) = reply else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let redis::Value::Bulk(parts) = item else { return None };
            let id = value_text(parts.first()?)?;
            let redis::Value::Bulk(fields) = parts.get(1)? else { return None };
            let fields = fields
                .chunks(2)
                .filter_map(|pair| Some((value_text(pair.first()?)?, value_text(pair.get(1)?)?)))
                .collect();
            Some((id, fields))
        })
        .collect()
}

/// One pass: messages that failed or whose sender died (idle past [`RETRY_IDLE_MS`]), then new
/// ones. Answers how many were handled.
async fn send_queued(db: &Db, mailer: &Mailer, consumer: &str) -> Result<usize> {
    let key = db.keys.mail_outbox();
    // Stale ones first, with how often each was delivered.
    let stale: Vec<(String, String, i64, i64)> = db
        .query(
            redis::cmd("XPENDING")
                .arg(&key)
                .arg(GROUP)
                .arg("IDLE")
                .arg(RETRY_IDLE_MS)
                .arg("-")
                .arg("+")
                .arg(20),
        )
        .await?;
    let mut batch: Vec<(Entry, i64)> = Vec::new();
    if !stale.is_empty() {
        let ids: Vec<&str> = stale.iter().map(|(id, ..)| id.as_str()).collect();
        let claimed: redis::Value = db
            .query(
                redis::cmd("XCLAIM")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(consumer)
                    .arg(RETRY_IDLE_MS)
                    .arg(&ids),
            )
            .await?;
        for entry in entries(&claimed) {
            let deliveries = stale.iter().find(|s| s.0 == entry.0).map_or(1, |s| s.3 + 1);
            batch.push((entry, deliveries));
        }
    }
    let fresh: redis::Value = db
        .query(
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(20)
                .arg("STREAMS")
                .arg(&key)
                .arg(">"),
        )
        .await?;
    // `[[stream, entries]]`, or nil when there is nothing new.
    if let redis::Value::Bulk(streams) = &fresh {
        for stream in streams {
            if let redis::Value::Bulk(pair) = stream {
                if let Some(list) = pair.get(1) {
                    batch.extend(entries(list).into_iter().map(|e| (e, 1)));
                }
            }
        }
    }
    let handled = batch.len();
    for ((id, fields), deliveries) in batch {
        let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let done = match mailer.send(&field("to"), &field("subject"), field("text")).await {
            Ok(()) => true,
            Err(e) if deliveries >= MAX_DELIVERIES => {
                rocket::error!("mail: a notice failed {deliveries} times and is dropped: {e}");
                true
            }
            Err(e) => {
                rocket::warn!("mail: a notice was not sent (attempt {deliveries}), retried: {e}");
                false
            }
        };
        if done {
            db.query::<()>(
                redis::pipe()
                    .cmd("XACK")
                    .arg(&key)
                    .arg(GROUP)
                    .arg(&id)
                    .ignore()
                    .cmd("XDEL")
                    .arg(&key)
                    .arg(&id)
                    .ignore(),
            )
            .await?;
        }
    }
    Ok(handled)
}

/// Consumers (one per process that ever started) idle this long with nothing pending are
/// removed from the group, so restarts do not grow it without end.
const FORGET_IDLE_MS: i64 = 3_600_000;

/// Removes the group's consumers that hold nothing and have been idle past [`FORGET_IDLE_MS`]
/// (a consumer that still holds messages keeps them until another takes them over).
async fn forget_idle_consumers(db: &Db) -> Result<()> {
    let key = db.keys.mail_outbox();
    let consumers: Vec<std::collections::HashMap<String, redis::Value>> =
        db.query(redis::cmd("XINFO").arg("CONSUMERS").arg(&key).arg(GROUP)).await?;
    let number = |v: Option<&redis::Value>| match v {
        Some(redis::Value::Int(n)) => *n,
        _ => 0,
    };
    for consumer in consumers {
        let name = consumer.get("name").and_then(crate::redis::value_text).unwrap_or_default();
        let (pending, idle) = (number(consumer.get("pending")), number(consumer.get("idle")));
        if pending == 0 && idle > FORGET_IDLE_MS && !name.is_empty() {
            db.query::<()>(redis::cmd("XGROUP").arg("DELCONSUMER").arg(&key).arg(GROUP).arg(&name))
                .await?;
        }
    }
    Ok(())
}

/// The consumer group, created with the stream if missing (idempotent; a message queued before
/// it existed is still read: the group starts at the stream's beginning).
async fn ensure_group(db: &Db) -> Result<()> {
    let key = db.keys.mail_outbox();
    let created = db
        .query::<()>(
            redis::cmd("XGROUP").arg("CREATE").arg(&key).arg(GROUP).arg("0").arg("MKSTREAM"),
        )
        .await;
    match created {
        Err(Error::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// The sender of this process: polls the outbox until shutdown. Redis or mail-server trouble is
/// logged once when it starts, and the loop goes on.
async fn run_sender(rocket: &Rocket<Orbit>, db: Db, mailer: Mailer) {
    let consumer = crate::secret::random_token()[..12].to_owned();
    let mut shutdown = rocket.shutdown();
    tokio::spawn(async move {
        let mut failing = false;
        let mut passes: u64 = 0;
        loop {
            passes += 1;
            let pass = async {
                ensure_group(&db).await?;
                // About once every 10 minutes.
                if passes % 2400 == 1 {
                    if let Err(e) = forget_idle_consumers(&db).await {
                        rocket::warn!("mail: idle outbox consumers not removed: {e}");
                    }
                }
                send_queued(&db, &mailer, &consumer).await
            };
            let idle = match pass.await {
                Ok(handled) => {
                    failing = false;
                    handled == 0
                }
                Err(e) => {
                    if !failing {
                        rocket::warn!("mail: the outbox cannot be read ({e}); retrying");
                    }
                    failing = true;
                    true
                }
            };
            // Straight on while there is more; checking for shutdown either way.
            let pause = if idle { POLL } else { Duration::ZERO };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}

/// The [`Mailer`] as managed state, one log line saying where mail goes, and the outbox sender.
pub fn stage() -> AdHoc {
    stage::with_both("Mail", |rocket, db: Db, config: Config| async move {
        match Mailer::new(&config) {
            Ok(mailer) => {
                rocket::info!("mail: {}", mailer.describe(&config));
                Ok(rocket
                    .manage(mailer.clone())
                    .attach(AdHoc::on_liftoff("Mail outbox", |rocket| {
                        Box::pin(run_sender(rocket, db, mailer))
                    })))
            }
            Err(e) => {
                rocket::error!("configuration: {e}");
                Err(rocket)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prose is folded at word boundaries below SMTP's recommended 78 columns, indentation and
    /// long links are kept whole on their line, and the result is sent as it reads.
    #[test]
    fn bodies_wrap_prose_and_keep_links_whole() {
        let link = format!("http://localhost:8080/not-me?token={}", "x".repeat(60));
        let text = format!("{} end\n\n    12345678\n{link}\n", "word ".repeat(30));
        let body = body(&text);
        let sent = String::from_utf8(body.into_vec()).expect("ASCII");
        let lines: Vec<&str> = sent.split("\r\n").collect();
        assert!(lines.iter().filter(|l| !l.contains("token")).all(|l| l.len() <= 72), "{sent}");
        assert!(lines.contains(&"    12345678"), "{sent}");
        assert!(lines.contains(&link.as_str()), "{sent}");
        assert_eq!(sent.matches("word").count(), 30);
    }
}
