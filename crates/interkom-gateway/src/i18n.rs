//! The texts of the login pages, German by default, English on request
//! (`ui_locales`, else `Accept-Language`).

use serde::Serialize;

pub(crate) use interkom_types::Lang;

/// The texts of a language.
pub(crate) trait LangTexts {
    fn texts(self) -> &'static Texts;
}

impl LangTexts for Lang {
    fn texts(self) -> &'static Texts {
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
    pub(crate) idp_heading: &'static str,
    pub(crate) idp_search: &'static str,
    pub(crate) idp_search_submit: &'static str,
    pub(crate) idp_last: &'static str,
    pub(crate) idp_none: &'static str,
    pub(crate) local_heading: &'static str,
    pub(crate) otp_title: &'static str,
    pub(crate) otp_intro: &'static str,
    pub(crate) otp_code: &'static str,
    pub(crate) otp_submit: &'static str,
    pub(crate) code_wrong: &'static str,
    pub(crate) signin_first: &'static str,
    pub(crate) totp_title: &'static str,
    pub(crate) totp_intro: &'static str,
    pub(crate) totp_secret: &'static str,
    pub(crate) totp_code: &'static str,
    pub(crate) totp_submit: &'static str,
    pub(crate) totp_active: &'static str,
    pub(crate) recovery_intro: &'static str,
    pub(crate) upstream_unreachable: &'static str,
    pub(crate) upstream_rejected: &'static str,
    pub(crate) upstream_invalid: &'static str,
    pub(crate) upstream_unknown_acr: &'static str,
    pub(crate) upstream_no_account: &'static str,
    pub(crate) upstream_expired: &'static str,
    pub(crate) passkey_failed: &'static str,
    pub(crate) passkey_title: &'static str,
    pub(crate) passkey_intro: &'static str,
    pub(crate) passkey_add: &'static str,
    pub(crate) passkey_use: &'static str,
    pub(crate) passkey_count: &'static str,
    pub(crate) passkey_unavailable: &'static str,
    pub(crate) passkey_added: &'static str,
    pub(crate) otp_heading: &'static str,
    pub(crate) passkey_login_intro: &'static str,
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
    idp_heading: "Mit dem Konto Ihrer Kommune anmelden",
    idp_search: "Kommune suchen",
    idp_search_submit: "Suchen",
    idp_last: "zuletzt gewählt",
    idp_none: "Keine Kommune gefunden.",
    local_heading: "Mit einem interkom-Konto anmelden",
    otp_title: "Zweiter Faktor",
    otp_intro: "Geben Sie den sechsstelligen Code aus Ihrer Authenticator-App oder einen Wiederherstellungscode ein, um fortzufahren zu",
    otp_code: "Code",
    otp_submit: "Bestätigen",
    code_wrong: "Der Code ist falsch oder schon verwendet worden.",
    signin_first: "Bitte melden Sie sich zuerst mit Benutzername und Passwort an; die Anmeldung darf höchstens 15 Minuten zurückliegen.",
    totp_title: "Authenticator-App einrichten",
    totp_intro: "Tragen Sie diesen Schlüssel in Ihre Authenticator-App ein (oder öffnen Sie den Link auf dem Telefon) und bestätigen Sie mit dem ersten Code.",
    totp_secret: "Schlüssel",
    totp_code: "Erster Code",
    totp_submit: "Einrichten",
    totp_active: "Ihr zweiter Faktor ist eingerichtet. Bei Verlust setzt ihn Ihre Administration zurück.",
    recovery_intro: "Ihre Wiederherstellungscodes. Jeder gilt einmal. Bewahren Sie sie sicher auf; sie werden nur jetzt angezeigt.",
    upstream_unreachable: "Der Anmeldedienst „{idp}“ ist nicht erreichbar oder antwortet nicht rechtzeitig. Bitte versuchen Sie es später erneut.",
    upstream_rejected: "Der Anmeldedienst „{idp}“ hat die Anmeldung abgelehnt.",
    upstream_invalid: "Der Anmeldedienst „{idp}“ hat eine ungültige Anmeldebestätigung geschickt. Die Anmeldung wurde aus Sicherheitsgründen abgebrochen.",
    upstream_unknown_acr: "Der Anmeldedienst „{idp}“ hat ein Vertrauensniveau gemeldet, das interkom nicht kennt.",
    upstream_no_account: "Für Ihr Konto beim Anmeldedienst „{idp}“ gibt es keinen Zugang zu interkom.",
    upstream_expired: "Die Antwort des Anmeldedienstes „{idp}“ gehört zu keiner wartenden Anmeldung (abgelaufen, schon verwendet oder aus einem anderen Browser). Bitte starten Sie die Anmeldung in Ihrer Anwendung erneut.",
    passkey_failed: "Der Passkey wurde nicht angenommen.",
    passkey_title: "Passkey einrichten",
    passkey_intro: "Ein Passkey meldet Sie mit Ihrem Gerät an (Sicherheitsschlüssel, Fingerabdruck oder Geräte-PIN).",
    passkey_add: "Passkey hinzufügen",
    passkey_use: "Mit Passkey bestätigen",
    passkey_count: "Eingerichtete Passkeys:",
    passkey_unavailable: "Passkeys sind für diese Adresse nicht verfügbar (sie brauchen einen Domainnamen).",
    passkey_added: "Der Passkey ist eingerichtet.",
    otp_heading: "Code aus der Authenticator-App",
    passkey_login_intro: "Bestätigen Sie die Anmeldung mit Ihrem Passkey, um fortzufahren zu",
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
    idp_heading: "Sign in with your municipality's account",
    idp_search: "Find your municipality",
    idp_search_submit: "Search",
    idp_last: "chosen last time",
    idp_none: "No municipality found.",
    local_heading: "Sign in with an interkom account",
    otp_title: "Second factor",
    otp_intro: "Enter the six-digit code from your authenticator app, or a recovery code, to continue to",
    otp_code: "Code",
    otp_submit: "Confirm",
    code_wrong: "The code is wrong or has been used already.",
    signin_first: "Please sign in with your username and password first, no more than 15 minutes ago.",
    totp_title: "Set up an authenticator app",
    totp_intro: "Add this key to your authenticator app (or open the link on your phone) and confirm with its first code.",
    totp_secret: "Key",
    totp_code: "First code",
    totp_submit: "Set up",
    totp_active: "Your second factor is set up. If you lose it, your administrators reset it.",
    recovery_intro: "Your recovery codes. Each works once. Keep them safe; they are shown only now.",
    upstream_unreachable: "The sign-in service “{idp}” cannot be reached or does not answer in time. Please try again later.",
    upstream_rejected: "The sign-in service “{idp}” refused the sign-in.",
    upstream_invalid: "The sign-in service “{idp}” sent an invalid confirmation. The sign-in was stopped for your security.",
    upstream_unknown_acr: "The sign-in service “{idp}” reported a level of assurance interkom does not know.",
    upstream_no_account: "Your account at the sign-in service “{idp}” gives no access to interkom.",
    upstream_expired: "The answer of the sign-in service “{idp}” belongs to no waiting sign-in (expired, used already, or from another browser). Please start signing in from your application again.",
    passkey_failed: "The passkey was not accepted.",
    passkey_title: "Set up a passkey",
    passkey_intro: "A passkey signs you in with your device (security key, fingerprint or device PIN).",
    passkey_add: "Add a passkey",
    passkey_use: "Confirm with a passkey",
    passkey_count: "Passkeys set up:",
    passkey_unavailable: "Passkeys are not available at this address (they need a domain name).",
    passkey_added: "The passkey is set up.",
    otp_heading: "Code from the authenticator app",
    passkey_login_intro: "Confirm the sign-in with your passkey to continue to",
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
