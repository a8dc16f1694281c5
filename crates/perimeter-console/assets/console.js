// The console's shell: sign-in, navigation, and the page lifecycle (live refreshes stop when
// the page is left). Pages live in pages.js, rules.js and endpoints.js.

import { ApiError, get, me, session, whenSignedOut, cluster } from './api.js';
import { errorSlot, h, put, showError } from './dom.js';
import * as pages from './pages.js';
import { rulesPage } from './rules.js';
import { endpointsPage, servicesPage } from './endpoints.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOut = document.getElementById('sign-out');

const CLUSTER_PAGES = [
  ['rules', 'Egress rules', rulesPage],
  ['policy', 'Traffic policy', pages.policyPage],
  ['decisions', 'Live decisions', pages.decisionsPage],
  ['what-if', 'What-if', pages.whatIfPage],
  ['endpoints', 'Private endpoints', endpointsPage],
  ['allowlist', 'IP allowlist', pages.allowlistPage],
];

const TOP_PAGES = [
  ['clusters', 'Clusters', pages.clustersPage],
  ['endpoint-services', 'Endpoint services', servicesPage],
  ['audit', 'Audit log', pages.auditPage],
];

// The page on screen; a new route retires it, which stops its refresh loops.
let current = { alive: false };

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, qs] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, query: new URLSearchParams(qs || '') };
}

function signInView(message) {
  nav.replaceChildren();
  who.replaceChildren();
  signOut.hidden = true;
  // Masked by style, not a password field: a browser's password manager would offer to keep
  // the key beyond this tab.
  const input = h('input', { type: 'text', class: 'secret', id: 'api-key', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', required: true });
  const error = h('p', { class: 'error', id: 'sign-in-error', role: 'alert' }, message || '');
  if (!message) error.hidden = true;
  const form = h('form', { id: 'sign-in', class: 'card narrow', method: 'post', onsubmit: async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    session.set(key);
    try {
      await loadMe();
      route();
    } catch (err) {
      session.clear();
      put(error, err instanceof ApiError ? err.summary() : String(err));
      error.hidden = false;
      input.focus();
    }
  } },
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste an API key. It is kept in this tab only, and forgotten when the tab closes.'),
    h('div', { class: 'field' }, h('label', { for: 'api-key' }, 'API key'), input),
    error,
    h('button', { type: 'submit', class: 'primary', id: 'sign-in-button' }, 'Sign in'));
  put(main, form);
  input.focus();
}

async function loadMe() {
  const m = await get('/api/v1/whoami');
  me.roles = m.roles || [];
  me.name = m.service_account_name;
  put(who, 'Signed in as ', h('strong', { id: 'who-name' }, m.service_account_name),
    ' ', h('span', { class: 'muted' }, '(' + [...new Set(me.roles.map((r) => r.name))].join(', ') + ')'));
  signOut.hidden = false;
}

function navLink(href, label, active) {
  return h('a', { href, 'aria-current': active ? 'page' : false }, label);
}

function renderNav(parts, clusterObj) {
  const top = TOP_PAGES.map(([id, label]) => navLink('#/' + id, label, parts[0] === id && parts.length === 1));
  const sub = clusterObj
    ? h('div', { class: 'subnav' },
      h('p', { class: 'nav-cluster' }, clusterObj.name),
      CLUSTER_PAGES.map(([id, label]) => navLink(`#/clusters/${encodeURIComponent(clusterObj.id)}/${id}`, label, parts[2] === id)))
    : null;
  put(nav, h('div', { class: 'topnav' }, top), sub);
}

async function route() {
  current.alive = false;
  const page = { alive: true, timers: [] };
  current = page;
  if (!session.key()) return signInView();
  if (!me.name) {
    try { await loadMe(); } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        // A key kept in this tab that no longer works (revoked, or another server).
        session.clear();
        return signInView('Signed out: ' + err.summary());
      }
      put(main, h('p', { class: 'error', role: 'alert' }, err.summary ? err.summary() : String(err)));
      return;
    }
  }
  const { parts, query } = parseRoute();
  const ctx = {
    main,
    query,
    page,
    // Run `fn` now and every `ms` while this page is on screen, never two at once; `fn` may
    // return another delay for the next run (quicker while something is in flight).
    // `poke()` runs it again at once (after the run in flight, if any): what a page's own
    // actions call, so that no two reads race and an older answer never paints over a newer.
    live(fn, ms) {
      let timer = null;
      let running = false;
      let again = false;
      const tick = async () => {
        timer = null;
        if (!page.alive) return;
        if (running) {
          again = true;
          return;
        }
        running = true;
        let next;
        try {
          next = await fn();
        } catch (e) {
          // Pages show their own errors; anything else still reaches the screen.
          if (page.alive) {
            let banner = document.getElementById('page-error');
            if (!banner) {
              banner = errorSlot('page-error');
              main.prepend(banner);
            }
            showError(banner, e);
          }
        }
        running = false;
        if (!page.alive) return;
        if (again) {
          again = false;
          return tick();
        }
        timer = setTimeout(tick, typeof next === 'number' ? next : ms);
        page.timers = [timer];
      };
      const poke = () => {
        if (timer) clearTimeout(timer);
        return tick();
      };
      return { first: tick(), poke };
    },
    go(hash) { location.hash = hash; },
  };
  try {
    if (parts[0] === 'clusters' && parts[1]) {
      const c = await get(cluster(parts[1]));
      if (!page.alive) return;
      ctx.cluster = c;
      const which = CLUSTER_PAGES.find(([id]) => id === (parts[2] || 'rules')) || CLUSTER_PAGES[0];
      renderNav(['clusters', c.id, which[0]], c);
      document.title = `${which[1]} · ${c.name} · Perimeter`;
      await which[2](ctx);
    } else {
      const which = TOP_PAGES.find(([id]) => id === parts[0]) || TOP_PAGES[0];
      renderNav([which[0]]);
      document.title = `${which[1]} · Perimeter`;
      await which[2](ctx);
    }
  } catch (err) {
    if (!page.alive) return;
    put(main, h('h1', {}, 'Something went wrong'),
      h('p', { class: 'error', role: 'alert' }, err instanceof ApiError ? err.summary() : String(err)));
  }
}

whenSignedOut((err) => {
  // While signing in, the form itself says why the key was refused.
  if (!me.name) return;
  session.clear();
  me.roles = [];
  me.name = '';
  current.alive = false;
  signInView('Signed out: ' + err.summary());
});

signOut.addEventListener('click', () => {
  session.clear();
  me.roles = [];
  me.name = '';
  current.alive = false;
  signInView();
});

window.addEventListener('hashchange', () => {
  // In-page anchors (the skip link's #main) are not routes.
  if (location.hash && !location.hash.startsWith('#/')) return;
  current.alive = false;
  for (const t of current.timers || []) clearTimeout(t);
  route().then(() => main.focus({ preventScroll: true }));
});

route();
