// Rules: the list (enable/disable, delete), a rule's detail with its metrics, and
// the editor (create and edit) with the SQL test and actions built from their schemas.

import {del, get, path, post, put} from '../api.js';
import {
  badge, button, card, checkbox, clear, confirmDialog, definitionList, errorLine, field, h,
  pageHeader, run, select, table, text,
} from '../dom.js';
import {INTERVAL_MS} from '../sampler.js';
import {schemaForm, words} from '../schema_form.js';
import {link} from './common.js';

function sum(metrics, key) {
  return (metrics || []).reduce((total, m) => total + (m[key] || 0), 0);
}

async function setEnabled(rule, enabled) {
  return run(() => put(path`rules/${rule.id}`, {enabled}),
    {done: `Rule ${rule.id} ${enabled ? 'enabled' : 'disabled'}`});
}

async function remove(rule) {
  if (!await confirmDialog(`Delete rule "${rule.id}"?`, 'Delete')) return false;
  return (await run(() => del(path`rules/${rule.id}`), {done: `Rule ${rule.id} deleted`})) !== undefined;
}

export async function list(ctx) {
  const box = h('div');
  clear(ctx.main, pageHeader('Rules',
    h('a', {class: 'btn primary', href: '#/rules/new'}, 'Create rule')), card(null, box));
  const rules = await get('rules');
  if (!ctx.alive()) return;
  clear(box, table([
    {title: 'ID', value: (r) => link(r.id, 'rules', r.id)},
    {title: 'Event', value: (r) => text(r.for)},
    {title: 'SQL', value: (r) => h('code', {}, r.rawsql)},
    {title: 'Actions', value: (r) => r.actions.map((a) => a.name).join(', ')},
    {title: 'Matched', value: (r) => sum(r.metrics, 'matched'), class: 'num'},
    {title: 'Status', value: (r) => (r.enabled ? badge('enabled', 'ok') : badge('disabled', 'off'))},
    {title: 'Actions ', value: (r) => h('div', {class: 'row-actions'},
      button(r.enabled ? 'Disable' : 'Enable', async () => {
        if (await setEnabled(r, !r.enabled) !== undefined) ctx.refresh();
      }, {kind: 'small'}),
      h('a', {class: 'btn small', href: `#/rules/${encodeURIComponent(r.id)}/edit`}, 'Edit'),
      button('Delete', async () => { if (await remove(r)) ctx.refresh(); }, {kind: 'danger small'}))},
  ], rules, {empty: 'No rule yet'}));
}

export async function detail(ctx) {
  const id = ctx.params.id;
  const body = h('div');
  const head = h('div');
  clear(ctx.main, head, body);
  const draw = async () => {
    const rule = await get(path`rules/${id}`);
    if (!ctx.alive()) return;
    clear(head, pageHeader(`Rule ${rule.id}`,
      h('a', {class: 'btn', href: `#/rules/${encodeURIComponent(rule.id)}/edit`}, 'Edit'),
      button(rule.enabled ? 'Disable' : 'Enable', async () => {
        if (await setEnabled(rule, !rule.enabled) !== undefined) draw();
      }),
      button('Delete', async () => { if (await remove(rule)) ctx.go('#/rules'); }, {kind: 'danger'}),
      h('a', {class: 'btn ghost', href: '#/rules'}, 'All rules')));
    clear(body,
      card('Rule', definitionList([['Name', rule.name], ['Event', text(rule.for)],
        ['Description', rule.description], ['Status', rule.enabled ? 'enabled' : 'disabled'],
        ['SQL', h('pre', {class: 'sql'}, rule.rawsql)]])),
      card('Metrics', table([
        {title: 'Node', value: (m) => m.node},
        {title: 'Matched', value: (m) => m.matched, class: 'num'},
        {title: 'Passed', value: (m) => m.passed, class: 'num'},
        {title: 'No match', value: (m) => m.nomatch, class: 'num'},
        {title: 'Failed', value: (m) => m.failed, class: 'num'},
        {title: 'Speed (/s)', value: (m) => m.speed, class: 'num'},
        {title: 'Max speed', value: (m) => m.speed_max, class: 'num'},
        {title: 'Last 5 min', value: (m) => m.speed_last5m, class: 'num'},
      ], rule.metrics || [])),
      card('Actions', table([
        {title: 'Action', value: (a) => a.name},
        {title: 'Params', value: (a) => h('code', {}, JSON.stringify(a.params))},
        {title: 'Success', value: (a) => sum(a.metrics, 'success'), class: 'num'},
        {title: 'Failed', value: (a) => sum(a.metrics, 'failed'), class: 'num'},
      ], rule.actions, {empty: 'No action'})));
  };
  await draw();
  ctx.every(INTERVAL_MS, () => draw().catch(() => {}));
}

// -- the editor ---------------------------------------------------------------------------

function testInputs(event) {
  const columns = Object.entries((event && event.test_columns) || {});
  const controls = columns.map(([name, sample]) => {
    const multiline = name === 'payload';
    const el = multiline ? h('textarea', {name, rows: 3, class: 'code'}) : h('input', {name, type: 'text'});
    el.value = typeof sample === 'string' ? sample : JSON.stringify(sample);
    return [name, sample, el];
  });
  return {
    el: h('div', {class: 'grid-2'}, controls.map(([name, , el]) => field(name, el))),
    read() {
      const out = {};
      for (const [name, sample, el] of controls) {
        if (typeof sample === 'string') out[name] = el.value;
        else {
          try { out[name] = JSON.parse(el.value); } catch { out[name] = el.value; }
        }
      }
      return out;
    },
  };
}

export async function editor(ctx) {
  const id = ctx.params.id;
  const [events, resources, rule] = await Promise.all([
    get('rule_events'), get('resources'), id ? get(path`rules/${id}`) : null]);
  if (!ctx.alive()) return;
  const byName = new Map(events.map((e) => [e.event, e]));
  const initialEvent = rule && byName.has(rule.for) ? rule.for : 'message.publish';

  const eventSelect = select(events.map((e) => [e.event, `${e.event} — ${words(e.title, '')}`]),
    {name: 'event', value: initialEvent});
  const sql = h('textarea', {name: 'rawsql', rows: 6, class: 'code', spellcheck: 'false'});
  sql.value = rule ? rule.rawsql : (byName.get(initialEvent) || {}).sql_example || '';
  const description = h('input', {type: 'text', name: 'description', value: rule ? rule.description : ''});
  const enabled = checkbox('Enabled', {name: 'enabled', checked: rule ? rule.enabled : true});
  const saveErrors = errorLine();

  // SQL test
  const testBox = h('div');
  const testOutput = h('pre', {class: 'json', id: 'sql-test-output'},
    'Run the test to see the selected data.');
  const testErrors = errorLine();
  let inputs = testInputs(byName.get(initialEvent));
  clear(testBox, inputs.el);

  // actions
  const chosen = (rule ? rule.actions : []).map((a) => ({name: a.name, params: a.params || {}}));
  const chosenBox = h('div');
  const actionErrors = errorLine();
  const actionSelect = select([], {name: 'action', 'aria-label': 'Action'});
  const actionForm = h('div');
  let actions = [];
  let form = null;

  const drawChosen = () => clear(chosenBox, table([
    {title: 'Action', value: (a) => a.name},
    {title: 'Params', value: (a) => h('code', {}, JSON.stringify(a.params))},
    {title: '', value: (a) => button('Remove', () => {
      chosen.splice(chosen.indexOf(a), 1);
      drawChosen();
    }, {kind: 'small'})},
  ], chosen, {empty: 'No action: the rule only counts matches'}));

  const drawActionForm = () => {
    const action = actions.find((a) => a.name === actionSelect.value);
    if (!action) { clear(actionForm); form = null; return; }
    form = schemaForm(action.params, {resources: resources.filter((r) => r.type === action.type)});
    clear(actionForm, h('p', {class: 'muted'}, action.description), form.el);
  };

  const loadActions = async () => {
    actions = await get('actions', {for: eventSelect.value});
    clear(actionSelect, actions.map((a) => h('option', {value: a.name}, a.name)));
    drawActionForm();
  };
  actionSelect.addEventListener('change', drawActionForm);

  let lastExample = sql.value;
  eventSelect.addEventListener('change', async () => {
    const event = byName.get(eventSelect.value);
    if (sql.value.trim() === '' || sql.value === lastExample) {
      sql.value = event.sql_example;
      lastExample = sql.value;
    }
    inputs = testInputs(event);
    clear(testBox, inputs.el);
    await run(loadActions, {errors: actionErrors});
  });

  const addAction = () => {
    actionErrors.clear();
    if (!form) return;
    try {
      chosen.push({name: actionSelect.value, params: form.read()});
    } catch (err) {
      actionErrors.show(err);
      return;
    }
    drawChosen();
    drawActionForm();
  };

  const runTest = () => run(async () => {
    testOutput.textContent = 'Testing…';
    try {
      const data = await post('rules', {rawsql: sql.value, ctx: inputs.read()}, {test: 'true'});
      testOutput.textContent = JSON.stringify(data, null, 2);
    } catch (err) {
      testOutput.textContent = '';
      throw err;
    }
  }, {errors: testErrors});

  const save = () => run(async () => {
    const payload = {rawsql: sql.value, actions: chosen, description: description.value,
      enabled: enabled.querySelector('input').checked};
    const saved = rule ? await put(path`rules/${rule.id}`, payload) : await post('rules', payload);
    ctx.go(`#/rules/${encodeURIComponent(saved.id)}`);
  }, {errors: saveErrors, done: rule ? 'Rule saved' : 'Rule created'});

  clear(ctx.main,
    pageHeader(rule ? `Edit rule ${rule.id}` : 'Create rule',
      h('a', {class: 'btn ghost', href: '#/rules'}, 'All rules')),
    card('SQL',
      field('Event (fills in the example SQL, the test inputs and the actions)', eventSelect),
      field('SQL', sql), field('Description', description), enabled),
    card('SQL test', h('p', {class: 'muted'},
      'Runs the SQL on these values (the event comes from the SQL\'s FROM); nothing is created.'),
    testBox, button('Run test', runTest), testErrors.el, h('h3', {}, 'Output'), testOutput),
    card('Actions', chosenBox,
      h('div', {class: 'add-action'}, h('h3', {}, 'Add an action'), field('Action', actionSelect),
        actionForm, actionErrors.el, button('Add action', addAction))),
    h('div', {class: 'form-actions'}, saveErrors.el,
      button(rule ? 'Save rule' : 'Create rule', save, {kind: 'primary'})));
  drawChosen();
  await run(loadActions, {errors: actionErrors});
}
