/**
 * A stand-in for kube-apiserver in tests: plain HTTP, JSON only, no authentication, one process,
 * state in memory. It serves the few resources ca-proxy's controllers use and reproduces the API
 * conventions they depend on (https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md
 * and "Efficient detection of changes" in the API concepts page):
 *
 * - Resources: core/v1 `configmaps`, `events` and `pods` (stored as given: no scheduling, no status), `coordination.k8s.io/v1` `leases`,
 *   `events.k8s.io/v1` `events` (stored as sent; no conversion to/from core/v1 Events),
 *   namespaced paths plus the all-namespaces list/watch path (`/api/v1/configmaps`, ...).
 * - Verbs: get, list, watch, create (POST, `generateName`), update (PUT), patch (PATCH with
 *   `application/merge-patch+json`, `application/strategic-merge-patch+json` — applied as a merge
 *   patch, enough for maps and scalars — and `application/json-patch+json`), delete (returns a
 *   `Status`, DELETED carries the last state at the deletion's resourceVersion).
 * - One cluster-wide `resourceVersion` counter (a decimal string, as etcd revisions are), bumped by
 *   every write; `metadata.uid`, `creationTimestamp`, `resourceVersion` set by the server.
 * - list: `labelSelector`, `fieldSelector`, `resourceVersion` ("" / "0" / N: the current state; N
 *   newer than the server's → 504 "Too large resource version"); the list's `metadata.resourceVersion`.
 * - watch (`?watch=true` or `?watch=1`): newline-delimited JSON `{type, object}` with
 *   ADDED / MODIFIED / DELETED; no `resourceVersion` or "0" starts with synthetic ADDED events for
 *   the current objects; a given `resourceVersion` replays the history after it. An object that stops
 *   matching the selectors arrives as DELETED, one that starts matching as ADDED (as the watch cache
 *   filters). `allowWatchBookmarks=true` gets BOOKMARK events (`bookmarkIntervalMs`). The stream ends
 *   after `timeoutSeconds` (or the server's `watchTimeoutMs`), and test code can cut every watch
 *   (`closeWatches()`).
 * - `410 Gone` / reason `Expired` for a resourceVersion older than the kept history (`compact()`,
 *   `historyLimit`): by default as an ERROR event carrying a Status in a 200 watch stream (what the
 *   watch cache does), or as an HTTP 410 response (`goneAs: 'status'`); either way the client must relist.
 * - Optimistic concurrency: an update or patch whose `metadata.resourceVersion` is not the stored one →
 *   `409 Conflict` ("the object has been modified"); create of an existing name → 409 AlreadyExists;
 *   an update without resourceVersion is unconditional (allowed for these resources).
 * - Size limits: a ConfigMap whose `data` + `binaryData` values exceed 1 MiB (1,048,576 bytes, decoded)
 *   → `422 Invalid` ("Too long: must have at most 1048576 bytes", from ValidateConfigMap); any stored
 *   object over 1.5 MiB serialized → 500 "etcdserver: request is too large"; a request body over 3 MiB
 *   → `413 RequestEntityTooLarge` (the apiserver's MaxRequestBodyBytes).
 * - Label selectors: equality (`=`, `==`, `!=`) and set-based (`in`, `notin`, `key`, `!key`).
 *   Field selectors: `=`, `==`, `!=` on any dotted path (`metadata.name`, `involvedObject.name`, ...).
 * - Fault injection for tests: `fail(match, status, times)` answers matching requests with a Status error.
 *
 * - Discovery, for clients that map kinds to resources first (helm, kubectl): `/version`, `/api`,
 *   `/api/v1`, `/apis` and `/apis/<group>/<version>` (legacy, unaggregated lists) announce the stored
 *   resources plus `discovery` (kinds announced only: a GET of one answers 404 NotFound, as for an
 *   object that does not exist). core/v1 `secrets` are stored like ConfigMaps (for helm's `lookup`).
 *
 * Not reproduced: authentication/authorization, admission, server-side apply, pagination (`limit`/
 * `continue`), `sendInitialEvents`, `resourceVersionMatch`, protobuf, graceful deletion, finalizers,
 * field validation beyond the above.
 */
import fs from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

/** A stored object: any Kubernetes object with `metadata`. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    generateName?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** One request as the server saw it (for assertions on what a client sent). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  status: number;
  /** 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' */
  verb: string;
  resource: string;
}

export interface FakeKubeApiServerOptions {
  /** Server-side watch timeout when the client gives no `timeoutSeconds` (default: none). */
  watchTimeoutMs?: number;
  /** Interval of BOOKMARK events for watches with `allowWatchBookmarks=true` (default 1000 ms). */
  bookmarkIntervalMs?: number;
  /** Watch events kept for resumption; older resourceVersions get 410 (default 1000). */
  historyLimit?: number;
  /** How an expired resourceVersion is answered on watch (default 'event'). */
  goneAs?: 'event' | 'status';
  /** Further kinds announced by discovery (not stored: reading one answers 404). */
  discovery?: DiscoveredResource[];
}

/** A kind announced by discovery: `{ group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true }`. */
export interface DiscoveredResource {
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespaced: boolean;
}

interface ResourceType {
  group: string; // '' for core
  version: string;
  plural: string;
  kind: string;
}

const RESOURCES: ResourceType[] = [
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap' },
  { group: '', version: 'v1', plural: 'events', kind: 'Event' },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod' },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret' },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease' },
  { group: 'events.k8s.io', version: 'v1', plural: 'events', kind: 'Event' },
];

interface HistoryEntry {
  rv: number;
  key: string; // resource key
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  old: KubeObject | null;
  obj: KubeObject;
}

interface ActiveWatch {
  res: ServerResponse;
  rtKey: string;
  namespace: string | null;
  label: Selector;
  field: Selector;
  close: () => void;
}

interface Fault {
  match: (r: { method: string; path: string; verb: string; resource: string }) => boolean;
  status: number;
  times: number;
}

/** What the test-side accessors take. */
export type StoredResource = 'configmaps' | 'events' | 'pods' | 'secrets' | 'leases' | 'events.k8s.io/events';

export const MAX_CONFIGMAP_BYTES = 1024 * 1024;
export const MAX_OBJECT_BYTES = 1.5 * 1024 * 1024;
export const MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024;

export class FakeKubeApiServer {
  readonly requests: RecordedRequest[] = [];
  private server: Server;
  private rv = 1;
  /** rtKey → "ns/name" → object */
  private stores = new Map<string, Map<string, KubeObject>>();
  private history: HistoryEntry[] = [];
  /** Oldest resourceVersion from which a watch can still resume (exclusive lower bound). */
  private compactedRv = 0;
  private watches = new Set<ActiveWatch>();
  private faults: Fault[] = [];
  private opts: Required<Omit<FakeKubeApiServerOptions, 'watchTimeoutMs' | 'discovery'>> & { watchTimeoutMs?: number; discovery: DiscoveredResource[] };
  port = 0;

  constructor(opts: FakeKubeApiServerOptions = {}) {
    this.opts = { bookmarkIntervalMs: 1000, historyLimit: 1000, goneAs: 'event', ...opts, discovery: opts.discovery ?? [] };
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 500;
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A kubeconfig object for `KubeConfig.loadFromOptions`. */
  kubeconfigOptions(namespace = 'default'): object {
    return {
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'c', cluster: 'fake', user: 'u', namespace }],
      currentContext: 'c',
    };
  }

  async stop(): Promise<void> {
    this.closeWatches();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** The current cluster-wide resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Ends every open watch stream (as an apiserver restart or a load balancer timeout does). */
  closeWatches(): void {
    for (const w of [...this.watches]) w.close();
  }

  /** Number of open watch streams. */
  get openWatches(): number {
    return this.watches.size;
  }

  /** Forgets all watch history (as etcd compaction does): resuming from any older resourceVersion → 410. */
  compact(): void {
    this.history = [];
    this.compactedRv = this.rv;
  }

  /** Answers the next `times` requests for which `match` is true with an error Status of `status`. */
  fail(match: Fault['match'], status: number, times = 1): void {
    this.faults.push({ match, status, times });
  }

  /** Direct read of a stored object (a deep copy), or undefined. */
  getObject(resource: StoredResource, namespace: string, name: string): KubeObject | undefined {
    const o = this.store(resourceKey(resource)).get(`${namespace}/${name}`);
    return o ? clone(o) : undefined;
  }

  /** All stored objects of a resource in a namespace (deep copies). */
  listObjects(resource: StoredResource, namespace?: string): KubeObject[] {
    return [...this.store(resourceKey(resource)).values()]
      .filter((o) => namespace === undefined || o.metadata.namespace === namespace)
      .map(clone);
  }

  /**
   * Server-side write as if another client did it (no size or concurrency checks beyond the
   * usual ones): create when absent, else update. Returns the stored object.
   */
  put(resource: StoredResource, obj: KubeObject): KubeObject {
    const rtKey = resourceKey(resource);
    const rt = RESOURCES.find((r) => rtk(r) === rtKey)!;
    const ns = obj.metadata.namespace ?? 'default';
    const key = `${ns}/${obj.metadata.name}`;
    const old = this.store(rtKey).get(key) ?? null;
    const next = clone(obj);
    next.metadata.namespace = ns;
    next.apiVersion = apiVersion(rt);
    next.kind = rt.kind;
    delete next.metadata.resourceVersion;
    return clone(this.commit(rtKey, key, old, next));
  }

  /** Server-side delete; returns whether the object existed. */
  remove(resource: StoredResource, namespace: string, name: string): boolean {
    const rtKey = resourceKey(resource);
    const key = `${namespace}/${name}`;
    const old = this.store(rtKey).get(key);
    if (!old) return false;
    this.commitDelete(rtKey, key, old);
    return true;
  }

  // --- storage -----------------------------------------------------------------------------

  private store(rtKey: string): Map<string, KubeObject> {
    let s = this.stores.get(rtKey);
    if (!s) this.stores.set(rtKey, (s = new Map()));
    return s;
  }

  private commit(rtKey: string, key: string, old: KubeObject | null, next: KubeObject): KubeObject {
    this.rv++;
    next.metadata.resourceVersion = String(this.rv);
    next.metadata.uid = old?.metadata.uid ?? next.metadata.uid ?? randomUUID();
    next.metadata.creationTimestamp = old?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    this.store(rtKey).set(key, next);
    this.record({ rv: this.rv, key: rtKey, type: old ? 'MODIFIED' : 'ADDED', old, obj: next });
    return next;
  }

  private commitDelete(rtKey: string, key: string, old: KubeObject): KubeObject {
    this.rv++;
    this.store(rtKey).delete(key);
    const last = clone(old);
    last.metadata.resourceVersion = String(this.rv);
    this.record({ rv: this.rv, key: rtKey, type: 'DELETED', old, obj: last });
    return last;
  }

  private record(e: HistoryEntry): void {
    this.history.push(e);
    if (this.history.length > this.opts.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.opts.historyLimit);
      this.compactedRv = dropped[dropped.length - 1].rv;
    }
    for (const w of this.watches) if (w.rtKey === e.key) this.deliver(w, e);
  }

  private deliver(w: ActiveWatch, e: HistoryEntry): void {
    if (w.namespace !== null && e.obj.metadata.namespace !== w.namespace) return;
    const newMatch = e.type !== 'DELETED' && w.label(e.obj.metadata.labels ?? {}) && w.field(flatten(e.obj));
    const oldMatch = e.old !== null && w.label(e.old.metadata.labels ?? {}) && w.field(flatten(e.old));
    let type: string | null = null;
    if (e.type === 'DELETED') type = oldMatch ? 'DELETED' : null;
    else if (newMatch && oldMatch) type = 'MODIFIED';
    else if (newMatch) type = 'ADDED';
    else if (oldMatch) type = 'DELETED';
    if (type) w.res.write(JSON.stringify({ type, object: e.obj }) + '\n');
  }

  // --- HTTP --------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams.entries());
    const method = req.method ?? 'GET';
    const rec: RecordedRequest = { method, path: url.pathname, query, status: 0, verb: '', resource: '' };
    this.requests.push(rec);
    const send = (status: number, body: unknown) => {
      rec.status = status;
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      if (method === 'GET') {
        const doc = this.discoveryDocument(url.pathname);
        if (doc) return send(200, doc);
      }
      const route = parsePath(url.pathname);
      if (!route) return send(404, status(404, 'NotFound', `the server could not find the requested resource`));
      const { rt, namespace, name } = route;
      const rtKey = rtk(rt);
      const isWatch = query.watch === 'true' || query.watch === '1';
      const verb =
        method === 'GET' ? (name ? 'get' : isWatch ? 'watch' : 'list')
        : method === 'POST' ? 'create'
        : method === 'PUT' ? 'update'
        : method === 'PATCH' ? 'patch'
        : method === 'DELETE' ? 'delete' : '';
      rec.verb = verb;
      rec.resource = rt.group ? `${rt.group}/${rt.plural}` : rt.plural;
      const fault = this.faults.find((f) => f.times > 0 && f.match({ method, path: url.pathname, verb, resource: rec.resource }));
      if (fault) {
        fault.times--;
        return send(fault.status, status(fault.status, reasonFor(fault.status), `injected failure`));
      }
      if (!verb) return send(405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
      if ((verb === 'create' || verb === 'update' || verb === 'patch' || verb === 'delete') && !namespace) {
        return send(405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
      }
      if ((verb === 'update' || verb === 'patch' || verb === 'delete') && !name) {
        return send(405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
      }

      let body: Buffer | null = null;
      if (method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE') {
        body = await readBody(req, MAX_REQUEST_BODY_BYTES);
        if (body === null) {
          return send(413, status(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_REQUEST_BODY_BYTES}`));
        }
      }
      const parseJson = (): KubeObject | unknown[] | null => {
        try {
          return JSON.parse(body!.toString('utf8')) as KubeObject;
        } catch (e) {
          send(400, status(400, 'BadRequest', `the body of the request was in an unknown format: ${(e as Error).message}`));
          return null;
        }
      };

      const labelSel = parseLabelSelector(query.labelSelector ?? '');
      const fieldSel = parseFieldSelector(query.fieldSelector ?? '');
      if (typeof labelSel === 'string') return send(400, status(400, 'BadRequest', `unable to parse requirement: ${labelSel}`));
      if (typeof fieldSel === 'string') return send(400, status(400, 'BadRequest', `invalid field selector: ${fieldSel}`));
      const store = this.store(rtKey);
      const key = `${namespace}/${name}`;
      const what = `${rt.group ? `${rt.plural}.${rt.group}` : rt.plural} "${name}"`;

      switch (verb) {
        case 'get': {
          const o = store.get(key);
          return o ? send(200, o) : send(404, status(404, 'NotFound', `${what} not found`, rt, name!));
        }
        case 'list': {
          const asked = query.resourceVersion;
          if (asked && asked !== '0' && !(Number(asked) <= this.rv)) {
            return send(504, status(504, 'Timeout', `Too large resource version: ${asked}, current: ${this.rv}`));
          }
          const items = [...store.values()].filter(
            (o) => (namespace === null || o.metadata.namespace === namespace) && labelSel(o.metadata.labels ?? {}) && fieldSel(flatten(o)),
          );
          return send(200, {
            kind: `${rt.kind}List`,
            apiVersion: apiVersion(rt),
            metadata: { resourceVersion: String(this.rv) },
            items,
          });
        }
        case 'watch':
          return this.watch(req, res, rec, rtKey, rt, namespace, labelSel, fieldSel, query);
        case 'create': {
          const obj = parseJson();
          if (obj === null) return;
          if (Array.isArray(obj) || typeof obj !== 'object' || !obj.metadata) {
            return send(400, status(400, 'BadRequest', 'object has no metadata'));
          }
          const next = clone(obj);
          if (!next.metadata.name && next.metadata.generateName) {
            next.metadata.name = next.metadata.generateName + randomUUID().slice(0, 5);
          }
          const n = next.metadata.name;
          const bad = this.validate(rt, next, namespace!);
          if (bad) return send(bad.code as number, bad);
          if (next.metadata.resourceVersion) {
            return send(422, invalid(rt, n, 'metadata.resourceVersion: Invalid value: must be empty on create'));
          }
          const k = `${namespace}/${n}`;
          if (store.has(k)) return send(409, status(409, 'AlreadyExists', `${rt.plural} "${n}" already exists`, rt, n));
          next.apiVersion = apiVersion(rt);
          next.kind = rt.kind;
          const tooBig = this.checkStored(next);
          if (tooBig) return send(500, tooBig);
          return send(201, this.commit(rtKey, k, null, next));
        }
        case 'update':
        case 'patch': {
          const old = store.get(key);
          if (!old) return send(404, status(404, 'NotFound', `${what} not found`, rt, name!));
          const input = parseJson();
          if (input === null) return;
          let next: KubeObject;
          let precondition: string | undefined;
          if (verb === 'update') {
            if (Array.isArray(input) || typeof input !== 'object' || !input.metadata) {
              return send(400, status(400, 'BadRequest', 'object has no metadata'));
            }
            next = clone(input);
            precondition = next.metadata.resourceVersion || undefined;
            if (next.metadata.name !== name) {
              return send(400, status(400, 'BadRequest', `the name of the object (${next.metadata.name}) does not match the name on the URL (${name})`));
            }
          } else {
            const ct = (req.headers['content-type'] ?? '').split(';')[0].trim();
            const applied = applyPatch(ct, old, input);
            if (typeof applied === 'string') {
              return send(ct.endsWith('json-patch+json') ? 422 : 415, status(ct.endsWith('json-patch+json') ? 422 : 415, ct.endsWith('json-patch+json') ? 'Invalid' : 'UnsupportedMediaType', applied));
            }
            next = applied;
            // A resourceVersion in a patch is a precondition too (api-conventions "Concurrency Control").
            precondition = next.metadata.resourceVersion !== old.metadata.resourceVersion ? next.metadata.resourceVersion : undefined;
          }
          if (precondition !== undefined && precondition !== old.metadata.resourceVersion) {
            return send(409, status(409, 'Conflict',
              `Operation cannot be fulfilled on ${rt.group ? `${rt.plural}.${rt.group}` : rt.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`, rt, name!));
          }
          const bad = this.validate(rt, next, namespace!);
          if (bad) return send(bad.code as number, bad);
          next.metadata.name = name!;
          next.metadata.namespace = namespace!;
          next.apiVersion = apiVersion(rt);
          next.kind = rt.kind;
          const tooBig = this.checkStored(next);
          if (tooBig) return send(500, tooBig);
          return send(200, this.commit(rtKey, key, old, next));
        }
        case 'delete': {
          const old = store.get(key);
          if (!old) return send(404, status(404, 'NotFound', `${what} not found`, rt, name!));
          if (body && body.length) {
            const opts = parseJson() as { preconditions?: { resourceVersion?: string; uid?: string } } | null;
            if (opts === null) return;
            const pre = opts.preconditions ?? {};
            if ((pre.resourceVersion && pre.resourceVersion !== old.metadata.resourceVersion) || (pre.uid && pre.uid !== old.metadata.uid)) {
              return send(409, status(409, 'Conflict', `Operation cannot be fulfilled on ${rt.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`, rt, name!));
            }
          }
          this.commitDelete(rtKey, key, old);
          return send(200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: rt.group || undefined, kind: rt.plural, uid: old.metadata.uid } });
        }
      }
    } catch (e) {
      if (!res.headersSent) send(500, status(500, 'InternalError', `fake apiserver: ${(e as Error).message}`));
    }
  }

  /** The discovery answer for `p`, or null when `p` is no discovery path (legacy lists, as a server answers a client that does not ask for aggregated discovery). */
  private discoveryDocument(p: string): Record<string, unknown> | null {
    const all: DiscoveredResource[] = [...RESOURCES.map((r) => ({ ...r, namespaced: true })), ...this.opts.discovery];
    const verbs = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
    const list = (gv: string) => ({
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: gv,
      resources: all
        .filter((r) => (r.group ? `${r.group}/${r.version}` : r.version) === gv)
        .map((r) => ({ name: r.plural, singularName: r.kind.toLowerCase(), namespaced: r.namespaced, kind: r.kind, verbs })),
    });
    if (p === '/version') return { major: '1', minor: '34', gitVersion: 'v1.34.0', platform: 'linux/amd64' };
    if (p === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] };
    if (p === '/api/v1') return list('v1');
    const groups = [...new Set(all.filter((r) => r.group).map((r) => `${r.group}/${r.version}`))];
    if (p === '/apis') {
      const byGroup = new Map<string, string[]>();
      for (const gv of groups) byGroup.set(gv.split('/')[0]!, [...(byGroup.get(gv.split('/')[0]!) ?? []), gv]);
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [...byGroup].map(([name, gvs]) => ({
          name,
          versions: gvs.map((gv) => ({ groupVersion: gv, version: gv.split('/')[1] })),
          preferredVersion: { groupVersion: gvs[0], version: gvs[0]!.split('/')[1] },
        })),
      };
    }
    const m = /^\/apis\/([^/]+)\/([^/]+)$/.exec(p);
    if (m && groups.includes(`${m[1]}/${m[2]}`)) return list(`${m[1]}/${m[2]}`);
    return null;
  }

  private validate(rt: ResourceType, o: KubeObject, namespace: string): Record<string, unknown> | null {
    const n = o.metadata.name;
    if (!n) return invalid(rt, '', 'metadata.name: Required value: name or generateName is required');
    if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(n) || n.length > 253) {
      return invalid(rt, n, `metadata.name: Invalid value: "${n}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'`);
    }
    if (o.metadata.namespace && o.metadata.namespace !== namespace) {
      return status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
    }
    o.metadata.namespace = namespace;
    for (const [k, v] of Object.entries(o.metadata.labels ?? {})) {
      if (typeof v !== 'string' || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v)) {
        return invalid(rt, n, `metadata.labels: Invalid value: "${String(v)}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'`);
      }
      if (!/^([a-z0-9.-]+\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/.test(k)) {
        return invalid(rt, n, `metadata.labels: Invalid value: "${k}": name part must consist of alphanumeric characters`);
      }
    }
    if (rt.kind === 'ConfigMap') {
      let total = 0;
      const data = (o.data ?? {}) as Record<string, unknown>;
      const bin = (o.binaryData ?? {}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(data)) {
        if (typeof v !== 'string') return status(400, 'BadRequest', `data.${k}: expected string`);
        total += Buffer.byteLength(v);
      }
      for (const [k, v] of Object.entries(bin)) {
        if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) {
          return status(400, 'BadRequest', `binaryData.${k}: illegal base64 data`);
        }
        if (k in data) return invalid(rt, n, `binaryData[${k}]: Invalid value: duplicate of key present in data`);
        total += Buffer.from(v, 'base64').length;
      }
      for (const k of [...Object.keys(data), ...Object.keys(bin)]) {
        if (!/^[-._a-zA-Z0-9]+$/.test(k) || k.length > 253) {
          return invalid(rt, n, `data[${k}]: Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'`);
        }
      }
      if (total > MAX_CONFIGMAP_BYTES) return invalid(rt, n, `[]: Too long: must have at most ${MAX_CONFIGMAP_BYTES} bytes`);
    }
    return null;
  }

  private checkStored(o: KubeObject): Record<string, unknown> | null {
    return JSON.stringify(o).length > MAX_OBJECT_BYTES ? status(500, 'InternalError', 'etcdserver: request is too large') : null;
  }

  private watch(
    req: IncomingMessage, res: ServerResponse, rec: RecordedRequest, rtKey: string, rt: ResourceType,
    namespace: string | null, label: Selector, field: Selector, query: Record<string, string>,
  ): void {
    const from = query.resourceVersion ?? '';
    const goneMsg = `too old resource version: ${from} (${this.compactedRv + 1})`;
    const fromN = Number(from);
    const expired = from !== '' && from !== '0' && (!Number.isFinite(fromN) || fromN < this.compactedRv);
    if (expired && this.opts.goneAs === 'status') {
      rec.status = 410;
      const text = JSON.stringify(status(410, 'Expired', goneMsg));
      res.writeHead(410, { 'content-type': 'application/json' });
      res.end(text);
      return;
    }
    rec.status = 200;
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    if (expired) {
      res.end(JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', goneMsg) }) + '\n');
      return;
    }
    const timers: NodeJS.Timeout[] = [];
    const w: ActiveWatch = {
      res, rtKey, namespace, label, field,
      close: () => {
        if (!this.watches.delete(w)) return;
        for (const t of timers) clearTimeout(t), clearInterval(t);
        res.end();
      },
    };
    // Catch up first, then go live: both happen in this same tick, so no write is missed.
    if (from === '' || from === '0') {
      for (const o of this.store(rtKey).values()) {
        if ((namespace === null || o.metadata.namespace === namespace) && label(o.metadata.labels ?? {}) && field(flatten(o))) {
          res.write(JSON.stringify({ type: 'ADDED', object: o }) + '\n');
        }
      }
    } else {
      for (const e of this.history) if (e.key === rtKey && e.rv > fromN) this.deliver(w, e);
    }
    this.watches.add(w);
    req.on('close', () => w.close());
    res.on('close', () => w.close());
    const timeoutMs = query.timeoutSeconds ? Number(query.timeoutSeconds) * 1000 : this.opts.watchTimeoutMs;
    if (timeoutMs !== undefined && Number.isFinite(timeoutMs)) timers.push(setTimeout(() => w.close(), timeoutMs));
    if (query.allowWatchBookmarks === 'true') {
      timers.push(setInterval(() => {
        res.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: rt.kind, apiVersion: apiVersion(rt), metadata: { resourceVersion: String(this.rv) } } }) + '\n');
      }, this.opts.bookmarkIntervalMs));
    }
  }
}

/** Starts a fake API server on 127.0.0.1 with an ephemeral port. */
export function startFakeKubeApiServer(opts: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
  return new FakeKubeApiServer(opts).start();
}

// --- helpers -----------------------------------------------------------------------------------

type Selector = (values: Record<string, string>) => boolean;

function rtk(rt: ResourceType): string {
  return `${rt.group}/${rt.plural}`;
}

function resourceKey(resource: string): string {
  return resource === 'leases' ? 'coordination.k8s.io/leases' : resource.includes('/') ? resource : `/${resource}`;
}

function apiVersion(rt: ResourceType): string {
  return rt.group ? `${rt.group}/${rt.version}` : rt.version;
}

function clone<T>(o: T): T {
  return JSON.parse(JSON.stringify(o)) as T;
}

function parsePath(p: string): { rt: ResourceType; namespace: string | null; name: string | null } | null {
  const parts = p.split('/').filter(Boolean);
  let group = '';
  let version: string;
  let rest: string[];
  if (parts[0] === 'api') {
    version = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === 'apis') {
    group = parts[1];
    version = parts[2];
    rest = parts.slice(3);
  } else return null;
  let namespace: string | null = null;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = decodeURIComponent(rest[1]);
    rest = rest.slice(2);
  }
  if (rest.length < 1 || rest.length > 2) return null;
  const rt = RESOURCES.find((r) => r.group === group && r.version === version && r.plural === rest[0]);
  if (!rt) return null;
  const name = rest[1] ? decodeURIComponent(rest[1]) : null;
  if (name && namespace === null) return null;
  return { rt, namespace, name };
}

function status(code: number, reason: string, message: string, rt?: ResourceType, name?: string): Record<string, unknown> {
  return {
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason,
    ...(rt ? { details: { name, group: rt.group || undefined, kind: rt.plural } } : {}),
    code,
  };
}

function invalid(rt: ResourceType, name: string, detail: string): Record<string, unknown> {
  const s = status(422, 'Invalid', `${rt.kind} "${name}" is invalid: ${detail}`, rt, name);
  (s.details as Record<string, unknown>).kind = rt.kind;
  return s;
}

function reasonFor(code: number): string {
  return ({ 400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 410: 'Expired', 422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout' } as Record<number, string>)[code] ?? 'Unknown';
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > limit) over = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Flattens an object to dotted paths of its scalar fields (for field selectors). */
function flatten(o: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> {
  if (o !== null && typeof o === 'object' && !Array.isArray(o)) {
    for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
      if (k === 'binaryData' || k === 'data') continue;
      flatten(v, prefix ? `${prefix}.${k}` : k, out);
    }
  } else if (typeof o === 'string' || typeof o === 'number' || typeof o === 'boolean') {
    out[prefix] = String(o);
  }
  return out;
}

/** Parses a label selector (k8s.io/apimachinery/pkg/labels syntax); a string is a parse error. */
export function parseLabelSelector(s: string): Selector | string {
  const reqs: Selector[] = [];
  // Split on commas outside parentheses.
  const terms: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() || terms.length) terms.push(cur);
  for (const raw of terms) {
    const t = raw.trim();
    if (!t) return `empty requirement in "${s}"`;
    let m: RegExpMatchArray | null;
    if ((m = t.match(/^([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      const [, k, op, list] = m;
      const set = new Set(list.split(',').map((x) => x.trim()));
      reqs.push(op === 'in' ? (l) => k in l && set.has(l[k]) : (l) => !(k in l) || !set.has(l[k]));
    } else if ((m = t.match(/^([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)$/))) {
      const [, k, op, v] = m;
      reqs.push(op === '!=' ? (l) => l[k] !== v : (l) => l[k] === v);
    } else if ((m = t.match(/^!\s*([^\s!=(),]+)$/))) {
      const k = m[1];
      reqs.push((l) => !(k in l));
    } else if ((m = t.match(/^([^\s!=(),]+)$/))) {
      const k = m[1];
      reqs.push((l) => k in l);
    } else return `"${t}"`;
  }
  return (l) => reqs.every((r) => r(l));
}

/** Parses a field selector (`a.b=v,c!=w`); a string is a parse error. */
export function parseFieldSelector(s: string): Selector | string {
  if (!s.trim()) return () => true;
  const reqs: Selector[] = [];
  for (const raw of s.split(',')) {
    const m = raw.trim().match(/^([A-Za-z0-9._-]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) return `"${raw}"`;
    const [, k, op, v] = m;
    reqs.push(op === '!=' ? (f) => (f[k] ?? '') !== v : (f) => (f[k] ?? '') === v);
  }
  return (f) => reqs.every((r) => r(f));
}

/** Applies a PATCH body; a string is an error message. */
function applyPatch(contentType: string, old: KubeObject, patch: unknown): KubeObject | string {
  if (contentType === 'application/merge-patch+json' || contentType === 'application/strategic-merge-patch+json') {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return 'merge patch must be a JSON object';
    return mergePatch(clone(old), patch) as KubeObject;
  }
  if (contentType === 'application/json-patch+json') {
    if (!Array.isArray(patch)) return 'json patch must be an array';
    let doc: unknown = clone(old);
    for (const op of patch as { op: string; path: string; value?: unknown; from?: string }[]) {
      const r = jsonPatchOp(doc, op);
      if (typeof r === 'string') return r;
      doc = r.doc;
    }
    return doc as KubeObject;
  }
  return `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`;
}

/** RFC 7386 JSON Merge Patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const t = target !== null && typeof target === 'object' && !Array.isArray(target) ? (target as Record<string, unknown>) : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete t[k];
    else t[k] = mergePatch(t[k], v);
  }
  return t;
}

/** One RFC 6902 operation (add, remove, replace, test; copy/move unsupported → error). */
function jsonPatchOp(doc: unknown, op: { op: string; path: string; value?: unknown }): { doc: unknown } | string {
  const tokens = op.path.split('/').slice(1).map((x) => x.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (op.path === '') {
    if (op.op === 'replace' || op.op === 'add') return { doc: op.value };
    if (op.op === 'test') return JSON.stringify(doc) === JSON.stringify(op.value) ? { doc } : 'test operation failed';
    return `unsupported op ${op.op} on the root`;
  }
  let parent: any = doc; // eslint-disable-line @typescript-eslint/no-explicit-any
  for (const t of tokens.slice(0, -1)) {
    if (parent === null || typeof parent !== 'object' || !(t in parent)) return `doc is missing path: "${op.path}"`;
    parent = parent[t];
  }
  const last = tokens[tokens.length - 1];
  if (parent === null || typeof parent !== 'object') return `doc is missing path: "${op.path}"`;
  switch (op.op) {
    case 'add':
      if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, op.value);
      else parent[last] = op.value;
      return { doc };
    case 'replace':
      if (!(last in parent)) return `doc is missing key: "${op.path}"`;
      parent[last] = op.value;
      return { doc };
    case 'remove':
      if (!(last in parent)) return `doc is missing key: "${op.path}"`;
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
      return { doc };
    case 'test':
      return JSON.stringify(parent[last]) === JSON.stringify(op.value) ? { doc } : `testing value ${op.path} failed`;
    default:
      return `unsupported json patch op ${op.op}`;
  }
}

/**
 * Writes a kubeconfig file (JSON, which is YAML) pointing at `server` with `namespace` as the
 * context's default, for controllers that take a kubeconfig path. Returns the path.
 */
export function writeKubeconfig(file: string, server: string, namespace: string): string {
  fs.writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: {} }],
      contexts: [{ name: 'c', context: { cluster: 'fake', user: 'u', namespace } }],
      'current-context': 'c',
    }),
  );
  return file;
}
