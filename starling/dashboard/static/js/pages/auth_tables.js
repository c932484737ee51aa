// Entries of emqx_auth_username and emqx_auth_clientid: list, add, change the
// password, delete.  While the plugin is stopped the API's 404 is shown as is.

import {del, get, post, put} from '../api.js';
import {
  button, card, clear, confirmDialog, describeError, dialog, errorLine, field, h, input, pageHeader,
  run, table,
} from '../dom.js';

function authPage(route, key, label, plugin) {
  return async function render(ctx) {
    const box = h('div');
    const name = input({name: key, required: true});
    const password = input({name: 'password', type: 'password', required: true,
      autocomplete: 'new-password'});
    const errors = errorLine();
    const form = h('form', {class: 'grid-form', 'aria-label': `Add a ${label}`},
      field(label, name), field('Password', password), errors.el,
      button('Add', null, {kind: 'primary', type: 'submit'}));
    clear(ctx.main, pageHeader(`Authentication by ${label.toLowerCase()}`,
      h('a', {class: 'btn ghost', href: '#/plugins'}, `Plugins (${plugin})`)),
    card(`Entries of ${plugin}`, box), card(`Add a ${label.toLowerCase()}`, form));

    const load = async () => {
      let keys;
      try {
        keys = await get(route);
      } catch (err) {
        if (!ctx.alive()) return;
        clear(box, h('p', {class: 'form-error', role: 'alert'}, describeError(err)),
          err.status === 404 ? h('p', {class: 'muted'}, `Start ${plugin} on the Plugins page `
            + 'to manage its entries.') : null);
        return;
      }
      if (!ctx.alive()) return;
      clear(box, table([
        {title: label, value: (k) => k},
        {title: 'Actions', value: (k) => h('div', {class: 'row-actions'},
          button('Change password', () => changePassword(k), {kind: 'small'}),
          button('Delete', async () => {
            if (!await confirmDialog(`Delete ${label.toLowerCase()} "${k}"?`, 'Delete')) return;
            if (await run(() => del(`${route}/${encodeURIComponent(k)}`), {done: `${k} deleted`})
                !== undefined) load();
          }, {kind: 'danger small'}))},
      ], keys, {empty: 'No entry'}));
    };

    const changePassword = (k) => {
      const next = input({type: 'password', name: 'new-password', autocomplete: 'new-password'});
      const dlgErrors = errorLine();
      dialog(`New password for ${k}`, h('div', {}, field('New password', next), dlgErrors.el), [
        ['Save', async (close) => {
          const ok = await run(() => put(`${route}/${encodeURIComponent(k)}`, {password: next.value}),
            {errors: dlgErrors, done: `Password of ${k} changed`});
          if (ok !== undefined) close();
        }, 'primary']]);
    };

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (await run(() => post(route, {[key]: name.value, password: password.value}),
        {errors, done: `${name.value} added`}) !== undefined) {
        name.value = '';
        password.value = '';
        load();
      }
    });
    await load();
  };
}

export const usernames = authPage('auth_username', 'username', 'Username', 'emqx_auth_username');
export const clientIds = authPage('auth_clientid', 'clientid', 'Client ID', 'emqx_auth_clientid');
