//! The texts of the login pages, German by default, English on request
//! (`ui_locales`, else `Accept-Language`).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    De,
    En,
}

impl Lang {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    /// `ui_locales` wins (first supported tag), then the highest-weighted
    /// supported language of `Accept-Language`; German otherwise.
    pub(crate) fn negotiate(ui_locales: Option<&str>, accept_language: Option<&str>) -> Lang {
        let tag = |t: &str| match t
            .trim()
            .split(['-', '_'])
            .next()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("de") => Some(Lang::De),
            Some("en") => Some(Lang::En),
            _ => None,
        };
        if let Some(l) = ui_locales.and_then(|u| u.split(' ').find_map(tag)) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept_language.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let Some(lang) = it.next().and_then(tag) else {
                continue;
            };
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::De)
    }

    pub(crate) fn texts(self) -> &'static Texts {
        match self {
            Lang::De => &DE,
            Lang::En => &EN,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Texts {
    pub(crate) login_title: &'static str,
    pub(crate) login_intro: &'static str,
    pub(crate) username: &'static str,
    pub(crate) password: &'static str,
    pub(crate) submit: &'static str,
    pub(crate) login_failed: &'static str,
    pub(crate) error_title: &'static str,
    pub(crate) bad_client: &'static str,
    pub(crate) bad_redirect: &'static str,
    pub(crate) bad_request: &'static str,
    pub(crate) expired: &'static str,
    pub(crate) logout_title: &'static str,
    pub(crate) logout_question: &'static str,
    pub(crate) logout_submit: &'static str,
    pub(crate) logged_out: &'static str,
    pub(crate) unavailable: &'static str,
}

static DE: Texts = Texts {
    login_title: "Anmelden",
    login_intro: "Melden Sie sich mit Ihrem Dienstkonto an, um fortzufahren zu",
    username: "Benutzername",
    password: "Passwort",
    submit: "Anmelden",
    login_failed: "Benutzername oder Passwort ist falsch, oder die Anmeldung ist nach zu vielen Fehlversuchen vorübergehend gesperrt.",
    error_title: "Anmeldung nicht möglich",
    bad_client: "Die anfragende Anwendung ist nicht registriert.",
    bad_redirect: "Die Rücksprungadresse der Anwendung ist nicht registriert. Aus Sicherheitsgründen wird nicht weitergeleitet.",
    bad_request: "Die Anfrage ist ungültig.",
    expired: "Die Anmeldeanfrage ist abgelaufen oder ungültig. Bitte starten Sie die Anmeldung in Ihrer Anwendung erneut.",
    logout_title: "Abmelden",
    logout_question: "Möchten Sie sich bei interkom abmelden?",
    logout_submit: "Abmelden",
    logged_out: "Sie sind abgemeldet.",
    unavailable: "Der Dienst ist vorübergehend nicht verfügbar. Bitte versuchen Sie es später erneut.",
};

static EN: Texts = Texts {
    login_title: "Sign in",
    login_intro: "Sign in with your work account to continue to",
    username: "Username",
    password: "Password",
    submit: "Sign in",
    login_failed: "The username or password is incorrect, or signing in is blocked for a while after too many failed attempts.",
    error_title: "Sign-in not possible",
    bad_client: "The requesting application is not registered.",
    bad_redirect: "The application's return address is not registered. For your security you are not redirected.",
    bad_request: "The request is invalid.",
    expired: "The sign-in request has expired or is invalid. Please start signing in from your application again.",
    logout_title: "Sign out",
    logout_question: "Do you want to sign out of interkom?",
    logout_submit: "Sign out",
    logged_out: "You are signed out.",
    unavailable: "The service is temporarily unavailable. Please try again later.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(Lang::negotiate(None, None), Lang::De);
        assert_eq!(Lang::negotiate(None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(
            Lang::negotiate(None, Some("fr, en;q=0.5, de;q=0.8")),
            Lang::De
        );
        assert_eq!(Lang::negotiate(Some("en"), Some("de")), Lang::En);
        assert_eq!(Lang::negotiate(Some("fr"), Some("xx")), Lang::De);
    }
}
