// Overview: the broker, every node of the cluster, the selected node's stats and
// metrics (refreshed live) and charts of message and connection rates.

import {get, path} from '../api.js';
import {lineChart} from '../chart.js';
import {card, clear, definitionList, formatNumber, h, pageHeader, showError, table} from '../dom.js';
import {
  INTERVAL_MS, chartSpan, normalize, onSample, rates, values, windowMs,
} from '../sampler.js';

const STATS = ['connections', 'sessions', 'sessions/persistent', 'topics', 'routes', 'subscribers',
  'subscriptions', 'subscriptions/shared', 'suboptions', 'retained'];
const METRIC_GROUPS = [['Packets', 'packets/'], ['Messages', 'messages/'], ['Bytes', 'bytes/']];

function nodesTable(nodes) {
  return table([
    {title: 'Node', value: (n) => n.node || n.name},
    {title: 'Status', value: (n) => n.node_status},
    {title: 'Version', value: (n) => n.version},
    {title: 'Uptime', value: (n) => n.uptime},
    {title: 'Load (1, 5, 15 min)', value: (n) => `${n.load1} / ${n.load5} / ${n.load15}`},
    {title: 'Memory (used / total)', value: (n) => `${n.memory_used} / ${n.memory_total}`},
    {title: 'Processes', value: (n) => `${n.process_used} / ${n.process_available}`},
    {title: 'Max fds', value: (n) => n.max_fds, class: 'num'},
    {title: 'Connections', value: (n) => n.connections, class: 'num'},
    {title: 'Runtime', value: (n) => n.otp_release},
  ], nodes);
}

function statsTable(stats) {
  const s = normalize(stats);
  return table([
    {title: 'Stat', value: (name) => name},
    {title: 'Count', value: (name) => formatNumber(s[`${name}/count`]), class: 'num'},
    {title: 'Max', value: (name) => formatNumber(s[`${name}/max`]), class: 'num'},
  ], STATS.filter((name) => `${name}/count` in s));
}

function metricsTables(metrics) {
  const m = normalize(metrics);
  const keys = Object.keys(m).sort();
  const used = new Set();
  const groups = METRIC_GROUPS.map(([title, prefix]) => {
    const mine = keys.filter((k) => k.startsWith(prefix));
    mine.forEach((k) => used.add(k));
    return [title, mine];
  });
  groups.push(['Other', keys.filter((k) => !used.has(k))]);
  return h('div', {class: 'grid-3'}, groups.map(([title, mine]) => table([
    {title, value: (k) => k},
    {title: 'Value', value: (k) => formatNumber(m[k]), class: 'num'},
  ], mine)));
}

function charts(node) {
  const perSecond = ' /s';
  const windowMs = chartSpan(node);
  return h('div', {class: 'grid-3'},
    lineChart('Messages per second', [
      {name: 'received', points: rates(node, 'received')},
      {name: 'sent', points: rates(node, 'sent')},
      {name: 'dropped', points: rates(node, 'dropped')},
    ], {windowMs, unit: perSecond}),
    lineChart('Connections', [{name: 'connected', points: values(node, 'connections')}],
      {windowMs}),
    lineChart('Connects per second', [{name: 'CONNECT packets', points: rates(node, 'connects')}],
      {windowMs, unit: perSecond}));
}

export async function render(ctx) {
  const {node} = ctx;
  const brokerBox = h('div');
  const nodesBox = h('div');
  const chartsBox = h('div', {id: 'charts'});
  const statsBox = h('div');
  const metricsBox = h('div');
  clear(ctx.main,
    pageHeader('Overview', h('span', {class: 'muted'}, `refreshed every ${INTERVAL_MS / 1000} s`)),
    card(`Rates on ${node ?? ''} (up to the last ${windowMs / 60000} minutes, sampled while signed in)`,
      chartsBox),
    card('Nodes', nodesBox),
    h('div', {class: 'grid-2'}, card(`Broker ${node ?? ''}`, brokerBox), card('Stats', statsBox)),
    card('Metrics', metricsBox));

  const drawCharts = () => { if (ctx.alive()) clear(chartsBox, charts(node)); };
  const unsubscribe = onSample(drawCharts);
  const poll = setInterval(() => { if (!ctx.alive()) { unsubscribe(); clearInterval(poll); } }, 1000);
  drawCharts();

  const refresh = async () => {
    try {
      const [broker, nodes, stats, metrics] = await Promise.all([
        get(path`brokers/${node}`), get('nodes'), get(path`nodes/${node}/stats`),
        get(path`nodes/${node}/metrics`)]);
      if (!ctx.alive()) return;
      clear(brokerBox, definitionList([['System', broker.sysdescr], ['Version', broker.version],
        ['Uptime', broker.uptime], ['Time on the node', broker.datetime],
        ['Status', broker.node_status]]));
      clear(nodesBox, nodesTable(nodes));
      clear(statsBox, statsTable(Array.isArray(stats) ? stats[0] : stats));
      clear(metricsBox, metricsTables(metrics));
    } catch (err) {
      if (ctx.alive()) showError(err);
    }
  };
  await refresh();
  ctx.every(INTERVAL_MS, refresh);
}
