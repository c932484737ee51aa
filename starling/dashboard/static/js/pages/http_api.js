// The HTTP API: every route from GET /api/v3/, with a try-it button for the GET
// routes whose only parameter is the node.

import {request} from '../api.js';
import {button, card, clear, describeError, h, input, pageHeader, pre, run, table} from '../dom.js';

function target(route, node) {
  return route.path.replace(/^\/+/, '').split('/')
    .map((part) => (part === ':node' ? encodeURIComponent(node) : part)).join('/');
}

export async function render(ctx) {
  const {node} = ctx;
  const box = h('div');
  const output = h('div', {id: 'api-output'});
  const filter = input({type: 'search', placeholder: 'Filter by path or description',
    'aria-label': 'Filter routes'});
  clear(ctx.main, pageHeader('HTTP API', filter),
    h('p', {class: 'muted'}, 'Routes of /api/v3 on this node (:node is the selected node). '
      + 'Scripts call them with an app\'s id and secret on the management listener.'),
    card('Response', output), card('Routes', box));
  const {data: routes} = await request('GET', '');
  if (!ctx.alive()) return;

  const tryIt = (route) => run(async () => {
    const url = target(route, node);
    clear(output, h('p', {}, h('code', {}, `GET /api/v3/${url}`)), h('p', {class: 'muted'}, 'Loading…'));
    try {
      const envelope = await request('GET', url);
      clear(output, h('p', {}, h('code', {}, `GET /api/v3/${url}`)), pre(envelope));
    } catch (err) {
      clear(output, h('p', {}, h('code', {}, `GET /api/v3/${url}`)),
        h('p', {class: 'form-error'}, describeError(err)));
    }
  });

  const draw = () => {
    const term = filter.value.trim().toLowerCase();
    const shown = routes.filter((r) => !term || r.path.toLowerCase().includes(term)
      || r.descr.toLowerCase().includes(term) || r.name.toLowerCase().includes(term));
    clear(box, table([
      {title: 'Method', value: (r) => h('span', {class: `method ${r.method.toLowerCase()}`}, r.method)},
      {title: 'Path', value: (r) => h('code', {}, r.path.replace(':node', node))},
      {title: 'Description', value: (r) => r.descr},
      {title: 'Name', value: (r) => r.name},
      {title: '', value: (r) => {
        const params = r.path.split('/').filter((p) => p.startsWith(':') && p !== ':node');
        return r.method === 'GET' && params.length === 0
          ? button('Try', () => tryIt(r), {kind: 'small', title: `Try GET ${r.path}`}) : '';
      }},
    ], shown));
  };
  filter.addEventListener('input', draw);
  draw();
}
