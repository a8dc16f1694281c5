// The console's smaller pages: clusters, traffic policy, live decisions, what-if, the IP
// allowlist and the audit log. Each renders from the REST API and refreshes itself.

import { can, cluster, get, listAll, net, patch, post, del } from './api.js';
import { actions, badge, bytes, errorSlot, field, h, put, showError, showFieldErrors, swap, table, time } from './dom.js';

const RULE_STATES = ['ACTIVE', 'PENDING_CREATION', 'PENDING_UPDATE', 'PENDING_DELETION', 'CREATION_FAILED',
  'UPDATE_FAILED', 'DELETION_FAILED', 'INCONSISTENT'];

function gatewaysTable(gws) {
  return table('Gateways', ['Name', 'Region', 'Live', 'Last seen', 'Applied version', 'Last error'],
    gws.map((g) => h('tr', {},
      h('td', {}, g.name), h('td', {}, g.region),
      h('td', {}, g.live ? badge('LIVE') : badge('STALE')),
      h('td', {}, time(g.last_seen_at)),
      h('td', { class: 'num' }, g.applied_version),
      h('td', {}, g.last_error ? `version ${g.failed_version}: ${g.last_error}` : ''))),
    'No gateways yet.');
}

function ruleCounts(rules) {
  if (rules instanceof Error) return h('p', { class: 'error' }, 'Rules: ' + (rules.summary ? rules.summary() : rules.message));
  const counts = {};
  for (const r of rules) counts[r.state] = (counts[r.state] || 0) + 1;
  const shown = RULE_STATES.filter((s) => counts[s]);
  return h('p', { class: 'counts' }, `${rules.length} egress rule${rules.length === 1 ? '' : 's'}`,
    shown.length ? ': ' : '', shown.map((s) => h('span', { class: 'count' }, badge(s), ' ', counts[s])));
}

export async function clustersPage(ctx) {
  const err = errorSlot('clusters-error');
  const list = h('div', { id: 'clusters', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading clusters…'));
  put(ctx.main, h('h1', {}, 'Clusters'), err, list);
  await ctx.live(async () => {
    const started = performance.now();
    try {
      const clusters = await listAll('/api/v1/clusters', 'clusters');
      const cards = await Promise.all(clusters.map(async (c) => {
        const [gws, rules] = await Promise.all([
          get(`${cluster(c.id)}/gateways`).then((r) => r.gateways, (e) => e),
          listAll(`${net(c.id)}/egress-rules`, 'rules').catch((e) => e),
        ]);
        const base = `#/clusters/${encodeURIComponent(c.id)}`;
        return h('section', { class: 'card cluster', 'data-cluster': c.id, 'data-key': c.id },
          h('h2', {}, h('a', { href: `${base}/rules` }, c.name)),
          h('dl', { class: 'facts' },
            h('dt', {}, 'State'), h('dd', {}, badge(c.state)),
            h('dt', {}, 'Traffic policy'), h('dd', {}, h('a', { href: `${base}/policy` }, badge(c.egress_traffic_policy))),
            h('dt', {}, 'Regions'), h('dd', {}, c.regions.map((r) => r.name).join(', ')),
            h('dt', {}, 'Id'), h('dd', { class: 'mono' }, c.id)),
          ruleCounts(rules),
          gws instanceof Error ? h('p', { class: 'error' }, 'Gateways: ' + gws.summary()) : gatewaysTable(gws));
      }));
      if (!ctx.page.alive) return;
      showError(err, null);
      swap(list, cards.length ? cards : h('p', { class: 'empty' }, 'No clusters you may read.'));
    } catch (e) {
      showError(err, e);
    }
    // Counting many rules takes reads: the more it takes, the less often.
    return Math.max(5000, 5 * (performance.now() - started));
  }, 5000).first;
}

const POLICIES = [
  ['ALLOW_ALL', 'Allow all', 'Every destination is reachable; rules are kept but not enforced.', { allow_all: true }],
  ['DEFAULT_DENY', 'Default deny', 'Only what an egress rule allows leaves the cluster.', { allow_all: false }],
  ['REPORT_ONLY', 'Report only', 'Traffic flows as under allow-all; what default-deny would refuse is logged as WOULD_DENY. Write the rules from Live decisions, then deny.', { allow_all: false, report_only: true }],
];

export async function policyPage(ctx) {
  const c = ctx.cluster;
  const writable = can('writeNetworking', c.id);
  const status = h('div', { id: 'policy-status', class: 'card', 'aria-live': 'polite' });
  const gws = h('div', { id: 'policy-gateways' });
  const err = errorSlot('policy-error');
  const choices = POLICIES.map(([value, label, text]) => h('div', { class: 'choice' },
    h('input', { type: 'radio', name: 'policy', id: `policy-${value}`, value, checked: c.egress_traffic_policy === value, disabled: !writable }),
    h('label', { for: `policy-${value}` }, h('strong', {}, label), h('span', { class: 'hint' }, text))));
  const apply = h('button', { type: 'submit', class: 'primary', id: 'policy-apply', disabled: !writable }, 'Apply');
  const form = h('form', { class: 'card', id: 'policy-form', onsubmit: async (e) => {
    e.preventDefault();
    const chosen = form.querySelector('input[name=policy]:checked');
    if (!chosen) return;
    const body = POLICIES.find(([v]) => v === chosen.value)[3];
    apply.disabled = true;
    try {
      await post(`${net(c.id)}/egress-rules/egress-traffic-policy`, body);
      showError(err, null);
      await loop.poke();
    } catch (ex) {
      showError(err, ex);
    } finally {
      apply.disabled = !writable;
    }
  } },
  h('fieldset', {}, h('legend', {}, 'Egress traffic policy'), choices),
  writable ? null : h('p', { class: 'muted readonly' }, 'Read only: your key cannot change this cluster\'s networking.'),
  err, apply);
  put(ctx.main, h('h1', {}, 'Traffic policy'), status, form, gws);
  const refresh = async () => {
    let now;
    try {
      now = await get(cluster(c.id));
    } catch (e) {
      put(status, h('p', { class: 'error', role: 'alert' }, e.summary()));
      return 3000;
    }
    const g = await get(`${cluster(c.id)}/gateways`).then((r) => r.gateways, (e) => e);
    if (!ctx.page.alive) return 3000;
    const updating = now.egress_traffic_policy === 'UPDATING';
    put(status, h('p', {}, 'Now: ', h('span', { id: 'policy-current' }, badge(now.egress_traffic_policy))),
      updating ? h('p', { class: 'muted' }, 'Waiting for every gateway of the cluster to apply the change…') : null);
    put(gws, g instanceof Error ? h('p', { class: 'error' }, 'Gateways: ' + g.summary()) : gatewaysTable(g));
    return updating ? 500 : 3000;
  };
  const loop = ctx.live(refresh, 3000);
  await loop.first;
}

function ruleLink(ctx, d, from) {
  const ip = /^[0-9.]+$/.test(d.destination) || d.destination.includes(':');
  const q = new URLSearchParams({ new: '1', destination: d.destination, port: String(d.port), type: ip ? 'CIDR' : 'FQDN', from });
  return `#/clusters/${encodeURIComponent(ctx.cluster.id)}/rules?${q}`;
}

const FILTERS = [
  ['refused', 'Denied or would deny', ['DENIED', 'WOULD_DENY']],
  ['DENIED', 'Denied', ['DENIED']],
  ['WOULD_DENY', 'Would deny (report-only)', ['WOULD_DENY']],
  ['ALLOWED', 'Allowed', ['ALLOWED']],
  ['all', 'All', [null]],
];

export async function decisionsPage(ctx) {
  const c = ctx.cluster;
  const writable = can('writeNetworking', c.id);
  const filter = h('select', { id: 'decision-filter' }, FILTERS.map(([v, l]) => h('option', { value: v }, l)));
  const pause = h('input', { type: 'checkbox', id: 'decision-pause' });
  const stamp = h('span', { class: 'muted', id: 'decision-stamp', 'aria-live': 'off' });
  const err = errorSlot('decisions-error');
  const body = h('div', { id: 'decisions' });
  const asked = ctx.query.get('verdict');
  filter.value = FILTERS.some(([v]) => v === asked) ? asked : 'refused';
  const refresh = async () => {
    if (pause.checked) return;
    const verdicts = (FILTERS.find(([v]) => v === filter.value) || FILTERS[0])[2];
    try {
      const lists = await Promise.all(verdicts.map((v) =>
        get(`${net(c.id)}/egress-decisions?limit=500${v ? '&verdict=' + v : ''}`).then((r) => r.decisions)));
      if (!ctx.page.alive) return;
      const rows = lists.flat().sort((a, b) => (b.last_seen || '').localeCompare(a.last_seen || ''));
      showError(err, null);
      swap(body, table(null, ['Last seen', 'Destination', 'Port', 'Verdict', 'Rule', 'Reason', 'Count', 'Bytes', ''],
        rows.map((d) => h('tr', { class: 'decision', 'data-destination': d.destination, 'data-verdict': d.verdict,
          'data-key': [d.destination, d.port, d.verdict, d.rule_name, d.reason].join(' ') },
          h('td', {}, time(d.last_seen)), h('td', { class: 'mono' }, d.destination), h('td', { class: 'num' }, d.port),
          h('td', {}, badge(d.verdict)), h('td', {}, d.rule_name || ''), h('td', {}, d.reason || ''),
          h('td', { class: 'num' }, d.count), h('td', { class: 'num' }, bytes(d.bytes)),
          h('td', {}, d.verdict !== 'ALLOWED' && writable
            ? h('a', { class: 'button allow-from-decision', href: ruleLink(ctx, d, 'decision') }, 'Allow with a rule…')
            : ''))),
        'No decisions of this kind yet. Gateways push what they saw every few seconds.'));
      put(stamp, 'Updated ', new Date().toLocaleTimeString());
    } catch (e) {
      showError(err, e);
    }
  };
  filter.addEventListener('change', () => loop.poke());
  put(ctx.main, h('h1', {}, 'Live decisions'),
    h('p', {}, 'What the cluster\'s gateways decided, newest first, refreshing on its own. A denied or would-deny destination becomes a rule in one click.'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'decision-filter' }, 'Show'), filter,
      h('span', { class: 'check' }, pause, h('label', { for: 'decision-pause' }, 'Pause')), stamp),
    err, body);
  const loop = ctx.live(refresh, 2000);
  await loop.first;
}

export async function whatIfPage(ctx) {
  const c = ctx.cluster;
  const dest = h('input', { type: 'text', value: ctx.query.get('destination') || '', placeholder: 'api.example.com or 203.0.113.7', required: true });
  const port = h('input', { type: 'number', min: 1, max: 65535, value: ctx.query.get('port') || '443', required: true });
  const path = h('input', { type: 'text', placeholder: '/optional/path' });
  const err = errorSlot('what-if-error');
  const result = h('div', { id: 'what-if-result', 'aria-live': 'polite' });
  const form = h('form', { class: 'card', id: 'what-if-form', onsubmit: async (e) => {
    e.preventDefault();
    const req = { destination: dest.value.trim(), port: Number(port.value) };
    if (path.value.trim()) req.path = path.value.trim();
    try {
      const r = await post(`${net(c.id)}/egress-check`, req);
      showFieldErrors(form, err, null);
      const verdict = r.allowed ? 'ALLOWED' : 'DENIED';
      put(result, h('section', { class: 'card verdict verdict-' + verdict.toLowerCase() },
        h('h2', {}, badge(verdict), ' ', `${req.destination}:${req.port}${req.path || ''}`),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Reason'), h('dd', { id: 'what-if-reason' }, r.reason),
          h('dt', {}, 'Rule'), h('dd', { id: 'what-if-rule' }, r.rule ? `${r.rule.name} (${r.rule.type} ${r.rule.destination})` : 'none'),
          h('dt', {}, 'Under default deny'), h('dd', {}, r.would_allow_under_default_deny ? 'allowed' : 'denied'),
          h('dt', {}, 'Snapshot version'), h('dd', {}, r.snapshot_version)),
        (r.warnings || []).map((w) => h('p', { class: 'warning' }, w)),
        !r.would_allow_under_default_deny && can('writeNetworking', c.id)
          ? h('a', { class: 'button', href: ruleLink(ctx, req, 'what-if') }, 'Allow with a rule…') : null));
    } catch (ex) {
      put(result);
      showFieldErrors(form, err, ex);
    }
  } },
  field('Destination', 'destination', dest), field('Port', 'port', port), field('Path', 'path', path, 'Optional: the HTTP path, for rules with paths.'),
  err, h('button', { type: 'submit', class: 'primary', id: 'what-if-check' }, 'Check'));
  put(ctx.main, h('h1', {}, 'What-if'),
    h('p', {}, 'The verdict this cluster\'s gateways give a destination under the newest policy, computed by the same code.'),
    form, result);
}

export async function allowlistPage(ctx) {
  const c = ctx.cluster;
  const writable = can('writeNetworking', c.id);
  const base = `${net(c.id)}/allowlist`;
  const err = errorSlot('allowlist-error');
  // What an action (toggle, delete) was refused with: kept until the next action.
  const actErr = errorSlot('allowlist-action-error');
  const status = h('p', { id: 'allowlist-status', 'aria-live': 'polite' });
  const list = h('div', { id: 'allowlist' });
  const entryPath = (e) => `${base}/${encodeURIComponent(e.cidr_ip)}/${e.cidr_mask}`;
  const cidr = h('input', { type: 'text', placeholder: '203.0.113.0/24', required: true });
  const name = h('input', { type: 'text', placeholder: 'office' });
  const sql = h('input', { type: 'checkbox', id: 'f-sql', checked: true });
  const ui = h('input', { type: 'checkbox', id: 'f-ui' });
  const formErr = errorSlot('allowlist-form-error');
  let loop;
  const act = actions(actErr, () => loop.poke());
  const form = h('form', { class: 'card', id: 'allowlist-form', onsubmit: async (e) => {
    e.preventDefault();
    const [ip, mask] = cidr.value.trim().split('/');
    const body = { cidr_ip: ip, cidr_mask: mask === undefined ? (ip.includes(':') ? 128 : 32) : Number(mask), name: name.value.trim(), sql: sql.checked, ui: ui.checked };
    if (Number.isNaN(body.cidr_mask)) body.cidr_mask = mask;
    try {
      await post(base, body);
      showFieldErrors(form, formErr, null);
      form.reset();
      await loop.poke();
    } catch (ex) {
      // cidr_ip and cidr_mask are one input here.
      for (const k of ['cidr_ip', 'cidr_mask']) {
        if (ex.fields && ex.fields[k]) {
          ex.fields.cidr = ex.fields[k];
          delete ex.fields[k];
        }
      }
      showFieldErrors(form, formErr, ex);
    }
  } },
  h('h2', {}, 'Add an entry'),
  field('CIDR', 'cidr', cidr), field('Name', 'name', name),
  h('div', { class: 'field inline' }, sql, h('label', { for: 'f-sql' }, 'SQL')),
  h('div', { class: 'field inline' }, ui, h('label', { for: 'f-ui' }, 'UI')),
  formErr, h('button', { type: 'submit', class: 'primary', id: 'allowlist-add' }, 'Add'));
  // Only the flag that changed is sent: a quick second toggle cannot undo the first.
  const toggle = (e, key) => (ev) => act(() => patch(entryPath(e), { [key]: ev.target.checked }));
  const refresh = async () => {
    try {
      const entries = [];
      let propagating = false;
      let page = '';
      for (;;) {
        const r = await get(`${base}?pagination.limit=500${page ? '&pagination.page=' + encodeURIComponent(page) : ''}`);
        entries.push(...r.allowlist);
        propagating = propagating || r.propagating;
        page = r.pagination && r.pagination.next_page;
        if (!page) break;
      }
      if (!ctx.page.alive) return 3000;
      put(status, propagating ? badge('PROPAGATING') : badge('APPLIED'), ' ',
        propagating ? 'Not yet applied by every gateway of the cluster.' : 'Every live gateway applied this allowlist.',
        entries.length ? '' : ' The allowlist is empty: the public SQL and UI listeners admit no one.');
      swap(list, table(null, ['CIDR', 'Name', 'SQL', 'UI', ''], entries.map((e) => {
        const where = `${e.cidr_ip}/${e.cidr_mask}`;
        return h('tr', { 'data-cidr': where, 'data-key': where },
          h('td', { class: 'mono' }, where), h('td', {}, e.name),
          h('td', {}, h('input', { type: 'checkbox', checked: e.sql, disabled: !writable, 'aria-label': `SQL for ${where}`, onchange: toggle(e, 'sql') })),
          h('td', {}, h('input', { type: 'checkbox', checked: e.ui, disabled: !writable, 'aria-label': `UI for ${where}`, onchange: toggle(e, 'ui') })),
          h('td', {}, writable ? h('button', { type: 'button', class: 'danger', onclick: () => {
            if (confirm(`Delete ${where} from the allowlist?`)) act(() => del(entryPath(e)));
          } }, 'Delete') : ''));
      }), 'No entries.'));
      showError(err, null);
      return propagating ? 500 : 3000;
    } catch (e) {
      showError(err, e);
      return 3000;
    }
  };
  put(ctx.main, h('h1', {}, 'IP allowlist'), status, err, actErr, list,
    writable ? form : h('p', { class: 'muted readonly' }, 'Read only: your key cannot change this cluster\'s networking.'));
  loop = ctx.live(refresh, 3000);
  await loop.first;
}

export async function auditPage(ctx) {
  const err = errorSlot('audit-error');
  const body = h('div', { id: 'audit' });
  const newer = h('button', { type: 'button', id: 'audit-newer', disabled: true }, '← Newer');
  const older = h('button', { type: 'button', id: 'audit-older', disabled: true }, 'Older →');
  const where = h('span', { class: 'muted', id: 'audit-page' });
  const PAGE = 50;
  const starts = [null];
  let next = null;
  // Entries written by the reconciler carry the cluster's id only: name it when we may.
  const names = new Map();
  const load = async () => {
    const from = starts[starts.length - 1];
    try {
      if (!names.size) {
        for (const c of await listAll('/api/v1/clusters?show_inactive=true', 'clusters').catch(() => [])) names.set(c.id, c.name);
      }
      const r = await get(`/api/v1/auditlogevents?sort_order=DESC&limit=${PAGE}${from ? '&starting_from=' + encodeURIComponent(from) : ''}`);
      if (!ctx.page.alive) return;
      next = r.next_starting_from;
      showError(err, null);
      put(body, table(null, ['Time', 'Action', 'Cluster', 'Service account', 'Change', 'Error'], r.entries.map((e) => h('tr', { class: 'audit-entry' },
        h('td', {}, time(e.created_at)), h('td', { class: 'mono' }, e.action.replace(/^AUDIT_LOG_ACTION_/, '')),
        h('td', {}, e.cluster_name || names.get(e.cluster_id) || e.cluster_id || ''), h('td', {}, e.service_account_name || ''),
        h('td', {}, e.payload ? h('details', {}, h('summary', {}, 'payload'), h('pre', {}, e.payload)) : ''),
        h('td', {}, e.error || ''))), 'No audit entries.'));
      put(where, `Page ${starts.length}`);
    } catch (e) {
      showError(err, e);
    }
    newer.disabled = starts.length <= 1;
    older.disabled = !next;
  };
  older.addEventListener('click', () => { if (next) { starts.push(next); load(); } });
  newer.addEventListener('click', () => { if (starts.length > 1) { starts.pop(); load(); } });
  put(ctx.main, h('h1', {}, 'Audit log'), h('p', {}, 'Every accepted change, newest first, with secrets redacted.'),
    h('div', { class: 'toolbar' }, newer, older, where), err, body);
  await load();
}
