// Passkeys for interkom's pages: WebAuthn in the browser, base64url JSON
// to the server (webauthn-rs on the other side). No inline script, so the
// pages' Content-Security-Policy stays `script-src 'self'`.
(function () {
  "use strict";
  const b64u = (buf) =>
    btoa(String.fromCharCode(...new Uint8Array(buf)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const bytes = (s) => {
    const b = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(b, (c) => c.charCodeAt(0));
  };

  const register = document.getElementById("passkey-register");
  if (register) {
    const status = document.getElementById("passkey-status");
    register.addEventListener("click", async () => {
      try {
        const begin = await fetch(register.dataset.begin, {
          method: "POST",
          body: new URLSearchParams({ csrf_token: register.dataset.csrf }),
        });
        if (!begin.ok) throw new Error("begin");
        const { ceremony, options } = await begin.json();
        const pk = options.publicKey;
        pk.challenge = bytes(pk.challenge);
        pk.user.id = bytes(pk.user.id);
        (pk.excludeCredentials || []).forEach((c) => { c.id = bytes(c.id); });
        const cred = await navigator.credentials.create({ publicKey: pk });
        const finish = await fetch(register.dataset.finish, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            ceremony,
            csrf_token: register.dataset.csrf,
            credential: {
              id: cred.id,
              rawId: b64u(cred.rawId),
              type: cred.type,
              response: {
                attestationObject: b64u(cred.response.attestationObject),
                clientDataJSON: b64u(cred.response.clientDataJSON),
              },
            },
          }),
        });
        if (!finish.ok) throw new Error("finish");
        status.textContent = status.dataset.done;
        const count = document.getElementById("passkey-count");
        count.textContent = String(Number(count.textContent) + 1);
      } catch (e) {
        status.textContent = status.dataset.failed;
      }
    });
  }

  const login = document.getElementById("passkey-login");
  if (login) {
    login.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = login.elements;
      try {
        const begin = await fetch(login.dataset.begin, {
          method: "POST",
          body: new URLSearchParams({
            login_request: f.login_request.value,
            csrf_token: f.csrf_token.value,
          }),
        });
        if (!begin.ok) throw new Error("begin");
        const { options } = await begin.json();
        const pk = options.publicKey;
        pk.challenge = bytes(pk.challenge);
        (pk.allowCredentials || []).forEach((c) => { c.id = bytes(c.id); });
        const a = await navigator.credentials.get({ publicKey: pk });
        f.credential.value = JSON.stringify({
          id: a.id,
          rawId: b64u(a.rawId),
          type: a.type,
          response: {
            authenticatorData: b64u(a.response.authenticatorData),
            clientDataJSON: b64u(a.response.clientDataJSON),
            signature: b64u(a.response.signature),
            userHandle: a.response.userHandle ? b64u(a.response.userHandle) : null,
          },
        });
      } catch (e) {
        f.credential.value = "";
      }
      // Posted either way: a refusal comes back as the page with its message.
      login.submit();
    });
  }
})();
