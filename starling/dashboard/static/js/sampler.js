// Samples every node's metrics and stats while someone is signed in, so the
// Overview can chart rates over the last minutes.  The history lives in the page
// (and sessionStorage, so a reload keeps it); the node keeps none.

import {get} from './api.js';

export const INTERVAL_MS = 5000;
const WINDOW_MS = 10 * 60 * 1000;
const KEY = 'starling.dashboard.samples';

let history = load(); // node -> [{t, received, sent, dropped, connections, connects}]
let timer = null;
const listeners = new Set();

function load() {
  try { return JSON.parse(window.sessionStorage.getItem(KEY) || '{}') || {}; } catch { return {}; }
}

/** Metric and stat names as Starling serves them by default (`a/b`); v3.2's dotted
 *  names (`a.b`) are read the same. */
export function normalize(values) {
  const out = {};
  for (const [key, value] of Object.entries(values || {})) out[key.replaceAll('.', '/')] = value;
  return out;
}

async function sample() {
  const [metrics, stats] = await Promise.all([get('metrics'), get('stats')]);
  const now = Date.now();
  const statsByNode = new Map((stats || []).map((s) => [s.node, normalize(s)]));
  for (const entry of metrics || []) {
    const m = normalize(entry.metrics);
    const s = statsByNode.get(entry.node) || {};
    const points = history[entry.node] || (history[entry.node] = []);
    points.push({t: now, received: m['messages/received'] ?? 0, sent: m['messages/sent'] ?? 0,
      dropped: m['messages/dropped'] ?? 0, connects: m['packets/connect'] ?? 0,
      connections: s['connections/count'] ?? 0});
    while (points.length && points[0].t < now - WINDOW_MS) points.shift();
  }
  try { window.sessionStorage.setItem(KEY, JSON.stringify(history)); } catch { /* full */ }
  for (const listener of listeners) listener();
}

export function startSampling() {
  if (timer !== null) return;
  const tick = () => sample().catch(() => {}); // the pages show API errors themselves
  tick();
  timer = setInterval(tick, INTERVAL_MS);
}

export function stopSampling() {
  clearInterval(timer);
  timer = null;
  history = {};
  window.sessionStorage.removeItem(KEY);
}

export function onSample(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Per-second rates of counter `key` between samples: [{t, v}] (a counter that went
 *  down, a node restart, starts over). */
export function rates(node, key) {
  const points = history[node] || [];
  const out = [];
  for (let i = 1; i < points.length; i += 1) {
    const dt = (points[i].t - points[i - 1].t) / 1000;
    const dv = points[i][key] - points[i - 1][key];
    if (dt > 0 && dv >= 0) out.push({t: points[i].t, v: dv / dt});
  }
  return out;
}

/** The span the charts show: the time sampled so far, at least a minute and at
 *  most the whole window. */
export function chartSpan(node) {
  const points = history[node] || [];
  const sampled = points.length ? Date.now() - points[0].t : 0;
  return Math.min(WINDOW_MS, Math.max(60000, sampled));
}

/** A gauge (`connections`) as sampled: [{t, v}]. */
export function values(node, key) {
  return (history[node] || []).map((p) => ({t: p.t, v: p[key]}));
}

export const windowMs = WINDOW_MS;
