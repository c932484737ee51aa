// A small SVG line chart of time series over the last minutes.

import {formatNumber, h, svg} from './dom.js';

const W = 420;
const H = 170;
const PAD = {left: 44, right: 10, top: 10, bottom: 22};

/** The smallest "round" number (1, 2, 2.5, 5 × 10^n) at or above `value`. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

/** series: [{name, points: [{t, v}]}]; the x axis spans `windowMs` up to `now`. */
export function lineChart(title, series, {windowMs, now = Date.now(), unit = ''} = {}) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const start = now - windowMs;
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.v))));
  const x = (t) => PAD.left + ((t - start) / windowMs) * plotW;
  const y = (v) => PAD.top + plotH - (v / max) * plotH;

  const grid = [];
  for (let i = 0; i <= 4; i += 1) {
    const value = (max * i) / 4;
    grid.push(svg('line', {class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y(value), y2: y(value)}));
    grid.push(svg('text', {class: 'axis', x: PAD.left - 6, y: y(value) + 4, 'text-anchor': 'end'},
      formatNumber(value)));
  }
  const span = (ms) => (ms >= 60000 ? `-${+(ms / 60000).toFixed(1)} min` : `-${Math.round(ms / 1000)} s`);
  for (const [t, label] of [[start, span(windowMs)], [start + windowMs / 2, span(windowMs / 2)],
    [now, 'now']]) {
    grid.push(svg('text', {class: 'axis', x: x(t), y: H - 6,
      'text-anchor': t === start ? 'start' : t === now ? 'end' : 'middle'}, label));
  }
  const lines = series.map((s, i) => {
    const points = s.points.filter((p) => p.t >= start);
    return svg('polyline', {class: `series series-${i}`, fill: 'none',
      points: points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ')});
  });
  const chart = svg('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title,
    class: 'chart'},
  svg('title', {}, title), grid, lines);
  const legend = h('ul', {class: 'legend'}, series.map((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1].v : null;
    return h('li', {}, h('span', {class: `swatch series-${i}`}), s.name,
      h('strong', {}, last === null ? ' –' : ` ${formatNumber(last)}${unit}`));
  }));
  return h('figure', {class: 'chart-box'}, h('figcaption', {}, title), chart, legend);
}
