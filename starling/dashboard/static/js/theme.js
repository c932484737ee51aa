// Light and dark themes: the system's choice unless the user picked one (kept in
// localStorage: a preference, nothing secret).

import {h} from './dom.js';

const KEY = 'starling.dashboard.theme';
const LABELS = {auto: 'Theme: system', light: 'Theme: light', dark: 'Theme: dark'};
const NEXT = {auto: 'light', light: 'dark', dark: 'auto'};

function saved() {
  const value = window.localStorage.getItem(KEY);
  return value in LABELS ? value : 'auto';
}

const systemDark = window.matchMedia('(prefers-color-scheme: dark)');

export function applyTheme(value = saved()) {
  const dark = value === 'dark' || (value === 'auto' && systemDark.matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}

systemDark.addEventListener('change', () => applyTheme());

export function themeButton() {
  const btn = h('button', {type: 'button', class: 'btn ghost', id: 'theme-toggle'}, LABELS[saved()]);
  btn.addEventListener('click', () => {
    const value = NEXT[saved()];
    window.localStorage.setItem(KEY, value);
    applyTheme(value);
    btn.textContent = LABELS[value];
  });
  return btn;
}
