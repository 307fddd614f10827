//! Transaction search: the RediSearch index over the transaction documents, the one query a
//! user's words become (only letters and digits reach the query syntax, as PARAMS), and the
//! highlighting of what matched.

use redis::Value;

use super::model::Transaction;
use crate::error::{Error, Result};
use crate::redis::{Db, create_json_index, is_missing_index, parse_stored, search_hits};

/// Page size of the transactions page and the search API.
pub const PAGE_SIZE: usize = 20;

/// Deepest page served (bounds the work one request can ask for).
pub const MAX_PAGE: usize = 500;

/// Longest accepted search term.
pub const MAX_TERM_CHARS: usize = 100;

/// Creates the transaction index if it is missing.
pub async fn ensure_index(db: &Db) -> Result<()> {
    #[rustfmt::skip]
    let schema = [
        "$.description", "AS", "description", "TEXT",
        "$.fromAccountName", "AS", "fromAccountName", "TEXT",
        "$.transactionType", "AS", "transactionType", "TEXT",
        "$.accountId", "AS", "accountId", "TAG",
        "$.amount", "AS", "amount", "NUMERIC", "SORTABLE",
        "$.date", "AS", "date", "NUMERIC", "SORTABLE",
    ];
    let (name, prefix) = (db.keys.transaction_index(), db.keys.transaction_prefix());
    create_json_index(db, &name, &prefix, &schema).await
}

/// Searchable words of a user's query: letters and digits only (so nothing reaches RediSearch's
/// query syntax), lower-cased, at most 8 words of 40 characters. Terms over 100 characters are a 400.
pub fn search_words(q: &str) -> Result<Vec<String>> {
    if q.chars().count() > MAX_TERM_CHARS {
        return Err(Error::BadRequest(format!(
            "The search term is longer than {MAX_TERM_CHARS} characters."
        )));
    }
    Ok(q.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| w.to_lowercase().chars().take(40).collect())
        .collect())
}

/// Word characters as RediSearch's tokenizer sees them: letters, digits and `_` (which is not
/// one of its separators), so our words and highlights match its terms.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// One search hit: the transaction and, per text field, the UTF-16 `[start, end)` ranges to mark.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Hit {
    #[serde(flatten)]
    pub tx: Transaction,
    pub highlight: Highlights,
}

#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Highlights {
    #[schema(value_type = Vec<Vec<u32>>)]
    pub description: Vec<(usize, usize)>,
    #[schema(value_type = Vec<Vec<u32>>)]
    pub from_account_name: Vec<(usize, usize)>,
    #[schema(value_type = Vec<Vec<u32>>)]
    pub transaction_type: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub results: Vec<Hit>,
}

/// Full-text + prefix search over description, vendor and type, in one account only (the account
/// filter is added here, from the session, never from the client), newest first.
pub async fn search(db: &Db, number: &str, q: &str, page: usize) -> Result<SearchPage> {
    if page == 0 || page > MAX_PAGE {
        return Err(Error::BadRequest(format!("page must be between 1 and {MAX_PAGE}")));
    }
    let words = search_words(q)?;
    let reply = match search_once(db, number, &words, page).await {
        Err(e) if is_missing_index(&e) => {
            ensure_index(db).await?;
            search_once(db, number, &words, page).await?
        }
        other => other?,
    };
    let (total, hits) = search_hits(&reply);
    let results = hits
        .into_iter()
        .filter_map(|(key, json)| {
            let tx: Transaction = parse_stored(&key, &json)?;
            // Defence in depth: never return another account's row, whatever the index said.
            (tx.account_id == number).then(|| {
                let highlight = Highlights {
                    description: highlight(&tx.description, &words),
                    from_account_name: highlight(&tx.from_account_name, &words),
                    transaction_type: highlight(&tx.transaction_type, &words),
                };
                Hit { tx, highlight }
            })
        })
        .collect();
    // Never point past the deepest page we serve.
    let pages = total.div_ceil(PAGE_SIZE).clamp(1, MAX_PAGE);
    Ok(SearchPage { total, page, pages, results })
}

async fn search_once(db: &Db, number: &str, words: &[String], page: usize) -> Result<Vec<Value>> {
    let index = db.keys.transaction_index();
    let mut query = String::from("@accountId:{$acct}");
    let mut params: Vec<(String, String)> = vec![("acct".into(), number.to_owned())];
    for (i, word) in words.iter().enumerate() {
        // RediSearch needs two characters for a prefix query; one letter matches whole words only.
        let star = if word.chars().count() >= 2 { "*" } else { "" };
        query.push_str(&format!(" @description|fromAccountName|transactionType:($w{i}{star})"));
        params.push((format!("w{i}"), word.clone()));
    }
    db.run(async |c| {
        let mut cmd = redis::cmd("FT.SEARCH");
        cmd.arg(&index).arg(&query).arg("PARAMS").arg(params.len() * 2);
        for (k, v) in &params {
            cmd.arg(k).arg(v);
        }
        cmd.arg("SORTBY")
            .arg("date")
            .arg("DESC")
            .arg("LIMIT")
            .arg((page - 1) * PAGE_SIZE)
            .arg(PAGE_SIZE)
            .arg("DIALECT")
            .arg(2)
            .query_async(c)
            .await
    })
    .await
}

/// Every stored transaction of the account with its key, newest first (a customer's export, and
/// the closing of an account): pages of 1,000 through the index by date, each starting at the
/// oldest date of the page before (an offset would stop at the index's result limit).
pub async fn every_transaction(db: &Db, number: &str) -> Result<Vec<(String, Transaction)>> {
    const PAGE: usize = 1000;
    ensure_index(db).await?;
    let index = db.keys.transaction_index();
    let mut all = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut upto = "+inf".to_owned();
    loop {
        let query = format!("@accountId:{{$acct}} @date:[-inf {upto}]");
        let reply: Vec<Value> = db
            .query(
                redis::cmd("FT.SEARCH")
                    .arg(&index)
                    .arg(&query)
                    .arg("PARAMS")
                    .arg(2)
                    .arg("acct")
                    .arg(number)
                    .arg("SORTBY")
                    .arg("date")
                    .arg("DESC")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(PAGE)
                    .arg("DIALECT")
                    .arg(2),
            )
            .await?;
        let (_, hits) = search_hits(&reply);
        let full = hits.len() == PAGE;
        let mut oldest = None;
        for (key, json) in hits {
            if !seen.insert(key.clone()) {
                continue;
            }
            if let Some(tx) = parse_stored::<Transaction>(&key, &json) {
                oldest = Some(tx.date);
                // Defence in depth, as in the search: only this account's rows.
                if tx.account_id == number {
                    all.push((key, tx));
                }
            }
        }
        // A page that brought nothing new ends it too: never the same page twice.
        match oldest {
            Some(date) if full => upto = date.to_string(),
            _ => return Ok(all),
        }
    }
}

/// UTF-16 ranges of the words of `text` that start with one of `words` (case-insensitive). The
/// ranges index the raw text; callers escape the pieces before wrapping matches in `<mark>`.
pub fn highlight(text: &str, words: &[String]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut utf16 = 0usize;
    let mut start: Option<(usize, usize)> = None; // (byte, utf16) of the current word
    let mut push = |from: (usize, usize), to_byte: usize, to16: usize| {
        let word = text[from.0..to_byte].to_lowercase();
        // A one-letter query word matches whole words only (as in the query), longer ones prefixes.
        let hit = |w: &String| {
            if w.chars().count() < 2 { word == *w } else { word.starts_with(w.as_str()) }
        };
        if words.iter().any(hit) {
            out.push((from.1, to16));
        }
    };
    for (i, c) in text.char_indices() {
        if is_word_char(c) {
            if start.is_none() {
                start = Some((i, utf16));
            }
        } else if let Some(from) = start.take() {
            push(from, i, utf16);
        }
        utf16 += c.len_utf16();
    }
    if let Some(from) = start {
        push(from, text.len(), utf16);
    }
    out
}

/// Splits `text` at UTF-16 `ranges` into (piece, marked) segments for escaping templates.
pub fn segments(text: &str, ranges: &[(usize, usize)]) -> Vec<(String, bool)> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let mut out = Vec::new();
    let mut at = 0;
    for &(s, e) in ranges {
        if s > at {
            out.push((String::from_utf16_lossy(&units[at..s]), false));
        }
        out.push((String::from_utf16_lossy(&units[s..e.min(units.len())]), true));
        at = e.min(units.len());
    }
    if at < units.len() {
        out.push((String::from_utf16_lossy(&units[at..]), false));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_plain_and_bounded() {
        assert_eq!(
            search_words("Ins* @accountId:{*} | -coff").unwrap_or_default(),
            ["ins", "accountid", "coff"]
        );
        assert!(search_words(&"x".repeat(101)).is_err());
        assert!(search_words("").unwrap_or_default().is_empty());
    }

    #[test]
    fn highlight_marks_word_prefixes_in_utf16_units() {
        let words = vec!["ins".to_owned()];
        assert_eq!(highlight("State Farm Insurance", &words), vec![(11, 20)]);
        assert_eq!(highlight("🔐 insomnia", &words), vec![(3, 11)]);
        assert_eq!(
            segments("<b>Insomnia</b>", &highlight("<b>Insomnia</b>", &words)),
            vec![
                ("<b>".to_owned(), false),
                ("Insomnia".to_owned(), true),
                ("</b>".to_owned(), false)
            ]
        );
    }
}
