// The dashboard's shell: sign-in, the menu, the top bar and the hash router
// (#/clients, #/rules/<id>, ...).  Nothing but the login form runs until a user
// has signed in.

import {setUnauthorizedHandler} from './api.js';
import {button, checkbox, clear, errorLine, field, h, input, run, showError} from './dom.js';
import {loadNodes, nodeSelector, selectedNode} from './nodes.js';
import * as alarms from './pages/alarms.js';
import * as apps from './pages/apps.js';
import * as authTables from './pages/auth_tables.js';
import * as banned from './pages/banned.js';
import * as clients from './pages/clients.js';
import * as httpApi from './pages/http_api.js';
import * as listeners from './pages/listeners.js';
import * as overview from './pages/overview.js';
import * as plugins from './pages/plugins.js';
import * as resources from './pages/resources.js';
import * as rules from './pages/rules.js';
import * as users from './pages/users.js';
import * as websocket from './pages/websocket.js';
import {startSampling, stopSampling} from './sampler.js';
import * as session from './session.js';
import {applyTheme, themeButton} from './theme.js';

const MENU = [
  ['Monitoring', [['overview', 'Overview'], ['clients', 'Clients'], ['sessions', 'Sessions'],
    ['subscriptions', 'Subscriptions'], ['topics', 'Topics']]],
  ['Rule engine', [['rules', 'Rules'], ['resources', 'Resources']]],
  ['Management', [['plugins', 'Plugins'], ['listeners', 'Listeners'], ['alarms', 'Alarms'],
    ['banned', 'Banned'], ['auth_username', 'Auth: usernames'],
    ['auth_clientid', 'Auth: client ids'], ['apps', 'API apps']]],
  ['Tools', [['websocket', 'WebSocket client'], ['http_api', 'HTTP API']]],
  ['Admin', [['users', 'Dashboard users'], ['account', 'My account']]],
];

// Most specific first: `rules/new` before `rules/:id`.
const ROUTES = [
  ['overview', overview.render, true],
  ['clients', clients.list, true],
  ['clients/:clientid', clients.detail, true],
  ['sessions', clients.sessions, true],
  ['subscriptions', clients.subscriptions, true],
  ['topics', clients.topics, false],
  ['rules', rules.list, false],
  ['rules/new', rules.editor, false],
  ['rules/:id', rules.detail, false],
  ['rules/:id/edit', rules.editor, false],
  ['resources', resources.render, false],
  ['plugins', plugins.list, true],
  ['plugins/:name', plugins.config, true],
  ['listeners', listeners.render, true],
  ['alarms', alarms.render, true],
  ['banned', banned.render, false],
  ['auth_username', authTables.usernames, false],
  ['auth_clientid', authTables.clientIds, false],
  ['apps', apps.render, false],
  ['users', users.list, false],
  ['account', users.account, false],
  ['websocket', websocket.render, true],
  ['http_api', httpApi.render, true],
].map(([pattern, render, perNode]) => ({pattern: pattern.split('/'), render, perNode}));

const app = document.getElementById('app');
let generation = 0;
let timers = [];
let layout = null;

function match(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean);
  if (!parts.length) return {route: ROUTES[0], params: {}};
  for (const route of ROUTES) {
    if (route.pattern.length !== parts.length) continue;
    const params = {};
    const ok = route.pattern.every((p, i) => {
      if (p.startsWith(':')) { params[p.slice(1)] = decodeURIComponent(parts[i]); return true; }
      return p === parts[i];
    });
    if (ok) return {route, params};
  }
  return null;
}

function stopTimers() {
  for (const id of timers) clearInterval(id);
  timers = [];
}

// -- sign-in ------------------------------------------------------------------------------

function showLogin(message) {
  generation += 1;
  stopTimers();
  layout = null;
  document.title = 'Sign in · Starling Dashboard';
  const errors = errorLine();
  const username = input({name: 'username', autocomplete: 'username', required: true});
  const password = input({name: 'password', type: 'password', autocomplete: 'current-password',
    required: true});
  const remember = checkbox('Remember me', {name: 'remember'});
  const form = h('form', {class: 'login-form', 'aria-label': 'Sign in'},
    h('h1', {}, 'Starling Dashboard'),
    message ? h('p', {class: 'notice'}, message) : null,
    field('Username', username), field('Password', password), remember,
    h('small', {class: 'hint'}, 'Remembered for 30 days on this browser by a sign-in token; '
      + 'the password itself is never stored.'), errors.el,
    button('Sign in', null, {kind: 'primary', type: 'submit'}));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    await run(async () => {
      await session.login(username.value, password.value, remember.querySelector('input').checked);
      password.value = '';
      await enter();
    }, {errors});
  });
  clear(app, h('main', {class: 'login'}, form));
  username.focus();
}

async function enter() {
  try {
    await loadNodes();
  } catch (err) {
    if (!session.current()) return; // 401: back at the login form already
    showError(err);
  }
  startSampling();
  buildLayout();
  await route();
}

async function logout(message) {
  stopSampling();
  websocket.endClient();
  await session.logout();
  window.location.hash = '';
  showLogin(message);
}

// -- layout -------------------------------------------------------------------------------

function buildLayout() {
  const nav = h('nav', {class: 'menu', 'aria-label': 'Main menu'},
    h('a', {class: 'brand', href: '#/overview'}, 'Starling'),
    MENU.map(([group, items]) => h('div', {class: 'menu-group'},
      h('h3', {}, group),
      h('ul', {}, items.map(([id, label]) => h('li', {},
        h('a', {href: `#/${id}`, dataset: {page: id}}, label)))))));
  const nodeSlot = h('div', {class: 'node-slot'});
  const user = session.current().username;
  const top = h('header', {class: 'topbar'}, nodeSlot, h('div', {class: 'spacer'}),
    themeButton(),
    h('a', {class: 'user', href: '#/account', title: 'My account'}, user),
    button('Log out', () => logout(), {kind: 'ghost'}));
  const main = h('main', {class: 'content', id: 'content'});
  clear(app, h('div', {class: 'shell'}, nav, h('div', {class: 'body'}, top, main)));
  layout = {nav, nodeSlot, main};
}

async function route() {
  if (!session.current()) { showLogin(); return; }
  if (!layout) buildLayout();
  generation += 1;
  const mine = generation;
  stopTimers();
  const found = match(window.location.hash);
  const {main, nav, nodeSlot} = layout;
  clear(main);
  if (!found) {
    main.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. '),
      h('a', {href: '#/overview'}, 'Back to the overview'));
    return;
  }
  const {route: r, params} = found;
  for (const stale of document.querySelectorAll('#toasts .toast.error')) stale.remove();
  const page = r.pattern[0];
  for (const link of nav.querySelectorAll('a[data-page]')) {
    link.classList.toggle('active', link.dataset.page === page);
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  clear(nodeSlot, r.perNode ? nodeSelector(() => route()) : null);
  const ctx = {
    main,
    node: selectedNode(),
    params,
    user: session.current().username,
    alive: () => generation === mine,
    every(ms, fn) { timers.push(setInterval(() => { if (ctx.alive()) fn(); }, ms)); },
    go(hash) { window.location.hash = hash; },
    refresh: () => route(),
    logout,
  };
  try {
    await r.render(ctx);
  } catch (err) {
    if (ctx.alive()) showError(err);
  }
}

// -- start --------------------------------------------------------------------------------

applyTheme();
setUnauthorizedHandler(() => {
  if (!session.current()) return;
  stopSampling();
  websocket.endClient();
  session.logout({revoke: false});
  showLogin('Your sign-in has ended (expired, revoked or the password changed). Sign in again.');
});
window.addEventListener('hashchange', () => { if (session.current()) route(); });
if (session.restore()) enter();
else showLogin();
