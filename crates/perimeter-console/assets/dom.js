// DOM building that can only ever produce text: every string becomes a text node or an
// attribute value, never markup. No module of the console writes HTML from strings.

/** h('tr', {class: 'x', onclick: fn}, 'text', child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'value') {
      el.value = v;
    } else if (k === 'checked') {
      // The default too, so that a form's reset keeps it.
      el.checked = true;
      el.defaultChecked = true;
    } else if (k === 'selected') {
      el.selected = true;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Replace an element's children. */
export function put(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

const FOCUSABLE = 'a[href], button, input, select, textarea, summary';

/**
 * Replace an element's children and keep the keyboard focus where it was: on the control of
 * the same place in the row (or card) with the same `data-key`. Live pages redraw every few
 * seconds; a keyboard user must not lose their place.
 */
export function swap(el, ...children) {
  const active = document.activeElement;
  const row = active && el.contains(active) ? active.closest('[data-key]') : null;
  const key = row && row.dataset.key;
  const index = row ? [...row.querySelectorAll(FOCUSABLE)].indexOf(active) : -1;
  put(el, ...children);
  if (key !== null && key !== undefined && index >= 0) {
    const again = el.querySelector(`[data-key="${CSS.escape(key)}"]`);
    const target = again && again.querySelectorAll(FOCUSABLE)[index];
    if (target) target.focus({ preventScroll: true });
  }
  return el;
}

/** A labelled form field with its error slot: the error of `name` shows under its input. */
export function field(label, name, input, hint) {
  input.id = input.id || 'f-' + name;
  input.name = name;
  const err = h('p', { class: 'field-error', id: 'err-' + name, 'aria-live': 'polite' });
  input.setAttribute('aria-describedby', err.id);
  return h('div', { class: 'field', 'data-field': name },
    h('label', { for: input.id }, label),
    input,
    hint ? h('p', { class: 'hint' }, hint) : null,
    err);
}

export function badge(state) {
  const s = String(state || 'UNKNOWN');
  return h('span', { class: 'state state-' + s.toLowerCase().replace(/[^a-z_]/g, '') }, s);
}

export function time(ts) {
  if (!ts) return h('span', { class: 'muted' }, 'never');
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return h('span', {}, ts);
  const ago = Math.round((Date.now() - d.getTime()) / 1000);
  const rel = ago < 2 ? 'just now' : ago < 120 ? `${ago} s ago` : ago < 7200 ? `${Math.round(ago / 60)} min ago` : d.toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
  return h('time', { datetime: ts, title: ts }, rel);
}

export function bytes(n) {
  const v = Number(n) || 0;
  if (v < 1024) return `${v} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let x = v / 1024, i = 0;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return `${x.toFixed(1)} ${units[i]}`;
}

/** A table whose header is `cols` and whose body is `rows` (arrays of cells). */
export function table(caption, cols, rows, empty) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.length
        ? rows
        : h('tr', {}, h('td', { colspan: cols.length, class: 'empty' }, empty || 'Nothing here yet.')))));
}

/** Show `err` (an ApiError or anything) in `slot`, in the API's own words; null clears it. */
export function showError(slot, err) {
  if (!err) {
    slot.replaceChildren();
    slot.hidden = true;
    return;
  }
  slot.hidden = false;
  put(slot, typeof err.summary === 'function' ? err.summary() : String(err.message || err));
}

/** An error slot: announced to screen readers, hidden while empty. */
export function errorSlot(id) {
  const el = h('p', { class: 'error', role: 'alert', id });
  el.hidden = true;
  return el;
}

/**
 * Put each field error of `err` under its input inside `form` (`ports[2]` under `ports`), and
 * what no field claims into `formSlot`. Returns whether anything was shown.
 */
export function showFieldErrors(form, formSlot, err) {
  for (const p of form.querySelectorAll('.field-error')) p.replaceChildren();
  for (const f of form.querySelectorAll('.field.invalid')) f.classList.remove('invalid');
  showError(formSlot, null);
  if (!err) return false;
  const unplaced = [];
  for (const [name, text] of Object.entries(err.fields || {})) {
    const base = name.replace(/\[.*$/, '').replace(/\..*$/, '');
    const slot = form.querySelector(`#err-${CSS.escape(base)}`);
    if (slot) {
      slot.append(slot.childNodes.length ? ' ' : '', text);
      slot.closest('.field').classList.add('invalid');
    } else {
      unplaced.push(`${name}: ${text}`);
    }
  }
  // Whatever no field shows is said above the buttons: nothing is swallowed.
  if (!Object.keys(err.fields || {}).length) showError(formSlot, err);
  else if (unplaced.length) showError(formSlot, { message: unplaced.join('; ') });
  return true;
}

/**
 * What a page's buttons do: run `what`, say in `slot` why it was refused (kept until the next
 * action, so a refresh never wipes it), then re-read the page through `reread()`.
 */
export function actions(slot, reread) {
  return async (what) => {
    try {
      await what();
      showError(slot, null);
    } catch (ex) {
      showError(slot, ex);
    }
    await reread();
  };
}
