// Pieces several pages share: a server-paginated, searchable list.

import {page as fetchPage} from '../api.js';
import {button, card, clear, h, input, pageHeader, run, select, table} from '../dom.js';

const PAGE_SIZES = [10, 20, 50, 100];

/**
 * A list read page by page from a paginated route (`_page`, `_limit`, meta.count),
 * with an optional search: `searches` are [{value, label, load(term) -> rows}].
 */
export function pagedList(ctx, {title, route, columns, searches = [], empty, actions = []}) {
  const state = {page: 1, limit: PAGE_SIZES[0], search: null};
  const tableBox = h('div');
  const status = h('span', {class: 'muted', 'aria-live': 'polite'});
  const prev = button('‹ Previous', () => { state.page -= 1; load(); }, {kind: 'ghost'});
  const next = button('Next ›', () => { state.page += 1; load(); }, {kind: 'ghost'});
  const size = select(PAGE_SIZES.map(String), {'aria-label': 'Rows per page', value: state.limit});
  size.addEventListener('change', () => { state.limit = Number(size.value); state.page = 1; load(); });

  let searchForm = null;
  if (searches.length) {
    const kind = select(searches.map((s) => [s.value, s.label]), {'aria-label': 'Search by'});
    const term = input({type: 'search', placeholder: 'Search', 'aria-label': 'Search term'});
    searchForm = h('form', {class: 'inline-form', role: 'search'}, kind, term,
      button('Search', null, {type: 'submit'}),
      button('Reset', () => { term.value = ''; state.search = null; state.page = 1; load(); },
        {kind: 'ghost'}));
    searchForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const found = searches.find((s) => s.value === kind.value);
      state.search = term.value ? {found, term: term.value} : null;
      state.page = 1;
      load();
    });
  }

  async function load() {
    await run(async () => {
      let rows;
      let count;
      if (state.search) {
        rows = await state.search.found.load(state.search.term);
        count = rows.length;
      } else {
        const result = await fetchPage(route(), state.page, state.limit);
        rows = result.items;
        count = result.count;
      }
      if (!ctx.alive()) return;
      clear(tableBox, table(columns, rows, {empty}));
      const pages = Math.max(1, Math.ceil(count / state.limit));
      status.textContent = state.search
        ? `${count} found` : `Page ${state.page} of ${pages} · ${count} in all`;
      prev.disabled = Boolean(state.search) || state.page <= 1;
      next.disabled = Boolean(state.search) || state.page >= pages;
    });
  }

  clear(ctx.main, pageHeader(title, ...actions),
    card(null, searchForm, tableBox,
      h('div', {class: 'pager'}, prev, status, next, h('label', {}, 'Rows ', size))));
  return {load};
}

/** A link to a route inside the dashboard, with its parameters encoded. */
export function link(label, ...segments) {
  return h('a', {href: `#/${segments.map((s) => encodeURIComponent(s)).join('/')}`}, label);
}
