#!/usr/bin/env python3
"""A SAML 2.0 identity provider built on pysaml2 that behaves like BundID
(citizens) and Mein Unternehmenskonto (businesses), as a small HTTP server on
127.0.0.1, for testing interkom as a SAML service provider.

pysaml2 loads the SP metadata, parses and checks AuthnRequests and
LogoutRequests, writes the IdP metadata and the HTTP bindings. The
Assertion itself is written here in BundID's shape (pysaml2's attribute
model cannot carry akdb:TrustLevel or XML attribute values), then signed
and encrypted with libxmlsec1 1.3 through common.py.

Endpoints: GET /metadata, GET|POST /sso, POST /login, GET|POST /slo,
GET /logout, GET /reload, GET /healthz. See README.md beside this file.
Prints "ready" on stdout once listening; logs to stderr.
"""

import argparse
import base64
import datetime
import hashlib
import html
import http.cookies
import http.server
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from lxml import etree  # noqa: E402

log = logging.getLogger("idp")

AKDB = "https://www.akdb.de/request/2018/09"
CLASSIC_UI = "https://www.akdb.de/request/2018/09/classic-ui/v1"
SAML = common.NS["saml"]
SAMLP = common.NS["samlp"]
XSI = common.NS["xsi"]
XS = common.NS["xs"]
URI_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
ST = "urn:oasis:names:tc:SAML:2.0:status:"

# Attribute names of BundID (../shared/reference/bundid.md).
A = {
    "bPK2": "urn:oid:1.3.6.1.4.1.25484.494450.3",
    "givenName": "urn:oid:2.5.4.42",
    "surname": "urn:oid:2.5.4.4",
    "mail": "urn:oid:0.9.2342.19200300.100.1.3",
    "postalAddress": "urn:oid:2.5.4.16",
    "postalCode": "urn:oid:2.5.4.17",
    "localityName": "urn:oid:2.5.4.7",
    "country": "urn:oid:1.2.40.0.10.2.1.1.225599",
    "birthdate": "urn:oid:1.2.40.0.10.2.1.1.55",
    "placeOfBirth": "urn:oid:1.3.6.1.5.5.7.9.2",
    "birthName": "urn:oid:1.2.40.0.10.2.1.1.225566",
    "nationality": "urn:oid:1.2.40.0.10.2.1.1.225577",
    "EID-CITIZEN-QAA-LEVEL": "urn:oid:1.2.40.0.10.2.1.1.261.94",
    "AssertionProvedBy": "urn:oid:1.3.6.1.4.1.25484.494450.2",
    "mfa": "urn:oid:1.3.6.1.4.1.25484.494450.7",
}
# Mein Unternehmenskonto: the real attribute names are unconfirmed (see
# bundid.md); these test-only names stand in for them, in configuration.
MUK_NS = "urn:x-interkom-test:muk:2025"
M = {
    "organisationPseudonym": "urn:x-interkom-test:muk:organisationPseudonym",
    "accountPseudonym": "urn:x-interkom-test:muk:elsterAccountPseudonym",
    "organisation": "urn:x-interkom-test:muk:organisation",
    "representative": "urn:x-interkom-test:muk:representative",
}
FRIENDLY = {v: k for k, v in {**A, **M}.items()}

LEVELS = {"STORK-QAA-Level-1": 1, "STORK-QAA-Level-2": 2, "STORK-QAA-Level-3": 3, "STORK-QAA-Level-4": 4}
OFFERED_LEVELS = ["STORK-QAA-Level-1", "STORK-QAA-Level-3", "STORK-QAA-Level-4"]
TRUST_BY_LEVEL = {1: "UNTERGEORDNET", 3: "SUBSTANTIELL", 4: "HOCH"}
LEVEL_LABEL = {
    1: "Benutzername und Passwort (Basisregistrierung)",
    3: "ELSTER-Zertifikat (substanziell)",
    4: "Online-Ausweis (hoch)",
}

# The accounts. "methods" maps a level to the AKDB AuthnMethod that reaches
# it for this account; a level missing there cannot be reached.
USERS = {
    "erika": {
        "kind": "citizen",
        "label": "Erika Mustermann",
        "methods": {1: "Benutzername", 3: "Elster", 4: "eID"},
        "attrs": {
            "givenName": "Erika",
            "surname": "Mustermann",
            "birthName": "Gabler",
            "birthdate": "1964-08-12",
            "placeOfBirth": "Berlin",
            "nationality": "DE",
            "postalAddress": "Heidestraße 17",
            "postalCode": "51147",
            "localityName": "Köln",
            "country": "DE",
            "mail": "erika.mustermann@example.org",
        },
    },
    "max": {
        "kind": "citizen",
        "label": "Max Jürgen Schöne (kein Online-Ausweis, keine E-Mail)",
        "methods": {1: "Benutzername", 3: "Elster"},
        "attrs": {
            "givenName": "Max Jürgen",
            "surname": "Schöne",
            "birthdate": "1987-02-28",
            "placeOfBirth": "Dannenberg (Elbe)",
            "nationality": "DE",
            "postalAddress": "Theodor-Körner-Straße 14",
            "postalCode": "29439",
            "localityName": "Lüchow (Wendland)",
            "country": "DE",
        },
    },
    "leila": {
        "kind": "citizen",
        "label": "Leila Nováková (EU-Identität über eIDAS)",
        "methods": {1: "Benutzername", 4: "eIDAS"},
        "attrs": {
            "givenName": "Leila",
            "surname": "Nováková",
            "birthdate": "1990-11-03",
            "nationality": "CZ",
            "postalAddress": "Vinohradská 12",
            "postalCode": "12000",
            "localityName": "Praha",
            "country": "CZ",
            "mail": "leila.novakova@example.cz",
        },
    },
    "muk": {
        "kind": "business",
        "label": "Musterbau GmbH (Mein Unternehmenskonto, ELSTER-Organisationszertifikat)",
        "methods": {3: "Elster"},
        "attrs": {
            "givenName": "Jonas",
            "surname": "Bauer",
            "mail": "j.bauer@musterbau.example",
        },
        "xml_attrs": {
            "organisation": (
                f'<muk:Organisation xmlns:muk="{MUK_NS}">'
                "<muk:Name>Musterbau GmbH</muk:Name>"
                "<muk:Rechtsform>GmbH</muk:Rechtsform>"
                "<muk:Anschrift><muk:Strasse>Am Markt</muk:Strasse><muk:Hausnummer>3a</muk:Hausnummer>"
                "<muk:PLZ>29451</muk:PLZ><muk:Ort>Dannenberg (Elbe)</muk:Ort><muk:Staat>DE</muk:Staat>"
                "</muk:Anschrift>"
                "<muk:Handelsregister><muk:Gericht>Amtsgericht Lüneburg</muk:Gericht>"
                "<muk:Nummer>HRB 123456</muk:Nummer></muk:Handelsregister>"
                "</muk:Organisation>"
            ),
            "representative": (
                f'<muk:Person xmlns:muk="{MUK_NS}" muk:Rolle="Geschäftsführung">'
                "<muk:Vorname>Jonas</muk:Vorname><muk:Nachname>Bauer</muk:Nachname>"
                "</muk:Person>"
            ),
        },
    },
}

CITIZEN_DEFAULT = ["bPK2", "EID-CITIZEN-QAA-LEVEL", "AssertionProvedBy", "givenName", "surname"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--sp-metadata",
        action="append",
        default=[],
        help="file or http(s) URL, repeatable; read on first use and again for an unknown SP",
    )
    p.add_argument("--entity-id", help="default http://127.0.0.1:PORT/idp")
    p.add_argument("--data-encryption", choices=sorted(common.DATA_ALGS), default="aes256-gcm")
    p.add_argument(
        "--key-transport",
        choices=sorted(common.KEY_TRANSPORTS),
        default="rsa-oaep",
        help="rsa-oaep = xmlenc11#rsa-oaep with SHA-256 and MGF1-SHA256 (default); rsa-oaep-mgf1p = xmlenc#, SHA-1",
    )
    p.add_argument("--signature-algorithm", choices=sorted(common.SIG_ALGS), default="rsa-sha256")
    p.add_argument("--encrypt", choices=["yes", "no"], default="yes", help="encrypt the assertion (default yes)")
    p.add_argument("--sign-response", action="store_true", help="sign the Response too (the Assertion always is)")
    p.add_argument("--slo-binding", choices=["redirect", "post"], default="redirect", help="for IdP->SP messages")
    p.add_argument(
        "--allow-lower-level",
        action="store_true",
        help="let the login page pick a level below the requested minimum and answer it as Success",
    )
    p.add_argument("--auto-login", metavar="USER:LEVEL", help="skip the login page (e.g. erika:STORK-QAA-Level-4)")
    p.add_argument("--assertion-lifetime", type=int, default=300, help="seconds")
    p.add_argument("--key-file", help="PEM key (default: generated at start)")
    p.add_argument("--cert-file", help="PEM certificate for --key-file")
    p.add_argument("--key-size", type=int, default=2048)
    p.add_argument("--clock-skew", type=int, default=60)
    return p.parse_args(argv)


class SamlError(Exception):
    """A request we answer with a SAML error status (sent to the ACS)."""

    def __init__(self, top, second=None, message=None, detail=None, ctx=None):
        super().__init__(message or second or top)
        self.top, self.second, self.message, self.detail, self.ctx = top, second, message, detail, ctx


class PageError(Exception):
    """A request we answer with an HTML error page (nothing is posted)."""


def bpk2(user_id, sp_entity_id):
    """A stable per-service pseudonym: BundID derives bPK2 from the SP's
    host name, so two SPs on one host get the same value."""
    host = urllib.parse.urlsplit(sp_entity_id).hostname or sp_entity_id
    digest = hashlib.sha256(f"bPK2|{user_id}|{host}".encode()).digest()
    return base64.b64encode(digest[:24]).decode()


def parse_akdb(root):
    ext = root.find(f"{{{SAMLP}}}Extensions/{{{AKDB}}}AuthenticationRequest")
    if ext is None:
        return None
    out = {
        "version": ext.get("Version"),
        "status_detail": ext.get("EnableStatusDetail", "false").lower() == "true",
        "methods": {},
        "requested": [],
        "display": {},
    }
    methods = ext.find(f"{{{AKDB}}}AuthnMethods")
    if methods is not None:
        for m in methods:
            if not isinstance(m.tag, str):
                continue
            enabled = m.find(f"{{{AKDB}}}Enabled")
            txt = (enabled.text if enabled is not None else m.text or "true").strip().lower()
            out["methods"][etree.QName(m).localname] = txt == "true"
    for ra in ext.iterfind(f"{{{AKDB}}}RequestedAttributes/{{{AKDB}}}RequestedAttribute"):
        out["requested"].append((ra.get("Name"), ra.get("RequiredAttribute", "false").lower() == "true"))
    disp = ext.find(f"{{{AKDB}}}DisplayInformation")
    if disp is not None:
        for el in disp.iter():
            if isinstance(el.tag, str) and len(el) == 0 and el.text and el.text.strip():
                out["display"][etree.QName(el).localname] = el.text.strip()
    return out


class IdP:
    def __init__(self, args):
        common.install(
            data_alg=common.DATA_ALGS[args.data_encryption],
            key_transport=common.KEY_TRANSPORTS[args.key_transport],
        )
        self.args = args
        self.base = f"http://127.0.0.1:{args.port}"
        self.entity_id = args.entity_id or f"{self.base}/idp"
        self.tmp = tempfile.mkdtemp(prefix="saml-idp-")
        self.key_file, self.cert_file = common.make_keypair(
            self.tmp, "idp", args.key_size, args.key_file, args.cert_file
        )
        self.cert_b64 = common.pem_body(open(self.cert_file).read())
        self.sign_alg = common.SIG_ALGS[args.signature_algorithm]
        self.data_alg = common.DATA_ALGS[args.data_encryption]
        self.key_transport = common.KEY_TRANSPORTS[args.key_transport]
        self.lock = threading.RLock()
        self.server = None
        self.pending = {}  # login page token -> request facts
        self.sessions = {}  # cookie -> {"user": id, "sps": {sp: {...}}}
        self.chains = {}  # RelayState of IdP->SP LogoutRequests -> logout progress
        self.cookie_name = f"idp_session_{args.port}"
        from saml2.metadata import create_metadata_string

        self.metadata_xml = create_metadata_string(None, config=self.config(with_sps=False), sign=False).decode("utf-8")

    def config(self, with_sps=True):
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
        from saml2.config import IdPConfig

        conf = {
            "entityid": self.entity_id,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            (f"{self.base}/sso", BINDING_HTTP_REDIRECT),
                            (f"{self.base}/sso", BINDING_HTTP_POST),
                        ],
                        "single_logout_service": [
                            (f"{self.base}/slo", BINDING_HTTP_REDIRECT),
                            (f"{self.base}/slo", BINDING_HTTP_POST),
                        ],
                    },
                    # Published in the metadata; the check itself is done
                    # here (see sso()), so that an unsigned request gets
                    # BundID's status instead of pysaml2's exception.
                    "want_authn_requests_signed": True,
                    "name_id_format": [TRANSIENT],
                }
            },
            "key_file": self.key_file,
            "cert_file": self.cert_file,
            "accepted_time_diff": self.args.clock_skew,
            "signing_algorithm": common.SIG_RSA_SHA256,
            "digest_algorithm": common.DIGEST_SHA256,
            "delete_tmpfiles": True,
        }
        if with_sps:
            conf["metadata"] = {"inline": [common.read_source(s) for s in self.args.sp_metadata]}
        c = IdPConfig()
        c.load(conf)
        return c

    def get_server(self, reload=False):
        from saml2.server import Server

        with self.lock:
            if self.server is None or reload:
                self.server = Server(config=self.config())
                self.server.config.setattr("idp", "want_authn_requests_signed", False)
                log.info("SP metadata loaded: %s", sorted(self.server.metadata.service_providers()))
            return self.server

    def sp_known(self, sp_entity_id):
        server = self.get_server()
        if sp_entity_id in server.metadata.service_providers():
            return server
        server = self.get_server(reload=True)
        if sp_entity_id in server.metadata.service_providers():
            return server
        return None

    def sp_cert_files(self, server, sp_entity_id, use):
        out = []
        for _name, cert in server.metadata.certs(sp_entity_id, "spsso", use):
            cert = "".join(cert.split())
            path = os.path.join(self.tmp, f"sp-{hashlib.sha256(cert.encode()).hexdigest()[:16]}.pem")
            if not os.path.exists(path):
                body = "\n".join(cert[i : i + 64] for i in range(0, len(cert), 64))
                with open(path, "w") as f:
                    f.write(f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
            out.append((path, cert))
        return out

    # ---------------------------------------------------------------- SSO

    def handle_sso(self, params, binding, raw_query):
        """Checks an AuthnRequest; returns the facts for the login page.
        Raises PageError (unknown SP, garbage) or SamlError with the ACS to
        answer at."""
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
        from saml2.response import IncorrectlySigned

        enc = params.get("SAMLRequest")
        if not enc:
            raise PageError("no SAMLRequest")
        try:
            from saml2.entity import Entity

            xml = Entity.unravel(enc, binding, "request")
            root = common.parse_xml(xml)
        except Exception as exc:  # noqa: BLE001
            raise PageError(f"unreadable AuthnRequest: {exc}") from exc
        if etree.QName(root).localname != "AuthnRequest" or etree.QName(root).namespace != SAMLP:
            raise PageError("not an AuthnRequest")
        issuer = root.findtext(f"{{{SAML}}}Issuer", "").strip()
        req_id = root.get("ID")
        server = self.sp_known(issuer)
        if server is None:
            raise PageError(f"unknown service provider {issuer!r}")
        # Where errors go before the request is trusted: the SP's registered
        # ACS, never a URL taken from an unverified request.
        _b, default_acs = server.pick_binding(
            "assertion_consumer_service", [BINDING_HTTP_POST], "spsso", entity_id=issuer
        )
        relay_state = params.get("RelayState")
        ctx = {"sp": issuer, "acs": default_acs, "request_id": req_id, "relay_state": relay_state}

        if binding == BINDING_HTTP_REDIRECT:
            certs = [c for _p, c in self.sp_cert_files(server, issuer, "signing")]
            signed, ok = common.redirect_signature_ok(raw_query, certs)
        else:
            signed = root.find(f"{{{common.DS}}}Signature") is not None
            ok = True  # checked by pysaml2 below
        if not signed:
            raise SamlError(ST + "Requester", ST + "RequestDenied", "saml-request-not-signed", ctx=ctx)
        if not ok:
            raise SamlError(ST + "Requester", ST + "RequestDenied", "saml-request-signature-invalid", ctx=ctx)
        try:
            req = server.parse_authn_request(
                enc,
                binding,
                relay_state=relay_state,
                sigalg=params.get("SigAlg"),
                signature=params.get("Signature"),
            )
        except IncorrectlySigned as exc:
            raise SamlError(ST + "Requester", ST + "RequestDenied", "saml-request-signature-invalid", ctx=ctx) from exc
        except Exception as exc:  # noqa: BLE001
            raise SamlError(ST + "Requester", None, f"invalid AuthnRequest: {exc}", ctx=ctx) from exc
        if req is None:
            raise SamlError(ST + "Requester", None, "invalid AuthnRequest", ctx=ctx)
        msg = req.message
        try:
            _b, acs = server.pick_binding(
                "assertion_consumer_service", [BINDING_HTTP_POST], "spsso", request=msg, entity_id=issuer
            )
        except Exception as exc:  # noqa: BLE001
            raise PageError(f"AssertionConsumerServiceURL not registered for {issuer}") from exc
        ctx["acs"] = acs

        # Level of assurance: plain STORK strings, comparison minimum.
        rac = msg.requested_authn_context
        allowed = set(LEVELS.values())
        requested = None
        if rac is not None and rac.authn_context_class_ref:
            comparison = rac.comparison or "exact"
            refs = [r.text.strip() for r in rac.authn_context_class_ref]
            unknown = [r for r in refs if r not in LEVELS]
            if unknown:
                raise SamlError(ST + "Responder", ST + "NoAuthnContext", f"unknown level {unknown[0]}", ctx=ctx)
            nums = [LEVELS[r] for r in refs]
            if comparison == "minimum":
                requested = min(nums)
                allowed = {n for n in allowed if n >= requested}
            elif comparison == "exact":
                requested = min(nums)
                allowed = set(nums)
            else:
                raise SamlError(
                    ST + "Requester", ST + "RequestUnsupported", f"comparison {comparison} not supported", ctx=ctx
                )
        akdb = parse_akdb(root)
        ctx.update(
            {
                "requested_level": requested,
                "allowed_levels": sorted(allowed),
                "force_authn": str(msg.force_authn).lower() == "true",
                "akdb": akdb,
                "name_id_policy": msg.name_id_policy.format if msg.name_id_policy is not None else None,
                "binding": binding,
            }
        )
        log.info(
            "AuthnRequest %s from %s via %s: level>=%s, akdb=%s",
            req_id,
            issuer,
            binding.rsplit(":", 1)[-1],
            requested,
            bool(akdb),
        )
        return ctx

    def method_allowed(self, ctx, method):
        akdb = ctx.get("akdb")
        if not akdb or not akdb["methods"]:
            return True
        return akdb["methods"].get(method, False)

    def login(self, ctx, user_id, level_name, cookie_sid):
        """Returns (status, response XML element) for a login choice."""
        user = USERS.get(user_id)
        if user is None or level_name not in LEVELS:
            raise PageError("pick an account and a level")
        level = LEVELS[level_name]
        method = user["methods"].get(level)
        if method is None:
            raise PageError(f"{user['label']} cannot reach {level_name}")
        if not self.method_allowed(ctx, method):
            raise PageError(f"the service does not allow {method}")
        if level not in ctx["allowed_levels"] and not self.args.allow_lower_level:
            raise SamlError(
                ST + "Responder", ST + "NoAuthnContext", f"{level_name} is below the requested level", ctx=ctx
            )
        values = self.attribute_values(user_id, user, level, method, ctx["sp"])
        akdb = ctx.get("akdb")
        if akdb and akdb["requested"]:
            names = [n for n, _req in akdb["requested"]]
            missing = [n for n, req in akdb["requested"] if req and n not in values]
            if missing:
                detail = None
                if akdb["status_detail"]:
                    detail = json.dumps(
                        {"errorCode": "IDP_REQUIRED_ATTRIBUTES_MISSING", "missingAttributes": missing},
                        separators=(",", ":"),
                    )
                raise SamlError(
                    ST + "Responder", ST + "RequestDenied", "required attributes missing", detail=detail, ctx=ctx
                )
        elif user["kind"] == "business":
            names = list(values)
        else:
            names = [A[n] for n in CITIZEN_DEFAULT]
        values = {n: values[n] for n in names if n in values}
        name_id = "_" + secrets.token_hex(16)
        session_index = "_" + secrets.token_hex(12)
        response = self.success_response(ctx, name_id, session_index, level_name, values)
        with self.lock:
            s = self.sessions.setdefault(cookie_sid, {"user": user_id, "sps": {}})
            s["user"] = user_id
            s["sps"][ctx["sp"]] = {"name_id": name_id, "session_index": session_index}
        log.info("login of %s at %s for %s", user_id, level_name, ctx["sp"])
        return response

    def attribute_values(self, user_id, user, level, method, sp):
        """Every attribute this account has: {Name: (trust, value, is_xml)}."""
        trust = TRUST_BY_LEVEL.get(level, "NORMAL")
        out = {}
        if user["kind"] == "citizen":
            out[A["bPK2"]] = (trust, bpk2(user_id, sp), False)
        else:
            out[M["organisationPseudonym"]] = (trust, bpk2("org:" + user_id, sp), False)
            out[M["accountPseudonym"]] = (trust, bpk2("acct:" + user_id, sp), False)
        for k, v in user["attrs"].items():
            t = "NORMAL" if k == "mail" else trust
            out[A[k]] = (t, v, False)
        for k, v in user.get("xml_attrs", {}).items():
            out[M[k]] = (trust, v, True)
        level_name = next(n for n, lv in LEVELS.items() if lv == level)
        out[A["EID-CITIZEN-QAA-LEVEL"]] = (trust, level_name, False)
        out[A["AssertionProvedBy"]] = (trust, method, False)
        out[A["mfa"]] = (trust, "true" if level >= 3 else "false", False)
        return out

    # ----------------------------------------------------------- building

    def _response_root(self, ctx):
        now = common.saml_instant()
        resp = etree.Element(
            etree.QName(SAMLP, "Response"),
            nsmap={"saml2p": SAMLP, "saml2": SAML},
            ID="_" + secrets.token_hex(16),
            Version="2.0",
            IssueInstant=now,
            Destination=ctx["acs"],
        )
        if ctx.get("request_id"):
            resp.set("InResponseTo", ctx["request_id"])
        etree.SubElement(resp, etree.QName(SAML, "Issuer")).text = self.entity_id
        return resp

    def error_response(self, err):
        ctx = err.ctx
        resp = self._response_root(ctx)
        status = etree.SubElement(resp, etree.QName(SAMLP, "Status"))
        code = etree.SubElement(status, etree.QName(SAMLP, "StatusCode"), Value=err.top)
        if err.second:
            etree.SubElement(code, etree.QName(SAMLP, "StatusCode"), Value=err.second)
        if err.message:
            etree.SubElement(status, etree.QName(SAMLP, "StatusMessage")).text = err.message
        if err.detail:
            sd = etree.SubElement(status, etree.QName(SAMLP, "StatusDetail"))
            etree.SubElement(sd, etree.QName(AKDB, "StatusDetail"), nsmap={"akdb": AKDB}).text = err.detail
        common.sign_element(resp, resp, self.key_file, self.cert_b64, self.sign_alg)
        log.info("error response to %s: %s %s %s", ctx["sp"], err.top, err.second, err.message)
        return resp

    def success_response(self, ctx, name_id, session_index, level_name, values):
        server = self.get_server()
        now = common.now_utc()
        until = common.saml_instant(now + datetime.timedelta(seconds=self.args.assertion_lifetime))
        resp = self._response_root(ctx)
        status = etree.SubElement(resp, etree.QName(SAMLP, "Status"))
        etree.SubElement(status, etree.QName(SAMLP, "StatusCode"), Value=ST + "Success")

        # The Assertion declares every namespace it uses itself, so that its
        # plaintext parses on its own after decryption.
        a = etree.Element(
            etree.QName(SAML, "Assertion"),
            nsmap={"saml2": SAML, "xsd": XS, "xsi": XSI, "akdb": AKDB},
            ID="_" + secrets.token_hex(16),
            Version="2.0",
            IssueInstant=common.saml_instant(now),
        )
        etree.SubElement(
            a, etree.QName(SAML, "Issuer"), Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
        ).text = self.entity_id
        subj = etree.SubElement(a, etree.QName(SAML, "Subject"))
        etree.SubElement(
            subj, etree.QName(SAML, "NameID"), Format=TRANSIENT, NameQualifier=self.entity_id, SPNameQualifier=ctx["sp"]
        ).text = name_id
        sc = etree.SubElement(subj, etree.QName(SAML, "SubjectConfirmation"), Method=BEARER)
        scd = etree.SubElement(
            sc, etree.QName(SAML, "SubjectConfirmationData"), NotOnOrAfter=until, Recipient=ctx["acs"]
        )
        if ctx.get("request_id"):
            scd.set("InResponseTo", ctx["request_id"])
        cond = etree.SubElement(
            a,
            etree.QName(SAML, "Conditions"),
            NotBefore=common.saml_instant(now - datetime.timedelta(seconds=5)),
            NotOnOrAfter=until,
        )
        ar = etree.SubElement(cond, etree.QName(SAML, "AudienceRestriction"))
        etree.SubElement(ar, etree.QName(SAML, "Audience")).text = ctx["sp"]
        st = etree.SubElement(
            a, etree.QName(SAML, "AuthnStatement"), AuthnInstant=common.saml_instant(now), SessionIndex=session_index
        )
        ac = etree.SubElement(st, etree.QName(SAML, "AuthnContext"))
        etree.SubElement(ac, etree.QName(SAML, "AuthnContextClassRef")).text = level_name
        if values:
            ats = etree.SubElement(a, etree.QName(SAML, "AttributeStatement"))
            for name, (trust, value, is_xml) in values.items():
                attr = etree.SubElement(ats, etree.QName(SAML, "Attribute"), Name=name, NameFormat=URI_FORMAT)
                if name in FRIENDLY:
                    attr.set("FriendlyName", FRIENDLY[name])
                attr.set(etree.QName(AKDB, "TrustLevel"), trust)
                av = etree.SubElement(attr, etree.QName(SAML, "AttributeValue"))
                if is_xml:
                    av.append(etree.fromstring(value.encode("utf-8"), common.safe_parser()))
                else:
                    av.set(etree.QName(XSI, "type"), "xsd:string")
                    av.text = value
        common.sign_element(a, a, self.key_file, self.cert_b64, self.sign_alg)
        if self.args.encrypt == "yes":
            certs = self.sp_cert_files(server, ctx["sp"], "encryption") or self.sp_cert_files(
                server, ctx["sp"], "signing"
            )
            if not certs:
                raise PageError(f"no certificate of {ctx['sp']} to encrypt to")
            path, cert_b64 = certs[0]
            ed = common.encrypt_bytes(etree.tostring(a), path, self.data_alg, self.key_transport, cert_b64)
            etree.SubElement(resp, etree.QName(SAML, "EncryptedAssertion")).append(ed)
        else:
            resp.append(a)
        if self.args.sign_response:
            common.sign_element(resp, resp, self.key_file, self.cert_b64, self.sign_alg)
        return resp

    def post_form(self, xml_root, destination, relay_state, typ="SAMLResponse"):
        from saml2.pack import http_form_post_message

        data = etree.tostring(xml_root, xml_declaration=True, encoding="UTF-8").decode("utf-8")
        return http_form_post_message(data, destination, relay_state or "", typ)["data"]

    # ---------------------------------------------------------------- SLO

    def sp_slo(self, server, sp):
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

        first = BINDING_HTTP_POST if self.args.slo_binding == "post" else BINDING_HTTP_REDIRECT
        other = BINDING_HTTP_REDIRECT if first == BINDING_HTTP_POST else BINDING_HTTP_POST
        return server.pick_binding("single_logout_service", [first, other], "spsso", entity_id=sp)

    def next_logout_step(self, chain_id):
        """The HTTP answer for the next step of a logout: a LogoutRequest to
        the next SP, or the final LogoutResponse / page."""
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.saml import NameID

        server = self.get_server()
        chain = self.chains[chain_id]
        while chain["pending"]:
            sp, info = chain["pending"].pop(0)
            try:
                binding, dest = self.sp_slo(server, sp)
            except Exception:  # noqa: BLE001 - an SP without SLO endpoint
                chain["results"][sp] = "no SLO endpoint"
                continue
            nid = NameID(text=info["name_id"], format=TRANSIENT, name_qualifier=self.entity_id, sp_name_qualifier=sp)
            redirect = binding == BINDING_HTTP_REDIRECT
            req_id, req = server.create_logout_request(
                dest,
                sp,
                name_id=nid,
                session_indexes=[info["session_index"]],
                sign=not redirect,
                sign_alg=common.SIG_RSA_SHA256,
                digest_alg=common.DIGEST_SHA256,
            )
            chain["waiting"] = (req_id, sp)
            log.info("LogoutRequest %s to %s", req_id, sp)
            return server.apply_binding(binding, str(req), dest, chain_id, sign=redirect, sigalg=common.SIG_RSA_SHA256)
        del self.chains[chain_id]
        final = chain["final"]
        if final is None:
            body = (
                "<h1>Abgemeldet</h1><ul>"
                + "".join(f"<li>{html.escape(sp)}: {html.escape(r)}</li>" for sp, r in chain["results"].items())
                + "</ul>"
            )
            return {"status": 200, "data": common.html_page("Abgemeldet", body), "headers": []}
        return self.logout_response(server, final["message"], final["binding"], final["relay_state"], final["status"])

    def logout_response(self, server, msg, binding, relay_state, status):
        from saml2 import BINDING_HTTP_REDIRECT

        rinfo = server.response_args(msg, [binding])
        redirect = rinfo["binding"] == BINDING_HTTP_REDIRECT
        response = server.create_logout_response(
            msg,
            [rinfo["binding"]],
            status=status,
            sign=not redirect,
            sign_alg=common.SIG_RSA_SHA256,
            digest_alg=common.DIGEST_SHA256,
        )
        return server.apply_binding(
            rinfo["binding"],
            str(response),
            rinfo["destination"],
            relay_state,
            response=True,
            sign=redirect,
            sigalg=common.SIG_RSA_SHA256,
        )

    def start_chain(self, session, final, skip_sp=None):
        chain_id = "slo-" + secrets.token_urlsafe(12)
        pending = [(sp, info) for sp, info in session["sps"].items() if sp != skip_sp]
        self.chains[chain_id] = {"pending": pending, "final": final, "results": {}, "waiting": None}
        return chain_id


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "pysaml2-test-idp"
    idp: IdP = None

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    def send(self, status, body, ctype="text/plain; charset=utf-8", headers=()):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def send_http_info(self, info, headers=()):
        if info.get("method") == "GET" or info.get("status") in (302, 303):
            loc = dict(info["headers"]).get("Location")
            self.send(303, "", headers=[("Location", loc), *headers])
        else:
            self.send(info.get("status", 200), info["data"], "text/html; charset=utf-8", headers)

    def page_error(self, message):
        body = f'<h1>Anmeldung nicht möglich</h1><p id="error">{html.escape(str(message))}</p>'
        self.send(400, common.html_page("Fehler", body), "text/html; charset=utf-8")

    def cookie_sid(self, create=False):
        c = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        m = c.get(self.idp.cookie_name)
        if m and m.value:
            return m.value, []
        if not create:
            return None, []
        sid = secrets.token_urlsafe(24)
        return sid, [("Set-Cookie", f"{self.idp.cookie_name}={sid}; Path=/; HttpOnly; SameSite=Lax")]

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 2_000_000:
            raise PageError("request too large")
        body = self.rfile.read(n).decode("ascii", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}

    def do_GET(self):
        from saml2 import BINDING_HTTP_REDIRECT

        url = urllib.parse.urlsplit(self.path)
        params = {k: v[0] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path == "/healthz":
                return self.send(200, "ok\n")
            if url.path == "/metadata":
                return self.send(200, self.idp.metadata_xml, "application/samlmetadata+xml")
            if url.path == "/sso":
                return self.sso(params, BINDING_HTTP_REDIRECT, url.query)
            if url.path == "/slo":
                return self.slo(params, BINDING_HTTP_REDIRECT, url.query)
            if url.path == "/logout":
                return self.idp_logout()
            if url.path == "/reload":
                self.idp.get_server(reload=True)
                return self.send(200, "reloaded\n")
            return self.send(404, "not found\n")
        except PageError as exc:
            return self.page_error(exc)
        except Exception as exc:  # noqa: BLE001
            log.exception("GET %s failed", url.path)
            return self.page_error(f"{type(exc).__name__}: {exc}")

    def do_POST(self):
        from saml2 import BINDING_HTTP_POST

        url = urllib.parse.urlsplit(self.path)
        try:
            form = self.form()
            if url.path == "/sso":
                return self.sso(form, BINDING_HTTP_POST, None)
            if url.path == "/login":
                return self.login(form)
            if url.path == "/slo":
                return self.slo(form, BINDING_HTTP_POST, None)
            return self.send(404, "not found\n")
        except PageError as exc:
            return self.page_error(exc)
        except Exception as exc:  # noqa: BLE001
            log.exception("POST %s failed", url.path)
            return self.page_error(f"{type(exc).__name__}: {exc}")

    # -- SSO
    def send_saml_error(self, err):
        resp = self.idp.error_response(err)
        self.send(200, self.idp.post_form(resp, err.ctx["acs"], err.ctx.get("relay_state")), "text/html; charset=utf-8")

    def sso(self, params, binding, raw_query):
        idp = self.idp
        try:
            ctx = idp.handle_sso(params, binding, raw_query)
        except SamlError as err:
            return self.send_saml_error(err)
        if idp.args.auto_login:
            user, _, level = idp.args.auto_login.partition(":")
            return self.finish_login(ctx, user, level)
        token = secrets.token_urlsafe(18)
        with idp.lock:
            idp.pending[token] = ctx
        self.send(200, self.login_page(token, ctx), "text/html; charset=utf-8")

    def login_page(self, token, ctx, error=None):
        idp = self.idp
        akdb = ctx.get("akdb") or {}
        disp = akdb.get("display", {})
        parts = ["<h1>Anmelden mit BundID (Test-IdP)</h1>"]
        if error:
            parts.append(f'<p id="error" role="alert">{html.escape(error)}</p>')
        service = disp.get("OrganizationDisplayName") or ctx["sp"]
        parts.append(f'<p>Dienst: <strong id="service">{html.escape(service)}</strong>')
        if disp.get("OnlineServiceId"):
            parts.append(
                f' (OnlineServiceId <span id="online-service-id">{html.escape(disp["OnlineServiceId"])}</span>)'
            )
        parts.append("</p>")
        req = ctx.get("requested_level")
        req_txt = next((n for n, lv in LEVELS.items() if lv == req), "keines")
        parts.append(f'<p>Verlangtes Vertrauensniveau (minimum): <span id="requested-level">{req_txt}</span></p>')
        if akdb.get("requested"):
            parts.append('<p>Angefragte Daten:</p><ul id="requested-attributes">')
            for name, required in akdb["requested"]:
                label = FRIENDLY.get(name, name)
                parts.append(f"<li>{html.escape(label)} ({html.escape(name)}){' – Pflicht' if required else ''}</li>")
            parts.append("</ul>")
        parts.append(f'<form method="post" action="/login"><input type="hidden" name="token" value="{token}">')
        parts.append("<fieldset><legend>Konto</legend>")
        for i, (uid, u) in enumerate(USERS.items()):
            checked = " checked" if i == 0 else ""
            parts.append(
                f'<label><input type="radio" name="user" id="user-{uid}" value="{uid}"{checked}> '
                f"{html.escape(u['label'])}</label><br>"
            )
        parts.append("</fieldset><fieldset><legend>Vertrauensniveau</legend>")
        allowed = ctx["allowed_levels"]
        first = True
        for name in OFFERED_LEVELS:
            lv = LEVELS[name]
            ok = lv in allowed or idp.args.allow_lower_level
            attrs = ""
            if not ok:
                attrs = " disabled"
            elif first:
                attrs = " checked"
                first = False
            parts.append(
                f'<label><input type="radio" name="level" id="level-{lv}" value="{name}"{attrs}> '
                f"{name}: {html.escape(LEVEL_LABEL[lv])}</label><br>"
            )
        parts.append(
            '</fieldset><button type="submit" name="action" value="login" id="login">Anmelden</button> '
            '<button type="submit" name="action" value="cancel" id="cancel">Abbrechen</button></form>'
        )
        return common.html_page("BundID-Test-IdP: Anmeldung", "\n".join(parts))

    def login(self, form):
        idp = self.idp
        token = form.get("token", "")
        with idp.lock:
            ctx = idp.pending.get(token)
        if ctx is None:
            raise PageError("unknown or used login token")
        if form.get("action") == "cancel":
            with idp.lock:
                idp.pending.pop(token, None)
            return self.send_saml_error(
                SamlError(ST + "Responder", ST + "AuthnFailed", "authentication cancelled by the user", ctx=ctx)
            )
        try:
            self.finish_login(ctx, form.get("user", ""), form.get("level", ""), token)
        except PageError as exc:
            self.send(200, self.login_page(token, ctx, str(exc)), "text/html; charset=utf-8")

    def finish_login(self, ctx, user, level, token=None):
        idp = self.idp
        sid, headers = self.cookie_sid(create=True)
        try:
            resp = idp.login(ctx, user, level, sid)
        except SamlError as err:
            if token:
                with idp.lock:
                    idp.pending.pop(token, None)
            return self.send_saml_error(err)
        if token:
            with idp.lock:
                idp.pending.pop(token, None)
        self.send(200, idp.post_form(resp, ctx["acs"], ctx.get("relay_state")), "text/html; charset=utf-8", headers)

    # -- SLO
    def slo(self, params, binding, raw_query):
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.s_utils import status_message_factory, success_status_factory
        from saml2.samlp import STATUS_REQUEST_DENIED

        idp = self.idp
        server = idp.get_server()
        relay_state = params.get("RelayState")
        if "SAMLResponse" in params:
            chain_id = relay_state
            with idp.lock:
                chain = idp.chains.get(chain_id)
                if chain is None:
                    raise PageError("LogoutResponse to no logout of ours")
                resp = server.parse_logout_request_response(params["SAMLResponse"], binding)
                sp = resp.issuer()
                if raw_query is not None:
                    certs = [c for _p, c in idp.sp_cert_files(server, sp, "signing")]
                    signed, ok = common.redirect_signature_ok(raw_query, certs)
                    if signed and not ok:
                        raise PageError("LogoutResponse with a wrong query signature")
                waiting = chain.get("waiting")
                if not waiting or waiting[0] != resp.response.in_response_to:
                    raise PageError("LogoutResponse answers no LogoutRequest of ours")
                chain["results"][sp] = resp.response.status.status_code.value
                log.info("LogoutResponse from %s: %s", sp, chain["results"][sp])
                info = idp.next_logout_step(chain_id)
            return self.send_http_info(info)
        if "SAMLRequest" not in params:
            raise PageError("neither SAMLRequest nor SAMLResponse")
        with idp.lock:
            req = server.parse_logout_request(
                params["SAMLRequest"],
                binding,
                relay_state=relay_state,
                sigalg=params.get("SigAlg"),
                signature=params.get("Signature"),
            )
            msg = req.message
            sp = msg.issuer.text.strip()
            if binding == BINDING_HTTP_REDIRECT:
                certs = [c for _p, c in idp.sp_cert_files(server, sp, "signing")]
                signed, ok = common.redirect_signature_ok(raw_query, certs)
            else:
                signed, ok = msg.signature is not None, True  # verified by pysaml2 when present
            if not (signed and ok):
                status = status_message_factory(
                    "saml-request-not-signed" if not signed else "saml-request-signature-invalid",
                    STATUS_REQUEST_DENIED,
                )
                info = idp.logout_response(server, msg, binding, relay_state, status)
                return self.send_http_info(info)
            nid = msg.name_id.text if msg.name_id is not None else None
            found = None
            for sid, s in idp.sessions.items():
                entry = s["sps"].get(sp)
                if entry and entry["name_id"] == nid:
                    found = sid
                    break
            if found is None:
                status = status_message_factory(
                    "unknown principal", "urn:oasis:names:tc:SAML:2.0:status:UnknownPrincipal"
                )
                info = idp.logout_response(server, msg, binding, relay_state, status)
                return self.send_http_info(info)
            session = idp.sessions.pop(found)
            final = {"message": msg, "binding": binding, "relay_state": relay_state, "status": success_status_factory()}
            chain_id = idp.start_chain(session, final, skip_sp=sp)
            log.info("SP-initiated logout from %s; %d other SP(s)", sp, len(idp.chains[chain_id]["pending"]))
            info = idp.next_logout_step(chain_id)
        self.send_http_info(info)

    def idp_logout(self):
        idp = self.idp
        sid, _ = self.cookie_sid()
        clear = [("Set-Cookie", f"{idp.cookie_name}=; Path=/; Max-Age=0")]
        with idp.lock:
            session = idp.sessions.pop(sid, None) if sid else None
            if session is None:
                return self.send(
                    200, common.html_page("Abgemeldet", "<h1>Keine Sitzung</h1>"), "text/html; charset=utf-8", clear
                )
            chain_id = idp.start_chain(session, None)
            log.info("IdP-initiated logout of %s at %d SP(s)", session["user"], len(session["sps"]))
            info = idp.next_logout_step(chain_id)
        self.send_http_info(info, clear)


def main():
    args = parse_args()
    common.setup_logging("idp")
    idp = IdP(args)
    Handler.idp = idp
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    log.info("IdP %s listening on %s", idp.entity_id, idp.base)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(idp.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
