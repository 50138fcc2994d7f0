//! SAML service providers (Fachverfahren that speak only SAML) of the
//! caller's subtree: the list, the registration from metadata (given or
//! fetched once from a URL) and the form to change one by hand.

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
    bad_form, csrf_refused, detail, form, lines_of, problem_page, urlencode, with_lang_cookie,
    Console,
};

/// The attributes an SP may receive, in the API's names.
const ATTRIBUTES: [&str; 7] = [
    "username",
    "name",
    "mail",
    "tenant",
    "tenant_path",
    "level",
    "roles",
];

/// The NameID formats, in the API's names.
const NAME_ID_FORMATS: [&str; 4] = ["persistent", "transient", "email", "unspecified"];

/// The switches of an SP, in the API's names.
const SWITCHES: [&str; 4] = [
    "sign_response",
    "sign_assertion",
    "require_signed_requests",
    "idp_initiated",
];

/// The encryptions the form offers (`content+key_transport`), the
/// default first.
const ENCRYPTIONS: [&str; 3] = [
    "aes256-gcm+rsa-oaep-mgf1p",
    "aes256-gcm+rsa-oaep",
    "aes256-cbc+rsa-oaep-mgf1p",
];

pub(crate) async fn service_providers(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    // `?edit=<id>` shows the form to change that SP.
    let edit = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "edit")
        .map(|(_, v)| v);
    let r = page(&c, &s, lang, View::Edit(edit)).await;
    with_lang_cookie(r, lang, set, &c)
}

/// What the page shows besides the list.
pub(crate) enum View {
    /// The forms, the one by hand filled with the SP of this id.
    Edit(Option<String>),
    /// The outcome of a change (`applied`, `deleted_sp`, `proposed`).
    Done(&'static str),
    /// A refusal (the API's status and detail, or the console's own text
    /// key), the form as sent.
    Refused(StatusCode, Refusal, Sent),
}

/// Why a change was refused.
pub(crate) enum Refusal {
    /// The API's detail.
    Api(String),
    /// A text of the console.
    Text(&'static str),
}

/// The form as sent, shown again on a refusal.
pub(crate) enum Sent {
    Metadata(Value),
    Edit(Value),
    Nothing,
}

async fn page(c: &Console, s: &Session, lang: Lang, view: View) -> Response {
    let (status, _, list) = c
        .api(s, Method::GET, "/service-providers", None, None)
        .await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    let (_, _, resources) = c
        .api(s, Method::GET, "/resources?limit=1000", None, None)
        .await;
    let (mut code, mut error, mut error_text, mut outcome) = (StatusCode::OK, None, None, None);
    let (mut md, mut edit) = (json!({}), Value::Null);
    match view {
        View::Edit(Some(id)) => {
            let uri = format!("/service-providers/{}", urlencode(&id));
            let (found, tag, sp) = c.api(s, Method::GET, &uri, None, None).await;
            if found == StatusCode::OK {
                edit = form_of(&sp, tag.as_deref());
            }
        }
        View::Edit(None) => {}
        View::Done(o) => outcome = Some(o),
        View::Refused(st, why, sent) => {
            code = if st.is_client_error() {
                st
            } else {
                StatusCode::BAD_GATEWAY
            };
            match why {
                Refusal::Api(d) => error = Some(d),
                Refusal::Text(k) => error_text = Some(k),
            }
            match sent {
                Sent::Metadata(f) => md = f,
                Sent::Edit(f) => edit = f,
                Sent::Nothing => {}
            }
        }
    }
    // The resources of the forms are offered even when the list misses them.
    let mut resources = resources["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for f in [&md, &edit] {
        if let Some(r) = f["resource"].as_str().filter(|r| !r.is_empty()) {
            if !resources.iter().any(|x| x["id"].as_str() == Some(r)) {
                resources.push(json!({ "id": r }));
            }
        }
    }
    // The SP's encryption is offered even when the form does not name it.
    let mut encryptions: Vec<String> = ENCRYPTIONS.iter().map(|e| (*e).to_owned()).collect();
    if let Some(e) = edit["encryption"].as_str() {
        if e != "none" && !encryptions.iter().any(|x| x == e) {
            encryptions.push(e.to_owned());
        }
    }
    c.render(
        lang,
        code,
        "service_providers.html",
        context! {
            page => "service_providers", csrf => s.csrf,
            service_providers => list["service_providers"],
            tenants => tenants["tenants"], resources, attribute_names => ATTRIBUTES,
            name_id_formats => NAME_ID_FORMATS, switches => SWITCHES, encryptions,
            error, error_text, outcome, md, edit,
        },
    )
}

/// `content+key_transport` of an encryption, `none` for none.
fn encryption_of(e: &Value) -> String {
    match (e["content"].as_str(), e["key_transport"].as_str()) {
        (Some(c), Some(k)) => format!("{c}+{k}"),
        _ => "none".to_owned(),
    }
}

/// An SP as the fields of the form by hand (with the ETag it was read
/// with); what the form does not change is shown, not sent.
fn form_of(sp: &Value, tag: Option<&str>) -> Value {
    let acs = sp["acs_urls"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let mut f = json!({
        "id": sp["id"], "tenant": sp["tenant"], "name": sp["name"],
        "entity_id": sp["entity_id"], "acs_urls": acs,
        "resource": sp["resource"].as_str().unwrap_or_default(),
        "name_id_format": sp["name_id_format"].as_str().unwrap_or("persistent"),
        "attributes": sp["attributes"], "encryption": encryption_of(&sp["encryption"]),
        "has_encryption_cert": sp["encryption_cert"].is_string(),
        "etag": tag,
    });
    for k in SWITCHES {
        f[k] = json!(sp[k].as_bool().unwrap_or(false));
    }
    f
}

/// Registers from metadata, changes by hand, or deletes an SP.
pub(crate) async fn service_providers_post(
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
    let uri = format!("/service-providers/{}", urlencode(&id));
    let outcome = |status: StatusCode, v: &Value, sent: Sent| {
        if status == StatusCode::ACCEPTED {
            // The protection need its logins are decided on would drop.
            View::Done("proposed")
        } else if status.is_success() {
            View::Done("applied")
        } else {
            View::Refused(status, Refusal::Api(detail(status, v)), sent)
        }
    };
    let view = match get("op").as_str() {
        "delete" => {
            let (status, _, v) = c.api(&s, Method::DELETE, &uri, None, None).await;
            if status == StatusCode::ACCEPTED {
                View::Done("proposed")
            } else if status.is_success() {
                View::Done("deleted_sp")
            } else {
                View::Refused(status, Refusal::Api(detail(status, &v)), Sent::Nothing)
            }
        }
        "metadata" => {
            // The metadata keeps its own lines and spaces.
            let metadata = f.get("metadata").map(String::as_str).unwrap_or("");
            let url = get("metadata_url");
            let encrypt = f.contains_key("encrypt");
            let sent = json!({
                "id": id, "tenant": get("tenant"), "name": get("name"),
                "resource": get("resource"), "metadata": metadata, "metadata_url": url,
                "encrypt": encrypt,
            });
            let mut b = json!({ "tenant": sent["tenant"], "name": sent["name"] });
            match (metadata.trim().is_empty(), url.is_empty()) {
                (false, true) => b["metadata"] = json!(metadata),
                (true, false) => b["metadata_url"] = json!(url),
                _ => {
                    let v = View::Refused(
                        StatusCode::BAD_REQUEST,
                        Refusal::Text("metadata_either"),
                        Sent::Metadata(sent),
                    );
                    return page(&c, &s, lang, v).await;
                }
            }
            if !get("resource").is_empty() {
                b["resource"] = sent["resource"].clone();
            }
            if encrypt {
                b["encryption"] =
                    json!({ "content": "aes256-gcm", "key_transport": "rsa-oaep-mgf1p" });
            }
            let (status, _, v) = c
                .api(&s, Method::PUT, &format!("{uri}/metadata"), Some(b), None)
                .await;
            outcome(status, &v, Sent::Metadata(sent))
        }
        "save" => {
            let chosen: Vec<&str> = ATTRIBUTES
                .into_iter()
                .filter(|a| f.contains_key(&format!("attr_{a}")))
                .collect();
            let tag = get("etag");
            // The form as sent (with what it shows but does not change).
            let mut sent = json!({
                "id": id, "tenant": get("tenant"), "entity_id": get("entity_id"),
                "name": get("name"), "acs_urls": get("acs_urls"), "resource": get("resource"),
                "name_id_format": get("name_id_format"), "attributes": chosen,
                "encryption": get("encryption"),
                "has_encryption_cert": f.contains_key("has_encryption_cert"), "etag": tag,
            });
            for k in SWITCHES {
                sent[k] = json!(f.contains_key(k));
            }
            // What the form does not show is kept from the SP as stored;
            // If-Match makes sure it is the one the form was filled from.
            let (found, _, mut b) = c.api(&s, Method::GET, &uri, None, None).await;
            if found != StatusCode::OK {
                let v = View::Refused(found, Refusal::Api(detail(found, &b)), Sent::Edit(sent));
                return page(&c, &s, lang, v).await;
            }
            b["name"] = sent["name"].clone();
            b["acs_urls"] = json!(lines_of(&get("acs_urls")));
            b["resource"] = match get("resource") {
                r if r.is_empty() => Value::Null,
                r => json!(r),
            };
            b["name_id_format"] = sent["name_id_format"].clone();
            b["attributes"] = json!(chosen);
            b["encryption"] = match get("encryption").split_once('+') {
                Some((content, key_transport)) => {
                    json!({ "content": content, "key_transport": key_transport })
                }
                None => Value::Null,
            };
            for k in SWITCHES {
                b[k] = sent[k].clone();
            }
            let if_match = (!tag.is_empty()).then_some(tag.as_str());
            let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(b), if_match).await;
            outcome(status, &v, Sent::Edit(sent))
        }
        _ => return bad_form(&c, lang),
    };
    page(&c, &s, lang, view).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::client::MOUNT;
    use crate::console::i18n::texts;
    use crate::console::state::templates;

    fn sp() -> Value {
        json!({
            "id": "ratsinfo-saml", "tenant": "hitzacker-elbe", "name": "Ratsinfo <SAML>",
            "entity_id": "https://ratsinfo.hitzacker.example/saml",
            "acs_urls": ["https://ratsinfo.hitzacker.example/acs", "https://ratsinfo.hitzacker.example/acs2"],
            "slo_url": null, "signing_certs": [], "encryption_cert": "MIIB",
            "encryption": { "content": "aes128-gcm", "key_transport": "rsa-oaep" },
            "name_id_format": "transient", "attributes": ["username", "roles"],
            "resource": "ratsinfo-hitzacker", "sign_response": false, "sign_assertion": true,
            "require_signed_requests": false, "idp_initiated": true,
        })
    }

    fn render(md: Value, edit: Value, outcome: Option<&str>, error_text: Option<&str>) -> String {
        let edit_enc = edit["encryption"].as_str().map(str::to_owned);
        let mut encryptions: Vec<String> = ENCRYPTIONS.iter().map(|e| (*e).to_owned()).collect();
        if let Some(e) = edit_enc.filter(|e| e != "none") {
            encryptions.push(e);
        }
        templates()
            .get_template("service_providers.html")
            .and_then(|t| {
                t.render(context! {
                    t => texts(Lang::De), lang => "de", base => MOUNT, other_lang => "en",
                    page => "service_providers", csrf => "tok", service_providers => json!([sp()]),
                    tenants => json!([{ "id": "hitzacker-elbe", "name": "Hitzacker (Elbe), Stadt" }]),
                    resources => json!([{ "id": "ratsinfo-hitzacker", "name": "Ratsinfo" }]),
                    attribute_names => ATTRIBUTES, name_id_formats => NAME_ID_FORMATS,
                    switches => SWITCHES, encryptions, md, edit, outcome, error_text,
                })
            })
            .unwrap()
    }

    #[test]
    fn the_page_lists_and_fills_the_form_by_hand() {
        let html = render(
            json!({}),
            form_of(&sp(), Some("\"abc\"")),
            Some("proposed"),
            None,
        );
        assert!(html.contains("Ratsinfo &lt;SAML&gt;"));
        assert!(html.contains("aria-current=\"page\">SAML-Anwendungen"));
        assert!(html.contains("ratsinfo.hitzacker.example&#x2f;acs2</code>"));
        assert!(html.contains("aes128-gcm"));
        assert!(html.contains("https:&#x2f;&#x2f;ratsinfo.hitzacker.example&#x2f;acs\nhttps:"));
        assert!(html.contains("value=\"transient\" selected"));
        assert!(html.contains("value=\"aes128-gcm+rsa-oaep\" selected"));
        assert!(html.contains(
            "id=\"e-a-roles\" name=\"attr_roles\" type=\"checkbox\" value=\"on\" checked"
        ));
        assert!(!html
            .contains("id=\"e-a-mail\" name=\"attr_mail\" type=\"checkbox\" value=\"on\" checked"));
        assert!(html.contains(
            "id=\"e-idp_initiated\" name=\"idp_initiated\" type=\"checkbox\" value=\"on\" checked"
        ));
        assert!(!html.contains(
            "id=\"e-sign_response\" name=\"sign_response\" type=\"checkbox\" value=\"on\" checked"
        ));
        assert!(html.contains("value=\"&quot;abc&quot;\""));
        assert!(html.contains("wartet auf Freigabe"));
        // No SP chosen: no form by hand; the metadata form as sent.
        let new = render(
            json!({ "encrypt": true }),
            Value::Null,
            None,
            Some("metadata_either"),
        );
        assert!(!new.contains("name=\"acs_urls\""));
        assert!(new
            .contains("id=\"m-encrypt\" name=\"encrypt\" type=\"checkbox\" value=\"on\" aria-describedby=\"m-encrypt-hint\" checked"));
        assert!(new.contains("Entweder"));
        assert!(!new.contains("aes128-gcm+rsa-oaep"));
    }
}
