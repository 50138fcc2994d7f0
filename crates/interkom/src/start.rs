//! The start page at `/`: what someone who opens the address finds — the
//! console, the discovery document, their own account pages and, in the
//! demo, a login to try. Static per node: built once when the router is.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML (the issuer comes from configuration).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for a node whose OpenID Provider is at `issuer`.
pub fn page(issuer: &str, demo: bool) -> String {
    let base = issuer.trim_end_matches('/');
    let origin = url::Url::parse(issuer)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| base.to_owned());
    let link = |href: String, text: &str| format!("<li><a href=\"{}\">{text}</a></li>", esc(&href));
    let mut items = vec![
        link(
            format!("{origin}/admin/console/"),
            "Verwaltungskonsole / admin console",
        ),
        link(
            format!("{base}/.well-known/openid-configuration"),
            "OpenID Connect Discovery",
        ),
        link(
            format!("{base}/account/consents"),
            "Ihre Zustimmungen / your consents",
        ),
        link(
            format!("{base}/account/totp"),
            "Zweiter Faktor (TOTP) / second factor",
        ),
    ];
    if demo {
        items.push(link(
            format!(
                "{base}/authorize?response_type=code&client_id=serviceportal\
                 &redirect_uri=http://localhost:9000/callback&scope=openid%20profile&state=abc"
            ),
            "Demo: Anmeldung am Serviceportal (jan.meyer / Hitzacker-Demo-2026!)",
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"de\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>interkom</title>\
         <link rel=\"stylesheet\" href=\"{css}\"></head>\n<body><main>\
         <h1>interkom</h1><p>Identitäts- und Zugriffsvermittlung für die Kommunen \
         des Landkreises / identity and access broker of the county.</p>\
         <ul>{items}</ul></main></body></html>\n",
        css = esc(&format!("{base}/assets/interkom.css")),
        items = items.join(""),
    )
}

/// The handler, with the page built once.
pub fn handler(page: String) -> impl Fn() -> std::future::Ready<Response> + Clone {
    move || {
        std::future::ready(
            (
                [(header::CACHE_CONTROL, "public, max-age=300")],
                Html(page.clone()),
            )
                .into_response(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_page_links_what_a_newcomer_needs() {
        let p = page("http://127.0.0.1:8080", true);
        for link in [
            "http://127.0.0.1:8080/admin/console/",
            "http://127.0.0.1:8080/.well-known/openid-configuration",
            "client_id=serviceportal",
        ] {
            assert!(p.contains(link), "{link}");
        }
        assert!(!page("https://login.example/kreis", false).contains("serviceportal"));
        assert!(page("https://login.example/kreis", false)
            .contains("https://login.example/admin/console/"));
    }
}
