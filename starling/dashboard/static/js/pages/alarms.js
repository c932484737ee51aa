// Alarms of a node: present ones and the history of cleared ones.

import {get, path} from '../api.js';
import {card, clear, h, pageHeader, table} from '../dom.js';
import {INTERVAL_MS} from '../sampler.js';

export async function render(ctx) {
  const {node} = ctx;
  const present = h('div');
  const history = h('div');
  clear(ctx.main, pageHeader(`Alarms on ${node}`), card('Present', present), card('History', history));
  const load = async () => {
    const [now, past] = await Promise.all([get(path`alarms/present/${node}`),
      get(path`alarms/history/${node}`)]);
    if (!ctx.alive()) return;
    clear(present, table([
      {title: 'Alarm', value: (a) => a.id},
      {title: 'Description', value: (a) => a.desc},
    ], now, {empty: 'No alarm'}));
    clear(history, table([
      {title: 'Alarm', value: (a) => a.id},
      {title: 'Description', value: (a) => a.desc},
      {title: 'Cleared at', value: (a) => a.clear_at},
    ], past, {empty: 'No cleared alarm'}));
  };
  await load();
  ctx.every(INTERVAL_MS, () => load().catch(() => {}));
}
