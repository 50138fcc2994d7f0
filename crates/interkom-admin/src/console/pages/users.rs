//! Users: list, create, lock, roles, password and second-factor resets.

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

pub(crate) async fn users(
    State(c): State<Console>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let (lang, set) = lang_of(&headers, q.as_deref());
    let s = session_or_login!(c, headers);
    let r = users_page(&c, &s, lang, None, None).await;
    with_lang_cookie(r, lang, set, &c)
}

pub(crate) async fn users_page(
    c: &Console,
    s: &Session,
    lang: Lang,
    notice: Option<Value>,
    error: Option<String>,
) -> Response {
    let (status, _, users) = c.api(s, Method::GET, "/users?limit=1000", None, None).await;
    if status != StatusCode::OK {
        return problem_page(c, lang, status, &users);
    }
    let (_, _, tenants) = c.api(s, Method::GET, "/tenants", None, None).await;
    c.render(
        lang,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "users.html",
        context! {
            page => "users", csrf => s.csrf, users => users["users"], tenants => tenants["tenants"],
            notice, error,
        },
    )
}

pub(crate) async fn users_post(
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
    match get("op").as_str() {
        "create" => {
            let mut b = json!({ "tenant": get("tenant"), "username": get("username") });
            if !get("name").is_empty() {
                b["name"] = json!(get("name"));
            }
            if !get("email").is_empty() {
                b["email"] = json!(get("email"));
            }
            if !get("role").is_empty() {
                b["roles"] = json!([get("role")]);
            }
            let (status, _, v) = c.api(&s, Method::POST, "/users", Some(b), None).await;
            if status == StatusCode::CREATED {
                let notice =
                    json!({ "username": v["user"]["username"], "password": v["initial_password"] });
                users_page(&c, &s, lang, Some(notice), None).await
            } else {
                users_page(&c, &s, lang, None, v["detail"].as_str().map(str::to_owned)).await
            }
        }
        op @ ("lock" | "unlock") => {
            let id = get("id");
            let uri = format!("/users/{}", urlencode(&id));
            let (_, tag, _) = c.api(&s, Method::GET, &uri, None, None).await;
            let (status, _, v) = c
                .api(
                    &s,
                    Method::PATCH,
                    &uri,
                    Some(json!({ "locked": op == "lock" })),
                    tag.as_deref(),
                )
                .await;
            let error =
                (status != StatusCode::OK).then(|| v["detail"].as_str().unwrap_or("").to_owned());
            users_page(&c, &s, lang, None, error).await
        }
        "reset" => {
            let uri = format!("/users/{}/password-reset", urlencode(&get("id")));
            let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
            match status {
                StatusCode::OK => {
                    let notice =
                        json!({ "username": get("username"), "password": v["initial_password"] });
                    users_page(&c, &s, lang, Some(notice), None).await
                }
                StatusCode::ACCEPTED => {
                    users_page(&c, &s, lang, Some(json!({ "proposed": true })), None).await
                }
                _ => users_page(&c, &s, lang, None, v["detail"].as_str().map(str::to_owned)).await,
            }
        }
        "second_factor_reset" => {
            let uri = format!("/users/{}/second-factor-reset", urlencode(&get("id")));
            let (status, _, v) = c.api(&s, Method::POST, &uri, None, None).await;
            if status == StatusCode::OK {
                let removed = v["removed"].as_bool().unwrap_or(false);
                let notice = json!({
                    "username": get("username"),
                    "second_factor": if removed { "removed" } else { "none" },
                });
                users_page(&c, &s, lang, Some(notice), None).await
            } else {
                users_page(&c, &s, lang, None, Some(detail(status, &v))).await
            }
        }
        op @ ("role_add" | "role_remove") => {
            let uri = format!(
                "/users/{}/roles/{}/{}",
                urlencode(&get("id")),
                urlencode(&get("tenant")),
                urlencode(&get("role"))
            );
            let method = if op == "role_add" {
                Method::PUT
            } else {
                Method::DELETE
            };
            let (status, _, v) = c.api(&s, method, &uri, None, None).await;
            match status {
                StatusCode::OK => users_page(&c, &s, lang, None, None).await,
                StatusCode::ACCEPTED => {
                    users_page(&c, &s, lang, Some(json!({ "proposed": true })), None).await
                }
                _ => users_page(&c, &s, lang, None, v["detail"].as_str().map(str::to_owned)).await,
            }
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
    fn the_users_page_says_what_a_second_factor_reset_did() {
        let env = templates();
        for (what, text) in [
            ("removed", "The second factor is removed."),
            ("none", "No second factor set up – nothing to remove."),
        ] {
            let html = env
                .get_template("users.html")
                .and_then(|t| {
                    t.render(context! {
                        t => texts(Lang::En), lang => "en", base => MOUNT, other_lang => "de",
                        page => "users", csrf => "tok", tenants => json!([]),
                        users => json!([{ "id": "u1", "username": "jan.meyer", "tenant": "hitzacker-elbe", "roles": [] }]),
                        notice => json!({ "username": "jan.meyer", "second_factor": what }),
                    })
                })
                .unwrap();
            assert!(html.contains(&format!("jan.meyer: {text}")), "{what}");
            assert!(html.contains("value=\"second_factor_reset\""));
        }
    }
}
