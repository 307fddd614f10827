//! Static assets, served from memory: every file under `static_dir` is read and compressed
//! (gzip and brotli) once, when the app starts, and answered without touching the disk.
//!
//! Each file has two names. Its **content-hashed** name (`js/live.3f9a1c2b7d.js`, the first 10
//! hex digits of the SHA-256 of its bytes) is what the pages link to (the templates' `asset()`
//! function): it never changes meaning, so it is cached for a year as `immutable`, and a new
//! release's file has a new name. Its **plain** name (`js/live.js`) stays for what cannot follow
//! a hash (the favicon, the manifest's icons, links from elsewhere): cached but revalidated
//! (`no-cache` with an `ETag`, so a repeat costs a 304).
//!
//! A client gets brotli when its `Accept-Encoding` allows it, else gzip, else the bytes as
//! they are; text is compressed, images are sent as they are (they are compressed already).
//! A phone's first visit to the dashboard is then about 90 KB on the wire instead of 290 KB.

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::{State, get};
use sha2::{Digest, Sha256};

/// How a client may take a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    /// The best coding `accept` (an `Accept-Encoding` value) allows: brotli, then gzip. A coding
    /// with `q=0` is refused; `*` allows any.
    pub fn choose(accept: &str) -> Encoding {
        Encoding::choose_from(std::iter::once(accept))
    }

    /// [`Encoding::choose`] over every `Accept-Encoding` header of a request, as one list.
    fn choose_from<'a>(headers: impl Iterator<Item = &'a str>) -> Encoding {
        let mut brotli = None;
        let mut gzip = None;
        let mut any = None;
        for item in headers.flat_map(|value| value.split(',')) {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let allowed = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .all(|q| q.trim().parse::<f32>().map_or(true, |q| q > 0.0));
            match name.as_str() {
                "br" => brotli = Some(allowed),
                "gzip" | "x-gzip" => gzip = Some(allowed),
                "*" => any = Some(allowed),
                _ => {}
            }
        }
        if brotli.or(any) == Some(true) {
            Encoding::Brotli
        } else if gzip.or(any) == Some(true) {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Encoding {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Encoding::choose_from(req.headers().get("Accept-Encoding")))
    }
}

/// One file, in every form it is sent in.
#[derive(Debug)]
struct Asset {
    content_type: ContentType,
    /// `"<hash>"`: the first 10 hex digits of the SHA-256 of the file, quoted.
    etag: String,
    plain: Arc<[u8]>,
    gzip: Option<Arc<[u8]>>,
    brotli: Option<Arc<[u8]>>,
}

/// Every static file by both its names (see the module's header).
#[derive(Debug, Default)]
pub struct Assets {
    /// Path under `/static/` → the file, and whether the name is the content-hashed one.
    files: HashMap<String, (Arc<Asset>, bool)>,
    /// Plain path → content-hashed path.
    hashed: HashMap<String, String>,
}

impl Assets {
    /// Reads and compresses every file under `dir`.
    pub fn load(dir: &Path) -> std::io::Result<Assets> {
        let mut assets = Assets::default();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(folder) = pending.pop() {
            for entry in std::fs::read_dir(&folder)? {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Some(name) = relative(dir, &path) {
                    assets.add(name, std::fs::read(&path)?)?;
                }
            }
        }
        Ok(assets)
    }

    fn add(&mut self, name: String, bytes: Vec<u8>) -> std::io::Result<()> {
        let digest = hex::encode(Sha256::digest(&bytes));
        let hash = digest.get(..10).unwrap_or_default().to_owned();
        let ext = Path::new(&name).extension().and_then(|e| e.to_str()).unwrap_or("");
        let content_type = ContentType::from_extension(ext).unwrap_or(ContentType::Binary);
        let compressible = content_type.is_javascript()
            || content_type.is_css()
            || content_type.is_json()
            || content_type.is_svg()
            || content_type.is_text()
            || ext == "ico"
            || ext == "md";
        let (gzip, brotli) = if compressible {
            let (gzip, brotli) = compressed(&digest, &bytes)?;
            (Some(gzip), Some(brotli))
        } else {
            (None, None)
        };
        let asset = Arc::new(Asset {
            content_type,
            etag: format!("\"{hash}\""),
            plain: bytes.into(),
            gzip,
            brotli,
        });
        let hashed_name = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.ends_with('/') => format!("{stem}.{hash}.{ext}"),
            _ => format!("{name}.{hash}"),
        };
        self.files.insert(hashed_name.clone(), (asset.clone(), true));
        self.files.insert(name.clone(), (asset, false));
        self.hashed.insert(name, hashed_name);
        Ok(())
    }

    /// The URL the pages link to for `name` (its content-hashed name under `/static/`).
    pub fn url(&self, name: &str) -> Option<String> {
        self.hashed.get(name).map(|hashed| format!("/static/{hashed}"))
    }

    /// The answer for `name` under `/static/`, in `encoding` where the file has it.
    fn answer(
        &self,
        name: &str,
        encoding: Encoding,
        if_none_match: Option<&str>,
    ) -> Option<Served> {
        let (asset, immutable) = self.files.get(name)?;
        let (body, coding) = match (encoding, &asset.brotli, &asset.gzip) {
            (Encoding::Brotli, Some(br), _) => (br.clone(), Some("br")),
            (Encoding::Brotli | Encoding::Gzip, _, Some(gz)) => (gz.clone(), Some("gzip")),
            _ => (asset.plain.clone(), None),
        };
        let fresh = if_none_match
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
        Some(Served {
            content_type: asset.content_type.clone(),
            etag: asset.etag.clone(),
            immutable: *immutable,
            varies: asset.gzip.is_some(),
            coding,
            body: (!fresh).then_some(body),
        })
    }
}

/// A file's gzip and brotli forms.
type Compressed = (Arc<[u8]>, Arc<[u8]>);

/// The gzip and brotli forms of `bytes` (whose SHA-256 is `digest`, in hex), made once per
/// process: brotli's best quality takes about a second for the chart library, and a test binary
/// starts hundreds of apps on the same files.
fn compressed(digest: &str, bytes: &[u8]) -> std::io::Result<Compressed> {
    static MADE: LazyLock<Mutex<HashMap<String, Compressed>>> = LazyLock::new(Mutex::default);
    if let Some(forms) = MADE.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(digest)
    {
        return Ok(forms.clone());
    }
    let forms: Compressed = (gzip(bytes)?.into(), brotli(bytes)?.into());
    let mut made = MADE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    made.insert(digest.to_owned(), forms.clone());
    Ok(forms)
}

/// `path` as a `/`-separated name relative to `dir`.
fn relative(dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(dir).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn brotli(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        // Quality 11 (the best): paid once at start, for every visit after. The window just
        // holds the file (2^10 to 2^24 bytes): a larger one compresses no better, and its
        // tables stay in the allocator's pages (with mimalloc, a 4 MiB window kept 95 MB of
        // RSS; this one, 23 MB).
        let window = bytes.len().next_power_of_two().trailing_zeros().clamp(10, 24);
        let mut writer = brotli::CompressorWriter::new(&mut out, 64 * 1024, 11, window);
        writer.write_all(bytes)?;
        writer.flush()?;
    }
    Ok(out)
}

/// An asset's answer (a 304's has no body).
pub struct Served {
    content_type: ContentType,
    etag: String,
    immutable: bool,
    varies: bool,
    coding: Option<&'static str>,
    body: Option<Arc<[u8]>>,
}

impl<'r> Responder<'r, 'static> for Served {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut res = Response::build();
        res.header(Header::new("ETag", self.etag));
        // (The security-headers fairing leaves an asset's Cache-Control as it is.)
        res.header(Header::new(
            "Cache-Control",
            if self.immutable { "public, max-age=31536000, immutable" } else { "public, no-cache" },
        ));
        if self.varies {
            res.header(Header::new("Vary", "Accept-Encoding"));
        }
        match self.body {
            Some(body) => {
                res.header(self.content_type);
                if let Some(coding) = self.coding {
                    res.header(Header::new("Content-Encoding", coding));
                }
                res.sized_body(body.len(), Cursor::new(body));
            }
            None => {
                res.status(Status::NotModified);
            }
        }
        res.ok()
    }
}

/// `If-None-Match`, when the request has one.
pub struct IfNoneMatch<'r>(Option<&'r str>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IfNoneMatch<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(IfNoneMatch(req.headers().get_one("If-None-Match")))
    }
}

/// A static file by either of its names; 404 for anything else.
#[get("/static/<path..>")]
pub fn static_file(
    path: PathBuf,
    encoding: Encoding,
    if_none_match: IfNoneMatch<'_>,
    assets: &State<Arc<Assets>>,
) -> Option<Served> {
    let name = relative(Path::new(""), &path)?;
    assets.answer(&name, encoding, if_none_match.0)
}

/// The favicon, where browsers look for it without being told.
#[get("/favicon.ico")]
pub fn favicon(
    encoding: Encoding,
    if_none_match: IfNoneMatch<'_>,
    assets: &State<Arc<Assets>>,
) -> Option<Served> {
    assets.answer("favicon.ico", encoding, if_none_match.0)
}

/// The templates' `asset(path="js/live.js")`: the content-hashed URL. An unknown file is an
/// error, so a page never links to something that is not there.
pub struct AssetUrl(pub Arc<Assets>);

impl rocket_dyn_templates::tera::Function for AssetUrl {
    fn call(
        &self,
        args: &HashMap<String, rocket_dyn_templates::tera::Value>,
    ) -> rocket_dyn_templates::tera::Result<rocket_dyn_templates::tera::Value> {
        let path = args.get("path").and_then(|p| p.as_str()).ok_or("asset() needs a path")?;
        self.0
            .url(path)
            .map(rocket_dyn_templates::tera::Value::String)
            .ok_or_else(|| format!("asset({path}): no such file under the static folder").into())
    }

    fn is_safe(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_best_coding_the_client_allows_is_chosen() {
        assert_eq!(Encoding::choose("gzip, deflate, br, zstd"), Encoding::Brotli);
        assert_eq!(Encoding::choose("gzip, deflate"), Encoding::Gzip);
        assert_eq!(Encoding::choose("br;q=0, gzip;q=0.5"), Encoding::Gzip);
        assert_eq!(Encoding::choose(""), Encoding::Identity);
        assert_eq!(Encoding::choose("identity"), Encoding::Identity);
        assert_eq!(Encoding::choose("*"), Encoding::Brotli);
        assert_eq!(Encoding::choose("*;q=0"), Encoding::Identity);
        assert_eq!(Encoding::choose("BR"), Encoding::Brotli);
    }

    #[test]
    fn a_file_has_a_content_hashed_name_and_its_plain_one() {
        let mut assets = Assets::default();
        assets.add("js/live.js".into(), b"console.log('live');".to_vec()).unwrap();
        assets.add("favicon.ico".into(), vec![0, 1, 2]).unwrap();
        assets.add("icons/icon.png".into(), vec![137, 80, 78, 71]).unwrap();
        let url = assets.url("js/live.js").unwrap();
        let hash = hex::encode(Sha256::digest(b"console.log('live');"));
        assert_eq!(url, format!("/static/js/live.{}.js", &hash[..10]));
        let hashed = assets.answer(&url["/static/".len()..], Encoding::Brotli, None).unwrap();
        assert!(hashed.immutable && hashed.varies);
        assert_eq!(hashed.coding, Some("br"));
        let plain = assets.answer("js/live.js", Encoding::Gzip, None).unwrap();
        assert!(!plain.immutable);
        assert_eq!(plain.coding, Some("gzip"));
        // An image is sent as it is, whatever the client accepts.
        let png = assets.answer("icons/icon.png", Encoding::Brotli, None).unwrap();
        assert_eq!((png.coding, png.varies), (None, false));
        // The same ETag again: a 304, no body.
        let etag = plain.etag.clone();
        let again = assets.answer("js/live.js", Encoding::Gzip, Some(&etag)).unwrap();
        assert!(again.body.is_none());
        assert!(assets.answer("js/nothing.js", Encoding::Gzip, None).is_none());
    }

    #[test]
    fn compressed_forms_decode_to_the_file() {
        use std::io::Read;
        let text = "redbank ".repeat(1000);
        let gz = gzip(text.as_bytes()).unwrap();
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
        let br = brotli(text.as_bytes()).unwrap();
        let mut back = String::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_string(&mut back).unwrap();
        assert_eq!(back, text);
        assert!(br.len() < text.len() / 10 && gz.len() < text.len() / 10);
    }
}
