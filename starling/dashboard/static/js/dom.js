// Building the page: every value reaches the DOM as text (textContent, attribute
// values), never as HTML, so a client id or payload holding markup stays inert.

const SVG_NS = 'http://www.w3.org/2000/svg';
const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'multiple', 'open']);

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else if (key === 'style' || key.startsWith('on')) {
      throw new Error(`refusing inline ${key}`); // the CSP forbids them anyway
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/x'}, 'text', child...). */
export function h(tag, props, ...children) {
  return append(setProps(document.createElement(tag), props), children);
}

/** An SVG element. */
export function svg(tag, props, ...children) {
  return append(setProps(document.createElementNS(SVG_NS, tag), props), children);
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function text(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// -- formatting ---------------------------------------------------------------------------

export function formatBytes(n) {
  if (typeof n !== 'number') return text(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function formatEpoch(seconds) {
  if (typeof seconds !== 'number') return text(seconds);
  return new Date(seconds * 1000).toLocaleString();
}

export function formatNumber(n) {
  return typeof n === 'number' ? n.toLocaleString(undefined, {maximumFractionDigits: 2}) : text(n);
}

// -- widgets ------------------------------------------------------------------------------

/** A button; `title`, when given, is also its accessible name ("Kick client-7"). */
export function button(label, onclick, {kind = '', title, disabled, type = 'button'} = {}) {
  return h('button', {type, class: `btn ${kind}`.trim(), title, 'aria-label': title, disabled,
    onclick}, label);
}

let fieldIds = 0;

/** A form field: its label names the control (`for`), a hint describes it. */
export function field(label, control, hint) {
  if (!control.id) { fieldIds += 1; control.id = `field-${fieldIds}`; }
  let help = null;
  if (hint) {
    help = h('small', {class: 'hint', id: `${control.id}-hint`}, hint);
    control.setAttribute('aria-describedby', help.id);
  }
  return h('div', {class: 'field'}, h('label', {class: 'field-label', for: control.id}, label),
    control, help);
}

export function input(props = {}) {
  return h('input', {type: 'text', ...props});
}

export function select(options, props = {}) {
  const el = h('select', props);
  for (const option of options) {
    const [value, label] = Array.isArray(option) ? option : [option, option];
    el.append(h('option', {value, selected: String(props.value) === String(value)}, label));
  }
  if (props.value !== undefined) el.value = String(props.value);
  return el;
}

export function checkbox(label, props = {}) {
  return h('label', {class: 'check'}, h('input', {type: 'checkbox', ...props}), ' ', label);
}

/** A table: columns are {title, value: row => text or Node, class}. */
export function table(columns, rows, {empty = 'No data', caption} = {}) {
  const head = h('tr', {}, columns.map((c) => h('th', {scope: 'col', class: c.class}, c.title)));
  const body = rows.length
    ? rows.map((row) => h('tr', {}, columns.map((c) => {
      const value = c.value(row);
      return h('td', {class: c.class}, value instanceof Node ? value : text(value));
    })))
    : [h('tr', {}, h('td', {colspan: columns.length, class: 'empty'}, empty))];
  return h('div', {class: 'table-wrap'},
    h('table', {class: 'data'}, caption ? h('caption', {}, caption) : null,
      h('thead', {}, head), h('tbody', {}, body)));
}

/** Key/value rows of an object. */
export function definitionList(entries) {
  return h('dl', {class: 'kv'}, entries.map(([k, v]) => [
    h('dt', {}, k), h('dd', {}, v instanceof Node ? v : text(v))]));
}

export function card(title, ...children) {
  return h('section', {class: 'card'}, title ? h('h2', {}, title) : null, children);
}

export function pageHeader(title, ...actions) {
  return h('div', {class: 'page-header'}, h('h1', {}, title),
    h('div', {class: 'actions'}, actions));
}

export function pre(value) {
  return h('pre', {class: 'json'}, typeof value === 'string' ? value : JSON.stringify(value, null, 2));
}

export function badge(label, kind = '') {
  return h('span', {class: `badge ${kind}`.trim()}, label);
}

// -- messages -----------------------------------------------------------------------------

/** A short message in the corner; errors stay until closed. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const close = h('button', {type: 'button', class: 'toast-close', 'aria-label': 'Dismiss'}, '×');
  const item = h('div', {class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status'},
    h('span', {}, message), close);
  close.addEventListener('click', () => item.remove());
  box.append(item);
  if (kind !== 'error') setTimeout(() => item.remove(), 4000);
  return item;
}

/** An error as the user should see it: the API's code and message. */
export function describeError(err) {
  if (err && err.code !== undefined) {
    const status = err.status ? ` (HTTP ${err.status})` : '';
    return `Error ${err.code}: ${err.message}${status}`;
  }
  return `Error: ${err && err.message ? err.message : String(err)}`;
}

export function showError(err) {
  return toast(describeError(err), 'error');
}

/** An inline error line for a form. */
export function errorLine() {
  const el = h('p', {class: 'form-error', role: 'alert', hidden: true});
  return {
    el,
    show(err) { el.textContent = describeError(err); el.hidden = false; },
    clear() { el.textContent = ''; el.hidden = true; },
  };
}

// -- dialogs ------------------------------------------------------------------------------

/** A modal dialog; `body` is a Node; `buttons` are [label, handler(close), kind]. */
export function dialog(title, body, buttons = [], {onClose = null, closeLabel = 'Close'} = {}) {
  const dlg = h('dialog', {class: 'dialog', 'aria-label': title});
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    dlg.close();
    dlg.remove();
    if (onClose) onClose();
  };
  const footer = h('div', {class: 'dialog-actions'},
    buttons.map(([label, handler, kind]) => button(label, () => handler(close), {kind})),
    button(closeLabel, close, {kind: 'ghost'}));
  dlg.append(h('h2', {}, title), body, footer);
  dlg.addEventListener('cancel', (event) => { event.preventDefault(); close(); });
  document.body.append(dlg);
  dlg.showModal();
  return {dlg, close};
}

/** Ask before doing something destructive; resolves true or false. */
export function confirmDialog(question, confirmLabel = 'Confirm') {
  return new Promise((resolve) => {
    let answer = false;
    dialog('Please confirm', h('p', {}, question), [
      [confirmLabel, (close) => { answer = true; close(); }, 'danger'],
    ], {onClose: () => resolve(answer), closeLabel: 'Cancel'});
  });
}

/** Run an async action, showing its error (inline in `errors`, else as a toast):
 *  resolves to the action's result, or undefined when it failed. */
export async function run(action, {errors = null, done = null} = {}) {
  try {
    if (errors) errors.clear();
    const result = await action();
    if (done) toast(done, 'success');
    return result === undefined ? null : result;
  } catch (err) {
    if (errors) errors.show(err);
    else showError(err);
    return undefined;
  }
}
