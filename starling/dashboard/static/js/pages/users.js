// Dashboard users (create, edit the remark, set a password, delete) and the
// signed-in user's own password.

import {del, get, path, post, put} from '../api.js';
import {
  button, card, clear, confirmDialog, dialog, errorLine, field, h, input, pageHeader, run, table,
} from '../dom.js';

export async function list(ctx) {
  const box = h('div');
  const username = input({name: 'username', required: true, autocomplete: 'off'});
  const password = input({name: 'password', type: 'password', required: true,
    autocomplete: 'new-password'});
  const tags = input({name: 'tags'});
  const errors = errorLine();
  const form = h('form', {class: 'grid-form', 'aria-label': 'Add a dashboard user'},
    field('Username', username), field('Password', password), field('Remark (tags)', tags),
    errors.el, button('Add user', null, {kind: 'primary', type: 'submit'}));
  clear(ctx.main, pageHeader('Dashboard users'), card('Users', box), card('Add a user', form));

  const editTags = (user) => {
    const value = input({value: user.tags});
    const dlgErrors = errorLine();
    dialog(`Remark of ${user.username}`, h('div', {}, field('Remark (tags)', value), dlgErrors.el), [
      ['Save', async (close) => {
        if (await run(() => put(path`users/${user.username}`, {tags: value.value}),
          {errors: dlgErrors, done: 'Saved'}) !== undefined) { close(); load(); }
      }, 'primary']]);
  };
  const setPassword = (user) => {
    const value = input({type: 'password', autocomplete: 'new-password'});
    const dlgErrors = errorLine();
    dialog(`New password for ${user.username}`, h('div', {},
      h('p', {class: 'muted'}, 'Ends every sign-in of this user.'),
      field('New password', value), dlgErrors.el), [
      ['Save', async (close) => {
        if (await run(() => put(path`users/${user.username}`, {password: value.value}),
          {errors: dlgErrors, done: `Password of ${user.username} set`}) !== undefined) close();
      }, 'primary']]);
  };

  const load = async () => {
    const users = await get('users');
    if (!ctx.alive()) return;
    clear(box, table([
      {title: 'Username', value: (u) => u.username},
      {title: 'Remark', value: (u) => u.tags},
      {title: 'Actions', value: (u) => h('div', {class: 'row-actions'},
        button('Edit remark', () => editTags(u), {kind: 'small'}),
        u.username === ctx.user ? h('a', {class: 'btn small', href: '#/account'}, 'Change my password')
          : button('Set password', () => setPassword(u), {kind: 'small'}),
        button('Delete', async () => {
          if (!await confirmDialog(`Delete dashboard user "${u.username}"?`, 'Delete')) return;
          if (await run(() => del(path`users/${u.username}`), {done: `${u.username} deleted`})
              !== undefined) load();
        }, {kind: 'danger small'}))},
    ], users));
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (await run(() => post('users', {username: username.value, password: password.value,
      tags: tags.value}), {errors, done: `${username.value} added`}) !== undefined) {
      form.reset();
      load();
    }
  });
  await load();
}

export async function account(ctx) {
  const old = input({name: 'old_pwd', type: 'password', autocomplete: 'current-password', required: true});
  const next = input({name: 'new_pwd', type: 'password', autocomplete: 'new-password', required: true});
  const again = input({name: 'again', type: 'password', autocomplete: 'new-password', required: true});
  const errors = errorLine();
  const form = h('form', {class: 'stack narrow', 'aria-label': 'Change my password'},
    field('Current password', old), field('New password', next), field('New password again', again),
    errors.el, button('Change password', null, {kind: 'primary', type: 'submit'}));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (next.value !== again.value) {
      errors.show(new Error('the new passwords differ'));
      return;
    }
    const done = await run(() => put(path`change_pwd/${ctx.user}`, {old_pwd: old.value,
      new_pwd: next.value}), {errors});
    if (done !== undefined) {
      await ctx.logout('Password changed: sign in with the new one.');
    }
  });
  clear(ctx.main, pageHeader(`My account: ${ctx.user}`),
    card('Change my password', h('p', {class: 'muted'},
      'Changing the password ends every sign-in of this user, this one included.'), form));
}
