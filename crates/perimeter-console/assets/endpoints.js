// Egress private endpoints of a cluster (create, state, address, domain names, delete), and
// the endpoint services of the `local` provider with the connections waiting for acceptance.

import { can, get, listAll, net, patch, post, del } from './api.js';
import { actions, badge, bytes, errorSlot, field, h, put, showError, showFieldErrors, swap, table, time } from './dom.js';

const TYPES = ['PRIVATE_SERVICE', 'MSK_SASL_SCRAM', 'MSK_SASL_IAM', 'MSK_TLS'];
const MOVING = new Set(['PENDING', 'DELETING']);

export async function endpointsPage(ctx) {
  const c = ctx.cluster;
  const writable = can('writeNetworking', c.id);
  const base = `${net(c.id)}/egress-private-endpoints`;
  const err = errorSlot('endpoints-error');
  // What a delete was refused with (the cluster lock, say): kept until the next action.
  const actErr = errorSlot('endpoints-action-error');
  let loop;
  const act = actions(actErr, () => loop.poke());
  const list = h('div', { id: 'endpoints' }, h('p', { class: 'muted' }, 'Loading endpoints…'));

  const region = h('select', {}, c.regions.map((r) => h('option', { value: r.name }, r.name)));
  const target = h('input', { type: 'text', required: true, autocomplete: 'off', placeholder: 'com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0' });
  const kind = h('select', {}, TYPES.map((t) => h('option', { value: t }, t)));
  const formErr = errorSlot('endpoint-form-error');
  const form = h('form', { class: 'card', id: 'endpoint-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await post(base, { region: region.value, target_service_identifier: target.value.trim(), target_service_type: kind.value });
      showFieldErrors(form, formErr, null);
      target.value = '';
      await loop.poke();
    } catch (ex) {
      showFieldErrors(form, formErr, ex);
    }
  } },
  h('h2', {}, 'Create an endpoint'),
  field('Region', 'region', region), field('Target service', 'target_service_identifier', target),
  field('Target type', 'target_service_type', kind),
  formErr, h('button', { type: 'submit', class: 'primary', id: 'endpoint-create' }, 'Create'));

  const domainsEditor = (ep) => {
    const input = h('textarea', { rows: 2, id: `domains-${ep.id}`, 'aria-label': `Domain names of ${ep.endpoint_address || ep.id}` }, ep.domain_names.join('\n'));
    const slot = errorSlot(`domains-error-${ep.id}`);
    const f = h('form', { class: 'domains', onsubmit: async (e) => {
      e.preventDefault();
      const names = input.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
      try {
        await patch(`${base}/${encodeURIComponent(ep.id)}`, { domain_names: names });
        showError(slot, null);
        await loop.poke();
      } catch (ex) {
        showError(slot, ex);
      }
    } }, input, h('button', { type: 'submit' }, 'Set domain names'), slot);
    return f;
  };

  // Editors keep what is being typed across refreshes: rebuild only when the list changes.
  let shown = '';
  const refresh = async () => {
    try {
      const eps = await listAll(base, 'egress_private_endpoints');
      if (!ctx.page.alive) return 2000;
      showError(err, null);
      // Not the byte counts: traffic must not wipe a domain name being typed.
      const key = JSON.stringify(eps.map((e) => [e.id, e.state, e.domain_names, e.domain_names_state, e.endpoint_address]));
      if (key !== shown) {
        shown = key;
        swap(list, table(null, ['Endpoint', 'Region', 'Target', 'State', 'Domain names', 'Bytes', ''],
          eps.map((ep) => h('tr', { class: 'endpoint', 'data-key': ep.id, 'data-endpoint': ep.id, 'data-state': ep.state, 'data-domains-state': ep.domain_names_state },
            h('td', {}, h('div', { class: 'mono' }, ep.endpoint_address || '(no address yet)'), h('div', { class: 'muted mono small' }, ep.endpoint_connection_id || ep.id)),
            h('td', {}, ep.region),
            h('td', {}, h('div', { class: 'mono small' }, ep.target_service_identifier), h('div', { class: 'muted small' }, ep.target_service_type)),
            h('td', {}, badge(ep.state)),
            h('td', {}, h('div', {}, badge(ep.domain_names_state)),
              h('div', { class: 'mono small domain-names' }, ep.domain_names.join(', ')),
              writable && ep.state === 'AVAILABLE' && ep.domain_names_state !== 'PENDING' ? domainsEditor(ep) : null),
            h('td', { class: 'num bytes' }, bytes(ep.bytes_processed)),
            h('td', {}, writable && ep.state !== 'DELETING' ? h('button', { type: 'button', class: 'danger', onclick: async () => {
              if (!confirm(`Delete the endpoint to ${ep.target_service_identifier}?`)) return;
              await act(() => del(`${base}/${encodeURIComponent(ep.id)}`));
            } }, 'Delete') : ''))),
          'No egress private endpoints.'));
      }
      // The byte counts, in place.
      for (const ep of eps) {
        const cell = list.querySelector(`tr[data-key="${CSS.escape(ep.id)}"] td.bytes`);
        if (cell) put(cell, bytes(ep.bytes_processed));
      }
      return eps.some((e) => MOVING.has(e.state) || e.domain_names_state === 'PENDING') ? 500 : 5000;
    } catch (e) {
      showError(err, e);
      return 5000;
    }
  };
  const ingress = h('section', { id: 'ingress-private' });
  put(ctx.main, h('h1', {}, 'Private endpoints'),
    h('h2', {}, 'Egress: to customers\' services'),
    h('p', {}, 'Egress private endpoints carry this cluster\'s traffic to a customer\'s service without an egress rule. Domain names can be set once an endpoint is AVAILABLE.'),
    err, actErr, list, writable ? form : h('p', { class: 'muted readonly' }, 'Read only: your key cannot change this cluster\'s networking.'),
    ingress);
  loop = ctx.live(refresh, 5000);
  await Promise.all([loop.first, ingressSection(ctx, ingress, writable)]);
}

/**
 * Ingress: the cluster's own private endpoint services (one per region) and the customers'
 * endpoints connected to them, which the private ingress listener admits past the allowlist.
 */
async function ingressSection(ctx, el, writable) {
  const base = net(ctx.cluster.id);
  const err = errorSlot('ingress-error');
  const actErr = errorSlot('ingress-action-error');
  const body = h('div', { id: 'ingress-services' });
  const endpointId = h('input', { type: 'text', autocomplete: 'off', placeholder: 'vpce-0123456789abcdef0' });
  const formErr = errorSlot('ingress-form-error');
  let loop;
  const act = actions(actErr, () => loop.poke());
  const form = h('form', { class: 'card', id: 'ingress-connection-form', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await post(`${base}/private-endpoint-connections`, { endpoint_id: endpointId.value.trim() });
      showFieldErrors(form, formErr, null);
      endpointId.value = '';
      await loop.poke();
    } catch (ex) {
      showFieldErrors(form, formErr, ex);
    }
  } },
  h('h3', {}, 'Connect a customer endpoint'),
  field('Endpoint id', 'endpoint_id', endpointId, 'The id of the customer\'s endpoint to this cluster\'s service, as their cloud names it.'),
  formErr, h('button', { type: 'submit', class: 'primary', id: 'ingress-connect' }, 'Connect'));
  const refresh = async () => {
    try {
      const [svc, conns] = await Promise.all([
        get(`${base}/private-endpoint-services`),
        get(`${base}/private-endpoint-connections`),
      ]);
      if (!ctx.page.alive) return 5000;
      showError(err, null);
      swap(body,
        table('Private endpoint services', ['Region', 'Service name', 'Status'], svc.services.map((x) => h('tr', { class: 'ingress-service', 'data-key': x.region_name, 'data-status': x.status },
          h('td', {}, x.region_name), h('td', { class: 'mono small' }, x.name), h('td', {}, badge(x.status)))),
        'None yet: create them to take private connections.'),
        !svc.services.length && writable
          ? h('button', { type: 'button', id: 'ingress-create', onclick: () => act(() => post(`${base}/private-endpoint-services`)) }, 'Create private endpoint services')
          : null,
        table('Connected endpoints', ['Endpoint', 'Region', 'Status', ''], conns.connections.map((x) => h('tr', { class: 'ingress-connection', 'data-key': x.endpoint_id, 'data-status': x.status },
          h('td', { class: 'mono small' }, x.endpoint_id), h('td', {}, x.region_name), h('td', {}, badge(x.status)),
          h('td', {}, writable ? h('button', { type: 'button', class: 'danger', onclick: () => {
            if (confirm(`Disconnect ${x.endpoint_id}?`)) act(() => del(`${base}/private-endpoint-connections/${encodeURIComponent(x.endpoint_id)}`));
          } }, 'Disconnect') : ''))),
        'No customer endpoint is connected.'));
      const moving = svc.services.some((x) => !['AVAILABLE', 'CREATE_FAILED', 'DELETE_FAILED'].includes(x.status)) ||
        conns.connections.some((x) => !['STATUS_AVAILABLE', 'STATUS_REJECTED'].includes(x.status));
      return moving ? 1000 : 5000;
    } catch (e) {
      showError(err, e);
      return 5000;
    }
  };
  put(el, h('h2', {}, 'Ingress: private connections to this cluster'),
    h('p', {}, 'Customers reach the cluster privately through these services; the private ingress listener admits their endpoints past the IP allowlist.'),
    err, actErr, body, writable ? form : null);
  loop = ctx.live(refresh, 5000);
  await loop.first;
}

function backendText(b) {
  if (typeof b === 'string') return b;
  return `${b.address} (${(b.server_names || []).join(', ')})`;
}

export async function servicesPage(ctx) {
  const err = errorSlot('services-error');
  const list = h('div', { id: 'services' }, h('p', { class: 'muted' }, 'Loading endpoint services…'));
  const writable = can('endpointServices');
  const actErr = errorSlot('services-action-error');
  let loop;
  const run = actions(actErr, () => loop.poke());
  const act = (svc, conn, verb) => () =>
    run(() => post(`/api/v1/endpoint-services/${encodeURIComponent(svc.id)}/connections/${encodeURIComponent(conn.id)}/${verb}`));
  const refresh = async () => {
    try {
      const services = await listAll('/api/v1/endpoint-services', 'endpoint_services');
      const conns = await Promise.all(services.map((s) =>
        listAll(`/api/v1/endpoint-services/${encodeURIComponent(s.id)}/connections`, 'connections').catch((e) => e)));
      if (!ctx.page.alive) return 3000;
      showError(err, null);
      swap(list, services.length ? services.map((s, i) => h('section', { class: 'card service', 'data-service': s.id },
        h('h2', { class: 'mono' }, s.service_name),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Region'), h('dd', {}, s.region),
          h('dt', {}, 'Backends'), h('dd', { class: 'mono small' }, s.backends.map(backendText).join(' · ')),
          h('dt', {}, 'Acceptance'), h('dd', {}, s.acceptance_required ? 'required' : 'automatic'),
          h('dt', {}, 'PROXY protocol'), h('dd', {}, s.proxy_protocol ? 'v2' : 'off')),
        conns[i] instanceof Error ? h('p', { class: 'error' }, conns[i].summary())
          : table('Connections', ['Connection', 'Cluster', 'Account', 'Status', 'Since', ''], conns[i].map((cn) => h('tr', { class: 'connection', 'data-status': cn.status, 'data-key': cn.id },
            h('td', { class: 'mono small' }, cn.id), h('td', { class: 'mono small' }, cn.cluster_id), h('td', { class: 'mono small' }, cn.account_id),
            h('td', {}, badge(cn.status)), h('td', {}, time(cn.created_at)),
            h('td', { class: 'row-actions' }, writable && cn.status === 'PENDING_ACCEPTANCE' ? [
              h('button', { type: 'button', class: 'primary accept', onclick: act(s, cn, 'accept') }, 'Accept'),
              h('button', { type: 'button', class: 'danger reject', onclick: act(s, cn, 'reject') }, 'Reject')] : ''))),
          'No connections.'))) : h('p', { class: 'empty' }, 'No endpoint services are registered.'));
      return 3000;
    } catch (e) {
      showError(err, e);
      return 5000;
    }
  };
  put(ctx.main, h('h1', {}, 'Endpoint services'),
    h('p', {}, 'Services that clusters\' egress private endpoints connect to, and the connections waiting for their owner to accept them.'),
    err, actErr, list);
  loop = ctx.live(refresh, 3000);
  await loop.first;
}
