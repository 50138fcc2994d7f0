//! The Kommunen's directories (AD, LDAP) of the caller's subtree: the list,
//! "Verbindung testen" per directory, and the form to add or replace one.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use interkom_types::Lang;
use minijinja::context;
use serde_json::{json, Value};

use super::upstreams::mapping_lines;
use crate::console::i18n::lang_of;
use crate::console::session::Session;
use crate::console::state::{
    bad_form, csrf_refused, detail, form, lines_of, problem_page, urlencode, with_lang_cookie,
    Console,
};

pub(crate) async fn directories(
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
    let r = directories_page(&c, &s, lang, View::Edit(edit)).await;
    with_lang_cookie(r, lang, set, &c)
}

/// What the page shows besides the list.
pub(crate) enum View {
    Edit(Option<String>),
    Done(&'static str),
    /// The result of "Verbindung testen" for a directory.
    Tested(String, Value),
    Refused(StatusCode, String, Value),
    BadLine(String, Value),
}

async fn directories_page(c: &Console, s: &Session, lang: Lang, view: View) -> Response {
    let (status, _, list) = c.api(s, Method::GET, "/directories", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    let (mut code, mut error, mut outcome, mut bad_line, mut form, mut tested) =
        (StatusCode::OK, None, None, None, json!({}), Value::Null);
    match view {
        View::Edit(id) => {
            if let Some(d) = list["directories"]
                .as_array()
                .and_then(|l| l.iter().find(|d| d["id"].as_str() == id.as_deref()))
            {
                form = form_of(d);
            }
        }
        View::Done(o) => outcome = Some(o),
        View::Tested(id, report) => tested = json!({ "id": id, "report": report }),
        View::Refused(st, d, f) => {
            code = if st.is_client_error() {
                st
            } else {
                StatusCode::BAD_GATEWAY
            };
            error = Some(d);
            form = f;
        }
        View::BadLine(line, f) => {
            code = StatusCode::BAD_REQUEST;
            bad_line = Some(line);
            form = f;
        }
    }
    c.render(
        lang,
        code,
        "directories.html",
        context! {
            page => "directories", csrf => s.csrf, directories => list["directories"],
            tenants => tenants["tenants"], error, outcome, bad_line, form, tested,
        },
    )
}

/// A directory as the form's fields.
fn form_of(d: &Value) -> Value {
    let joined = |v: &Value, sep: &str| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(sep)
            })
            .unwrap_or_default()
    };
    let roles = d["roles"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(g, r)| format!("{g} = {}", r.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    json!({
        "id": d["id"], "tenant": d["tenant"], "name": d["name"], "kind": d["kind"],
        "servers": joined(&d["servers"], "\n"), "base_dn": d["base_dn"],
        "bind_dn": d["bind_dn"], "ca_pem": d["ca_pem"], "domains": joined(&d["domains"], " "),
        "roles": roles,
    })
}

/// Adds, replaces, deletes or tests a directory.
pub(crate) async fn directories_post(
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
    let uri = format!("/directories/{}", urlencode(&id));
    let view = match get("op").as_str() {
        "test" => {
            let body = json!({ "username": get("username") });
            let (status, _, v) = c
                .api(&s, Method::POST, &format!("{uri}/test"), Some(body), None)
                .await;
            if status.is_success() {
                View::Tested(id, v)
            } else {
                View::Refused(status, detail(status, &v), json!({}))
            }
        }
        "delete" => {
            let (status, _, v) = c.api(&s, Method::DELETE, &uri, None, None).await;
            if status.is_success() {
                View::Done("deleted_directory")
            } else {
                View::Refused(status, detail(status, &v), json!({}))
            }
        }
        "save" => {
            let sent = json!({
                "id": id, "tenant": get("tenant"), "name": get("name"), "kind": get("kind"),
                "servers": get("servers"), "base_dn": get("base_dn"), "bind_dn": get("bind_dn"),
                "ca_pem": get("ca_pem"), "domains": get("domains"), "roles": get("roles"),
            });
            let roles =
                match mapping_lines(&get("roles"), |r| (!r.is_empty()).then(|| r.to_owned())) {
                    Ok(m) => m,
                    Err(line) => {
                        return directories_page(&c, &s, lang, View::BadLine(line, sent)).await;
                    }
                };
            // A replacement keeps what the form does not show (filters,
            // attributes, timeouts, sync) as they are.
            let (found, _, current) = c.api(&s, Method::GET, &uri, None, None).await;
            let mut b = match current {
                Value::Object(mut o) if found == StatusCode::OK => {
                    o.remove("has_bind_password");
                    Value::Object(o)
                }
                _ => json!({}),
            };
            for k in ["id", "tenant", "name", "kind", "base_dn", "bind_dn"] {
                b[k] = sent[k].clone();
            }
            b["servers"] = json!(lines_of(&get("servers")));
            b["domains"] = json!(get("domains")
                .split([' ', ',', '\n', '\t'])
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>());
            let ca = get("ca_pem");
            b["ca_pem"] = if ca.is_empty() {
                Value::Null
            } else {
                json!(ca)
            };
            b["roles"] = Value::Object(roles);
            let password = f.get("bind_password").map(String::as_str).unwrap_or("");
            if !password.is_empty() {
                b["bind_password"] = json!(password);
            }
            let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(b), None).await;
            if status == StatusCode::ACCEPTED {
                View::Done("proposed")
            } else if status.is_success() {
                View::Done("applied")
            } else {
                View::Refused(status, detail(status, &v), sent)
            }
        }
        _ => return bad_form(&c, lang),
    };
    directories_page(&c, &s, lang, view).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::client::MOUNT;
    use crate::console::i18n::texts;
    use crate::console::state::templates;

    #[test]
    fn the_directories_page_shows_a_connection_test_and_its_failure_in_words() {
        let d = json!({
            "id": "ad-hitzacker", "tenant": "hitzacker-elbe", "name": "Stadt <Hitzacker>",
            "kind": "active_directory", "servers": ["ldaps://dc1.hitzacker.example"],
            "base_dn": "DC=hitzacker,DC=example", "bind_dn": "svc@hitzacker.example",
            "roles": { "CN=Meldeamt,DC=hitzacker,DC=example": "meldebehoerde" },
            "domains": ["hitzacker.example"], "has_bind_password": true,
        });
        let render = |tested: Value| {
            templates()
                .get_template("directories.html")
                .and_then(|t| {
                    t.render(context! {
                        t => texts(Lang::De), lang => "de", base => MOUNT, other_lang => "en",
                        page => "directories", csrf => "tok", directories => json!([d.clone()]),
                        tenants => json!([{ "id": "hitzacker-elbe", "name": "Hitzacker (Elbe), Stadt" }]),
                        form => form_of(&d), tested,
                    })
                })
                .unwrap()
        };
        let ok = render(json!({ "id": "ad-hitzacker", "report": {
            "ok": true, "person": { "dn": "CN=Maria Müller,DC=x", "id": "g", "username": "m.mueller",
            "name": "Maria Müller", "mail": null, "refusal": null,
            "groups": ["cn=meldeamt,dc=hitzacker,dc=example"], "roles": ["meldebehoerde"] } } }));
        assert!(ok.contains("Stadt &lt;Hitzacker&gt;"));
        assert!(ok.contains("Verbindung testen"));
        assert!(ok.contains("meldebehoerde"));
        assert!(ok.contains("CN=Maria Müller,DC=x"));
        let failed = render(json!({ "id": "ad-hitzacker", "report": {
            "ok": false, "failure": "tls", "message": "invalid peer certificate: UnknownIssuer" } }));
        assert!(failed.contains("TLS"), "{failed}");
        assert!(failed.contains("UnknownIssuer"));
        assert!(failed.contains("role=\"alert\""));
    }
}
