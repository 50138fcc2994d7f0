//! Protected applications (forward authentication) of the caller's
//! subtree: the list and the form to add or replace one.

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

/// The identity headers an application may receive, in the API's names.
const HEADERS: [&str; 5] = ["user", "subject", "tenant", "roles", "acr"];

pub(crate) async fn applications(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    // `?edit=<id>` fills the form with that application.
    let edit = serde_urlencoded::from_str::<Vec<(String, String)>>(q.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "edit")
        .map(|(_, v)| v);
    let r = applications_page(&c, &s, lang, View::Edit(edit)).await;
    with_lang_cookie(r, lang, set, &c)
}

/// What the page shows besides the list.
pub(crate) enum View {
    /// The form with the API's defaults, or filled with the application
    /// of this id.
    Edit(Option<String>),
    /// The outcome of a change (`applied`, `deleted_application`,
    /// `proposed`).
    Done(&'static str),
    /// A refusal of the API (its status and detail), the form as sent.
    Refused(StatusCode, String, Value),
    /// An action line the console could not read, the form as sent.
    BadLine(String, Value),
}

async fn applications_page(c: &Console, s: &Session, lang: Lang, view: View) -> Response {
    let (status, _, list) = c.api(s, Method::GET, "/applications", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &list);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    let (_, _, resources) = c
        .api(s, Method::GET, "/resources?limit=1000", None, None)
        .await;
    let (mut code, mut error, mut outcome, mut bad_line, mut form) =
        (StatusCode::OK, None, None, None, defaults());
    match view {
        View::Edit(Some(id)) => {
            let uri = format!("/applications/{}", urlencode(&id));
            let (found, tag, a) = c.api(s, Method::GET, &uri, None, None).await;
            if found == StatusCode::OK {
                form = form_of(&a, tag.as_deref());
            }
        }
        View::Edit(None) => {}
        View::Done(o) => outcome = Some(o),
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
    // The resource of the form is offered even when the list misses it.
    let mut resources = resources["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(r) = form["resource"].as_str().filter(|r| !r.is_empty()) {
        if !resources.iter().any(|x| x["id"].as_str() == Some(r)) {
            resources.push(json!({ "id": r }));
        }
    }
    c.render(
        lang,
        code,
        "applications.html",
        context! {
            page => "applications", csrf => s.csrf, applications => list["applications"],
            tenants => tenants["tenants"], resources, header_names => HEADERS,
            error, outcome, bad_line, form,
        },
    )
}

/// The form of a new application: the API's defaults.
fn defaults() -> Value {
    json!({
        "paths": "/", "actions": "GET = read\nHEAD = read\n* = write",
        "headers": HEADERS, "jwt": false,
    })
}

/// An application as the form's fields (with the ETag it was read with).
fn form_of(a: &Value, tag: Option<&str>) -> Value {
    let lines = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let actions = a["actions"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(m, x)| format!("{m} = {}", x.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    json!({
        "id": a["id"], "tenant": a["tenant"], "name": a["name"], "resource": a["resource"],
        "origins": lines(&a["origins"]), "paths": lines(&a["paths"]), "actions": actions,
        "headers": a["headers"], "jwt": a["jwt"].as_bool().unwrap_or(false), "etag": tag,
    })
}

/// Adds, replaces or deletes an application.
pub(crate) async fn applications_post(
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
    let uri = format!("/applications/{}", urlencode(&id));
    let view = match get("op").as_str() {
        "delete" => {
            let (status, _, v) = c.api(&s, Method::DELETE, &uri, None, None).await;
            if status == StatusCode::ACCEPTED {
                View::Done("proposed")
            } else if status.is_success() {
                View::Done("deleted_application")
            } else {
                View::Refused(status, detail(status, &v), defaults())
            }
        }
        "save" => {
            // One checkbox per header, each of its own name.
            let chosen: Vec<&str> = HEADERS
                .into_iter()
                .filter(|h| f.contains_key(&format!("header_{h}")))
                .collect();
            // The form as sent, shown again on a refusal.
            let sent = json!({
                "id": id, "tenant": get("tenant"), "name": get("name"),
                "resource": get("resource"), "origins": get("origins"), "paths": get("paths"),
                "actions": get("actions"), "headers": chosen, "jwt": f.contains_key("jwt"),
                "etag": get("etag"),
            });
            let actions =
                match mapping_lines(&get("actions"), |a| (!a.is_empty()).then(|| a.to_owned())) {
                    Ok(m) => m,
                    Err(line) => {
                        return applications_page(&c, &s, lang, View::BadLine(line, sent)).await;
                    }
                };
            let mut b = json!({
                "id": id, "tenant": sent["tenant"], "name": sent["name"],
                "resource": sent["resource"], "origins": lines_of(&get("origins")),
                "headers": chosen, "jwt": sent["jwt"],
            });
            // Empty paths or actions: the API's defaults.
            let paths = lines_of(&get("paths"));
            if !paths.is_empty() {
                b["paths"] = json!(paths);
            }
            if !actions.is_empty() {
                b["actions"] = Value::Object(actions);
            }
            // A replacement names the version the form was filled from.
            let tag = get("etag");
            let if_match = (!tag.is_empty()).then_some(tag.as_str());
            let (status, _, v) = c.api(&s, Method::PUT, &uri, Some(b), if_match).await;
            if status == StatusCode::ACCEPTED {
                // A path's protection need would drop: a proposal.
                View::Done("proposed")
            } else if status.is_success() {
                View::Done("applied")
            } else {
                View::Refused(status, detail(status, &v), sent)
            }
        }
        _ => return bad_form(&c, lang),
    };
    applications_page(&c, &s, lang, view).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::client::MOUNT;
    use crate::console::i18n::texts;
    use crate::console::state::templates;

    #[test]
    fn the_applications_page_lists_and_fills_the_form() {
        let a = json!({
            "id": "intranet-hitzacker", "tenant": "hitzacker-elbe", "name": "Intranet <Hitzacker>",
            "origins": ["https://intranet.hitzacker.example"], "paths": ["/", "/akten"],
            "resource": "ratsinfo-hitzacker",
            "actions": { "GET": "read", "HEAD": "read", "*": "write" },
            "headers": ["user", "roles"], "jwt": true,
        });
        let render = |form: Value, outcome: Option<&str>| {
            templates()
                .get_template("applications.html")
                .and_then(|t| {
                    t.render(context! {
                        t => texts(Lang::De), lang => "de", base => MOUNT, other_lang => "en",
                        page => "applications", csrf => "tok", applications => json!([a.clone()]),
                        tenants => json!([{ "id": "hitzacker-elbe", "name": "Hitzacker (Elbe), Stadt" }]),
                        resources => json!([{ "id": "ratsinfo-hitzacker", "name": "Ratsinfo" }]),
                        header_names => HEADERS, form, outcome,
                    })
                })
                .unwrap()
        };
        let html = render(form_of(&a, Some("\"abc\"")), Some("proposed"));
        assert!(html.contains("Intranet &lt;Hitzacker&gt;"));
        assert!(html.contains("aria-current=\"page\">Anwendungen"));
        assert!(html.contains("intranet.hitzacker.example</code>"));
        assert!(html.contains("GET = read") && html.contains("* = write"));
        assert!(html.contains("akten</code>"));
        assert!(html.contains(
            "id=\"a-h-user\" name=\"header_user\" type=\"checkbox\" value=\"on\" checked"
        ));
        assert!(!html
            .contains("id=\"a-h-acr\" name=\"header_acr\" type=\"checkbox\" value=\"on\" checked"));
        assert!(html.contains("aria-describedby=\"a-jwt-hint\" checked"));
        assert!(html.contains("value=\"ratsinfo-hitzacker\" selected"));
        assert!(html.contains("value=\"&quot;abc&quot;\""));
        assert!(html.contains("wartet auf Freigabe"));
        // A new application: the API's defaults, every header.
        let new = render(defaults(), None);
        assert!(new
            .contains("id=\"a-h-acr\" name=\"header_acr\" type=\"checkbox\" value=\"on\" checked"));
        assert!(!new.contains("aria-describedby=\"a-jwt-hint\" checked"));
    }
}
