//! The console's texts, German by default, English when asked (`?lang=en`,
//! remembered in a cookie); the language itself is interkom's one `Lang`.

use axum::http::{header, HeaderMap};
use interkom_types::Lang;
use serde_json::Value;

pub(crate) const LANG_COOKIE: &str = "interkom_console_lang";

pub(crate) fn lang_of(headers: &HeaderMap, query: Option<&str>) -> (Lang, bool) {
    let asked = query.and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v)
    });
    if let Some(l) = asked {
        return (if l == "en" { Lang::En } else { Lang::De }, true);
    }
    let cookie = interkom_types::cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        LANG_COOKIE,
    );
    (
        if cookie.as_deref() == Some("en") {
            Lang::En
        } else {
            Lang::De
        },
        false,
    )
}

/// The console's texts.
pub(crate) fn texts(lang: Lang) -> Value {
    let de = lang == Lang::De;
    let map: serde_json::Map<String, Value> = TEXTS
        .iter()
        .map(|(k, d, e)| {
            (
                (*k).to_owned(),
                Value::String(if de { d } else { e }.to_string()),
            )
        })
        .collect();
    Value::Object(map)
}

/// Key, German, English.
pub(crate) const TEXTS: &[(&str, &str, &str)] = &[
    ("console", "Verwaltungskonsole", "Administration console"),
    ("skip", "Zum Inhalt springen", "Skip to content"),
    ("nav", "Bereiche", "Sections"),
    ("overview", "Übersicht", "Overview"),
    ("users", "Benutzer", "Users"),
    ("policy", "Richtlinie", "Policy"),
    ("proposals", "Freigaben", "Approvals"),
    ("grants", "Berechtigungen", "Grants"),
    ("resources", "Ressourcen", "Resources"),
    ("clients", "Fachverfahren", "Applications"),
    ("audit", "Protokoll", "Audit trail"),
    ("logout", "Abmelden", "Log out"),
    ("language", "English", "Deutsch"),
    ("tenants", "Ihr Verwaltungsbereich", "Your administrative subtree"),
    ("tenant", "Mandant", "Tenant"),
    ("name", "Name", "Name"),
    ("level", "Ebene", "Level"),
    ("chain", "Prüfkette des Protokolls", "Audit chain"),
    ("chain_ok", "unverändert", "intact"),
    ("chain_bad", "verändert ab Nummer", "altered from number"),
    ("chain_none", "nur für Sicherheitsbeauftragte", "security staff only"),
    ("username", "Benutzername", "Username"),
    ("email", "E-Mail", "E-mail"),
    ("roles", "Rollen", "Roles"),
    ("state", "Status", "State"),
    ("locked", "gesperrt", "locked"),
    ("active", "aktiv", "active"),
    ("lock", "Sperren", "Lock"),
    ("unlock", "Entsperren", "Unlock"),
    ("create_user", "Benutzer anlegen", "Create user"),
    ("create", "Anlegen", "Create"),
    ("role_optional", "Rolle im Mandanten (optional)", "Role in the tenant (optional)"),
    ("initial_password", "Erstkennwort (nur jetzt sichtbar)", "Initial password (shown only now)"),
    ("lines", "Zeilen der Richtlinie", "Policy lines"),
    ("line", "Zeile", "Line"),
    ("source", "Herkunft", "Source"),
    ("edit_policy", "Richtlinie ändern", "Change the policy"),
    ("add_lines", "Hinzuzufügende Zeilen (eine je Zeile)", "Lines to add (one per line)"),
    ("remove_lines", "Zu entfernende Zeilen (eine je Zeile)", "Lines to remove (one per line)"),
    ("comment", "Begründung", "Reason"),
    ("preview", "Vorschau der Auswirkungen", "Preview the effect"),
    ("apply", "Anwenden", "Apply"),
    ("flips", "Entscheidungen, die sich ändern würden", "Decisions that would change"),
    ("no_flips", "Keine Entscheidung ändert sich.", "No decision changes."),
    ("subject", "Person", "Subject"),
    ("action", "Aktion", "Action"),
    ("resource", "Ressource", "Resource"),
    ("before", "vorher", "before"),
    ("after", "nachher", "after"),
    ("allowed", "erlaubt", "allowed"),
    ("denied", "verweigert", "denied"),
    ("needs_approval", "Betrifft Daten mit Schutzbedarf „sehr hoch“: wird erst nach Freigabe durch eine zweite Administratorin oder einen zweiten Administrator wirksam.", "Touches data with protection need “sehr hoch”: takes effect only once a second administrator approves."),
    ("applied", "Die Änderung ist wirksam.", "The change is in effect."),
    ("proposed", "Die Änderung wartet auf Freigabe.", "The change awaits approval."),
    ("second_admin", "Eine Zuordnung zur Rolle „admin“ wird erst wirksam, wenn eine zweite Administratorin oder ein zweiter Administrator zustimmt.", "A mapping to the role “admin” takes effect only once a second administrator approves."),
    ("pending", "Offene Freigaben", "Pending approvals"),
    ("kind", "Art", "Kind"),
    ("proposer", "Vorgeschlagen von", "Proposed by"),
    ("change", "Änderung", "Change"),
    ("approve", "Freigeben", "Approve"),
    ("reject", "Ablehnen", "Reject"),
    ("none", "Keine Einträge.", "No entries."),
    ("grantee", "Empfänger", "Grantee"),
    ("purpose", "Zweck", "Purpose"),
    ("expires", "gültig bis", "expires"),
    ("approver", "Freigegeben von", "Approved by"),
    ("revoke", "Widerrufen", "Revoke"),
    ("protection", "Schutzbedarf (V/I/V)", "Protection need (C/I/A)"),
    ("owner", "Eigentümer", "Owner"),
    ("client", "Fachverfahren", "Application"),
    ("grant_types", "Verfahren", "Grant types"),
    ("filter", "Filter", "Filter"),
    ("from", "von (RFC 3339)", "from (RFC 3339)"),
    ("to", "bis (RFC 3339)", "to (RFC 3339)"),
    ("actor", "Handelnde Person", "Actor"),
    ("outcome", "Ergebnis", "Outcome"),
    ("any", "alle", "any"),
    ("search", "Suchen", "Search"),
    ("time", "Zeit", "Time"),
    ("number", "Nr.", "No."),
    ("target", "Ziel", "Target"),
    ("reason", "Grund", "Reason"),
    ("next_page", "Ältere Einträge", "Older entries"),
    ("export", "Herunterladen", "Download"),
    ("error", "Fehler", "Error"),
    ("back", "Zurück", "Back"),
    ("not_found", "Diese Seite gibt es nicht.", "There is no such page."),
    ("expired", "Die Sitzung ist abgelaufen. Bitte erneut anmelden.", "The session has expired. Please log in again."),
    ("login", "Anmelden", "Log in"),
    ("reset", "Kennwort zurücksetzen", "Reset password"),
    ("remove", "entfernen", "remove"),
    ("assign_role", "Rolle zuweisen", "Assign a role"),
    ("user", "Benutzer", "User"),
    ("role", "Rolle", "Role"),
    ("assign", "Zuweisen", "Assign"),
    ("create_grant", "Berechtigung erteilen", "Grant access"),
    ("actions_hint", "Aktionen (durch Komma getrennt)", "Actions (comma-separated)"),
    ("grantee_hint", "Empfänger (user:Name, Rolle@Mandant oder *@Mandant)", "Grantee (user:name, role@tenant or *@tenant)"),
    ("expires_date", "gültig bis (Datum)", "valid until (date)"),
    ("grant", "Erteilen", "Grant"),
    ("confidentiality", "Vertraulichkeit", "Confidentiality"),
    ("integrity", "Integrität", "Integrity"),
    ("availability", "Verfügbarkeit", "Availability"),
    ("save", "Speichern", "Save"),
    ("new_resource", "Ressource anlegen", "New resource"),
    ("id", "Kennung", "Identifier"),
    ("rotate_secret", "Geheimnis erneuern", "Renew secret"),
    ("new_secret", "Neues Client-Geheimnis (nur jetzt sichtbar)", "New client secret (shown only now)"),
    ("auth_method", "Authentisierung", "Authentication"),
    ("login_failed", "Die Anmeldung an der Konsole ist nicht gelungen.", "Logging in to the console failed."),
    ("csrf", "Das Formular ist abgelaufen oder stammt nicht aus der Konsole. Bitte erneut versuchen.", "The form has expired or does not come from the console. Please try again."),
    ("upstreams", "Anmeldedienste", "Identity providers"),
    ("issuer", "Aussteller (Issuer)", "Issuer"),
    ("client_id", "Client-Kennung", "Client ID"),
    ("client_secret", "Client-Geheimnis (optional)", "Client secret (optional)"),
    ("client_secret_hint", "Leer lassen, um ein gespeichertes Geheimnis zu behalten.", "Leave empty to keep a stored secret."),
    ("id_hint", "Kleinbuchstaben, Ziffern und Bindestriche; eine vorhandene Kennung ersetzt diesen Anmeldedienst.", "Lowercase letters, digits and hyphens; an existing identifier replaces that identity provider."),
    ("domains", "E-Mail-Domänen (durch Leerzeichen getrennt)", "E-mail domains (space-separated)"),
    ("acr_mapping", "Vertrauensniveaus (acr des Dienstes → Ebene)", "Levels of assurance (upstream acr → level)"),
    ("acr_hint", "Eine Zuordnung je Zeile: „acr-Wert = Ebene“ mit der Ebene low, substantial oder high. Über low entscheidet eine Administratorin oder ein Administrator des Kreises.", "One per line: “acr value = level” with the level low, substantial or high. Above low is for an administrator of the Kreis."),
    ("role_mapping", "Rollen (Gruppe → Rolle)", "Roles (group → role)"),
    ("role_hint", "Eine Zuordnung je Zeile: „Gruppe = Rolle“; nur Rollen, die Sie selbst innehaben.", "One per line: “group = role”; only roles you hold yourself."),
    ("groups_claim", "Claim mit den Gruppen (optional)", "Claim with the groups (optional)"),
    ("link_existing", "Erste Anmeldung mit dem vorhandenen Konto gleichen Benutzernamens verknüpfen", "Link a first login to the existing account of the same username"),
    ("save_upstream", "Anmeldedienst hinzufügen oder ersetzen", "Add or replace an identity provider"),
    ("edit", "Bearbeiten", "Edit"),
    ("delete", "Löschen", "Delete"),
    ("deleted", "Der Anmeldedienst ist gelöscht.", "The identity provider is deleted."),
    ("no_acr", "ohne acr", "without acr"),
    ("loa_low", "niedrig", "low"),
    ("loa_substantial", "substanziell", "substantial"),
    ("loa_high", "hoch", "high"),
    ("bad_acr_line", "Diese Zeile hat nicht die Form „acr-Wert = Ebene“ (low, substantial oder high):", "This line is not of the form “acr value = level” (low, substantial or high):"),
    ("bad_role_line", "Diese Zeile hat nicht die Form „Gruppe = Rolle“ oder nennt eine Gruppe zweimal:", "This line is not of the form “group = role” or names a group twice:"),
    ("directories", "Verzeichnisse", "Directories"),
    ("directory_kind", "Art", "Kind"),
    ("kind_active_directory", "Active Directory", "Active Directory"),
    ("kind_openldap", "OpenLDAP / LDAP", "OpenLDAP / LDAP"),
    ("servers", "Server (je Zeile einer: ldaps://… oder ldap://… mit StartTLS)", "Servers (one per line: ldaps://… or ldap://… with StartTLS)"),
    ("base_dn", "Suchbasis (Base DN)", "Search base (base DN)"),
    ("bind_dn", "Dienstkonto (Bind DN)", "Service account (bind DN)"),
    ("bind_password", "Passwort des Dienstkontos (optional)", "Service account's password (optional)"),
    ("bind_password_hint", "Leer lassen, um das gespeicherte Passwort zu behalten.", "Leave empty to keep the stored password."),
    ("ca_pem", "Zertifikat der eigenen CA (PEM, optional)", "The Kommune's CA certificate (PEM, optional)"),
    ("login_domains", "Anmeldedomänen (durch Leerzeichen getrennt)", "Login domains (space-separated)"),
    ("save_directory", "Verzeichnis hinzufügen oder ersetzen", "Add or replace a directory"),
    ("deleted_directory", "Das Verzeichnis ist gelöscht.", "The directory is deleted."),
    ("test_connection", "Verbindung testen", "Test the connection"),
    ("test_username", "Benutzername zum Nachschlagen (optional)", "Username to look up (optional)"),
    ("test_ok", "Verbindung in Ordnung: das Dienstkonto kann sich anmelden und suchen.", "Connection fine: the service account can bind and search."),
    ("test_failed", "Verbindungstest fehlgeschlagen", "Connection test failed"),
    ("failure_unreachable", "Kein Server des Verzeichnisses ist erreichbar.", "No server of the directory can be reached."),
    ("failure_timeout", "Das Verzeichnis antwortet nicht rechtzeitig (Zeitüberschreitung).", "The directory does not answer in time (timeout)."),
    ("failure_tls", "TLS-Fehler: das Zertifikat des Servers passt nicht zur angegebenen CA oder zum Namen.", "TLS failure: the server's certificate does not match the CA given or its name."),
    ("failure_service_bind", "Das Verzeichnis lehnt Dienstkonto oder Passwort ab (falscher Bind DN?).", "The directory refuses the service account or its password (wrong bind DN?)."),
    ("failure_no_secret", "Für das Dienstkonto ist kein Passwort gespeichert.", "No password is stored for the service account."),
    ("failure_protocol", "Die Antwort des Verzeichnisses ist nicht verwendbar (Suchbasis falsch?).", "The directory's answer cannot be used (wrong search base?)."),
    ("failure_not_found", "Der Dienst funktioniert, aber diese Person wurde nicht (oder mehrfach) gefunden.", "The connection works, but this person was not found (or more than once)."),
    ("person_found", "Gefunden", "Found"),
    ("groups_found", "Gruppen (auch verschachtelte)", "Groups (nested ones included)"),
    ("roles_mapped", "Daraus folgende Rollen", "Roles they map to"),
    ("refusal", "Anmeldung nicht möglich", "Cannot log in"),
    ("reset_second_factor", "Zweiten Faktor zurücksetzen", "Reset second factor"),
    ("second_factor_removed", "Der zweite Faktor ist entfernt.", "The second factor is removed."),
    ("second_factor_none", "Kein zweiter Faktor eingerichtet – nichts zu entfernen.", "No second factor set up – nothing to remove."),
    ("truncated", "Es werden die ersten 1.000 Einträge gezeigt; weitere über die Filter der Schnittstelle.", "The first 1,000 entries are shown; narrow down with the API's filters."),
    ("applications", "Anwendungen", "Protected applications"),
    ("save_application", "Anwendung hinzufügen oder ersetzen", "Add or replace an application"),
    ("deleted_application", "Die Anwendung ist gelöscht.", "The application is deleted."),
    ("application_proposed", "Damit sänke der Schutzbedarf eines Pfads: das wird erst wirksam, wenn eine zweite Administratorin oder ein zweiter Administrator zustimmt.", "This would lower the protection need of a path: it takes effect only once a second administrator approves."),
    ("application_id_hint", "Buchstaben, Ziffern und - _ .; eine vorhandene Kennung ersetzt diese Anwendung.", "Letters, digits and - _ .; an existing identifier replaces that application."),
    ("origins", "Adressen (Origins)", "Origins"),
    ("origins_hint", "Eine je Zeile: https://Host[:Port], ohne Pfad (http nur für localhost).", "One per line: https://host[:port], without a path (http only for localhost)."),
    ("paths", "Pfade", "Paths"),
    ("paths_hint", "Ein Pfadpräfix je Zeile, z. B. /akten; leer: / (die ganze Adresse).", "One path prefix per line, e.g. /akten; empty: / (the whole origin)."),
    ("method_actions", "Aktionen (HTTP-Methode → Aktion)", "Actions (HTTP method → action)"),
    ("method_actions_hint", "Eine Zuordnung je Zeile: „METHODE = Aktion“; „*“ steht für jede andere Methode und ist nötig. Leer: GET und HEAD read, sonst write.", "One per line: “METHOD = action”; “*” stands for every other method and is required. Empty: GET and HEAD read, otherwise write."),
    ("bad_action_line", "Diese Zeile hat nicht die Form „METHODE = Aktion“ oder nennt eine Methode zweimal:", "This line is not of the form “METHOD = action” or names a method twice:"),
    ("identity_headers", "Übermittelte Angaben zur Person", "Identity headers sent"),
    ("header_user", "Benutzername (X-Interkom-User)", "Username (X-Interkom-User)"),
    ("header_subject", "Kontokennung (X-Interkom-Subject)", "Account id (X-Interkom-Subject)"),
    ("header_tenant", "Mandant (X-Interkom-Tenant)", "Tenant (X-Interkom-Tenant)"),
    ("header_roles", "Rollen (X-Interkom-Roles)", "Roles (X-Interkom-Roles)"),
    ("header_acr", "Vertrauensniveau (X-Interkom-Acr)", "Level of assurance (X-Interkom-Acr)"),
    ("jwt", "Signiertes JWT (X-Interkom-Jwt)", "Signed JWT (X-Interkom-Jwt)"),
    ("jwt_hint", "Zusätzlich ein kurzlebiges, von interkom signiertes JWT; prüfbar mit interkoms JWKS.", "Also a short-lived JWT signed by interkom; verifiable with interkom's JWKS."),
    ("yes", "ja", "yes"),
    ("no", "nein", "no"),
];
