// Banned clients: list, add, remove.

import {del, path, post} from '../api.js';
import {
  button, card, confirmDialog, errorLine, field, formatEpoch, h, input, run, select,
} from '../dom.js';
import {pagedList} from './common.js';

const KINDS = [['client_id', 'Client ID'], ['username', 'Username'], ['ip_address', 'IP address']];

export async function render(ctx) {
  const view = pagedList(ctx, {
    title: 'Banned',
    route: () => 'banned',
    empty: 'Nobody is banned',
    columns: [
      {title: 'Who', value: (b) => b.who},
      {title: 'As', value: (b) => b.as},
      {title: 'Reason', value: (b) => b.reason},
      {title: 'By', value: (b) => b.by},
      {title: 'Until', value: (b) => (b.until === 'undefined' ? 'forever' : formatEpoch(b.until))},
      {title: 'Actions', value: (b) => button('Remove', async () => {
        if (!await confirmDialog(`Lift the ban on ${b.as} "${b.who}"?`, 'Remove')) return;
        if (await run(() => del(path`banned/${b.who}`, {as: b.as}),
          {done: `Ban on ${b.who} removed`}) !== undefined) view.load();
      }, {kind: 'danger small', title: `Remove the ban on ${b.who}`})},
    ],
  });
  const who = input({name: 'who', required: true});
  const kind = select(KINDS, {name: 'as'});
  const reason = input({name: 'reason'});
  const until = input({name: 'until', type: 'datetime-local'});
  const errors = errorLine();
  const form = h('form', {class: 'grid-form', 'aria-label': 'Add a ban'},
    field('Who', who), field('As', kind), field('Reason', reason),
    field('Until', until, 'empty: forever'), errors.el,
    button('Add ban', null, {kind: 'primary', type: 'submit'}));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {who: who.value, as: kind.value, by: ctx.user};
    if (reason.value) body.reason = reason.value;
    if (until.value) body.until = Math.floor(new Date(until.value).getTime() / 1000);
    if (await run(() => post('banned', body), {errors, done: `${who.value} banned`}) !== undefined) {
      who.value = '';
      reason.value = '';
      until.value = '';
      view.load();
    }
  });
  ctx.main.append(card('Add a ban', form));
  await view.load();
}
