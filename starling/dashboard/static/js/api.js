// The /api/v3 client: every action of the page goes through the same routes a
// script uses, with the signed-in user's name and token as HTTP Basic credentials.
// URLs are relative, so the dashboard also works behind a proxy under a sub-path.

const BASE = 'api/v3/';
const TIMEOUT_MS = 10000;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let credentials = null; // {username, token}
let onUnauthorized = () => {};

export function setCredentials(value) { credentials = value; }
export function setUnauthorizedHandler(handler) { onUnauthorized = handler; }

function base64Utf8(textValue) {
  const bytes = new TextEncoder().encode(textValue);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** A path with each interpolated value percent-encoded as one segment:
 *  path`nodes/${node}/connections/${clientId}`. */
export function path(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length
    ? encodeURIComponent(String(values[i])) : ''), '');
}

function query(params) {
  const entries = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null);
  return entries.length ? `?${new URLSearchParams(entries)}` : '';
}

/** One request; resolves to the whole envelope ({code, data, meta}). */
export async function request(method, route, {body, params, auth = true} = {}) {
  const headers = {'Accept': 'application/json', 'X-Requested-With': 'XMLHttpRequest'};
  if (auth && credentials) {
    headers.Authorization = `Basic ${base64Utf8(`${credentials.username}:${credentials.token}`)}`;
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(BASE + route + query(params), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal, credentials: 'omit', cache: 'no-store',
    });
  } catch (err) {
    const reason = err.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message;
    throw new ApiError(0, 'network', `${method} ${route}: ${reason}`);
  } finally {
    clearTimeout(timer);
  }
  const raw = await response.text();
  let envelope = null;
  try { envelope = JSON.parse(raw); } catch { envelope = null; }
  if (envelope === null || typeof envelope !== 'object') {
    throw new ApiError(response.status, response.status, raw.trim() || response.statusText);
  }
  if (response.status === 401 && auth) onUnauthorized();
  if (!response.ok || (envelope.code !== undefined && envelope.code !== 0)) {
    throw new ApiError(response.status, envelope.code ?? response.status,
      envelope.message ?? response.statusText);
  }
  return envelope;
}

// These resolve to the answer's `data`, or null for a bare {"code": 0}: never to
// undefined, which `run()` in dom.js returns for a failure.
export async function get(route, params) {
  return (await request('GET', route, {params})).data ?? null;
}
export async function post(route, body, params) {
  return (await request('POST', route, {body, params})).data ?? null;
}
export async function put(route, body) { return (await request('PUT', route, {body})).data ?? null; }
export async function del(route, params, body) {
  return (await request('DELETE', route, {params, body})).data ?? null;
}

/** A paginated list: {items, count, page, limit}. */
export async function page(route, pageNo, limit, params = {}) {
  const envelope = await request('GET', route, {params: {...params, _page: pageNo, _limit: limit}});
  const meta = envelope.meta || {count: (envelope.data || []).length};
  return {items: envelope.data || [], count: meta.count, page: pageNo, limit};
}
