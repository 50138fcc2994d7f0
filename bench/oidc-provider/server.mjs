// The reference OpenID Provider for scripts/bench-http's `oidc_provider`
// scenario: panva's oidc-provider with its defaults (opaque access tokens
// kept in its in-memory adapter, no audit trail), one machine client with
// the id, secret and scopes of interkom's demo client `kfz-backend`, so the
// load generator sends byte-for-byte the same request to both.
//
// Usage: node server.mjs PORT   (listens on 127.0.0.1 only)
import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? 18090);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: 'kfz-backend',
      client_secret: 'kfz-backend-demo-secret-0123456789abcdefgh',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'roles authzen',
    },
  ],
  scopes: ['roles', 'authzen'],
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
  },
  routes: { token: '/token' },
  // interkom's access_token_ttl.
  ttl: { ClientCredentials: 300 },
});
// Warnings about the development keys and the in-memory adapter are expected
// here: this process only exists for the length of one benchmark.
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.listen(port, '127.0.0.1');
console.error(`oidc-provider listening on http://127.0.0.1:${port}`);
