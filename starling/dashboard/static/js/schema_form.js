// Forms built from a rule-engine `params` schema (actions, resource types):
// {name: {type, required, title, description, default, enum, format, input}}.

import {checkbox, field, h, input, select} from './dom.js';

function words(value, fallback) {
  if (value && typeof value === 'object') return value.en || Object.values(value)[0] || fallback;
  return value || fallback;
}

function isMultiline(spec) {
  return spec.format === 'sql' || spec.input === 'textarea' || spec.type === 'object'
    || spec.type === 'array';
}

function control(name, spec, value, resources) {
  const label = `${words(spec.title, name)}${spec.required ? ' *' : ''}`;
  const hint = words(spec.description, '');
  let el;
  if (name === '$resource') {
    el = select([['', resources.length ? '— choose a resource —' : '— no resource of this type —'],
      ...resources.map((r) => [r.id, r.description ? `${r.id} (${r.description})` : r.id])],
    {name, value: value ?? ''});
  } else if (Array.isArray(spec.enum)) {
    el = select(spec.enum.map((v) => [String(v), String(v)]), {name, value: String(value ?? spec.enum[0])});
  } else if (spec.type === 'boolean') {
    const box = checkbox(label, {name, checked: Boolean(value)});
    return {row: box, read: () => box.querySelector('input').checked};
  } else if (isMultiline(spec)) {
    const initial = value === undefined ? '' : (typeof value === 'string' && spec.type === 'string'
      ? value : JSON.stringify(value, null, 2));
    el = h('textarea', {name, rows: spec.type === 'string' ? 3 : 4, class: 'code',
      placeholder: spec.type === 'object' ? '{"key": "value"}' : ''});
    el.value = initial;
  } else {
    el = input({name, type: spec.type === 'number' || spec.type === 'integer' ? 'number' : 'text',
      value: value === undefined ? '' : String(value)});
  }
  const read = () => {
    const raw = el.value;
    if (raw === '') {
      if (spec.required) throw new Error(`${words(spec.title, name)} is required`);
      return undefined;
    }
    if (spec.type === 'number' || spec.type === 'integer') {
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new Error(`${words(spec.title, name)} must be a number`);
      return n;
    }
    if (spec.type === 'object' || spec.type === 'array') {
      try { return JSON.parse(raw); } catch {
        throw new Error(`${words(spec.title, name)} must be JSON`);
      }
    }
    return raw;
  };
  return {row: field(label, el, hint), read};
}

/** The form's element and `read()` -> the params object (throws on a bad value). */
export function schemaForm(params, {values = {}, resources = []} = {}) {
  const entries = Object.entries(params || {});
  const controls = entries.map(([name, spec]) => [name,
    control(name, spec || {}, name in values ? values[name] : (spec || {}).default, resources)]);
  const el = h('div', {class: 'schema-form'},
    controls.length ? controls.map(([, c]) => c.row) : h('p', {class: 'muted'}, 'No parameters.'));
  return {
    el,
    read() {
      const out = {};
      for (const [name, c] of controls) {
        const value = c.read();
        if (value !== undefined) out[name] = value;
      }
      return out;
    },
  };
}

export {words};
