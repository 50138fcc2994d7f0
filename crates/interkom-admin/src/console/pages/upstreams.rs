//! Upstream identity providers of the caller's subtree.

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

pub(crate) async fn upstreams(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    // `?edit=<id>` fills the form with that upstream.
    let edit = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "edit")
        .map(|(_, v)| v);
    let r = upstreams_page(&c, &s, lang, UpstreamsView::Edit(edit)).await;
    with_lang_cookie(r, lang, set, &c)
}

/// What the upstreams page shows besides the list.
pub(crate) enum UpstreamsView {
    /// The form empty, or filled with the upstream of this id.
    Edit(Option<String>),
    /// The outcome of a change (`applied`, `deleted`).
    Done(&'static str),
    /// A refusal of the API (its status and detail), the form as sent.
    Refused(StatusCode, String, Value),
    /// A mapping line the console could not read, the form as sent.
    BadLine(&'static str, String, Value),
}

pub(crate) async fn upstreams_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    view: UpstreamsView,
) -> Response {
    let (status, _, list) = c.api(s, Method::GET, "/upstreams", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    let (mut code, mut error, mut outcome, mut bad_line, mut form) =
        (StatusCode::OK, None, None, None, json!({}));
    match view {
        UpstreamsView::Edit(id) => {
            if let Some(u) = list["upstreams"]
                .as_array()
                .and_then(|l| l.iter().find(|u| u["id"].as_str() == id.as_deref()))
            {
                form = upstream_form_of(u);
            }
        }
        UpstreamsView::Done(o) => outcome = Some(o),
        UpstreamsView::Refused(st, d, f) => {
            code = if st.is_client_error() {
                st
            } else {
                StatusCode::BAD_GATEWAY
            };
            error = Some(d);
            form = f;
        }
        UpstreamsView::BadLine(key, line, f) => {
            code = StatusCode::BAD_REQUEST;
            bad_line = Some(json!({ "key": key, "line": line }));
            form = f;
        }
    }
    c.render(
        lang,
        code,
        "upstreams.html",
        context! {
            page => "upstreams", csrf => s.csrf, upstreams => list["upstreams"],
            tenants => tenants["tenants"], error, outcome, bad_line, form,
        },
    )
}

/// An upstream as the form's fields.
pub(crate) fn upstream_form_of(u: &Value) -> Value {
    let lines = |m: &Value| -> String {
        m.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k} = {}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let domains: Vec<&str> = u["domains"]
        .as_array()
        .map(|d| d.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    json!({
        "id": u["id"], "tenant": u["tenant"], "name": u["name"], "issuer": u["issuer"],
        "client_id": u["client_id"], "domains": domains.join(" "), "acr": lines(&u["acr"]),
        "roles": lines(&u["roles"]), "groups": u["claims"]["groups"],
        "link_existing": u["link_existing"].as_bool().unwrap_or(false),
    })
}

/// Lines `key = value` as a map; a line that is not one (or repeats a
/// key) is the error. The value is the text after the last `=` (group
/// names may be distinguished names with `=` in them).
pub(crate) fn mapping_lines(
    text: &str,
    value: impl Fn(&str) -> Option<String>,
) -> Result<serde_json::Map<String, Value>, String> {
    let mut map = serde_json::Map::new();
    for line in lines_of(text) {
        let parsed = line.rsplit_once('=').and_then(|(k, v)| {
            let k = k.trim();
            let v = value(v.trim())?;
            (!k.is_empty() && !map.contains_key(k)).then(|| (k.to_owned(), v))
        });
        match parsed {
            Some((k, v)) => {
                map.insert(k, Value::String(v));
            }
            None => return Err(line),
        }
    }
    Ok(map)
}

/// A level of assurance as the API names it (German names accepted).
pub(crate) fn level(v: &str) -> Option<&'static str> {
    match v.to_lowercase().as_str() {
        "low" | "niedrig" => Some("low"),
        "substantial" | "substanziell" => Some("substantial"),
        "high" | "hoch" => Some("high"),
        _ => None,
    }
}

/// Adds, replaces or deletes an upstream.
pub(crate) async fn upstreams_post(
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
    let uri = format!("/upstreams/{}", urlencode(&get("id")));
    match get("op").as_str() {
        "delete" => {
            let (status, _, v) = c.api(&s, Method::DELETE, &uri, None, None).await;
            let view = if status.is_success() {
                UpstreamsView::Done("deleted")
            } else {
                UpstreamsView::Refused(status, detail(status, &v), json!({}))
            };
            upstreams_page(&c, &s, lang, view).await
        }
        "save" => {
            // The form as sent (without the secret), shown again on a refusal.
            let sent = json!({
                "id": get("id"), "tenant": get("tenant"), "name": get("name"),
                "issuer": get("issuer"), "client_id": get("client_id"),
                "domains": get("domains"), "acr": get("acr"), "roles": get("roles"),
                "groups": get("groups"), "link_existing": f.contains_key("link_existing"),
            });
            let acr = match mapping_lines(&get("acr"), |v| level(v).map(str::to_owned)) {
                Ok(m) => m,
                Err(line) => {
                    let view = UpstreamsView::BadLine("bad_acr_line", line, sent);
                    return upstreams_page(&c, &s, lang, view).await;
                }
            };
            let roles =
                match mapping_lines(&get("roles"), |r| (!r.is_empty()).then(|| r.to_owned())) {
                    Ok(m) => m,
                    Err(line) => {
                        let view = UpstreamsView::BadLine("bad_role_line", line, sent);
                        return upstreams_page(&c, &s, lang, view).await;
                    }
                };
            // A replacement keeps what the form does not show (scopes,
            // default level, timeouts, the other claims) as they are.
            let (found, _, current) = c.api(&s, Method::GET, &uri, None, None).await;
            let mut b = match current {
                Value::Object(mut o) if found == StatusCode::OK => {
                    o.remove("has_client_secret");
                    Value::Object(o)
                }
                _ => json!({}),
            };
            let domains: Vec<&str> = sent["domains"]
                .as_str()
                .unwrap_or_default()
                .split([' ', ',', '\n', '\t'])
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect();
            for k in [
                "id",
                "tenant",
                "name",
                "issuer",
                "client_id",
                "link_existing",
            ] {
                b[k] = sent[k].clone();
            }
            b["domains"] = json!(domains);
            b["acr"] = Value::Object(acr);
            b["roles"] = Value::Object(roles);
            let groups = get("groups");
            if b["claims"].is_object() {
                b["claims"]["groups"] = if groups.is_empty() {
                    Value::Null
                } else {
                    json!(groups)
                };
            } else if !groups.is_empty() {
                b["claims"] = json!({ "groups": groups });
            }
            let secret = f.get("client_secret").map(String::as_str).unwrap_or("");
            if !secret.is_empty() {
                b["client_secret"] = json!(secret);
            }
            let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(b), None).await;
            let view = if status == StatusCode::ACCEPTED {
                // A mapping to a four-eyes role: a proposal.
                UpstreamsView::Done("proposed")
            } else if status.is_success() {
                UpstreamsView::Done("applied")
            } else {
                UpstreamsView::Refused(status, detail(status, &v), sent)
            };
            upstreams_page(&c, &s, lang, view).await
        }
        _ => bad_form(&c, lang),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::client::MOUNT;
    use crate::console::i18n::texts;
    use crate::console::state::templates;

    #[test]
    fn mapping_lines_are_read_strictly() {
        let acr = |t: &str| mapping_lines(t, |v| level(v).map(str::to_owned));
        let m = acr("urn:hitzacker:eid = high\n\n  pwd=Niedrig \n").unwrap();
        assert_eq!(
            Value::Object(m),
            json!({ "urn:hitzacker:eid": "high", "pwd": "low" })
        );
        assert_eq!(acr("x = sehr hoch"), Err("x = sehr hoch".to_owned()));
        assert_eq!(acr("no level"), Err("no level".to_owned()));
        assert_eq!(acr(" = high"), Err("= high".to_owned()));
        assert_eq!(acr("a = low\na = high"), Err("a = high".to_owned()));
        // Group names may be distinguished names.
        let roles = mapping_lines("cn=ordnungsamt,ou=groups = sachbearbeitung", |r| {
            (!r.is_empty()).then(|| r.to_owned())
        })
        .unwrap();
        assert_eq!(
            Value::Object(roles),
            json!({ "cn=ordnungsamt,ou=groups": "sachbearbeitung" })
        );
    }

    #[test]
    fn the_upstreams_page_renders_its_mappings() {
        let u = json!({
            "id": "idp-hitzacker", "tenant": "hitzacker-elbe", "name": "Stadt <Hitzacker>",
            "issuer": "https://login.hitzacker.example", "client_id": "interkom",
            "scopes": ["openid"], "domains": ["hitzacker.example", "elbe.example"],
            "claims": { "subject": "sub", "groups": "groups" },
            "roles": { "ordnungsamt": "sachbearbeitung" },
            "acr": { "urn:hitzacker:eid": "high", "urn:hitzacker:pwd": "low" },
            "default_loa": "low", "link_existing": true, "create_accounts": true,
            "timeout_seconds": 10, "propagate_logout": true, "has_client_secret": true,
        });
        let env = templates();
        let html = env
            .get_template("upstreams.html")
            .and_then(|t| {
                t.render(context! {
                    t => texts(Lang::De), lang => "de", base => MOUNT, other_lang => "en",
                    page => "upstreams", csrf => "tok", upstreams => json!([u.clone()]),
                    tenants => json!([{ "id": "hitzacker-elbe", "name": "Hitzacker (Elbe), Stadt" }]),
                    form => upstream_form_of(&u), outcome => "deleted",
                    bad_line => json!({ "key": "bad_acr_line", "line": "x = y" }),
                })
            })
            .unwrap();
        assert!(html.contains("<code>urn:hitzacker:eid</code>"));
        assert!(html.contains("hoch"));
        assert!(html.contains("Stadt &lt;Hitzacker&gt;"));
        assert!(
            html.contains("urn:hitzacker:pwd = low\nurn:hitzacker:eid = high")
                || html.contains("urn:hitzacker:eid = high\nurn:hitzacker:pwd = low")
        );
        assert!(html.contains("value=\"hitzacker.example elbe.example\""));
        assert!(html.contains(" checked"));
        assert!(html.contains("Der Anmeldedienst ist gelöscht."));
        assert!(html.contains("<code>x = y</code>"));
        assert!(html.contains("aria-current=\"page\">Anmeldedienste"));
        // Without a form (no upstream to edit): empty fields.
        let empty = env
            .get_template("upstreams.html")
            .and_then(|t| {
                t.render(context! {
                    t => texts(Lang::En), lang => "en", base => MOUNT, other_lang => "de",
                    page => "upstreams", csrf => "tok", upstreams => json!([]),
                    tenants => json!([]), form => json!({}),
                })
            })
            .unwrap();
        assert!(empty.contains("No entries."));
    }
}
