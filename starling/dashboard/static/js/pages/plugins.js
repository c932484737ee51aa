// Plugins of a node: start/stop, and each plugin's plugin_configs form.

import {get, path, put} from '../api.js';
import {
  badge, button, card, clear, confirmDialog, errorLine, field, h, input, pageHeader, run, select,
  table,
} from '../dom.js';

// Plugins whose stop takes this page's own ground away.
const CUTS_OFF = new Map([
  ['emqx_dashboard', 'This dashboard stops answering until the plugin is started again '
    + '(PUT /api/v3/nodes/<node>/plugins/emqx_dashboard/load on the management API).'],
  ['emqx_management', 'The management API listener closes.'],
]);

export async function list(ctx) {
  const {node} = ctx;
  const box = h('div');
  const filter = select([['all', 'All'], ['running', 'Running'], ['stopped', 'Stopped']],
    {'aria-label': 'Show'});
  const search = input({type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter by name'});
  clear(ctx.main, pageHeader(`Plugins on ${node}`, h('div', {class: 'inline-form'}, search, filter)),
    card(null, box));
  let plugins = [];
  const draw = () => {
    const shown = plugins.filter((p) => (filter.value === 'all' || (filter.value === 'running') === p.active)
      && p.name.includes(search.value.trim()));
    clear(box, table([
      {title: 'Name', value: (p) => p.name},
      {title: 'Version', value: (p) => p.version},
      {title: 'Type', value: (p) => p.type},
      {title: 'Description', value: (p) => p.description},
      {title: 'Status', value: (p) => (p.active ? badge('running', 'ok') : badge('stopped', 'off'))},
      {title: 'Actions', value: (p) => h('div', {class: 'row-actions'},
        button(p.active ? 'Stop' : 'Start', async () => {
          if (p.active && CUTS_OFF.has(p.name) && !await confirmDialog(
            `Stop ${p.name}? ${CUTS_OFF.get(p.name)}`, 'Stop')) return;
          const verb = p.active ? 'unload' : 'load';
          const done = await run(() => put(path`nodes/${node}/plugins/${p.name}/${verb}`),
            {done: `${p.name} ${p.active ? 'stopped' : 'started'}`});
          if (done !== undefined) load();
        }, {kind: p.active ? 'danger small' : 'primary small',
          title: `${p.active ? 'Stop' : 'Start'} ${p.name}`}),
        h('a', {class: 'btn small', href: `#/plugins/${encodeURIComponent(p.name)}`}, 'Config'))},
    ], shown, {empty: 'No plugin'}));
  };
  const load = async () => {
    plugins = await get(path`nodes/${node}/plugins`);
    if (ctx.alive()) draw();
  };
  filter.addEventListener('change', draw);
  search.addEventListener('input', draw);
  await load();
}

export async function config(ctx) {
  const {node} = ctx;
  const name = ctx.params.name;
  const items = await get(path`nodes/${node}/plugin_configs/${name}`);
  if (!ctx.alive()) return;
  const errors = errorLine();
  const controls = items.map((item) => [item.key,
    input({name: item.key, value: item.value, required: item.required})]);
  const save = () => run(async () => {
    const body = {};
    for (const [key, el] of controls) body[key] = el.value;
    await put(path`nodes/${node}/plugin_configs/${name}`, body);
  }, {errors, done: `Configuration of ${name} saved`});
  const form = h('form', {class: 'stack', 'aria-label': `Configuration of ${name}`},
    items.map((item, i) => field(item.key, controls[i][1], item.desc)), errors.el,
    button('Save', null, {kind: 'primary', type: 'submit'}));
  form.addEventListener('submit', (event) => { event.preventDefault(); save(); });
  clear(ctx.main,
    pageHeader(`${name} on ${node}`, h('a', {class: 'btn ghost', href: '#/plugins'}, 'All plugins')),
    card('Configuration', items.length ? form : h('p', {class: 'muted'}, `${name} has no settings.`)));
}
