// Rule-engine resources: list with each node's status, create (form from the
// type's params schema) with a test first, reconnect and delete.

import {del, get, path, post} from '../api.js';
import {
  badge, button, card, clear, confirmDialog, errorLine, field, h, input, pageHeader, run, select,
  table,
} from '../dom.js';
import {schemaForm, words} from '../schema_form.js';

function statusCell(status) {
  if (!status) return h('span', {class: 'muted'}, '…');
  return h('span', {}, status.map((s) => badge(`${s.node}: ${s.is_alive ? 'alive' : 'down'}`,
    s.is_alive ? 'ok' : 'bad')));
}

export async function render(ctx) {
  const listBox = h('div');
  const createBox = h('div');
  clear(ctx.main, pageHeader('Resources'), card('Resources', listBox), card('Create a resource', createBox));

  const types = await get('resource_types');
  if (!ctx.alive()) return;

  const load = async () => {
    const resources = await get('resources');
    const statuses = await Promise.all(resources.map((r) => get(path`resources/${r.id}`)
      .then((full) => full.status).catch(() => null)));
    if (!ctx.alive()) return;
    clear(listBox, table([
      {title: 'ID', value: (r) => r.id},
      {title: 'Type', value: (r) => r.type},
      {title: 'Description', value: (r) => r.description},
      {title: 'Config', value: (r) => h('code', {}, JSON.stringify(r.config))},
      {title: 'Status', value: (r) => statusCell(statuses[resources.indexOf(r)])},
      {title: 'Actions', value: (r) => h('div', {class: 'row-actions'},
        button('Reconnect', async () => {
          await run(() => post(path`resources/${r.id}`), {done: `Resource ${r.id} reconnected`});
          load();
        }, {kind: 'small'}),
        button('Delete', async () => {
          if (!await confirmDialog(`Delete resource "${r.id}"?`, 'Delete')) return;
          if (await run(() => del(path`resources/${r.id}`), {done: `Resource ${r.id} deleted`})
              !== undefined) load();
        }, {kind: 'danger small'}))},
    ], resources, {empty: 'No resource yet'}));
  };

  // the create form
  const typeSelect = select(types.map((t) => [t.name, `${t.name} — ${words(t.description, '')}`]),
    {name: 'type', 'aria-label': 'Resource type'});
  const name = input({name: 'name', placeholder: 'optional: the id becomes <type>:<name>'});
  const description = input({name: 'description'});
  const paramsBox = h('div');
  const errors = errorLine();
  let form = null;
  const drawParams = () => {
    const type = types.find((t) => t.name === typeSelect.value);
    form = schemaForm(type ? type.params : {});
    clear(paramsBox, form.el);
  };
  typeSelect.addEventListener('change', drawParams);
  drawParams();
  const body = () => {
    const out = {type: typeSelect.value, config: form.read(), description: description.value};
    if (name.value) out.name = name.value;
    return out;
  };
  clear(createBox, field('Type', typeSelect), field('Name', name), field('Description', description),
    paramsBox, errors.el,
    h('div', {class: 'row-actions'},
      button('Test', () => run(() => post('resources', body(), {test: 'true'}),
        {errors, done: 'Test passed: the resource can be created'})),
      button('Create', async () => {
        const created = await run(() => post('resources', body()), {errors, done: 'Resource created'});
        if (created !== undefined) { name.value = ''; description.value = ''; drawParams(); load(); }
      }, {kind: 'primary'})));
  await load();
}
