#!/usr/bin/env python3
"""A SAML 2.0 service provider built on pysaml2, as a small HTTP server on
127.0.0.1, for testing interkom as a SAML identity provider.

Endpoints: GET /metadata, GET /login, POST /acs, GET /whoami, GET /logout,
GET|POST /slo, GET /reload, GET /healthz. See README.md beside this file.
Prints "ready" on stdout once listening; logs to stderr.
"""

import argparse
import base64
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

common.install()

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT  # noqa: E402
from saml2 import extension_element_from_string  # noqa: E402
from saml2.client import Saml2Client  # noqa: E402
from saml2.config import SPConfig  # noqa: E402
from saml2.metadata import create_metadata_string  # noqa: E402
from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_PERSISTENT  # noqa: E402
from saml2.saml import NAMEID_FORMAT_TRANSIENT, NAMEID_FORMAT_UNSPECIFIED, AuthnContextClassRef  # noqa: E402
from saml2.samlp import STATUS_UNKNOWN_PRINCIPAL, Extensions, RequestedAuthnContext  # noqa: E402
from saml2.s_utils import status_message_factory, success_status_factory  # noqa: E402

log = logging.getLogger("sp")

NAMEID_FORMATS = {
    "transient": NAMEID_FORMAT_TRANSIENT,
    "persistent": NAMEID_FORMAT_PERSISTENT,
    "unspecified": NAMEID_FORMAT_UNSPECIFIED,
    "email": NAMEID_FORMAT_EMAILADDRESS,
}
BINDINGS = {"redirect": BINDING_HTTP_REDIRECT, "post": BINDING_HTTP_POST}
# The Assertion/Response attributes a plain SAML Attribute carries; anything
# else on it (akdb:TrustLevel, ...) is reported as an extra XML attribute.
STD_ATTR_ATTRS = {"Name", "NameFormat", "FriendlyName"}


def yes_no(v):
    if v.lower() in ("yes", "true", "1", "on"):
        return True
    if v.lower() in ("no", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError("yes or no")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idp-metadata", required=True, help="file or http(s) URL; read on first use, /reload re-reads")
    p.add_argument("--entity-id", help="default http://127.0.0.1:PORT/metadata")
    p.add_argument("--sign-requests", type=yes_no, default=True, help="yes|no (default yes); also AuthnRequestsSigned")
    p.add_argument("--want-assertions-signed", action="store_true", help="require a signed Assertion")
    p.add_argument("--want-response-signed", action="store_true", help="require a signed Response")
    p.add_argument(
        "--encryption-key",
        action="store_true",
        help="publish the SP certificate with use=encryption too and decrypt EncryptedAssertions",
    )
    p.add_argument("--binding", choices=sorted(BINDINGS), default="redirect", help="for the AuthnRequest")
    p.add_argument("--name-id-format", help="NameIDPolicy Format: transient|persistent|unspecified|email|URI")
    p.add_argument("--allow-unsolicited", action="store_true", help="accept IdP-initiated responses")
    p.add_argument("--extensions-file", help="XML file whose root element goes into <samlp:Extensions>")
    p.add_argument("--key-file", help="PEM key (default: generated at start)")
    p.add_argument("--cert-file", help="PEM certificate for --key-file")
    p.add_argument("--key-size", type=int, default=2048)
    p.add_argument("--clock-skew", type=int, default=60, help="seconds accepted (pysaml2 accepted_time_diff)")
    return p.parse_args(argv)


class SP:
    def __init__(self, args):
        self.args = args
        self.base = f"http://127.0.0.1:{args.port}"
        self.entity_id = args.entity_id or f"{self.base}/metadata"
        self.tmp = tempfile.mkdtemp(prefix="saml-sp-")
        self.key_file, self.cert_file = common.make_keypair(
            self.tmp, "sp", args.key_size, args.key_file, args.cert_file
        )
        self.lock = threading.RLock()
        self.client = None
        self.sessions = {}  # cookie value -> session dict
        self.outstanding = {}  # AuthnRequest ID -> where to go afterwards
        self.cookie_name = f"sp_session_{args.port}"
        self.extensions = None
        if args.extensions_file:
            with open(args.extensions_file, encoding="utf-8") as f:
                self.extensions = f.read()
        self.metadata_xml = create_metadata_string(None, config=self.config(with_idp=False), sign=False).decode("utf-8")

    def config(self, with_idp=True):
        a = self.args
        sp = {
            "endpoints": {
                "assertion_consumer_service": [(f"{self.base}/acs", BINDING_HTTP_POST)],
                "single_logout_service": [
                    (f"{self.base}/slo", BINDING_HTTP_REDIRECT),
                    (f"{self.base}/slo", BINDING_HTTP_POST),
                ],
            },
            "authn_requests_signed": a.sign_requests,
            "want_assertions_signed": a.want_assertions_signed,
            "want_response_signed": a.want_response_signed,
            # Never accept a response with no signature at all.
            "want_assertions_or_response_signed": True,
            "allow_unsolicited": a.allow_unsolicited,
            "logout_requests_signed": True,
            "logout_responses_signed": True,
        }
        if a.name_id_format:
            sp["name_id_policy_format"] = NAMEID_FORMATS.get(a.name_id_format, a.name_id_format)
            sp["name_id_format"] = [sp["name_id_policy_format"]]
        conf = {
            "entityid": self.entity_id,
            "service": {"sp": sp},
            "key_file": self.key_file,
            "cert_file": self.cert_file,
            "accepted_time_diff": a.clock_skew,
            "signing_algorithm": common.SIG_RSA_SHA256,
            "digest_algorithm": common.DIGEST_SHA256,
            "allow_unknown_attributes": True,
            "delete_tmpfiles": True,
        }
        if a.encryption_key:
            conf["encryption_keypairs"] = [{"key_file": self.key_file, "cert_file": self.cert_file}]
        if with_idp:
            conf["metadata"] = {"inline": [common.read_source(a.idp_metadata)]}
        c = SPConfig()
        c.load(conf)
        return c

    def get_client(self, reload=False):
        with self.lock:
            if self.client is None or reload:
                self.client = Saml2Client(config=self.config())
                idps = list(self.client.metadata.identity_providers())
                if not idps:
                    self.client = None
                    raise RuntimeError("no IdP in the IdP metadata")
                self.idp_entity_id = idps[0]
                log.info("IdP %s loaded from %s", self.idp_entity_id, self.args.idp_metadata)
            return self.client


def read_attributes(assertion_el):
    attributes = {}
    info = {}
    for attr in assertion_el.iterfind(".//saml:AttributeStatement/saml:Attribute", common.NS):
        name = attr.get("Name")
        values = []
        complex_values = False
        for v in attr.iterfind("saml:AttributeValue", common.NS):
            if len(v):
                complex_values = True
                values.append("".join(common.to_str(child) for child in v))
            elif v.get(f"{{{common.NS['xsi']}}}nil") == "true":
                values.append(None)
            else:
                values.append(v.text or "")
        attributes.setdefault(name, []).extend(values)
        info[name] = {
            "friendly_name": attr.get("FriendlyName"),
            "name_format": attr.get("NameFormat"),
            "xml_attributes": {k: v for k, v in attr.attrib.items() if k not in STD_ATTR_ATTRS},
            "complex": complex_values,
        }
    return attributes, info


def crypto_facts(original_xml):
    """What the response looked like on the wire: which parts were signed
    and encrypted, and with which algorithms."""
    root = common.parse_xml(original_xml)
    facts = {
        "response_signed": root.find("ds:Signature", common.NS) is not None,
        "response_signature_algorithm": None,
        "assertion_encrypted": root.find("saml:EncryptedAssertion", common.NS) is not None,
        "data_encryption_algorithm": None,
        "key_transport_algorithm": None,
        "key_transport_digest": None,
        "key_transport_mgf": None,
    }
    sm = root.find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", common.NS)
    if sm is not None:
        facts["response_signature_algorithm"] = sm.get("Algorithm")
    ed = root.find("saml:EncryptedAssertion/xenc:EncryptedData", common.NS)
    if ed is not None:
        em = ed.find("xenc:EncryptionMethod", common.NS)
        facts["data_encryption_algorithm"] = em.get("Algorithm") if em is not None else None
        ek = root.find(".//xenc:EncryptedKey", common.NS)
        if ek is not None:
            kem = ek.find("xenc:EncryptionMethod", common.NS)
            if kem is not None:
                facts["key_transport_algorithm"] = kem.get("Algorithm")
                dm = kem.find("ds:DigestMethod", common.NS)
                mgf = kem.find("xenc11:MGF", common.NS)
                facts["key_transport_digest"] = dm.get("Algorithm") if dm is not None else None
                facts["key_transport_mgf"] = mgf.get("Algorithm") if mgf is not None else None
    return facts


def safe_next(n):
    if n and n.startswith("/") and not n.startswith("//") and "\\" not in n:
        return n
    return "/whoami"


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "pysaml2-test-sp"
    sp: SP = None

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    # -- helpers
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

    def send_json(self, status, obj, headers=()):
        self.send(status, json.dumps(obj, indent=2, ensure_ascii=False) + "\n", "application/json", headers)

    def redirect(self, location, headers=()):
        self.send(303, "", headers=[("Location", location), *headers])

    def send_http_info(self, info, headers=()):
        """pysaml2's apply_binding() result: a redirect or an HTML form."""
        if info.get("method") == "GET" or info.get("status") in (302, 303):
            loc = dict(info["headers"]).get("Location")
            self.redirect(loc, headers)
        else:
            self.send(200, info["data"], "text/html; charset=utf-8", headers)

    def session_id(self):
        c = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        m = c.get(self.sp.cookie_name)
        return m.value if m else None

    def session(self):
        sid = self.session_id()
        return self.sp.sessions.get(sid) if sid else None

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 2_000_000:
            raise ValueError("request too large")
        body = self.rfile.read(n).decode("ascii", "replace")
        return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}, body

    # -- routing
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path == "/healthz":
                return self.send(200, "ok\n")
            if url.path == "/metadata":
                return self.send(200, self.sp.metadata_xml, "application/samlmetadata+xml")
            if url.path == "/login":
                return self.login(q)
            if url.path == "/whoami":
                s = self.session()
                if not s:
                    return self.send_json(401, {"error": "not logged in"})
                return self.send_json(200, s["public"])
            if url.path == "/logout":
                return self.logout()
            if url.path == "/slo":
                return self.slo({k: v[0] for k, v in q.items()}, BINDING_HTTP_REDIRECT, url.query)
            if url.path == "/reload":
                self.sp.get_client(reload=True)
                return self.send(200, "reloaded\n")
            return self.send(404, "not found\n")
        except Exception as exc:  # noqa: BLE001 - a test peer reports every failure
            log.exception("GET %s failed", url.path)
            return self.send(400, f"{type(exc).__name__}: {exc}\n")

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        try:
            form, raw = self.form()
            if url.path == "/acs":
                return self.acs(form)
            if url.path == "/slo":
                return self.slo(form, BINDING_HTTP_POST, None)
            return self.send(404, "not found\n")
        except Exception as exc:  # noqa: BLE001
            log.exception("POST %s failed", url.path)
            return self.send(400, f"{type(exc).__name__}: {exc}\n")

    # -- SSO
    def login(self, q):
        sp = self.sp
        client = sp.get_client()
        binding = BINDINGS[(q.get("binding") or [sp.args.binding])[0]]
        sign = yes_no(q["sign"][0]) if "sign" in q else sp.args.sign_requests
        kwargs = {}
        accrs = [v for vs in q.get("authn_context", []) for v in vs.split(",") if v]
        if accrs:
            kwargs["requested_authn_context"] = RequestedAuthnContext(
                authn_context_class_ref=[AuthnContextClassRef(text=a) for a in accrs],
                comparison=(q.get("comparison") or ["minimum"])[0],
            )
        if (q.get("force") or ["0"])[0] in ("1", "true", "yes"):
            kwargs["force_authn"] = "true"
        extensions = None
        if sp.extensions:
            extensions = Extensions(extension_elements=[extension_element_from_string(sp.extensions)])
        nxt = safe_next((q.get("next") or [None])[0])
        with sp.lock:
            req_id, info = client.prepare_for_authenticate(
                entityid=sp.idp_entity_id,
                relay_state=nxt,
                binding=binding,
                sign=sign,
                sigalg=common.SIG_RSA_SHA256,
                digest_alg=common.DIGEST_SHA256,
                extensions=extensions,
                **kwargs,
            )
            sp.outstanding[req_id] = nxt
        log.info("AuthnRequest %s via %s, signed=%s, %s", req_id, binding.rsplit(":", 1)[-1], sign, accrs)
        self.send_http_info(info)

    def acs(self, form):
        sp = self.sp
        client = sp.get_client()
        saml_response = form.get("SAMLResponse")
        if not saml_response:
            return self.send(400, "no SAMLResponse\n")
        original = base64.b64decode(saml_response)
        with sp.lock:
            try:
                resp = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, dict(sp.outstanding))
            except Exception as exc:  # noqa: BLE001 - the reason is what the test wants
                log.warning("response refused: %s: %s", type(exc).__name__, exc)
                return self.send(400, f"response refused: {type(exc).__name__}: {exc}\n")
            if resp is None:
                return self.send(400, "response refused: no valid response\n")
            sp.outstanding.pop(resp.in_response_to, None)
            info = resp.session_info()
        assertion = resp.assertion
        root = common.parse_xml(resp.xmlstr)
        found = root.xpath("//saml:Assertion[@ID=$i]", namespaces=common.NS, i=assertion.id)
        if len(found) != 1:
            return self.send(400, "response refused: assertion not found once\n")
        attributes, attr_info = read_attributes(found[0])
        facts = crypto_facts(original)
        sm = found[0].find("ds:Signature/ds:SignedInfo/ds:SignatureMethod", common.NS)
        facts["assertion_signed"] = sm is not None
        facts["assertion_signature_algorithm"] = sm.get("Algorithm") if sm is not None else None
        name_id = info["name_id"]
        authn = info.get("authn_info") or [("", [], "")]
        public = {
            "name_id": name_id.text if name_id is not None else None,
            "name_id_format": name_id.format if name_id is not None else None,
            "name_id_sp_name_qualifier": getattr(name_id, "sp_name_qualifier", None),
            "attributes": attributes,
            "attribute_info": attr_info,
            "authn_context_class_ref": authn[0][0],
            "authn_instant": authn[0][2],
            "issuer": info["issuer"],
            "session_index": info["session_index"],
            "in_response_to": resp.in_response_to,
            "assertion_id": assertion.id,
            "crypto": facts,
        }
        sid = secrets.token_urlsafe(24)
        sp.sessions[sid] = {"public": public, "name_id": name_id}
        log.info("login of %s at %s", public["name_id"], public["authn_context_class_ref"])
        cookie = f"{sp.cookie_name}={sid}; Path=/; HttpOnly; SameSite=Lax"
        self.redirect(safe_next(info.get("came_from") or form.get("RelayState")), [("Set-Cookie", cookie)])

    # -- SLO
    def logout(self):
        sp = self.sp
        sid = self.session_id()
        s = sp.sessions.pop(sid, None) if sid else None
        clear = [("Set-Cookie", f"{sp.cookie_name}=; Path=/; Max-Age=0")]
        if not s:
            return self.send(200, "not logged in\n", headers=clear)
        client = sp.get_client()
        with sp.lock:
            try:
                responses = client.global_logout(s["name_id"], sign=True, sign_alg=common.SIG_RSA_SHA256)
            except Exception as exc:  # noqa: BLE001
                log.warning("global logout failed (%s): local logout only", exc)
                return self.send(200, "logged out locally\n", headers=clear)
        for _entity, result in responses.items():
            if isinstance(result, tuple):
                _binding, info = result
                log.info("LogoutRequest to %s", _entity)
                return self.send_http_info(info, clear)
        return self.send(200, "logged out locally\n", headers=clear)

    def slo(self, params, binding, raw_query):
        sp = self.sp
        client = sp.get_client()
        if raw_query is not None and "Signature" in params:
            certs = [c for _, c in client.metadata.certs(sp.idp_entity_id, "idpsso", "signing")]
            _signed, ok = common.redirect_signature_ok(raw_query, certs)
            if not ok:
                return self.send(400, "SLO message with a wrong query signature\n")
        relay_state = params.get("RelayState")
        if "SAMLResponse" in params:
            with sp.lock:
                resp = client.parse_logout_request_response(params["SAMLResponse"], binding)
                status = resp.response.status.status_code.value
                try:
                    client.handle_logout_response(resp)
                except KeyError:
                    pass
            log.info("LogoutResponse %s", status)
            ok = status.endswith(":Success")
            return self.send(200 if ok else 400, f"logged out: {status}\n")
        if "SAMLRequest" in params:
            with sp.lock:
                req = client.parse_logout_request(
                    params["SAMLRequest"],
                    binding,
                    relay_state=relay_state,
                    sigalg=params.get("SigAlg"),
                    signature=params.get("Signature"),
                )
                msg = req.message
                nid = msg.name_id
                indexes = {si.text for si in (msg.session_index or [])}
                ended = [
                    k
                    for k, s in sp.sessions.items()
                    if s["name_id"] is not None
                    and s["name_id"].text == nid.text
                    and (not indexes or s["public"]["session_index"] in indexes)
                ]
                for k in ended:
                    stored = sp.sessions.pop(k, None)
                    try:
                        client.local_logout(stored["name_id"])
                    except KeyError:
                        pass
                status = (
                    success_status_factory()
                    if ended
                    else status_message_factory("unknown principal", STATUS_UNKNOWN_PRINCIPAL)
                )
                # pysaml2's handle_logout_request() answers RequestDenied when
                # the NameID is not byte-for-byte the one in its cache; this
                # matches on the NameID value (and SessionIndex) instead.
                response_binding = BINDING_HTTP_POST if binding == BINDING_HTTP_POST else BINDING_HTTP_REDIRECT
                response = client.create_logout_response(
                    msg,
                    bindings=[response_binding],
                    status=status,
                    sign=response_binding == BINDING_HTTP_POST,
                    sign_alg=common.SIG_RSA_SHA256,
                    digest_alg=common.DIGEST_SHA256,
                )
                rinfo = client.response_args(msg, [response_binding])
                info = client.apply_binding(
                    rinfo["binding"],
                    response,
                    rinfo["destination"],
                    relay_state,
                    response=True,
                    sign=rinfo["binding"] == BINDING_HTTP_REDIRECT,
                    sigalg=common.SIG_RSA_SHA256,
                )
            log.info("IdP-initiated logout of %s: %d session(s) ended", nid.text, len(ended))
            return self.send_http_info(info)
        return self.send(400, "neither SAMLRequest nor SAMLResponse\n")


def main():
    args = parse_args()
    common.setup_logging("sp")
    sp = SP(args)
    Handler.sp = sp
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    log.info("SP %s listening on %s", sp.entity_id, sp.base)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        shutil.rmtree(sp.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
