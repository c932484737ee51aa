// Clients (connections) with search, paging, a detail view and kick; sessions;
// subscriptions; topics (routes).

import {del, get, path} from '../api.js';
import {
  button, card, clear, confirmDialog, definitionList, h, pageHeader, run, table, text,
} from '../dom.js';
import {link, pagedList} from './common.js';

async function kick(clientId) {
  if (!await confirmDialog(`Disconnect client "${clientId}"?`, 'Kick')) return false;
  return (await run(() => del(path`connections/${clientId}`), {done: `Kicked ${clientId}`})) !== undefined;
}

export async function list(ctx) {
  const {node} = ctx;
  const view = pagedList(ctx, {
    title: 'Clients',
    route: () => path`nodes/${node}/connections`,
    empty: 'No client connected',
    searches: [
      {value: 'client_id', label: 'Client ID',
        load: (term) => get(path`nodes/${node}/connections/${term}`)},
      {value: 'username', label: 'Username',
        load: (term) => get(path`nodes/${node}/connection/username/${term}`)},
    ],
    columns: [
      {title: 'Client ID', value: (c) => link(c.client_id, 'clients', c.client_id)},
      {title: 'Username', value: (c) => c.username},
      {title: 'IP address', value: (c) => `${c.ipaddress}:${c.port}`},
      {title: 'Protocol', value: (c) => `${c.proto_name} ${c.proto_ver}`},
      {title: 'Keepalive', value: (c) => c.keepalive, class: 'num'},
      {title: 'Clean start', value: (c) => String(c.clean_start)},
      {title: 'Connected at', value: (c) => c.connected_at},
      {title: 'Actions', value: (c) => button('Kick', async () => {
        if (await kick(c.client_id)) view.load();
      }, {kind: 'danger small', title: `Kick ${c.client_id}`})},
    ],
  });
  await view.load();
}

export async function detail(ctx) {
  const {node} = ctx;
  const clientId = ctx.params.clientid;
  const body = h('div');
  clear(ctx.main, pageHeader(`Client ${clientId}`,
    button('Kick', async () => { if (await kick(clientId)) ctx.refresh(); }, {kind: 'danger'}),
    h('a', {class: 'btn ghost', href: '#/clients'}, 'All clients')), body);
  const [connections, sessions, subscriptions] = await Promise.all([
    get(path`nodes/${node}/connections/${clientId}`),
    get(path`nodes/${node}/sessions/${clientId}`),
    get(path`nodes/${node}/subscriptions/${clientId}`)]);
  if (!ctx.alive()) return;
  const conn = connections[0];
  const session = sessions[0];
  clear(body,
    card('Connection', conn
      ? definitionList(Object.entries(conn).map(([k, v]) => [k, text(v)]))
      : h('p', {class: 'muted'}, `${clientId} is not connected to ${node}.`)),
    card('Session', session
      ? definitionList(Object.entries(session).map(([k, v]) => [k, text(v)]))
      : h('p', {class: 'muted'}, 'No session.')),
    card('Subscriptions', table([
      {title: 'Topic', value: (s) => s.topic},
      {title: 'QoS', value: (s) => s.qos, class: 'num'},
    ], subscriptions, {empty: 'No subscription'})));
}

export async function sessions(ctx) {
  const {node} = ctx;
  const view = pagedList(ctx, {
    title: 'Sessions',
    route: () => path`nodes/${node}/sessions`,
    empty: 'No session',
    searches: [{value: 'client_id', label: 'Client ID',
      load: (term) => get(path`nodes/${node}/sessions/${term}`)}],
    columns: [
      {title: 'Client ID', value: (s) => link(s.client_id, 'clients', s.client_id)},
      {title: 'Clean start', value: (s) => String(s.clean_start)},
      {title: 'Subscriptions', value: (s) => s.subscriptions_count, class: 'num'},
      {title: 'Expiry (s)', value: (s) => s.expiry_interval, class: 'num'},
      {title: 'Inflight', value: (s) => `${s.inflight_len} / ${s.max_inflight}`, class: 'num'},
      {title: 'Queue', value: (s) => `${s.mqueue_len} / ${s.max_mqueue}`, class: 'num'},
      {title: 'Dropped', value: (s) => s.mqueue_dropped, class: 'num'},
      {title: 'Awaiting rel', value: (s) => s.awaiting_rel_len, class: 'num'},
      {title: 'Delivered', value: (s) => s.deliver_msg, class: 'num'},
      {title: 'Enqueued', value: (s) => s.enqueue_msg, class: 'num'},
      {title: 'Created at', value: (s) => s.created_at},
      {title: 'Actions', value: (s) => button('Discard', async () => {
        if (!await confirmDialog(`Discard the offline session of "${s.client_id}"?`, 'Discard')) return;
        const done = await run(() => del(path`nodes/${node}/sessions/persistent/${s.client_id}`),
          {done: `Session of ${s.client_id} discarded`});
        if (done !== undefined) view.load();
      }, {kind: 'small', title: 'Discard an offline persistent session'})},
    ],
  });
  await view.load();
}

export async function subscriptions(ctx) {
  const {node} = ctx;
  const view = pagedList(ctx, {
    title: 'Subscriptions',
    route: () => path`nodes/${node}/subscriptions`,
    empty: 'No subscription',
    searches: [{value: 'client_id', label: 'Client ID',
      load: (term) => get(path`nodes/${node}/subscriptions/${term}`)}],
    columns: [
      {title: 'Client ID', value: (s) => link(s.client_id, 'clients', s.client_id)},
      {title: 'Topic', value: (s) => s.topic},
      {title: 'QoS', value: (s) => s.qos, class: 'num'},
    ],
  });
  await view.load();
}

export async function topics(ctx) {
  const view = pagedList(ctx, {
    title: 'Topics',
    route: () => 'routes',
    empty: 'No route',
    searches: [{value: 'topic', label: 'Topic', load: (term) => get(path`routes/${term}`)}],
    columns: [
      {title: 'Topic', value: (r) => r.topic},
      {title: 'Node', value: (r) => r.node},
    ],
  });
  await view.load();
}
