// A cluster's egress rules: a searchable, paged list that loads every rule (1,000 are on
// screen well within a second), and a form that checks each edit with the API before saving,
// showing its field errors and warnings in the API's own words.

import { can, listAll, net, patch, post, del } from './api.js';
import { actions, badge, errorSlot, field, h, put, showError, showFieldErrors, swap, table } from './dom.js';

const PAGE = 100;
const PENDING = /^PENDING_/;

function splitList(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

// Ports as typed: numbers where they are numbers, the rest as sent, so that the API's own
// words name a bad one (`ports[1]`).
function parsePorts(text) {
  return splitList(text).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

export async function rulesPage(ctx) {
  const c = ctx.cluster;
  const writable = can('writeNetworking', c.id);
  // Operator-managed rules are the platform operator's alone; other rules, the writers'.
  const operator = can('operatorRules', c.id);
  const mayChange = (r) => (r.crl_managed ? operator : writable);
  let loop;
  const base = `${net(c.id)}/egress-rules`;
  let rules = [];
  let shownPage = 0;
  let editing = null; // the rule being edited, or null for a new one

  const search = h('input', { type: 'search', id: 'rule-search', placeholder: 'Name, destination, port or description', autocomplete: 'off' });
  const stateFilter = h('select', { id: 'rule-state' },
    h('option', { value: '' }, 'Any state'),
    ['ACTIVE', 'PENDING', 'FAILED', 'INCONSISTENT'].map((s) => h('option', { value: s }, s)));
  const count = h('span', { class: 'muted', id: 'rule-count', 'aria-live': 'polite' });
  const prev = h('button', { type: 'button', id: 'rule-prev' }, '← Previous');
  const next = h('button', { type: 'button', id: 'rule-next' }, 'Next →');
  const list = h('div', { id: 'rules' }, h('p', { class: 'muted' }, 'Loading rules…'));
  const listErr = errorSlot('rules-error');
  // What a delete was refused with: kept until the next action, not cleared by a refresh.
  const actErr = errorSlot('rules-action-error');
  const act = actions(actErr, () => loop.poke());
  const notice = h('div', { id: 'rule-notice', 'aria-live': 'polite' });
  const addButton = h('button', { type: 'button', class: 'primary', id: 'rule-add', disabled: !writable && !operator }, 'Add rule');

  // The form.
  const name = h('input', { type: 'text', maxlength: 128, required: true, autocomplete: 'off' });
  const type = h('select', {}, h('option', { value: 'FQDN' }, 'FQDN (host name)'), h('option', { value: 'CIDR' }, 'CIDR (address range)'));
  const destination = h('input', { type: 'text', required: true, autocomplete: 'off', placeholder: 'api.example.com, *.example.com or 203.0.113.0/24' });
  const ports = h('input', { type: 'text', autocomplete: 'off', placeholder: '443, 8443' });
  const paths = h('input', { type: 'text', autocomplete: 'off', placeholder: '/v1/*' });
  const description = h('textarea', { rows: 2, maxlength: 1024 });
  const managed = h('input', { type: 'checkbox', id: 'f-crl_managed' });
  const managedField = operator
    ? h('div', { class: 'field inline' }, managed, h('label', { for: 'f-crl_managed' }, 'Operator-managed (crl_managed): only a platform operator may change it'))
    : null;
  const origin = h('p', { class: 'hint', id: 'rule-origin' });
  const warnings = h('div', { id: 'rule-warnings', class: 'warnings', 'aria-live': 'polite' });
  const formErr = errorSlot('rule-form-error');
  const save = h('button', { type: 'submit', class: 'primary', id: 'rule-save' }, 'Save');
  const cancel = h('button', { type: 'button', id: 'rule-cancel' }, 'Cancel');
  const formTitle = h('h2', { id: 'rule-form-title' });
  const form = h('form', { class: 'card', id: 'rule-form', novalidate: true },
    formTitle, origin,
    field('Name', 'name', name, 'Unique in the cluster; it cannot change later.'),
    field('Type', 'type', type),
    field('Destination', 'destination', destination),
    // What a save would warn about, next to what it is about.
    warnings,
    field('Ports', 'ports', ports, 'Comma-separated. Empty allows every port.'),
    field('Paths', 'paths', paths, 'Optional, FQDN rules only: /exact or /prefix/*.'),
    field('Description', 'description', description),
    managedField,
    formErr,
    h('div', { class: 'actions' }, save, cancel));
  form.hidden = true;

  const body = () => {
    const b = { type: type.value, destination: destination.value.trim(), description: description.value };
    b.ports = parsePorts(ports.value);
    b.paths = type.value === 'FQDN' ? splitList(paths.value) : [];
    if (!editing) b.name = name.value.trim();
    if (!editing && managed.checked) b.crl_managed = true;
    return b;
  };

  // Ask the API what a save would say: field errors and warnings, before saving.
  let checkSeq = 0;
  const check = async () => {
    const seq = ++checkSeq;
    if (!destination.value.trim()) {
      put(warnings);
      showFieldErrors(form, formErr, null);
      return;
    }
    const b = body();
    if (b.name === '') delete b.name;
    try {
      const r = await post(`${base}/validate`, b);
      if (seq !== checkSeq) return;
      showFieldErrors(form, formErr, null);
      put(warnings, r.warnings.map((w) => h('p', { class: 'warning' }, '⚠ ', w)));
    } catch (e) {
      if (seq !== checkSeq) return;
      put(warnings);
      showFieldErrors(form, formErr, e);
    }
  };
  let timer = null;
  const soon = () => { clearTimeout(timer); timer = setTimeout(check, 250); };
  // A check still to come, or in flight, must not paint over what follows (a save's answer,
  // another form).
  const forgetChecks = () => { clearTimeout(timer); ++checkSeq; };
  for (const el of [name, destination, ports, paths, description]) el.addEventListener('input', soon);
  type.addEventListener('change', check);

  const openForm = (rule, prefill) => {
    forgetChecks();
    editing = rule;
    put(notice);
    put(origin, prefill.from ? `Filled in from ${prefill.from}: check each field before saving.` : '');
    managed.checked = false;
    managed.disabled = !!rule;
    put(formTitle, rule ? `Edit rule ${rule.name}` : 'New egress rule');
    name.value = rule ? rule.name : (prefill.name || '');
    name.disabled = !!rule;
    type.value = rule ? rule.type : (prefill.type || 'FQDN');
    destination.value = rule ? rule.destination : (prefill.destination || '');
    ports.value = rule ? rule.ports.join(', ') : (prefill.ports || '');
    paths.value = rule ? rule.paths.join(', ') : '';
    description.value = rule ? rule.description : (prefill.description || '');
    put(warnings);
    showFieldErrors(form, formErr, null);
    form.hidden = false;
    (rule ? destination : name).focus();
    if (destination.value) check();
  };
  const closeForm = () => {
    forgetChecks();
    form.hidden = true;
    editing = null;
    addButton.focus();
  };
  cancel.addEventListener('click', closeForm);
  form.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeForm(); });
  addButton.addEventListener('click', () => openForm(null, {}));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    forgetChecks();
    save.disabled = true;
    try {
      const b = body();
      const r = editing ? await patch(`${base}/${encodeURIComponent(editing.id)}`, b) : await post(base, b);
      const saved = r.Rule;
      put(notice, h('div', { class: 'notice' }, `Rule ${saved.name} saved; its state below updates until every gateway applied it.`,
        (r.warnings || []).map((w) => h('p', { class: 'warning' }, '⚠ ', w))));
      closeForm();
      search.value = saved.name;
      await loop.poke();
    } catch (ex) {
      showFieldErrors(form, formErr, ex);
    } finally {
      save.disabled = false;
    }
  });

  const matches = (r, q, st) => {
    if (st && !(st === 'PENDING' ? PENDING.test(r.state) : st === 'FAILED' ? r.state.endsWith('_FAILED') : r.state === st)) return false;
    if (!q) return true;
    return r.name.toLowerCase().includes(q) || r.destination.toLowerCase().includes(q) ||
      r.description.toLowerCase().includes(q) || r.ports.some((p) => String(p) === q);
  };

  const render = (partial) => {
    const q = search.value.trim().toLowerCase();
    const st = stateFilter.value;
    const found = rules.filter((r) => matches(r, q, st));
    const pages = Math.max(1, Math.ceil(found.length / PAGE));
    shownPage = Math.min(shownPage, pages - 1);
    const from = shownPage * PAGE;
    const slice = found.slice(from, from + PAGE);
    put(count, found.length === rules.length
      ? `${rules.length} rule${rules.length === 1 ? '' : 's'}`
      : `${found.length} of ${rules.length} rules match`,
    found.length > PAGE ? ` · showing ${from + 1}–${from + slice.length}` : '',
    partial === true ? ' · loading more…' : '');
    prev.disabled = shownPage === 0;
    next.disabled = shownPage >= pages - 1;
    swap(list, table(null, ['Name', 'Type', 'Destination', 'Ports', 'Paths', 'Description', 'State', ''],
      slice.map((r) => {
        const mine = mayChange(r);
        return h('tr', { class: 'rule', 'data-rule': r.name, 'data-state': r.state, 'data-key': r.id },
          h('td', {}, r.name, r.crl_managed ? h('span', { class: 'tag', title: 'Managed by the platform operator' }, 'operator') : null),
          h('td', {}, r.type), h('td', { class: 'mono' }, r.destination),
          h('td', {}, r.ports.length ? r.ports.join(', ') : h('span', { class: 'muted' }, 'all')),
          h('td', { class: 'mono' }, r.paths.join(', ')),
          h('td', { class: 'description' }, r.description),
          h('td', {}, badge(r.state)),
          h('td', { class: 'row-actions' }, mine ? [
            h('button', { type: 'button', class: 'edit', 'aria-label': `Edit ${r.name}`, onclick: () => openForm(r, {}) }, 'Edit'),
            h('button', { type: 'button', class: 'danger delete', 'aria-label': `Delete ${r.name}`, onclick: async () => {
              if (!confirm(`Delete rule ${r.name}?`)) return;
              await act(() => del(`${base}/${encodeURIComponent(r.id)}`));
            } }, 'Delete')] : null));
      }), rules.length ? 'No rule matches.' : 'No egress rules yet.'));
  };

  let loaded = false;
  const refresh = async () => {
    const started = performance.now();
    try {
      const got = await listAll(base, 'rules', (sofar, done) => {
        // The first load shows each page as it arrives; later ones swap the list whole.
        if (loaded || done || !ctx.page.alive) return;
        rules = sofar.slice();
        render(true);
      });
      if (!ctx.page.alive) return 2000;
      rules = got;
      loaded = true;
      showError(listErr, null);
      render();
      // A list that takes long to read is read less often.
      const calm = Math.max(5000, 5 * (performance.now() - started));
      return rules.some((r) => PENDING.test(r.state)) ? Math.max(500, calm / 10) : calm;
    } catch (e) {
      showError(listErr, e);
      return 5000;
    }
  };

  // Typing, clearing (the search box's own ✕ or a WebDriver clear) and Enter all filter.
  for (const ev of ['input', 'change', 'search']) search.addEventListener(ev, () => { shownPage = 0; render(); });
  stateFilter.addEventListener('change', () => { shownPage = 0; render(); });
  prev.addEventListener('click', () => { shownPage -= 1; render(); });
  next.addEventListener('click', () => { shownPage += 1; render(); });

  put(ctx.main,
    h('div', { class: 'heading' }, h('h1', {}, 'Egress rules'), addButton),
    writable || operator ? null : h('p', { class: 'muted readonly' }, 'Read only: your key cannot change this cluster\'s networking.'),
    notice, form,
    h('div', { class: 'toolbar' },
      h('label', { for: 'rule-search' }, 'Search'), search,
      h('label', { for: 'rule-state' }, 'State'), stateFilter, count),
    listErr, actErr, list,
    h('div', { class: 'toolbar pager' }, prev, next));

  if (ctx.query.get('new') === '1' && writable) {
    const from = ctx.query.get('from') === 'what-if' ? 'the what-if check' : 'a live decision';
    const d = ctx.query.get('destination') || '';
    const t = ctx.query.get('type') === 'CIDR' ? 'CIDR' : 'FQDN';
    const port = ctx.query.get('port') || '';
    openForm(null, {
      type: t,
      destination: t === 'CIDR' && !d.includes('/') ? `${d}/${d.includes(':') ? 128 : 32}` : d,
      ports: port,
      name: `allow-${d.replace(/[^A-Za-z0-9.-]+/g, '-')}${port ? '-' + port : ''}`.slice(0, 128),
      description: 'Added from the console.',
      from,
    });
  }
  loop = ctx.live(refresh, 5000);
  await loop.first;
}
