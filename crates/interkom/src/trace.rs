//! The span every request is logged in. tower-http's default records the
//! whole URI, and interkom's query strings carry codes, states, ID tokens
//! (`id_token_hint`) and usernames (`login_hint`): here only the path and
//! the names of the query's parameters are kept, with the values of a few
//! harmless ones.

use axum::http::{Request, Uri};
use tracing::Span;

/// Parameters whose values say how a request was made, not who made it or
/// with what credential: kept in the log.
const SHOWN: &[&str] = &[
    "response_type",
    "response_mode",
    "scope",
    "prompt",
    "max_age",
    "acr_values",
    "ui_locales",
    "code_challenge_method",
    "client_id",
    "error",
];

/// The request's URI as logged: the path, and the query with every value
/// not in [`SHOWN`] replaced.
pub fn redacted_uri(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_owned();
    };
    let pairs: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let shown = SHOWN.contains(&k.as_ref());
            let v = if shown { v } else { "[redacted]".into() };
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair(&k, &v)
                .finish()
        })
        .collect();
    format!("{}?{}", uri.path(), pairs.join("&"))
}

/// The span of a request (for `TraceLayer::make_span_with`).
pub fn request_span<B>(req: &Request<B>) -> Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        uri = %redacted_uri(req.uri()),
        version = ?req.version(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_states_and_hints_never_reach_the_log() {
        let uri: Uri = "/authorize?response_type=code&client_id=portal&state=geheim-1\
                        &login_hint=jan.meyer&id_token_hint=eyJhbGc.x.y&code=c0de&scope=openid+profile"
            .parse()
            .unwrap();
        let logged = redacted_uri(&uri);
        for secret in ["geheim-1", "jan.meyer", "eyJhbGc", "c0de"] {
            assert!(!logged.contains(secret), "{logged}");
        }
        assert!(logged
            .starts_with("/authorize?response_type=code&client_id=portal&state=%5Bredacted%5D"));
        assert!(logged.contains("scope=openid+profile"));
        assert_eq!(redacted_uri(&"/jwks".parse().unwrap()), "/jwks");
    }
}
