"""Shared parts of the test SAML peers (sp.py, idp.py).

pysaml2 does its XML signatures and encryption through a "crypto backend".
Its own backends are the xmlsec1 command line (Debian's is 1.2.37: no
RSASSA-PSS, no xmlenc11#rsa-oaep with MGF1-SHA256) and "XMLSecurity", which
is written for the unrelated pyXMLSecurity package, not for PyPI's `xmlsec`
binding, and cannot encrypt or decrypt at all. So this module adds
`PyXmlsecBackend`, a pysaml2 CryptoBackend on PyPI's `xmlsec` (python-xmlsec,
whose wheel bundles libxmlsec1 1.3 with OpenSSL 3), and `install()` points
pysaml2's security_context() at it. No xmlsec1 binary is needed.

Also here: key pair generation, metadata fetching, small HTTP helpers.
"""

import base64
import copy
import datetime
import html
import logging
import os
import sys
import urllib.parse
import urllib.request

import saml2.entity
import saml2.mdstore
import saml2.metadata
import saml2.response
import saml2.sigver
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from saml2.sigver import (
    ASSERT_XPATH,
    CryptoBackend,
    DecryptError,
    EncryptError,
    RSACrypto,
    SecurityContext,
    SignatureError,
    XmlsecError,
    import_rsa_key_from_file,
    pre_encrypt_assertion,
)

log = logging.getLogger("saml-peer")

NS = {
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "xenc11": "http://www.w3.org/2009/xmlenc11#",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xs": "http://www.w3.org/2001/XMLSchema",
}
DS = NS["ds"]
XENC = NS["xenc"]
XENC11 = NS["xenc11"]

# Algorithm URIs.
SIG_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SIG_RSA_PSS_SHA256 = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"
DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
DIGEST_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
C14N_EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
AES128_CBC = XENC + "aes128-cbc"
AES256_CBC = XENC + "aes256-cbc"
AES128_GCM = XENC11 + "aes128-gcm"
AES256_GCM = XENC11 + "aes256-gcm"
RSA_OAEP_MGF1P = XENC + "rsa-oaep-mgf1p"
RSA_OAEP_11 = XENC11 + "rsa-oaep"
MGF1_SHA256 = XENC11 + "mgf1sha256"

DATA_ALGS = {
    "aes256-gcm": AES256_GCM,
    "aes128-gcm": AES128_GCM,
    "aes256-cbc": AES256_CBC,
    "aes128-cbc": AES128_CBC,
}
# Key transport: "rsa-oaep" is xmlenc11#rsa-oaep with SHA-256 and MGF1-SHA256
# (what BundID announces); "rsa-oaep-mgf1p" is xmlenc#rsa-oaep-mgf1p with
# SHA-1 (the classic one, which libxmlsec1 1.2 and node-saml decrypt).
KEY_TRANSPORTS = {"rsa-oaep": RSA_OAEP_11, "rsa-oaep-mgf1p": RSA_OAEP_MGF1P}
SIG_ALGS = {"rsa-sha256": SIG_RSA_SHA256, "rsa-pss-sha256": SIG_RSA_PSS_SHA256}

_SESSION_KEY_BITS = {AES128_CBC: 128, AES256_CBC: 256, AES128_GCM: 128, AES256_GCM: 256}


def safe_parser():
    """An lxml parser that never loads DTDs, entities or anything remote."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=False
    )


def parse_xml(text):
    if isinstance(text, str):
        text = text.encode("utf-8")
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise XmlsecError("XML with a DTD is refused")
    return etree.fromstring(text, safe_parser())


def to_str(root):
    return etree.tostring(root, encoding="unicode")


# --------------------------------------------------------------------------
# Low-level operations on lxml trees (used by the backend and by idp.py).


def _key_from_file(path, cert=False):
    fmt = xmlsec.constants.KeyDataFormatCertPem if cert else xmlsec.constants.KeyDataFormatPem
    return xmlsec.Key.from_file(path, fmt)


def _elements_with_id(root, ident):
    return root.xpath("//*[@ID=$ident]", ident=ident)


def sign_element(root, node, key_file, cert_pem_b64=None, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256):
    """Adds an enveloped exc-c14n signature over `node` (by its ID) as the
    child right after its Issuer (SAML's place), and signs it."""
    ident = node.get("ID")
    if not ident:
        raise SignatureError("node to sign has no ID")
    sig = etree.Element(etree.QName(DS, "Signature"), nsmap={"ds": DS})
    si = etree.SubElement(sig, etree.QName(DS, "SignedInfo"))
    etree.SubElement(si, etree.QName(DS, "CanonicalizationMethod"), Algorithm=C14N_EXC)
    etree.SubElement(si, etree.QName(DS, "SignatureMethod"), Algorithm=sign_alg)
    ref = etree.SubElement(si, etree.QName(DS, "Reference"), URI="#" + ident)
    tr = etree.SubElement(ref, etree.QName(DS, "Transforms"))
    etree.SubElement(tr, etree.QName(DS, "Transform"), Algorithm=ENVELOPED)
    etree.SubElement(tr, etree.QName(DS, "Transform"), Algorithm=C14N_EXC)
    etree.SubElement(ref, etree.QName(DS, "DigestMethod"), Algorithm=digest_alg)
    etree.SubElement(ref, etree.QName(DS, "DigestValue"))
    etree.SubElement(sig, etree.QName(DS, "SignatureValue"))
    if cert_pem_b64:
        ki = etree.SubElement(sig, etree.QName(DS, "KeyInfo"))
        xd = etree.SubElement(ki, etree.QName(DS, "X509Data"))
        etree.SubElement(xd, etree.QName(DS, "X509Certificate")).text = cert_pem_b64
    issuer = node.find(etree.QName(NS["saml"], "Issuer"))
    if issuer is not None:
        issuer.addnext(sig)
    else:
        node.insert(0, sig)
    _sign_template(node, sig, key_file)
    return sig


def _sign_template(node, sig, key_file, sign_alg_override=None):
    if sign_alg_override:
        sig.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod").set("Algorithm", sign_alg_override)
    ctx = xmlsec.SignatureContext()
    ctx.register_id(node, "ID")
    ctx.key = _key_from_file(key_file)
    try:
        ctx.sign(sig)
    except xmlsec.Error as exc:
        raise SignatureError(f"signing failed: {exc}") from exc


def verify_element(root, node_id, cert_file, node_name=None, cert_type="pem"):
    """Verifies the enveloped signature that is a direct child of the one
    element whose ID is node_id, with the key of cert_file only. Raises
    XmlsecError when it does not hold."""
    nodes = _elements_with_id(root, node_id) if node_id else [root]
    if len(nodes) != 1:
        raise XmlsecError(f"{len(nodes)} elements with ID {node_id!r}")
    node = nodes[0]
    if node_name:
        ns, _, local = node_name.rpartition(":")
        if etree.QName(node).namespace != ns or etree.QName(node).localname != local:
            raise XmlsecError(f"element with ID {node_id!r} is {node.tag}, not {node_name}")
    sigs = node.findall(f"{{{DS}}}Signature")
    if len(sigs) != 1:
        raise XmlsecError(f"{len(sigs)} signatures directly under the element {node_id!r}")
    ctx = xmlsec.SignatureContext()
    ctx.register_id(node, "ID")
    fmt = xmlsec.constants.KeyDataFormatCertDer if cert_type == "der" else xmlsec.constants.KeyDataFormatCertPem
    ctx.key = xmlsec.Key.from_file(cert_file, fmt)
    try:
        ctx.verify(sigs[0])
    except xmlsec.Error as exc:
        raise XmlsecError(f"signature of {node_id!r} does not verify: {exc}") from exc
    return True


def encrypted_data_template(data_alg, key_transport):
    """EncryptedData (Type Element) with the EncryptedKey in its KeyInfo."""
    ed = etree.Element(
        etree.QName(XENC, "EncryptedData"),
        nsmap={"xenc": XENC},
        Type=XENC + "Element",
    )
    etree.SubElement(ed, etree.QName(XENC, "EncryptionMethod"), Algorithm=data_alg)
    ki = etree.SubElement(ed, etree.QName(DS, "KeyInfo"), nsmap={"ds": DS})
    ek = etree.SubElement(ki, etree.QName(XENC, "EncryptedKey"))
    em = etree.SubElement(ek, etree.QName(XENC, "EncryptionMethod"), Algorithm=key_transport)
    if key_transport == RSA_OAEP_11:
        etree.SubElement(em, etree.QName(DS, "DigestMethod"), Algorithm=DIGEST_SHA256)
        etree.SubElement(em, etree.QName(XENC11, "MGF"), nsmap={"xenc11": XENC11}, Algorithm=MGF1_SHA256)
    elif key_transport == RSA_OAEP_MGF1P:
        etree.SubElement(em, etree.QName(DS, "DigestMethod"), Algorithm=DIGEST_SHA1)
    cd = etree.SubElement(ek, etree.QName(XENC, "CipherData"))
    etree.SubElement(cd, etree.QName(XENC, "CipherValue"))
    cd = etree.SubElement(ed, etree.QName(XENC, "CipherData"))
    etree.SubElement(cd, etree.QName(XENC, "CipherValue"))
    return ed


def encrypt_bytes(data, cert_file, data_alg=AES256_GCM, key_transport=RSA_OAEP_11, cert_b64=None):
    """An EncryptedData (Type Element) holding data, the serialisation of a
    whole element: what an IdP does with an Assertion built as a document
    of its own, so that its plaintext declares every namespace it uses."""
    if data_alg not in _SESSION_KEY_BITS:
        raise EncryptError(f"unsupported data encryption {data_alg}")
    tpl = encrypted_data_template(data_alg, key_transport)
    mgr = xmlsec.KeysManager()
    mgr.add_key(_key_from_file(cert_file, cert=True))
    ctx = xmlsec.EncryptionContext(mgr)
    ctx.key = xmlsec.Key.generate(
        xmlsec.constants.KeyDataAes, _SESSION_KEY_BITS[data_alg], xmlsec.constants.KeyDataTypeSession
    )
    try:
        ed = ctx.encrypt_binary(tpl, data)
    except xmlsec.Error as exc:
        raise EncryptError(f"encryption failed: {exc}") from exc
    if cert_b64:
        _add_recipient_cert(ed, cert_b64)
    return ed


def _add_recipient_cert(ed, cert_b64):
    # Name the recipient's certificate, as most IdPs do; added after
    # encryption so that libxmlsec1 does not try to use it as a key.
    ek = ed.find(f"{{{DS}}}KeyInfo/{{{XENC}}}EncryptedKey")
    ki = etree.Element(etree.QName(DS, "KeyInfo"))
    xd = etree.SubElement(ki, etree.QName(DS, "X509Data"))
    etree.SubElement(xd, etree.QName(DS, "X509Certificate")).text = cert_b64
    ek.find(f"{{{XENC}}}EncryptionMethod").addnext(ki)


def _find_encrypted_key(ed):
    ek = ed.find(f"{{{DS}}}KeyInfo/{{{XENC}}}EncryptedKey")
    if ek is not None:
        return ek
    # The other common layout: EncryptedKey as a sibling of EncryptedData
    # inside EncryptedAssertion (Shibboleth), perhaps via RetrievalMethod.
    parent = ed.getparent()
    if parent is not None:
        ek = parent.find(f"{{{XENC}}}EncryptedKey")
        if ek is not None:
            return ek
    return None


def decrypt_element(ed, key_file):
    """Decrypts one EncryptedData in place (Type Element); returns the
    plaintext node. The key transport and data algorithms are whatever the
    document names (libxmlsec1 1.3 knows them all)."""
    ek = _find_encrypted_key(ed)
    if ek is None:
        raise DecryptError("no EncryptedKey")
    kctx = xmlsec.EncryptionContext()
    kctx.key = _key_from_file(key_file)
    try:
        session_key = kctx.decrypt(ek)
    except xmlsec.Error as exc:
        raise DecryptError(f"key transport decryption failed: {exc}") from exc
    alg = ed.find(f"{{{XENC}}}EncryptionMethod").get("Algorithm", "")
    kd = xmlsec.constants.KeyDataDes if "tripledes" in alg else xmlsec.constants.KeyDataAes
    dctx = xmlsec.EncryptionContext()
    dctx.key = xmlsec.Key.from_binary_data(kd, session_key)
    try:
        return dctx.decrypt(ed)
    except xmlsec.Error as exc:
        raise DecryptError(f"data decryption failed: {exc}") from exc


# --------------------------------------------------------------------------
# The pysaml2 crypto backend.


class PyXmlsecBackend(CryptoBackend):
    """pysaml2 CryptoBackend on python-xmlsec (libxmlsec1 1.3).

    data_alg / key_transport: what encrypt_assertion() uses (pysaml2's own
    template asks for 3DES; it is ignored). sign_alg: when set, replaces the
    SignatureMethod of every signature template pysaml2 hands over (pysaml2
    itself only allows the rsa-shaN algorithms)."""

    def __init__(self, data_alg=AES256_GCM, key_transport=RSA_OAEP_11, sign_alg=None):
        CryptoBackend.__init__(self)
        self.data_alg = data_alg
        self.key_transport = key_transport
        self.sign_alg = sign_alg

    @property
    def version(self):
        return ".".join(str(n) for n in xmlsec.get_libxmlsec_version())

    def encrypt(self, text, recv_key, template, session_key_type, xpath=""):
        raise EncryptError("only encrypt_assertion is supported by this backend")

    def encrypt_assertion(self, statement, enc_key, template, key_type=None, node_xpath=None, node_id=None):
        if not isinstance(statement, (str, bytes)):
            statement = str(pre_encrypt_assertion(statement))
        root = parse_xml(statement)
        nodes = root.xpath(node_xpath or ASSERT_XPATH)
        if len(nodes) != 1:
            raise EncryptError(f"{len(nodes)} nodes to encrypt")
        cert_b64 = pem_body(open(enc_key).read())
        node = nodes[0]
        # A copy is a document of its own, declaring the namespaces it uses,
        # so the plaintext parses without the Response around it.
        ed = encrypt_bytes(etree.tostring(copy.deepcopy(node)), enc_key, self.data_alg, self.key_transport, cert_b64)
        node.getparent().replace(node, ed)
        return to_str(root)

    def decrypt(self, enctext, key_file):
        root = parse_xml(enctext)
        eds = root.xpath("//xenc:EncryptedData", namespaces=NS)
        if not eds:
            raise DecryptError("nothing encrypted")
        for ed in eds:
            decrypt_element(ed, key_file)
        return to_str(root)

    def sign_statement(self, statement, node_name, key_file, node_id):
        if not isinstance(statement, (str, bytes)):
            statement = str(statement)
        root = parse_xml(statement)
        if node_id:
            nodes = _elements_with_id(root, node_id)
            if len(nodes) != 1:
                raise SignatureError(f"{len(nodes)} elements with ID {node_id!r}")
            node = nodes[0]
            sig = node.find(f"{{{DS}}}Signature")
        else:
            sig = root.find(f".//{{{DS}}}Signature")
            node = sig.getparent() if sig is not None else None
        if sig is None:
            raise SignatureError("no signature template")
        _sign_template(node, sig, key_file, self.sign_alg)
        return to_str(root)

    def validate_signature(self, signedtext, cert_file, cert_type, node_name, node_id):
        root = parse_xml(signedtext)
        return verify_element(root, node_id, cert_file, node_name, cert_type)


def security_context(conf, backend_options=None):
    """pysaml2's security_context() with PyXmlsecBackend instead of the
    xmlsec1 binary. sec_backend (an RSACrypto on our key) is what pysaml2
    uses for Redirect-binding query signatures."""
    if not conf:
        return None
    metadata = getattr(conf, "metadata", None)
    crypto = PyXmlsecBackend(**(backend_options or BACKEND_OPTIONS))
    sec_backend = None
    key_file = conf.getattr("key_file", "")
    if key_file:
        sec_backend = RSACrypto(import_rsa_key_from_file(key_file))
    enc_key_files = [kp["key_file"] for kp in (conf.encryption_keypairs or []) if "key_file" in kp]
    return SecurityContext(
        crypto,
        conf.key_file,
        cert_file=conf.cert_file,
        metadata=metadata,
        only_use_keys_in_metadata=conf.only_use_keys_in_metadata,
        cert_handler_extra_class=conf.cert_handler_extra_class,
        generate_cert_info=conf.generate_cert_info,
        tmp_cert_file=conf.tmp_cert_file,
        tmp_key_file=conf.tmp_key_file,
        validate_certificate=conf.validate_certificate,
        enc_key_files=enc_key_files,
        encryption_keypairs=conf.encryption_keypairs,
        sec_backend=sec_backend,
        delete_tmpfiles=conf.delete_tmpfiles,
    )


BACKEND_OPTIONS = {}


def install(**backend_options):
    """Makes every pysaml2 module build its SecurityContext with
    PyXmlsecBackend (they import security_context by name)."""
    BACKEND_OPTIONS.clear()
    BACKEND_OPTIONS.update(backend_options)
    for mod in (saml2.sigver, saml2.entity, saml2.response, saml2.mdstore, saml2.metadata):
        mod.security_context = security_context


# --------------------------------------------------------------------------
# Keys, metadata, HTTP.


def make_keypair(directory, common_name, bits=2048, key_file=None, cert_file=None):
    """A self-signed RSA certificate and its key as PEM files; returns
    (key_path, cert_path). Given files are used as they are."""
    if key_file and cert_file:
        return key_file, cert_file
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, f"{common_name}.key.pem")
    cert_path = os.path.join(directory, f"{common_name}.cert.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def pem_body(pem):
    return "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def read_source(src, timeout=5):
    """The text of a file or an http(s) URL (no proxy: loopback in tests)."""
    if src.startswith(("http://", "https://")):
        with _opener.open(src, timeout=timeout) as resp:
            return resp.read().decode("utf-8")
    with open(src, encoding="utf-8") as f:
        return f.read()


def redirect_signature_ok(raw_query, certs_pem_b64):
    """Checks a Redirect-binding signature over the query octets exactly as
    received (SAML bindings 3.4.4.1), which pysaml2 does not: it re-encodes
    the decoded values. Returns (signed, ok)."""
    parts = raw_query.split("&")
    values = {}
    raw = {}
    for p in parts:
        k, _, v = p.partition("=")
        raw[k] = p
        values[k] = urllib.parse.unquote_plus(v)
    if "Signature" not in values or "SigAlg" not in values:
        return False, False
    msg_key = "SAMLRequest" if "SAMLRequest" in raw else "SAMLResponse"
    signed = "&".join(raw[k] for k in (msg_key, "RelayState", "SigAlg") if k in raw).encode("ascii")
    hash_by_alg = {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1": hashes.SHA1(),
    }
    h = hash_by_alg.get(values["SigAlg"])
    if h is None:
        return True, False
    sig = base64.b64decode(values["Signature"])
    for cert_b64 in certs_pem_b64:
        cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64))
        try:
            cert.public_key().verify(sig, signed, padding.PKCS1v15(), h)
            return True, True
        except Exception:
            continue
    return True, False


def setup_logging(name):
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("SAML_PEER_LOG", "INFO").upper(),
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    # pysaml2 logs whole documents at DEBUG; keep it at WARNING unless asked.
    if os.environ.get("SAML_PEER_LOG", "").upper() != "DEBUG":
        logging.getLogger("saml2").setLevel(logging.WARNING)


def html_page(title, body):
    return (
        '<!DOCTYPE html>\n<html lang="de"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body>\n{body}\n</body></html>\n"
    )


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def saml_instant(dt=None):
    return (dt or now_utc()).strftime("%Y-%m-%dT%H:%M:%SZ")
