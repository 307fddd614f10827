//! Money: integer cents inside; a decimal number of dollars with exactly two decimals only at
//! the JSON boundary (the seed's API shape), and `$1,234.56` on pages.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An amount of money in integer cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cents(pub i64);

impl Cents {
    /// `$100,000.00` / `-$223.28` for pages (see the `Display` impl).
    pub fn display(self) -> String {
        self.to_string()
    }
}

/// `$100,000.00` / `-$223.28`: dollars grouped by thousands, written without building the
/// number as a string first (a page of rows writes dozens).
impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let abs = self.0.unsigned_abs();
        let (dollars, cents) = (abs / 100, abs % 100);
        f.write_str(if self.0 < 0 { "-$" } else { "$" })?;
        // Groups of three from the left: the first may be shorter.
        let mut scale = 1;
        while dollars / scale >= 1000 {
            scale *= 1000;
        }
        write!(f, "{}", dollars / scale)?;
        while scale > 1 {
            scale /= 1000;
            write!(f, ",{:03}", dollars / scale % 1000)?;
        }
        write!(f, ".{cents:02}")
    }
}

/// JSON: a number with exactly two decimals (`-223.28`, `100000.00`), written verbatim. Formatted
/// on the stack: a page of transactions writes a few dozen of these.
impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::io::Write;
        // "-92233720368547758.08" is 21 bytes.
        let mut buf = [0u8; 24];
        let mut out = &mut buf[..];
        let abs = self.0.unsigned_abs();
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(out, "{sign}{}.{:02}", abs / 100, abs % 100).map_err(serde::ser::Error::custom)?;
        let len = 24 - out.len();
        let text = std::str::from_utf8(&buf[..len]).map_err(serde::ser::Error::custom)?;
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// In the API document: a decimal number of dollars with two decimals.
impl utoipa::PartialSchema for Cents {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .description(Some("US dollars with two decimals (integer cents inside)"))
            .examples([serde_json::json!(-223.28)])
            .into()
    }
}

impl utoipa::ToSchema for Cents {}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let dollars = f64::deserialize(d)?;
        Ok(Cents((dollars * 100.0).round() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_format_for_pages_and_json() {
        assert_eq!(Cents(10_000_000).display(), "$100,000.00");
        assert_eq!(Cents(-22_328).display(), "-$223.28");
        assert_eq!(Cents(5).display(), "$0.05");
        assert_eq!(Cents(123_456_789).display(), "$1,234,567.89");
        assert_eq!(Cents(100_000).display(), "$1,000.00");
        assert_eq!(Cents(99_999).display(), "$999.99");
        assert_eq!(Cents(i64::MIN).display(), "-$92,233,720,368,547,758.08");
        assert_eq!(serde_json::to_string(&Cents(-22_328)).unwrap_or_default(), "-223.28");
        assert_eq!(serde_json::to_string(&Cents(10_000_000)).unwrap_or_default(), "100000.00");
        assert_eq!(serde_json::to_string(&Cents(-5)).unwrap_or_default(), "-0.05");
        assert_eq!(serde_json::to_string(&Cents(0)).unwrap_or_default(), "0.00");
        let extremes = serde_json::to_string(&[Cents(i64::MIN), Cents(i64::MAX)]);
        assert_eq!(extremes.unwrap_or_default(), "[-92233720368547758.08,92233720368547758.07]");
        let back: Cents = serde_json::from_str("99776.72").unwrap_or_default();
        assert_eq!(back, Cents(9_977_672));
    }
}
