//! The request a proxy asks about, read from the headers it sets
//! (`X-Forwarded-Proto/Host/Method/Uri`, or nginx's `X-Original-*`), and
//! what the host's pages share: its origin, the return address, cookies.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use interkom_directory::applications::{normalize_origin, PROXY_PREFIX};

use crate::i18n::{Lang, LangTexts};
use crate::web::{self, Meta};
use crate::Gateway;

/// The request behind a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Original {
    /// `scheme://host[:port]`, as applications register it.
    pub(crate) origin: String,
    pub(crate) method: String,
    /// Path and query as sent.
    pub(crate) uri: String,
    /// The path decoded and without dot segments: what the prefixes of
    /// applications are matched against.
    pub(crate) path: String,
}

fn first<'h>(headers: &'h HeaderMap, names: &[&str]) -> Option<&'h str> {
    names.iter().find_map(|n| {
        headers
            .get(*n)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim())
            .filter(|v| !v.is_empty())
    })
}

/// The origin of the request on the protected host (the proxy names it).
pub(crate) fn origin(headers: &HeaderMap) -> Option<String> {
    let proto = first(headers, &["x-forwarded-proto"]).unwrap_or("https");
    let host = first(headers, &["x-forwarded-host", "host"])?;
    // A host and port only: nothing that would make the URL mean another.
    let host_ok = host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok || !matches!(proto, "http" | "https") {
        return None;
    }
    normalize_origin(&format!("{proto}://{host}")).ok()
}

/// The request behind a check; `None` when the proxy's headers do not
/// name one.
pub(crate) fn original(headers: &HeaderMap) -> Option<Original> {
    let origin = origin(headers)?;
    let method = first(headers, &["x-forwarded-method", "x-original-method"])
        .unwrap_or("GET")
        .to_owned();
    if method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let uri = headers
        .get("x-forwarded-uri")
        .or_else(|| headers.get("x-original-uri"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/")
        .to_owned();
    if !uri.starts_with('/') || uri.len() > 8192 {
        return None;
    }
    let path = normalize_path(uri.split(['?', '#']).next().unwrap_or("/"))?;
    Some(Original {
        origin,
        method,
        uri,
        path,
    })
}

/// The path as the application will see it: percent-escapes decoded
/// (except `%2F`, which stays a character, not a separator), empty and dot
/// segments resolved. `None` for what decodes to no valid text.
pub(crate) fn normalize_path(raw: &str) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == b'/' {
                out.extend_from_slice(b"%2F");
            } else {
                out.push(v);
            }
            i += 3;
        } else if b[i] == b'%' {
            return None;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    if decoded.contains('\\') || decoded.bytes().any(|c| c < 0x20) {
        return None;
    }
    let mut segs: Vec<&str> = Vec::new();
    for s in decoded.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut path = format!("/{}", segs.join("/"));
    if decoded.ends_with('/') && path.len() > 1 {
        path.push('/');
    }
    Some(path)
}

/// The return address after a login: an absolute URL on `origin` itself
/// (where the cookie is set), never anywhere else.
pub(crate) fn return_to(rd: &str, origin: &str) -> Option<String> {
    let u = url::Url::parse(rd).ok()?;
    if !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    (u.origin().ascii_serialization() == origin && !u.path().starts_with(PROXY_PREFIX))
        .then(|| u.to_string())
}

/// A cookie of the protected host: HttpOnly, SameSite=Lax, Secure on an
/// https origin (plain http is registrable on loopback only).
pub(crate) fn host_cookie(
    origin: &str,
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> HeaderValue {
    let secure = if origin.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let v =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// A page for the person, in their language (its stylesheet from
/// `/.interkom/assets/`, which the proxy passes to interkom).
pub(crate) fn page(
    gw: &Gateway,
    meta: &Meta,
    status: StatusCode,
    message: fn(&crate::i18n::Texts) -> &'static str,
) -> Response {
    let lang = Lang::negotiate(None, meta.accept_language.as_deref());
    let mut res = web::error_page_at(gw, lang, status, message(lang.texts()), None, PROXY_PREFIX);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_matched_as_the_application_reads_them() {
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(normalize_path("/a/b/").as_deref(), Some("/a/b/"));
        assert_eq!(normalize_path("/%61dmin/x").as_deref(), Some("/admin/x"));
        assert_eq!(
            normalize_path("/public/../admin").as_deref(),
            Some("/admin")
        );
        assert_eq!(normalize_path("//admin").as_deref(), Some("/admin"));
        assert_eq!(
            normalize_path("/public/%2e%2e/admin").as_deref(),
            Some("/admin")
        );
        assert_eq!(normalize_path("/a%2Fb").as_deref(), Some("/a%2Fb"));
        assert_eq!(normalize_path("/bad%zz"), None);
        assert_eq!(normalize_path("/bad%"), None);
        assert_eq!(normalize_path("/a\\b"), None);
    }

    #[test]
    fn the_return_address_stays_on_the_host() {
        let o = "https://intranet.example";
        assert!(return_to("https://intranet.example/x?y=1", o).is_some());
        assert!(return_to("https://evil.example/", o).is_none());
        assert!(return_to("https://intranet.example.evil.example/", o).is_none());
        assert!(return_to("https://user@intranet.example/", o).is_none());
        assert!(return_to("//evil.example/", o).is_none());
        assert!(return_to("/relative", o).is_none());
        assert!(return_to("javascript:alert(1)", o).is_none());
        assert!(return_to("https://intranet.example/.interkom/logout", o).is_none());
    }

    #[test]
    fn the_origin_comes_from_the_proxy_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("Intranet.Example"),
        );
        assert_eq!(origin(&h).as_deref(), Some("https://intranet.example"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("evil.example/@intranet.example"),
        );
        assert_eq!(origin(&h), None);
    }
}
