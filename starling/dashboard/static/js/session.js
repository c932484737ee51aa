// Signing in and out.  The password is sent once, to POST /auth/token, and never
// kept: the page keeps the token it gets back (sessionStorage, gone with the tab; or
// localStorage with "remember me"), and logging out revokes it on the node.

import {request, setCredentials} from './api.js';

const KEY = 'starling.dashboard.session';
let session = null;

function stores() { return [window.sessionStorage, window.localStorage]; }

export function current() { return session; }

/** The saved session of an earlier visit, if it has not expired. */
export function restore() {
  for (const store of stores()) {
    let saved = null;
    try { saved = JSON.parse(store.getItem(KEY) || 'null'); } catch { saved = null; }
    if (saved && typeof saved.token === 'string' && typeof saved.username === 'string'
        && saved.expires_at * 1000 > Date.now()) {
      session = saved;
      setCredentials({username: saved.username, token: saved.token});
      return session;
    }
    store.removeItem(KEY);
  }
  return null;
}

export async function login(username, password, remember) {
  const {data} = await request('POST', 'auth/token', {
    body: {username, password, remember: Boolean(remember)}, auth: false});
  session = {username: data.username, token: data.token, expires_at: data.expires_at,
    remember: Boolean(remember)};
  for (const store of stores()) store.removeItem(KEY);
  (remember ? window.localStorage : window.sessionStorage).setItem(KEY, JSON.stringify(session));
  setCredentials({username: session.username, token: session.token});
  return session;
}

/** Forget the session here; `revoke` also ends the token on the node. */
export async function logout({revoke = true} = {}) {
  const token = session && session.token;
  session = null;
  setCredentials(null);
  for (const store of stores()) store.removeItem(KEY);
  if (revoke && token) {
    try {
      await request('DELETE', 'auth/token', {body: {token}, auth: false});
    } catch {
      // the node may be gone; the token is forgotten here either way
    }
  }
}
