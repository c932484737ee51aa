// Listeners of a node: current/max connections, and stop/start of MQTT listeners.

import {get, path, put} from '../api.js';
import {badge, button, card, clear, confirmDialog, h, pageHeader, run, table} from '../dom.js';
import {INTERVAL_MS} from '../sampler.js';

function closes(counts) {
  const entries = Object.entries(Array.isArray(counts) ? {} : counts || {});
  return entries.length ? entries.map(([k, v]) => `${k}: ${v}`).join(', ') : '–';
}

export async function render(ctx) {
  const {node} = ctx;
  const box = h('div');
  clear(ctx.main, pageHeader(`Listeners on ${node}`), card(null, box));
  const load = async () => {
    const listeners = await get(path`nodes/${node}/listener_details`);
    if (!ctx.alive()) return;
    clear(box, table([
      {title: 'Name', value: (l) => l.name},
      {title: 'Protocol', value: (l) => l.protocol},
      {title: 'Listen on', value: (l) => (l.path ? `${l.listen_on} ${l.path}` : l.listen_on)},
      {title: 'Connections', value: (l) => `${l.current_conns} / ${l.max_conns}`, class: 'num'},
      {title: 'Acceptors', value: (l) => l.acceptors, class: 'num'},
      {title: 'Closed connections', value: (l) => closes(l.shutdown_count)},
      {title: 'Status', value: (l) => (l.running ? badge('running', 'ok') : badge('stopped', 'off'))},
      {title: 'Actions', value: (l) => (!l.protocol.startsWith('mqtt:') ? '' : button(
        l.running ? 'Stop' : 'Start', async () => {
          if (l.running && !await confirmDialog(
            `Stop ${l.name}? Its ${l.current_conns} connection(s) are closed.`, 'Stop')) return;
          const verb = l.running ? 'stop' : 'start';
          if (await run(() => put(path`nodes/${node}/listeners/${l.name}/${verb}`),
            {done: `${l.name} ${l.running ? 'stopped' : 'started'}`}) !== undefined) load();
        }, {kind: l.running ? 'danger small' : 'primary small',
          title: `${l.running ? 'Stop' : 'Start'} ${l.name}`}))},
    ], listeners));
  };
  await load();
  ctx.every(INTERVAL_MS, () => load().catch(() => {}));
}
