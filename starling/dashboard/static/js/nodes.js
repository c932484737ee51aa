// The cluster's nodes, read from GET /nodes (never assumed to be one), and the one
// the pages that show a single node's data are showing.

import {get} from './api.js';
import {h} from './dom.js';

const KEY = 'starling.dashboard.node';
let names = [];
let selected = null;

export async function loadNodes() {
  const list = await get('nodes');
  names = (list || []).map((n) => n.node || n.name).filter(Boolean);
  const saved = window.sessionStorage.getItem(KEY);
  if (!names.includes(selected)) selected = names.includes(saved) ? saved : (names[0] ?? null);
  return names;
}

export function nodeNames() { return names; }
export function selectedNode() { return selected; }

export function selectNode(name) {
  selected = name;
  window.sessionStorage.setItem(KEY, name);
}

/** The selector shown in the top bar of pages about one node. */
export function nodeSelector(onChange) {
  const control = h('select', {id: 'node-select', 'aria-label': 'Node'},
    names.map((name) => h('option', {value: name, selected: name === selected}, name)));
  control.addEventListener('change', () => { selectNode(control.value); onChange(control.value); });
  return h('label', {class: 'node-select'}, h('span', {}, 'Node'), control);
}
