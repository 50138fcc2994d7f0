"""Logs an administrator in at the admin console's client of interkom's own
gateway (authorization code + PKCE, as the console does) and prints the
access token."""
import base64
import hashlib
import html
import os
import re
import secrets
import sys
import urllib.parse

import requests

base, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
client = "interkom-console"
redirect = f"{base}/admin/console/callback"
verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
s = requests.Session()
page = s.get(f"{base}/authorize", params={
    "response_type": "code", "client_id": client, "redirect_uri": redirect,
    "scope": "openid", "state": secrets.token_urlsafe(8), "code_challenge": challenge,
    "code_challenge_method": "S256"})
page.raise_for_status()
action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1))
fields = {html.unescape(n): html.unescape(v) for n, v in
          re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text)}
fields.update(username=user, password=password)
res = s.post(urllib.parse.urljoin(base + "/", action), data=fields, allow_redirects=False)
code = urllib.parse.parse_qs(urllib.parse.urlparse(res.headers["location"]).query)["code"][0]
tok = s.post(f"{base}/token", data={
    "grant_type": "authorization_code", "client_id": client, "code": code,
    "redirect_uri": redirect, "code_verifier": verifier})
tok.raise_for_status()
print(tok.json()["access_token"])
