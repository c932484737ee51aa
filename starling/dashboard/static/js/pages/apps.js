// API apps (credentials of the management API): create, view the secret,
// enable/disable, edit, delete.

import {del, get, path, post, put} from '../api.js';
import {
  badge, button, card, checkbox, clear, confirmDialog, definitionList, dialog, errorLine, field,
  formatEpoch, h, input, pageHeader, run, table,
} from '../dom.js';

function epochFromInput(el) {
  return el.value ? Math.floor(new Date(el.value).getTime() / 1000) : undefined;
}

function inputFromEpoch(seconds) {
  if (typeof seconds !== 'number') return '';
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${day}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function render(ctx) {
  const box = h('div');
  const appId = input({name: 'app_id', required: true});
  const name = input({name: 'name'});
  const secret = input({name: 'secret', placeholder: 'empty: generated'});
  const desc = input({name: 'desc'});
  const expired = input({name: 'expired', type: 'datetime-local'});
  const enabled = checkbox('Enabled', {name: 'status', checked: true});
  const errors = errorLine();
  const form = h('form', {class: 'grid-form', 'aria-label': 'Create an app'},
    field('App ID', appId), field('Name', name), field('Secret', secret), field('Description', desc),
    field('Expires', expired, 'empty: never'), enabled, errors.el,
    button('Create app', null, {kind: 'primary', type: 'submit'}));
  clear(ctx.main, pageHeader('API apps'),
    h('p', {class: 'muted'}, 'Credentials of the management API (HTTP Basic app id and secret). '
      + 'Dashboard users are not apps.'),
    card('Apps', box), card('Create an app', form));

  const showSecret = async (app) => {
    const full = await run(() => get(path`apps/${app.app_id}`));
    if (full !== undefined) {
      dialog(`App ${app.app_id}`, definitionList([['App ID', full.app_id],
        ['Secret', h('code', {}, full.secret)]]));
    }
  };
  const edit = (app) => {
    const editName = input({value: app.name});
    const editDesc = input({value: app.desc});
    const editExpired = input({type: 'datetime-local', value: inputFromEpoch(app.expired)});
    const dlgErrors = errorLine();
    dialog(`Edit app ${app.app_id}`, h('div', {class: 'stack'}, field('Name', editName),
      field('Description', editDesc), field('Expires', editExpired, 'empty: never'), dlgErrors.el), [
      ['Save', async (close) => {
        const body = {name: editName.value, desc: editDesc.value, status: app.status,
          expired: epochFromInput(editExpired) ?? 'undefined'};
        if (await run(() => put(path`apps/${app.app_id}`, body),
          {errors: dlgErrors, done: `App ${app.app_id} saved`}) !== undefined) { close(); load(); }
      }, 'primary']]);
  };

  const load = async () => {
    const apps = await get('apps');
    if (!ctx.alive()) return;
    clear(box, table([
      {title: 'App ID', value: (a) => a.app_id},
      {title: 'Name', value: (a) => a.name},
      {title: 'Description', value: (a) => a.desc},
      {title: 'Status', value: (a) => (a.status ? badge('enabled', 'ok') : badge('disabled', 'off'))},
      {title: 'Expires', value: (a) => (a.expired ? formatEpoch(a.expired) : 'never')},
      {title: 'Actions', value: (a) => h('div', {class: 'row-actions'},
        button('View secret', () => showSecret(a), {kind: 'small'}),
        button(a.status ? 'Disable' : 'Enable', async () => {
          if (await run(() => put(path`apps/${a.app_id}`, {name: a.name, desc: a.desc,
            status: !a.status, expired: a.expired ?? 'undefined'}),
          {done: `App ${a.app_id} ${a.status ? 'disabled' : 'enabled'}`}) !== undefined) load();
        }, {kind: 'small'}),
        button('Edit', () => edit(a), {kind: 'small'}),
        button('Delete', async () => {
          const question = `Delete app "${a.app_id}"? Scripts using it stop working.`;
          if (!await confirmDialog(question, 'Delete')) return;
          if (await run(() => del(path`apps/${a.app_id}`), {done: `App ${a.app_id} deleted`})
              !== undefined) load();
        }, {kind: 'danger small'}))},
    ], apps, {empty: 'No app'}));
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {app_id: appId.value, name: name.value, desc: desc.value,
      status: enabled.querySelector('input').checked};
    if (secret.value) body.secret = secret.value;
    const expiry = epochFromInput(expired);
    if (expiry !== undefined) body.expired = expiry;
    const created = await run(() => post('apps', body), {errors, done: `App ${appId.value} created`});
    if (created !== undefined) {
      dialog(`App ${appId.value} created`, definitionList([['App ID', appId.value],
        ['Secret', h('code', {}, created.secret)]]));
      form.reset();
      load();
    }
  });
  await load();
}
