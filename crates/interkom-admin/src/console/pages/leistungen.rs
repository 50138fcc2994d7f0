//! Leistungen of the caller's subtree, and the identity services their
//! pages offer: the list, the form to change one with its what-if (the
//! level, the services offered and the data sent, before and after, and
//! whether a second administrator must approve), and the SAML sources.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use interkom_types::Lang;
use minijinja::context;
use serde_json::{json, Value};

use crate::console::i18n::lang_of;
use crate::console::session::Session;
use crate::console::state::{
    bad_form, csrf_refused, detail, form, problem_page, urlencode, with_lang_cookie, Console,
};

pub(crate) async fn leistungen(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    // `?edit=<id>` shows the form to change that Leistung.
    let edit = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "edit")
        .map(|(_, v)| v);
    let view = match edit {
        Some(id) => View::Edit(id),
        None => View::List,
    };
    let r = page(&c, &s, lang, view).await;
    with_lang_cookie(r, lang, set, &c)
}

/// What the page shows besides the lists.
enum View {
    List,
    /// The form, filled with the Leistung of this id.
    Edit(String),
    /// The form as sent, with the what-if of it.
    Preview(Value, Value),
    /// The outcome of a change (`applied`, `deleted_leistung`, `proposed`).
    Done(&'static str),
    /// A refusal: the API's status and detail, the form as sent.
    Refused(StatusCode, String, Value),
}

async fn page(c: &Console, s: &Session, lang: Lang, view: View) -> Response {
    let (status, _, list) = c.api(s, Method::GET, "/leistungen", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, sources) = c.api(s, Method::GET, "/saml-sources", None, None).await;
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    let tenant_names: serde_json::Map<String, Value> = tenants["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["id"].as_str()?.to_owned(), t["name"].clone())))
        .collect();
    let (mut code, mut error, mut outcome) = (StatusCode::OK, None, None);
    let (mut edit, mut what_if) = (Value::Null, Value::Null);
    match view {
        View::List => {}
        View::Edit(id) => {
            let uri = format!("/leistungen/{}", urlencode(&id));
            let (found, tag, l) = c.api(s, Method::GET, &uri, None, None).await;
            if found == StatusCode::OK {
                edit = l;
                edit["etag"] = json!(tag);
            }
        }
        View::Preview(sent, w) => {
            edit = sent;
            what_if = w;
        }
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
        "leistungen.html",
        context! {
            page => "leistungen", csrf => s.csrf,
            leistungen => list["leistungen"], saml_sources => sources["saml_sources"],
            tenant_names, claim_names => interkom_policy::leistungen::CLAIMS,
            edit, what_if, error, outcome,
        },
    )
}

/// Previews, saves or deletes a Leistung.
pub(crate) async fn leistungen_post(
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
    let id = get("id");
    let uri = format!("/leistungen/{}", urlencode(&id));
    let op = get("op");
    if op == "delete" {
        let (status, _, v) = c.api(&s, Method::DELETE, &uri, None, None).await;
        let view = if status.is_success() {
            View::Done("deleted_leistung")
        } else {
            View::Refused(status, detail(status, &v), Value::Null)
        };
        return page(&c, &s, lang, view).await;
    }
    if op != "preview" && op != "save" {
        return bad_form(&c, lang);
    }
    // What the form does not show (tenant, client) is kept from the
    // Leistung as stored; If-Match makes sure it is the one the form was
    // filled from.
    let (found, _, mut b) = c.api(&s, Method::GET, &uri, None, None).await;
    if found != StatusCode::OK {
        let view = View::Refused(found, detail(found, &b), Value::Null);
        return page(&c, &s, lang, view).await;
    }
    b["name"] = json!(get("name"));
    b["loa"] = json!(get("loa"));
    b["populations"] = json!(["citizen", "business"]
        .into_iter()
        .filter(|p| f.contains_key(&format!("pop_{p}")))
        .collect::<Vec<_>>());
    let (_, _, sources) = c.api(&s, Method::GET, "/saml-sources", None, None).await;
    // The sources named stay named, also those outside the caller's view.
    let visible: Vec<String> = sources["saml_sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let mut named: Vec<String> = b["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .filter(|s| !visible.contains(s))
        .collect();
    named.extend(
        visible
            .into_iter()
            .filter(|s| f.contains_key(&format!("source_{s}"))),
    );
    b["sources"] = json!(named);
    b["claims"] = json!(interkom_policy::leistungen::CLAIMS
        .iter()
        .filter(|c| f.contains_key(&format!("claim_{c}")))
        .collect::<Vec<_>>());
    b["legal_basis"] = json!(f.get("legal_basis").map(|s| s.trim()).unwrap_or(""));
    let tag = get("etag");
    let mut sent = b.clone();
    sent["etag"] = json!(tag);
    let view = if op == "preview" {
        let (status, _, w) = c
            .api(&s, Method::POST, &format!("{uri}/what-if"), Some(b), None)
            .await;
        if status == StatusCode::OK {
            View::Preview(sent, w)
        } else {
            View::Refused(status, detail(status, &w), sent)
        }
    } else {
        let if_match = (!tag.is_empty()).then_some(tag.as_str());
        let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(b), if_match).await;
        if status == StatusCode::ACCEPTED {
            View::Done("proposed")
        } else if status.is_success() {
            View::Done("applied")
        } else {
            View::Refused(status, detail(status, &v), sent)
        }
    };
    page(&c, &s, lang, view).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::client::MOUNT;
    use crate::console::i18n::texts;
    use crate::console::state::templates;

    fn leistung() -> Value {
        json!({
            "id": "meldebescheinigung-elbtalaue", "name": "Meldebescheinigung <online>",
            "tenant": "sg-elbtalaue", "client": "meldebescheinigung-elbtalaue",
            "populations": ["citizen"], "loa": "high", "sources": ["bundid"],
            "claims": ["given_name", "address"], "legal_basis": "§ 18 BMG",
        })
    }

    #[test]
    fn the_page_lists_fills_the_form_and_shows_the_what_if() {
        let what_if = json!({
            "needs_approval": true,
            "before": { "loa": "high", "sources": [{ "id": "bundid", "name": "BundID", "max_loa": "high" }], "claims": ["address", "given_name"], "populations": ["citizen"] },
            "after": { "loa": "substantial", "sources": [{ "id": "bundid", "name": "BundID", "max_loa": "high" }], "claims": ["address", "email", "given_name"], "populations": ["citizen"] },
            "sources_gained": [], "sources_lost": [], "claims_gained": ["email"], "claims_lost": [],
        });
        let html = templates()
            .get_template("leistungen.html")
            .and_then(|t| {
                t.render(context! {
                    t => texts(Lang::De), lang => "de", base => MOUNT, other_lang => "en",
                    page => "leistungen", csrf => "tok", leistungen => json!([leistung()]),
                    saml_sources => json!([{ "id": "bundid", "name": "BundID", "tenant": "lk-luechow-dannenberg", "population": "citizen", "entity_id": "https://id.bund.de/idp", "levels": [{ "name": "STORK-QAA-Level-4", "loa": "high" }], "pseudonym_attribute": "bPK2" }]),
                    tenant_names => json!({ "sg-elbtalaue": "Samtgemeinde Elbtalaue" }),
                    claim_names => interkom_policy::leistungen::CLAIMS,
                    edit => leistung(), what_if, error => Value::Null, outcome => Value::Null,
                })
            })
            .unwrap();
        assert!(html.contains("Meldebescheinigung &lt;online&gt;"));
        assert!(html.contains("aria-current=\"page\">Leistungen"));
        assert!(html.contains("<td>Samtgemeinde Elbtalaue</td>"));
        assert!(html.contains("<td>hoch</td>"));
        assert!(html.contains("<td>Vorname, Anschrift</td>"));
        assert!(html.contains("value=\"high\" selected"));
        assert!(html.contains(
            "id=\"e-s-bundid\" name=\"source_bundid\" type=\"checkbox\" value=\"on\" checked"
        ));
        assert!(!html.contains(
            "id=\"e-c-email\" name=\"claim_email\" type=\"checkbox\" value=\"on\" checked"
        ));
        assert!(html.contains("zweite Administratorin"));
        assert!(html.contains("E-Mail-Adresse – kommt hinzu"));
        assert!(html.contains("<code>STORK-QAA-Level-4</code> → hoch"));
    }
}
