//! The SAML identity services (BundID, Mein Unternehmenskonto, a Kommune's
//! own) of the caller's subtree: the list, and the form that registers one
//! or changes it — every name the service uses typed in, as the API takes
//! it; a change of what it is trusted with becomes a proposal.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use interkom_types::Lang;
use minijinja::context;
use serde_json::{json, Map, Value};

use crate::console::i18n::lang_of;
use crate::console::session::Session;
use crate::console::state::{
    bad_form, csrf_refused, detail, form, lines_of, problem_page, urlencode, with_lang_cookie,
    Console,
};

pub(crate) async fn saml_sources(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let edit = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "edit")
        .map(|(_, v)| v);
    let r = page(&c, &s, lang, View::Edit(edit)).await;
    with_lang_cookie(r, lang, set, &c)
}

enum View {
    /// The form: empty, or filled with the source of this id.
    Edit(Option<String>),
    /// `applied`, `deleted_source`, `proposed`.
    Done(&'static str),
    /// The API's status and detail, the form as sent.
    Refused(StatusCode, String, Value),
}

async fn page(c: &Console, s: &Session, lang: Lang, view: View) -> Response {
    let (status, _, list) = c.api(s, Method::GET, "/saml-sources", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    let (mut code, mut error, mut outcome, mut edit) = (StatusCode::OK, None, None, json!({}));
    match view {
        View::Edit(Some(id)) => {
            let uri = format!("/saml-sources/{}", urlencode(&id));
            let (found, tag, src) = c.api(s, Method::GET, &uri, None, None).await;
            if found == StatusCode::OK {
                edit = form_of(&src, tag.as_deref());
            }
        }
        View::Edit(None) => {}
        View::Done(o) => outcome = Some(o),
        View::Refused(st, d, sent) => {
            code = if st.is_client_error() {
                st
            } else {
                StatusCode::BAD_GATEWAY
            };
            error = Some(d);
            edit = sent;
        }
    }
    c.render(
        lang,
        code,
        "saml_sources.html",
        context! {
            page => "saml_sources", csrf => s.csrf,
            saml_sources => list["saml_sources"], tenants => tenants["tenants"],
            edit, error, outcome,
        },
    )
}

/// `name = value` lines of a map or of the levels.
fn pairs(v: &Value, levels: bool) -> String {
    if levels {
        return v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| Some(format!("{} = {}", l["name"].as_str()?, l["loa"].as_str()?)))
            .collect::<Vec<_>>()
            .join("\n");
    }
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, x)| Some(format!("{k} = {}", x.as_str()?)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A source as the form's fields (with the ETag it was read with).
fn form_of(src: &Value, tag: Option<&str>) -> Value {
    json!({
        "existing": true, "etag": tag,
        "id": src["id"], "tenant": src["tenant"], "name": src["name"],
        "description": src["description"], "population": src["population"],
        "metadata_url": src["metadata_url"].as_str().unwrap_or_default(),
        "binding": src["binding"], "levels": pairs(&src["levels"], true),
        "level_attribute": src["level_attribute"].as_str().unwrap_or_default(),
        "pseudonym_attribute": src["pseudonym_attribute"],
        "attributes": pairs(&src["attributes"], false),
        "extensions": src["extensions"].as_str().unwrap_or_default(),
        "requested_attribute": src["requested_attribute"].as_str().unwrap_or_default(),
        "force_authn": src["force_authn"], "clock_skew": src["clock_skew"],
        "entity_id": src["entity_id"],
    })
}

/// `name = value` lines, or the first line that is not one.
fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    lines_of(text)
        .into_iter()
        .map(|l| match l.rsplit_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            }
            _ => Err(l),
        })
        .collect()
}

/// Registers, changes or deletes a source.
pub(crate) async fn saml_sources_post(
    State(c): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (lang, _) = lang_of(&headers, None);
    let s = session_or_login!(c, headers);
    let Some(f) = form(&s, &body) else {
        return csrf_refused(&c, lang);
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("").trim().to_owned();
    let raw = |k: &str| f.get(k).cloned().unwrap_or_default();
    let id = get("id");
    let uri = format!("/saml-sources/{}", urlencode(&id));
    let view = match get("op").as_str() {
        "delete" => {
            let (status, _, v) = c.api(&s, Method::DELETE, &uri, None, None).await;
            if status.is_success() {
                View::Done("deleted_source")
            } else {
                View::Refused(status, detail(status, &v), json!({}))
            }
        }
        "save" => {
            let sent = json!({
                "existing": f.contains_key("existing"), "etag": get("etag"),
                "id": id, "tenant": get("tenant"), "name": get("name"),
                "description": get("description"), "population": get("population"),
                "metadata_url": get("metadata_url"), "binding": get("binding"),
                "levels": raw("levels"), "level_attribute": get("level_attribute"),
                "pseudonym_attribute": get("pseudonym_attribute"),
                "attributes": raw("attributes"), "extensions": raw("extensions"),
                "requested_attribute": raw("requested_attribute"),
                "force_authn": f.contains_key("force_authn"), "clock_skew": get("clock_skew"),
                "entity_id": get("entity_id"),
            });
            match body_of(&f, &get) {
                Err(line) => View::Refused(
                    StatusCode::BAD_REQUEST,
                    format!("not of the form `name = value`: {line}"),
                    sent,
                ),
                Ok(b) => {
                    let tag = get("etag");
                    let if_match = (!tag.is_empty()).then_some(tag.as_str());
                    let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(b), if_match).await;
                    if status == StatusCode::ACCEPTED {
                        View::Done("proposed")
                    } else if status.is_success() {
                        View::Done("applied")
                    } else {
                        View::Refused(status, detail(status, &v), sent)
                    }
                }
            }
        }
        _ => return bad_form(&c, lang),
    };
    page(&c, &s, lang, view).await
}

/// The API's body from the form.
fn body_of(
    f: &std::collections::HashMap<String, String>,
    get: &dyn Fn(&str) -> String,
) -> Result<Value, String> {
    let opt = |k: &str| {
        let v = get(k);
        (!v.is_empty()).then_some(v)
    };
    let levels: Vec<Value> = parse_pairs(f.get("levels").map_or("", String::as_str))?
        .into_iter()
        .map(|(name, loa)| json!({ "name": name, "loa": loa }))
        .collect();
    let attributes: Map<String, Value> =
        parse_pairs(f.get("attributes").map_or("", String::as_str))?
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
    let text = |k: &str| {
        f.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let source = json!({
        "id": get("id"), "tenant": get("tenant"), "name": get("name"),
        "description": get("description"), "population": get("population"),
        "metadata_url": opt("metadata_url"),
        "binding": opt("binding").unwrap_or_else(|| "post".into()),
        "levels": levels, "level_attribute": opt("level_attribute"),
        "pseudonym_attribute": get("pseudonym_attribute"), "attributes": attributes,
        "extensions": text("extensions"), "requested_attribute": text("requested_attribute"),
        "force_authn": f.contains_key("force_authn"),
        "clock_skew": get("clock_skew").parse::<i64>().unwrap_or(60),
    });
    let mut b = json!({ "source": source });
    if let Some(md) = text("metadata") {
        b["metadata"] = json!(md);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_goes_into_the_form_and_back() {
        let src = json!({
            "id": "bundid", "tenant": "lk-luechow-dannenberg", "name": "BundID",
            "description": "", "population": "citizen", "metadata_url": null, "binding": "post",
            "levels": [{ "name": "STORK-QAA-Level-1", "loa": "low" }, { "name": "STORK-QAA-Level-4", "loa": "high" }],
            "level_attribute": null, "pseudonym_attribute": "urn:oid:1.3.6.1.4.1.25484.494450.3",
            "attributes": { "given_name": "urn:oid:2.5.4.42" }, "extensions": null,
            "requested_attribute": null, "force_authn": false, "clock_skew": 60,
            "entity_id": "https://id.bund.de/idp", "metadata_fetched_at": 1,
        });
        let form = form_of(&src, Some("\"t\""));
        assert_eq!(
            form["levels"],
            "STORK-QAA-Level-1 = low\nSTORK-QAA-Level-4 = high"
        );
        assert_eq!(form["attributes"], "given_name = urn:oid:2.5.4.42");
        let f: std::collections::HashMap<String, String> = [
            ("id", "bundid"),
            ("tenant", "lk-luechow-dannenberg"),
            ("name", "BundID"),
            ("population", "citizen"),
            (
                "levels",
                "STORK-QAA-Level-1 = low\r\n\r\nSTORK-QAA-Level-4 = high",
            ),
            ("pseudonym_attribute", "urn:oid:1.3.6.1.4.1.25484.494450.3"),
            ("attributes", "given_name = urn:oid:2.5.4.42"),
            ("clock_skew", "60"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let get = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        let b = body_of(&f, &get).unwrap();
        assert_eq!(b["source"]["levels"], src["levels"]);
        assert_eq!(b["source"]["attributes"], src["attributes"]);
        assert!(b.get("metadata").is_none(), "no metadata: the copy kept");
        let mut bad = f.clone();
        bad.insert("levels".into(), "STORK-QAA-Level-1".into());
        assert_eq!(body_of(&bad, &get).unwrap_err(), "STORK-QAA-Level-1");
    }
}
