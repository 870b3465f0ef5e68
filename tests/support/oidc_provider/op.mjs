// A real OpenID Provider (the OpenID-certified `oidc-provider` package) for the test suite.
//
//   node op.mjs <port> <config.json>
//
// Listens on 127.0.0.1:<port> with issuer http://127.0.0.1:<port> and prints
// `READY <port>` on stdout once it accepts connections. The config file holds
//   { "clients": [client metadata, ...],          // oidc-provider client metadata
//     "accounts": { "<account id>": { claims } },  // sub = account id; "amr"/"acr" go to the
//                                                  // login result, the rest are claims (any
//                                                  // non-standard one goes in the ID token)
//     "adminToken": "<secret>" }                   // required on every /__test/ request
//
// Login and consent are this script's own small HTML forms (oidc-provider's dev
// interactions are off), so a client drives them over plain HTTP:
//   GET  /interaction/<uid>          a form whose `data-prompt` is "login" or "consent"
//   POST /interaction/<uid>/login    account=<account id>     (no password: the account is
//                                                              the test's choice)
//   POST /interaction/<uid>/confirm  grants what the client asked for
//   POST /interaction/<uid>/abort    the user refuses (error=access_denied at the client)
//
// Test-only admin endpoints (JSON in, JSON out, header `x-admin-token`):
//   POST /__test/rotate-keys  {"drop_old": false}  new RS256 and ES256 keys sign from now on;
//                                                   the old ones stay published unless dropped
//   POST /__test/clients      {client metadata}     adds or replaces a client
//   POST /__test/accounts     {"<id>": {claims}}    adds or replaces accounts
//   POST /__test/ttl          {"client_id": "...", "id_token": <seconds>}
//   POST /__test/tamper       {"client_id": "...", "claims": {...}, "alg": null}
//                             the client's next token response carries its ID token with
//                             these claims changed (null removes one), re-signed with the
//                             provider's key; "alg": "none" or "HS256-public-key" signs it
//                             that way instead (attacks a relying party must refuse)
//   GET  /__test/keys                              the signing keys' kids, newest first
//
// Clients and keys are fixed when a Provider is built, so a change builds a new Provider
// and swaps it in; every Provider shares one in-memory store, so sessions, interactions
// and codes in flight survive the swap.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import { SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import Provider from 'oidc-provider';
// The package's own in-memory adapter; one store for every Provider this script builds.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const [portArg, configPath] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || !configPath) {
  process.stderr.write('usage: node op.mjs <port> <config.json>\n');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const issuer = `http://127.0.0.1:${port}`;
const adminToken = String(config.adminToken ?? '');
if (adminToken.length < 16) {
  process.stderr.write('config.adminToken must be at least 16 characters\n');
  process.exit(2);
}

const clients = new Map((config.clients ?? []).map((client) => [client.client_id, client]));
const accounts = new Map(Object.entries(config.accounts ?? {}));
const idTokenTtl = new Map(); // client_id -> seconds
const tamperings = new Map(); // client_id -> how to spoil the next ID token it gets
const adapter = createMemoryAdapter();
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];
let signingKeys = newSigningKeys(); // newest first: oidc-provider signs with the first match

function newSigningKeys() {
  const kidSuffix = crypto.randomBytes(6).toString('hex');
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return [
    { ...rsa.export({ format: 'jwk' }), kid: `rs256-${kidSuffix}`, alg: 'RS256', use: 'sig' },
    { ...ec.export({ format: 'jwk' }), kid: `es256-${kidSuffix}`, alg: 'ES256', use: 'sig' },
  ];
}

const LOGIN_ONLY = new Set(['amr', 'acr']);
const EMAIL_CLAIMS = ['email', 'email_verified'];
const PROFILE_CLAIMS = ['name', 'given_name', 'family_name', 'preferred_username', 'locale'];
const SCOPED = new Set(['sub', ...LOGIN_ONLY, ...EMAIL_CLAIMS, ...PROFILE_CLAIMS]);

// Claim names the accounts carry beyond the standard ones; they ride with `openid`.
function extraClaimNames() {
  const names = new Set();
  for (const claims of accounts.values()) {
    for (const name of Object.keys(claims)) if (!SCOPED.has(name)) names.add(name);
  }
  return [...names].sort();
}

function accountClaims(accountId) {
  const stored = accounts.get(accountId) ?? {};
  const claims = { sub: accountId };
  for (const [name, value] of Object.entries(stored)) {
    if (!LOGIN_ONLY.has(name)) claims[name] = value;
  }
  return claims;
}

function buildProvider() {
  const provider = new Provider(issuer, {
    adapter,
    clients: [...clients.values()],
    jwks: { keys: signingKeys },
    cookies: { keys: cookieKeys },
    findAccount: async (_ctx, id) => {
      if (!accounts.has(id)) return undefined;
      return { accountId: id, claims: async () => accountClaims(id) };
    },
    claims: {
      // oidc-provider puts only the claims a scope (or the claims parameter) asks for
      // into the ID token; real providers send acr, amr and auth_time with openid, and
      // provider-specific claims (Entra's tid, groups…) without a scope of their own.
      openid: ['sub', 'acr', 'amr', 'auth_time', ...extraClaimNames()],
      email: EMAIL_CLAIMS,
      profile: PROFILE_CLAIMS,
    },
    // Claims the scopes grant go into the ID token too (as Google, Entra and Okta do),
    // not only into userinfo.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      IdToken: (ctx, token, client) => idTokenTtl.get(client?.clientId) ?? 3600,
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    const clientId = ctx.oidc?.client?.clientId;
    if (ctx.oidc?.route === 'token' && ctx.body?.id_token && tamperings.has(clientId)) {
      const tampering = tamperings.get(clientId);
      tamperings.delete(clientId);
      ctx.body = { ...ctx.body, id_token: await spoiled(ctx.body.id_token, tampering) };
    }
  });
  provider.on('server_error', (_ctx, error) => {
    process.stderr.write(`server_error: ${error.stack}\n`);
  });
  return provider;
}

let provider = buildProvider();
let providerHandler = provider.callback();

// A token the provider really issued, changed as a test asks: claims patched (a null
// value removes the claim) and re-signed with the provider's current key, or signed with
// `alg: none`, or with HS256 using the provider's public key (PEM) as the HMAC secret.
async function spoiled(idToken, { claims = {}, alg = null }) {
  const payload = { ...decodeJwt(idToken) };
  for (const [name, value] of Object.entries(claims)) {
    if (value === null) delete payload[name];
    else payload[name] = value;
  }
  const { alg: issuedAlg, kid } = decodeProtectedHeader(idToken);
  if (alg === 'none') return new UnsecuredJWT(payload).encode();
  const jwk = signingKeys.find((key) => key.kid === kid);
  if (alg === 'HS256-public-key') {
    const { d, p, q, dp, dq, qi, ...publicJwk } = jwk;
    const pem = crypto.createPublicKey({ key: publicJwk, format: 'jwk' })
      .export({ type: 'spki', format: 'pem' });
    return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', kid })
      .sign(new TextEncoder().encode(pem));
  }
  const key = await importJWK(jwk, issuedAlg);
  return new SignJWT(payload).setProtectedHeader({ alg: issuedAlg, kid }).sign(key);
}

function rebuild() {
  provider = buildProvider();
  providerHandler = provider.callback();
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 1_000_000) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, contentType, body) {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

const sendJson = (res, status, value) => send(res, status, 'application/json', JSON.stringify(value));

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function formPage(uid, prompt, clientId) {
  const action = prompt === 'login' ? 'login' : 'confirm';
  const field = prompt === 'login' ? '<input name="account" autocomplete="username">' : '';
  return `<!doctype html><title>${escapeHtml(prompt)}</title>
<form method="post" action="/interaction/${escapeHtml(uid)}/${action}" data-prompt="${escapeHtml(prompt)}"
      data-client="${escapeHtml(clientId)}">${field}<button>Continue</button></form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button>Cancel</button></form>`;
}

async function showInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  send(res, 200, 'text/html; charset=utf-8', formPage(details.uid, details.prompt.name, details.params.client_id));
}

async function finishLogin(req, res) {
  const details = await provider.interactionDetails(req, res);
  const accountId = new URLSearchParams(await readBody(req)).get('account') ?? '';
  if (details.prompt.name !== 'login' || !accounts.has(accountId)) {
    send(res, 400, 'text/plain', 'unknown account or not at the login prompt');
    return;
  }
  const { amr, acr } = accounts.get(accountId);
  const login = { accountId };
  if (amr !== undefined) login.amr = amr;
  if (acr !== undefined) login.acr = acr;
  await provider.interactionFinished(req, res, { login }, { mergeWithLastSubmission: false });
}

async function finishConsent(req, res) {
  await readBody(req);
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name !== 'consent') {
    send(res, 400, 'text/plain', 'not at the consent prompt');
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function abortInteraction(req, res) {
  await readBody(req);
  const result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

function adminAllowed(req) {
  const given = Buffer.from(String(req.headers['x-admin-token'] ?? ''));
  const expected = Buffer.from(adminToken);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

function publicKids() {
  return signingKeys.map((key) => key.kid);
}

async function admin(req, res, action) {
  if (!adminAllowed(req)) {
    sendJson(res, 403, { error: 'forbidden' });
    return;
  }
  if (req.method === 'GET' && action === 'keys') {
    sendJson(res, 200, { kids: publicKids() });
    return;
  }
  if (req.method !== 'POST') {
    sendJson(res, 405, { error: 'method not allowed' });
    return;
  }
  const raw = await readBody(req);
  const body = raw ? JSON.parse(raw) : {};
  switch (action) {
    case 'rotate-keys': {
      const fresh = newSigningKeys();
      signingKeys = body.drop_old ? fresh : [...fresh, ...signingKeys];
      rebuild();
      sendJson(res, 200, { kids: publicKids() });
      return;
    }
    case 'clients':
      clients.set(body.client_id, body);
      rebuild();
      sendJson(res, 200, { client_id: body.client_id });
      return;
    case 'accounts': {
      const knownClaims = extraClaimNames().join(' ');
      for (const [id, claims] of Object.entries(body)) accounts.set(id, claims);
      if (extraClaimNames().join(' ') !== knownClaims) rebuild();
      sendJson(res, 200, { accounts: [...accounts.keys()] });
      return;
    }
    case 'tamper':
      tamperings.set(body.client_id, { claims: body.claims ?? {}, alg: body.alg ?? null });
      sendJson(res, 200, { client_id: body.client_id });
      return;
    case 'ttl':
      idTokenTtl.set(body.client_id, Number(body.id_token));
      sendJson(res, 200, { client_id: body.client_id, id_token: Number(body.id_token) });
      return;
    default:
      sendJson(res, 404, { error: 'not found' });
  }
}

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/;

async function route(req, res) {
  const { pathname } = new URL(req.url, issuer);
  if (pathname.startsWith('/__test/')) {
    await admin(req, res, pathname.slice('/__test/'.length));
    return;
  }
  const interaction = INTERACTION.exec(pathname);
  if (!interaction) {
    providerHandler(req, res);
    return;
  }
  const step = interaction[2];
  if (!step && req.method === 'GET') await showInteraction(req, res);
  else if (step === 'login' && req.method === 'POST') await finishLogin(req, res);
  else if (step === 'confirm' && req.method === 'POST') await finishConsent(req, res);
  else if (step === 'abort' && req.method === 'POST') await abortInteraction(req, res);
  else send(res, 405, 'text/plain', 'method not allowed');
}

const server = http.createServer((req, res) => {
  route(req, res).catch((error) => {
    process.stderr.write(`${req.method} ${req.url}: ${error.stack ?? error}\n`);
    if (!res.headersSent) send(res, 400, 'text/plain', String(error.message ?? error));
    else res.end();
  });
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
