//! Transaction rows as the pages show them, written as HTML here rather than by a Tera include.
//!
//! Why not a template: Tera looks every `{{ r.field }}` up through its context stack, and ten rows
//! of that (plus serializing them into its context) cost the dashboard more CPU than everything
//! else it does, Redis included. Pages embed the result with `| safe`; it is safe because every
//! piece of text passes through [`escape`] (the same characters Tera escapes) and the only markup
//! is the fixed strings below.

use std::fmt::Write;

use super::model::Transaction;
use super::search::{self, Highlights};
use crate::clock::PageTime;

/// `rows` as `<tr>` elements (empty when there are none), each with the search marks of its
/// highlights, if any.
pub fn rows<'a>(
    rows: impl IntoIterator<Item = (&'a Transaction, Option<&'a Highlights>)>,
) -> String {
    let mut html = String::new();
    for (tx, marks) in rows {
        row(&mut html, tx, marks);
    }
    html
}

fn row(html: &mut String, tx: &Transaction, marks: Option<&Highlights>) {
    let kind = if tx.amount.0 > 0 { "credit" } else { "debit" };
    // Writing into a String cannot fail.
    let _ = write!(
        html,
        "<tr role=\"row\" class=\"tx\" data-id=\"{}\">\n  <td role=\"cell\" class=\"date\"><time datetime=\"",
        tx.id
    );
    escape(html, &tx.transaction_date);
    let _ =
        write!(html, "\">{}</time></td>\n  <td role=\"cell\" class=\"desc\">", PageTime(tx.date));
    marked(html, &tx.description, marks.map(|m| &m.description[..]));
    html.push_str("</td>\n  <td role=\"cell\" class=\"vendor\">");
    marked(html, &tx.from_account_name, marks.map(|m| &m.from_account_name[..]));
    html.push_str("</td>\n  <td role=\"cell\" class=\"type\">");
    marked(html, &tx.transaction_type, marks.map(|m| &m.transaction_type[..]));
    let _ = write!(
        html,
        "</td>\n  <td role=\"cell\" class=\"num amount {kind}\">{}</td>\n  <td role=\"cell\" class=\"num\">{}</td>\n</tr>\n",
        tx.amount, tx.balance_after
    );
}

/// `text` escaped, with the UTF-16 `ranges` wrapped in `<mark>`.
fn marked(html: &mut String, text: &str, ranges: Option<&[(usize, usize)]>) {
    match ranges {
        None | Some([]) => escape(html, text),
        Some(ranges) => {
            for (piece, mark) in search::segments(text, ranges) {
                if mark {
                    html.push_str("<mark>");
                    escape(html, &piece);
                    html.push_str("</mark>");
                } else {
                    escape(html, &piece);
                }
            }
        }
    }
}

/// HTML-escapes `text` onto `html`: the characters Tera's autoescape replaces; the runs between
/// them are copied whole.
fn escape(html: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'', '/']) {
        html.push_str(&rest[..at]);
        html.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            _ => "&#x2F;",
        });
        rest = &rest[at + 1..];
    }
    html.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::rfc3339_ms;
    use crate::money::Cents;

    fn tx(description: &str) -> Transaction {
        Transaction {
            id: 1_700_000_000_000_123,
            account_id: "1".into(),
            from_account: "2".into(),
            from_account_name: "Joe's <Diner>".into(),
            to_account: "1".into(),
            to_account_name: "Bob".into(),
            amount: Cents(-1_234),
            description: description.into(),
            transaction_date: rfc3339_ms(1_700_000_000_000),
            date: 1_700_000_000_000,
            transaction_type: "card payment".into(),
            balance_after: Cents(123_456),
        }
    }

    #[test]
    fn every_text_is_escaped_and_only_our_markup_remains() {
        let html = rows([(&tx("<script>alert(\"x\")</script> & co"), None)]);
        assert!(html.contains(
            "<td role=\"cell\" class=\"desc\">&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2F;script&gt; &amp; co</td>"
        ));
        assert!(
            html.contains("<td role=\"cell\" class=\"vendor\">Joe&#x27;s &lt;Diner&gt;</td>"),
            "{html}"
        );
        assert!(
            html.contains("<td role=\"cell\" class=\"num amount debit\">-$12.34</td>"),
            "{html}"
        );
        assert!(html.contains("<td role=\"cell\" class=\"num\">$1,234.56</td>"), "{html}");
        assert!(html.contains("datetime=\"2023-11-14T22:13:20.000Z\">2023-11-14 22:13:20 UTC"));
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn search_marks_wrap_the_matches_only() {
        let t = tx("<b>Insomnia</b> cookies");
        let marks = Highlights {
            description: vec![(3, 11)],
            from_account_name: vec![],
            transaction_type: vec![(0, 4)],
        };
        let html = rows([(&t, Some(&marks))]);
        assert!(
            html.contains(
                "<td role=\"cell\" class=\"desc\">&lt;b&gt;<mark>Insomnia</mark>&lt;&#x2F;b&gt; cookies"
            ),
            "{html}"
        );
        assert!(
            html.contains("<td role=\"cell\" class=\"type\"><mark>card</mark> payment</td>"),
            "{html}"
        );
        assert_eq!(rows([]), "");
    }
}
