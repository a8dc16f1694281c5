// The REST API client of the console: the same routes, roles and error shape as any client.
// The API key lives in this tab's session storage only: never local storage, a cookie or a URL.

const KEY = 'perimeter.console.api-key';

export const session = {
  key() { return sessionStorage.getItem(KEY); },
  set(k) { sessionStorage.setItem(KEY, k); },
  clear() { sessionStorage.removeItem(KEY); },
};

const CODES = {
  3: 'INVALID_ARGUMENT', 5: 'NOT_FOUND', 6: 'ALREADY_EXISTS', 7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED', 9: 'FAILED_PRECONDITION', 10: 'ABORTED', 13: 'INTERNAL',
  14: 'UNAVAILABLE', 16: 'UNAUTHENTICATED',
};

/** An answer other than 2xx, in the API's own words. */
export class ApiError extends Error {
  constructor(status, body, requestId) {
    const b = body && typeof body === 'object' ? body : {};
    super(b.message || (status ? `HTTP ${status}` : 'no answer'));
    this.status = status;
    this.code = b.code;
    this.codeName = CODES[b.code] || '';
    this.requestId = requestId || '';
    // field -> description, from google.rpc.BadRequest details.
    this.fields = {};
    for (const d of Array.isArray(b.details) ? b.details : []) {
      for (const v of Array.isArray(d.field_violations) ? d.field_violations : []) {
        if (v && typeof v.field === 'string') this.fields[v.field] = String(v.description || '');
      }
    }
  }

  /** One line a person reads: status, gRPC code name, message, request id of a 5xx. */
  summary() {
    const head = [this.status || 'network', this.codeName].filter(Boolean).join(' ');
    // A 5xx message names its request id already; say it only when it does not.
    const rid = this.status >= 500 && this.requestId && !this.message.includes(this.requestId)
      ? ` (request id ${this.requestId})` : '';
    return `${head}: ${this.message}${rid}`;
  }
}

let onUnauthenticated = () => {};
export function whenSignedOut(fn) { onUnauthenticated = fn; }

export async function api(method, path, body) {
  const key = session.key();
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = 'Bearer ' + key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, { message: `the control plane did not answer (${e.message})` });
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text.slice(0, 500) }; }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data, resp.headers.get('x-request-id'));
    if (resp.status === 401) onUnauthenticated(err);
    throw err;
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body ?? {});
export const patch = (path, body) => api('PATCH', path, body);
export const put = (path, body) => api('PUT', path, body);
export const del = (path) => api('DELETE', path);

/**
 * Every item of a paged list (the array under `key`), 500 a page; `onPage(items, done)` sees
 * what has arrived after each page, so a long list shows before it is whole.
 */
export async function listAll(path, key, onPage) {
  const out = [];
  let page = '';
  const sep = path.includes('?') ? '&' : '?';
  for (;;) {
    const q = `pagination.limit=500${page ? '&pagination.page=' + encodeURIComponent(page) : ''}`;
    const data = await get(`${path}${sep}${q}`);
    out.push(...(data[key] || []));
    page = data.pagination && data.pagination.next_page;
    if (onPage) onPage(out, !page);
    if (!page) return out;
  }
}

export const cluster = (id) => `/api/v1/clusters/${encodeURIComponent(id)}`;
export const net = (id) => `${cluster(id)}/networking`;

// Roles, as the API's role matrix has them; the API decides, this only greys out what it
// would refuse.
const NEEDS = {
  writeNetworking: ['CLUSTER_ADMIN', 'CLUSTER_OPERATOR_WRITER'],
  readEndpoints: ['CLUSTER_ADMIN', 'CLUSTER_OPERATOR_WRITER'],
  operatorRules: ['PLATFORM_OPERATOR'],
  endpointServices: ['ORG_ADMIN', 'CLUSTER_ADMIN'],
  audit: ['ORG_ADMIN'],
};
const ORG_ONLY = new Set(['endpointServices', 'audit']);

export const me = { roles: [], name: '' };

export function can(need, clusterId) {
  return me.roles.some((b) => NEEDS[need].includes(b.name) && (
    b.resource.type === 'ORGANIZATION' ||
    (!ORG_ONLY.has(need) && b.resource.type === 'CLUSTER' && b.resource.id === clusterId)));
}
