/**
 * Intercept mode (DESIGN.md "Why the proxy terminates TLS"): two OpenSSL sessions over in-memory
 * wires, upstream first, in the order of the seed's flow.
 *
 * States (the whole table is TRANSITIONS below):
 *
 *   ServerFlight ──▶ WorkloadHandshake ──▶ UpstreamFinish (TLS ≤ 1.2) ──▶ Relay ──▶ Closed
 *        │                  │         └──────────────────────────────────▶ Relay (TLS 1.3)
 *        └──────────────────┴──────── deny ──────────────────────────────▶ Closed
 *
 * - ServerFlight: `tls.connect` towards the server with the workload's SNI and ALPN list. The
 *   server's records pass through a ServerFlightWatcher and are handed to OpenSSL only once its
 *   whole first flight has been read and checked: the chain (trust, validity, host name, every
 *   CRL) and whether it sent CertificateRequest — in clear for TLS ≤ 1.2, decrypted with the
 *   server handshake traffic keys for TLS 1.3. From the ServerHello on, everything OpenSSL writes
 *   towards the server (the proxy's client flight, its certificate included) is held on the wire.
 * - WorkloadHandshake: the workload is answered with a leaf minted for the SNI, the server's ALPN
 *   choice and, under `clientAuth`, a CertificateRequest. Its second flight is handed to OpenSSL
 *   with the downstream output held, so nothing of the downstream's last flight leaves before the
 *   workload has been judged. A workload that fails (no certificate under `require`, an untrusted
 *   one) gets the fitting alert; the held client flight is discarded and the server gets
 *   `access_denied`: the proxy never authenticates to the server for a workload that did not
 *   authenticate to it.
 * - The client flight is released (the identity is presented only now), and:
 *   UpstreamFinish (TLS ≤ 1.2): the downstream's ChangeCipherSpec/Finished stay held until the
 *   server's Finished arrives, so the workload cannot send data the upstream could only carry too
 *   late (Envoy's strict per-direction lockstep depends on it).
 * - Relay: plaintext copied between the two sessions with backpressure and half-close. How each
 *   peer ended is mirrored (DESIGN.md "Stream integrity"): a close_notify as a close_notify, a cut
 *   stream as a cut stream (FIN without close_notify), a reset as a reset.
 *
 * Every alert is one the peer can read: plaintext before the peer's keys change, and over TLS 1.3
 * past the ServerHello a protected record (RFC 8446 §6) under the traffic keys OpenSSL reports
 * through the key log (client handshake keys towards the server; the downstream's server
 * application keys towards a workload that already sent its Finished).
 */
import tls from 'node:tls';
import { verifyServerChain, type ChainResult } from '../pki/chain';
import { buildAlert, AlertDescription } from '../tls/alert';
import { ParseError } from '../bytes/reader';
import { parseKeylogLine, RecordProtection, trafficKeys } from '../tls/protection';
import { versionName, versionNumber, type ClientHello } from '../tls/handshake';
import type { RuleSettings } from '../config/types';
import type { EngineContext, IdentityRef } from './context';
import { chainDecisionFields, type Decision, type StreamEnd } from './decision';
import { chainVerdict, type FlowHost } from './flow';
import { chainReason } from './pki-reasons';
import { Reason, type ReasonCode } from './reasons';
import { ServerFlightWatcher, type FlightEvent } from './server-flight';
import { Wire, type PeerEnd } from './wire';
import { alertFor, parseErrorAlert } from './alerts';
import { cipherSuiteName } from './cipher-suites';
import type { Peer } from './types';

/** What the Session offers to the intercept flow. */
export interface InterceptHost extends FlowHost {
  fail(reason: ReasonCode, detail: string): void;
  /** How a peer ended its stream (recorded in the decision; the first report per peer counts). */
  peerEnded(peer: Peer, end: StreamEnd): void;
  /** Both TLS sessions are over. */
  finished(): void;
}

export type InterceptState = 'ServerFlight' | 'WorkloadHandshake' | 'UpstreamFinish' | 'Relay' | 'Closed';

const TRANSITIONS: Record<InterceptState, readonly InterceptState[]> = {
  ServerFlight: ['WorkloadHandshake', 'Closed'],
  WorkloadHandshake: ['UpstreamFinish', 'Relay', 'Closed'],
  UpstreamFinish: ['Relay', 'Closed'],
  Relay: ['Closed'],
  Closed: [],
};

/** OpenSSL's default max_cert_list (SSL_CTX_set_max_cert_list): a longer server certificate list fails its handshake. */
export const OPENSSL_MAX_CERT_LIST = 100 * 1024;

export class Intercept {
  state: InterceptState = 'ServerFlight';
  private readonly upWire: Wire;
  private readonly up: tls.TLSSocket;
  private downWire: Wire | null = null;
  private down: tls.TLSSocket | null = null;
  private readonly watcher: ServerFlightWatcher;
  /** Server records read but not yet handed to OpenSSL (the first flight, until it is checked). */
  private heldServer: Buffer[] = [];
  private heldServerBytes = 0;
  private chain: ChainResult | null = null;
  private certBytes = 0;
  private tls13 = false;
  private version = 0;
  private cipher: string | undefined;
  private certRequested = false;
  private identityPresented = false;
  /** The server's ALPN choice (ServerHello for TLS ≤ 1.2, EncryptedExtensions for TLS 1.3). */
  private serverAlpn: string | null = null;
  private upSecure = false;
  private downSecure = false;
  /** The workload's side of the decision, once its handshake has finished and it passed. */
  private workloadOk: Partial<Decision> | null = null;
  private readonly identity: IdentityRef | undefined;
  /** Key log of each session, by label (CLIENT_HANDSHAKE_TRAFFIC_SECRET, SERVER_TRAFFIC_SECRET_0, …). */
  private readonly upSecrets = new Map<string, Buffer>();
  private readonly downSecrets = new Map<string, Buffer>();
  /** Workload bytes that arrive before the downstream session exists. */
  private pendingWorkload: Buffer[] = [];
  private pendingBytes = 0;
  private workloadEnded = false;
  /** Asynchronous steps in progress (minting the leaf): the engine is not idle while > 0. */
  private pendingSteps = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private closed = { up: false, down: false };
  /** A denial is being made: OpenSSL's own reaction to the held records is not the reason. */
  private denying = false;

  constructor(
    private readonly host: InterceptHost,
    private readonly ctx: EngineContext,
    private readonly hello: ClientHello,
    private readonly serverName: string,
    private readonly settings: RuleSettings,
    /** The server_name to send upstream (the workload's, when it is a host name), or null. */
    sni: string | null,
  ) {
    this.identity = settings.identity ? ctx.identities.get(settings.identity) : undefined;
    this.watcher = new ServerFlightWatcher(ctx.limits.maxHandshakeMessageBytes);
    this.upWire = new Wire((chunk) => this.host.send('server', chunk), undefined, host.lockstep);
    this.upWire.on('outputEnd', () => this.host.endTo('server'));
    this.upWire.on('error', () => undefined);
    this.upWire.on('idle', () => this.checkIdle());
    this.up = tls.connect({
      socket: this.upWire,
      servername: sni ?? undefined,
      ALPNProtocols: hello.alpn.length ? hello.alpn : undefined,
      // The chain is verified by our own code (pki/chain.ts) against our trust anchors and CRL
      // index, before OpenSSL sees it; see the file docstring.
      rejectUnauthorized: false,
      // The identity's certificate and the rule's version floor, in a SecureContext made once.
      secureContext: ctx.upstreamContext(this.identity?.name ?? null, settings.minVersion),
    });
    this.upWire.watch(this.up);
    this.up.on('keylog', (line: Buffer) => {
      const e = parseKeylogLine(line);
      if (e) this.upSecrets.set(e.label, e.secret);
    });
  }

  /** Starts the upstream handshake; `workloadBytes` are the held ClientHello (and anything after it). */
  start(workloadBytes: Buffer, workloadEnded: boolean): void {
    this.queueWorkload(workloadBytes);
    this.workloadEnded = workloadEnded;
    this.up.on('secureConnect', () => this.guard(() => this.onUpstreamSecure()));
    this.up.on('error', (err) => this.guard(() => this.onUpstreamError(err)));
    this.up.on('close', () => this.onSocketClose('up'));
    // 'end' comes once every byte before it has been read: then the end is mirrored, as the wire judged it.
    this.up.on('end', () => this.guard(() => this.onPeerEnd('server', this.upWire.peerEnd ?? 'truncated')));
  }

  // ───────────────────────────── input ─────────────────────────────

  fromServer(chunk: Buffer, end: boolean): void {
    if (this.state === 'Closed') return;
    if (!this.watcher.done) {
      try {
        if (chunk.length) this.watcher.push(chunk);
        this.readServerFlight();
      } catch (err) {
        if (!(err instanceof ParseError)) throw err;
        const tooLarge = err.code === 'too_large';
        this.denyUpstream(tooLarge ? Reason.handshakeTooLarge : Reason.malformedHandshake, `server handshake: ${err.message}`, parseErrorAlert(err));
        return;
      }
      if (this.isClosed()) return;
      if (this.watcher.done) {
        const rest = this.watcher.takeRest();
        if (rest) this.toOpenSsl(rest);
      }
    } else if (chunk.length) {
      this.toOpenSsl(chunk);
    }
    if (end) {
      if (!this.host.decision) {
        this.host.peerEnded('server', 'truncated');
        this.host.deny(Reason.peerClosed, 'server closed the connection during the handshake', this.downstreamStarted ? null : AlertDescription.handshake_failure, this.decisionExtras());
      } else {
        this.upWire.deliverEnd();
      }
    }
  }

  fromWorkload(chunk: Buffer, end: boolean): void {
    if (this.state === 'Closed') return;
    const wire = this.downWire;
    if (!wire) {
      this.queueWorkload(chunk);
      if (end) this.workloadEnded = true;
      return;
    }
    // The workload's second flight: what OpenSSL answers (TLS 1.3 tickets, TLS 1.2 CCS + Finished)
    // waits until the workload has been judged and, for TLS 1.2, the upstream is done.
    if (!this.host.decision && this.state === 'WorkloadHandshake') wire.hold();
    if (chunk.length) wire.deliver(chunk);
    if (end) {
      if (!this.host.decision) {
        // OpenSSL's server side waits forever on an EOF mid-handshake (half-open wire).
        this.host.peerEnded('workload', 'truncated');
        this.host.deny(Reason.peerClosed, 'workload closed the connection during the handshake', null, this.decisionExtras());
      } else {
        wire.deliverEnd();
      }
    }
  }

  /** The engine will not produce output for this connection without new input (see Wire.busy). */
  get idle(): boolean {
    return this.state === 'Closed' || (this.pendingSteps === 0 && !this.upWire.busy && !(this.downWire?.busy ?? false));
  }

  /** Resolves once `idle` (the Envoy front door answers a request then). */
  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  drained(to: Peer, n: number): void {
    (to === 'server' ? this.upWire : this.downWire)?.drained(n);
  }

  /** The workload has been sent the downstream's first flight (a plaintext alert can no longer reach it). */
  get downstreamStarted(): boolean {
    return this.down !== null;
  }

  dispose(): void {
    if (this.state === 'Closed') return;
    this.state = 'Closed';
    this.pendingWorkload = [];
    this.heldServer = [];
    this.up.destroy();
    this.upWire.destroy();
    this.down?.destroy();
    this.downWire?.destroy();
    this.checkIdle();
  }

  // ───────────────────────────── the server's first flight ─────────────────────────────

  private readServerFlight(): void {
    for (;;) {
      if (this.watcher.needsKeys && !this.setServerKeys()) return;
      const rec = this.watcher.next();
      if (!rec) break;
      if (this.state !== 'ServerFlight') {
        this.toOpenSsl(rec.raw);
        continue;
      }
      // During the first flight every record is held back first; the events decide when it goes.
      this.heldServer.push(rec.raw);
      this.heldServerBytes += rec.raw.length;
      const limit = 2 * this.ctx.limits.maxHandshakeMessageBytes + 64 * 1024;
      if (this.heldServerBytes > limit) {
        this.denyUpstream(Reason.handshakeTooLarge, `server sent ${this.heldServerBytes} bytes of handshake before its flight ended`, AlertDescription.record_overflow);
        return;
      }
      const beforeHello = this.version === 0;
      for (const ev of rec.events) {
        if (!this.onFlightEvent(ev)) return;
      }
      // Before the ServerHello (and a HelloRetryRequest), records go to OpenSSL at once; so does a
      // TLS 1.3 ServerHello, from which OpenSSL derives the keys that let the rest be read. The
      // rest of the flight waits until it has been checked (onServerFlightEnd releases it),
      // unless the server gives up (an alert).
      if (beforeHello || rec.events.some((e) => e.kind === 'alert' || (this.tls13 && e.kind === 'serverHello'))) this.releaseHeldServer();
    }
  }

  /** TLS 1.3: the server handshake traffic keys from OpenSSL's key log. */
  private setServerKeys(): boolean {
    const secret = this.upSecrets.get('SERVER_HANDSHAKE_TRAFFIC_SECRET');
    const keys = secret && this.cipher ? trafficKeys(secret, this.cipher) : null;
    if (!keys) {
      this.denyUpstream(Reason.upstreamHandshakeFailed, `cannot read the server's TLS 1.3 flight (cipher ${this.cipher ?? 'unknown'})`, AlertDescription.handshake_failure);
      return false;
    }
    this.watcher.setKeys(keys);
    return true;
  }

  /** Returns false when the connection was decided by the event. */
  private onFlightEvent(ev: FlightEvent): boolean {
    switch (ev.kind) {
      case 'serverHello': {
        if (ev.hello.isHelloRetryRequest) return true;
        this.version = ev.hello.selectedVersion;
        this.tls13 = this.version >= 0x0304;
        this.cipher = cipherSuiteName(ev.hello.cipherSuite);
        this.serverAlpn = ev.hello.alpn ?? null;
        this.host.partial.tls = { version: versionName(this.version), cipher: this.cipher, alpn: this.serverAlpn };
        if (this.version < versionNumber(this.settings.minVersion)) {
          this.denyUpstream(Reason.protocolVersion, `server chose ${versionName(this.version)}; rule ${this.host.partial.rule ?? 'default'} has minVersion ${this.settings.minVersion}`, AlertDescription.protocol_version);
          return false;
        }
        // From here on, nothing OpenSSL writes reaches the server until it is released.
        this.upWire.hold();
        return true;
      }
      case 'encryptedExtensions':
        this.serverAlpn = ev.alpn;
        this.host.partial.tls = { ...this.host.partial.tls, alpn: ev.alpn };
        return true;
      case 'certificate':
        this.certBytes = ev.bytes;
        this.chain = this.verify(ev.chain);
        return true;
      case 'certificateRequest':
        this.certRequested = true;
        return true;
      case 'alert':
        // The server's own alert: OpenSSL reads it and reports the failure.
        return true;
      case 'flightEnd':
        return this.onServerFlightEnd();
    }
  }

  /** The server's first flight is complete: decide on its chain and CertificateRequest, then answer the workload. */
  private onServerFlightEnd(): boolean {
    if (!this.chain) {
      this.denyUpstream(Reason.serverCertificateMissing, 'server finished its flight without a Certificate (anonymous key exchange)', AlertDescription.handshake_failure);
      return false;
    }
    if (this.certBytes > OPENSSL_MAX_CERT_LIST) {
      this.denyUpstream(
        Reason.handshakeTooLarge,
        `server's certificate list is ${this.certBytes} bytes; intercept hands it to OpenSSL, which accepts at most ${OPENSSL_MAX_CERT_LIST} (use inspect or passthrough for this destination)`,
        AlertDescription.record_overflow,
      );
      return false;
    }
    const verdict = chainVerdict(this.chain, this.settings);
    if (verdict) {
      this.denyUpstream(verdict, this.chain.detail ?? verdict, alertFor(verdict));
      return false;
    }
    if (this.certRequested && !this.identity) {
      this.denyUpstream(Reason.clientCertificateRequired, this.noIdentityDetail(), AlertDescription.handshake_failure);
      return false;
    }
    this.transition('WorkloadHandshake');
    this.releaseHeldServer();
    this.startDownstream();
    return true;
  }

  private releaseHeldServer(): void {
    const held = this.heldServer;
    this.heldServer = [];
    this.heldServerBytes = 0;
    for (const r of held) this.toOpenSsl(r);
  }

  private toOpenSsl(bytes: Buffer): void {
    this.upWire.deliver(bytes);
  }

  private onUpstreamSecure(): void {
    if (this.state === 'Closed') return;
    this.upSecure = true;
    const cipher = this.up.getCipher();
    this.host.partial.tls = {
      version: this.up.getProtocol() ?? this.host.partial.tls?.version,
      cipher: cipher?.standardName ?? cipher?.name ?? this.cipher,
      alpn: this.up.alpnProtocol || this.serverAlpn || null,
    };
    if (this.state === 'UpstreamFinish') this.enterRelay();
  }

  private onUpstreamError(err: Error): void {
    if (this.state === 'Closed' || this.denying) return;
    if (this.host.decision) {
      // A TLS error in the relay: the server's stream is cut.
      this.onPeerEnd('server', 'truncated', `upstream TLS: ${err.message}`);
      return;
    }
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // The server refused the proxy's certificate or demanded one it did not get; or it refused
    // every version the proxy offered, which are those from the rule's minVersion up (the
    // SecureContext's floor): a server below the floor, denied as inspect denies its ServerHello.
    const reason =
      code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' && !this.identity
        ? Reason.clientCertificateRequired
        : code === 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' && this.version === 0
          ? Reason.protocolVersion
          : Reason.upstreamHandshakeFailed;
    const detail =
      reason === Reason.clientCertificateRequired
        ? this.noIdentityDetail()
        : reason === Reason.protocolVersion
          ? `server refused every version from ${this.settings.minVersion} up (alert protocol_version); rule ${this.host.partial.rule ?? 'default'} has minVersion ${this.settings.minVersion}`
          : `upstream TLS: ${err.message}`;
    this.host.deny(reason, detail, this.downstreamStarted ? null : alertFor(reason), this.decisionExtras());
  }

  /** Deny before the workload is answered: an alert each way (protected towards a TLS 1.3 server past its ServerHello). */
  private denyUpstream(reason: ReasonCode, detail: string, alert: number): void {
    if (this.tls13 && !this.upSecrets.has('CLIENT_HANDSHAKE_TRAFFIC_SECRET') && this.heldServer.length) {
      // OpenSSL logs the client handshake keys only once it has read the server's whole flight.
      // Let it read the held records (the wire holds whatever it writes back) for the keys alone.
      this.denying = true;
      this.releaseHeldServer();
      this.denying = false;
    }
    this.upWire.discard();
    this.host.send('server', this.alertToServer(alert));
    this.host.deny(reason, detail, alert, this.decisionExtras());
  }

  /**
   * An alert the server can read now: plaintext, or protected under the client handshake keys
   * (TLS 1.3). OpenSSL reports those keys only once it has read the server's whole flight; when
   * the flight never completed (refused mid-flight, e.g. a misplaced record) there are none, and
   * the alert goes in clear — as OpenSSL's own client sends it before it switches its write keys
   * at the server's Finished, and as OpenSSL servers accept it then (ENC_READ_STATE_ALLOW_PLAIN_ALERTS).
   * GnuTLS servers cannot read it (`Decryption has failed`); test/integration/tls13-alerts.test.ts pins both.
   */
  private alertToServer(alert: number): Buffer {
    const plain = () => buildAlert(alert, { version: this.version && this.version <= 0x0303 ? this.version : 0x0303 });
    if (!this.tls13) return plain();
    const secret = this.upSecrets.get('CLIENT_HANDSHAKE_TRAFFIC_SECRET');
    const keys = secret && this.cipher ? trafficKeys(secret, this.cipher) : null;
    return keys ? new RecordProtection(keys).alert(alert) : plain();
  }

  private verify(chainDer: Buffer[]): ChainResult {
    return verifyServerChain(chainDer, {
      anchors: this.ctx.anchors,
      hostname: this.serverName,
      now: this.ctx.now(),
      revocation: this.ctx.revocation,
      leafOnly: this.settings.leafOnly,
    });
  }

  private noIdentityDetail(): string {
    return `server sent CertificateRequest and rule ${this.host.partial.rule ?? 'default'} names no proxy identity`;
  }

  // ───────────────────────────── downstream ─────────────────────────────

  private startDownstream(): void {
    this.pendingSteps++;
    // When the server chose TLS ≤ 1.2, so does the workload's session: its server Finished can
    // then be held until the upstream handshake completes (see UpstreamFinish).
    const opts = this.tls13 ? { minVersion: this.settings.minVersion } : { maxVersion: 'TLSv1.2' as const, minVersion: this.settings.minVersion };
    this.ctx
      .leafContext(this.hello.sni ?? this.serverName, opts)
      .then(
        (secureContext) => this.guard(() => this.openDownstream(secureContext)),
        (err: Error) => this.host.fail(Reason.internalError, `minting a leaf for ${this.serverName}: ${err.message}`),
      )
      .finally(() => {
        this.pendingSteps--;
        this.checkIdle();
      });
  }

  private openDownstream(secureContext: tls.SecureContext): void {
    if (this.state === 'Closed') return;
    const wire = new Wire((chunk) => this.host.send('workload', chunk), undefined, this.host.lockstep);
    wire.on('outputEnd', () => this.host.endTo('workload'));
    wire.on('error', () => undefined);
    wire.on('idle', () => this.checkIdle());
    this.downWire = wire;
    const alpn = this.serverAlpn;
    const down = new tls.TLSSocket(wire, {
      isServer: true,
      secureContext,
      ALPNProtocols: alpn ? [alpn] : undefined,
      requestCert: this.settings.clientAuth !== 'none',
      // With `require`, OpenSSL refuses a workload that sends no certificate at all
      // (SSL_VERIFY_FAIL_IF_NO_PEER_CERT) with its own alert; the chain is verified in onDownstreamSecure.
      rejectUnauthorized: this.settings.clientAuth === 'require',
    });
    this.down = down;
    wire.watch(down);
    if (this.settings.clientAuth !== 'none') {
      // The keys for a protected alert to a TLS 1.3 workload whose certificate fails.
      down.on('keylog', (line: Buffer) => {
        const e = parseKeylogLine(line);
        if (e) this.downSecrets.set(e.label, e.secret);
      });
    }
    down.on('secure', () => this.guard(() => this.onDownstreamSecure()));
    down.on('error', (err) => this.guard(() => this.onDownstreamError(err)));
    down.on('close', () => this.onSocketClose('down'));
    down.on('end', () => this.guard(() => this.onPeerEnd('workload', wire.peerEnd ?? 'truncated')));
    const pending = this.pendingWorkload;
    this.pendingWorkload = [];
    for (const chunk of pending) wire.deliver(chunk);
    if (this.workloadEnded) this.fromWorkload(Buffer.alloc(0), true);
  }

  private onDownstreamSecure(): void {
    if (this.state !== 'WorkloadHandshake') return;
    this.downSecure = true;
    const down = this.down!;
    const peer = down.getPeerX509Certificate();
    const auth = this.settings.clientAuth;
    // A TLSSocket made outside tls.Server never evaluates `authorized`, so the workload's chain
    // is verified here, against the workload CAs, by the same code as server chains.
    const check =
      auth !== 'none' && peer
        ? verifyServerChain(peerChain(down), { anchors: this.ctx.workloadAnchors, hostname: null, now: this.ctx.now(), revocation: null, leafOnly: true, purpose: 'clientAuth' })
        : null;
    const workload =
      auth === 'none'
        ? undefined
        : {
            authenticated: !!check?.ok,
            certificateSha256: peer ? hexFingerprint(peer.fingerprint256) : undefined,
            // The reason code only: the chain's detail names the workload's subject, which stays inside.
            ...(check && !check.ok ? { error: chainReason(check) } : {}),
          };
    if (auth === 'require' && !peer) {
      this.denyWorkload(Reason.workloadCertificateMissing, 'workload sent no certificate', AlertDescription.certificate_required, workload, false);
      return;
    }
    if (check && !check.ok) {
      const why = chainReason(check);
      const alert = why === Reason.untrustedServer ? AlertDescription.unknown_ca : why === Reason.certificateExpired ? AlertDescription.certificate_expired : AlertDescription.bad_certificate;
      this.denyWorkload(Reason.workloadCertificateInvalid, `workload certificate: ${why}`, alert, workload, !!peer);
      return;
    }
    this.workloadOk = { workload, substitution: this.substitution(!!peer, true) };
    // The workload has answered for itself: only now does the proxy present its identity.
    this.identityPresented = this.certRequested && !!this.identity;
    this.upWire.release();
    if (this.tls13 || this.upSecure) this.enterRelay();
    else this.transition('UpstreamFinish');
  }

  /** The workload failed: its alert, `access_denied` to the server, and the held client flight discarded. */
  private denyWorkload(reason: ReasonCode, detail: string, alert: number, workload: Decision['workload'], hadCert: boolean): void {
    this.downWire!.discard();
    this.host.send('workload', this.alertToWorkload(alert));
    this.upWire.discard();
    this.host.send('server', this.alertToServer(AlertDescription.access_denied));
    this.host.deny(reason, detail, null, { ...this.decisionExtras(), workload, substitution: this.substitution(hadCert, false) });
  }

  /** An alert a workload that has sent its Finished can read: plaintext (TLS 1.2, before our CCS) or protected (TLS 1.3). */
  private alertToWorkload(alert: number): Buffer {
    const protocol = this.down?.getProtocol();
    if (protocol !== 'TLSv1.3') return buildAlert(alert);
    const secret = this.downSecrets.get('SERVER_TRAFFIC_SECRET_0');
    const suite = this.down?.getCipher()?.standardName;
    const keys = secret && suite ? trafficKeys(secret, suite) : null;
    return keys ? new RecordProtection(keys).alert(alert) : Buffer.alloc(0);
  }

  private onDownstreamError(err: Error): void {
    if (this.state === 'Closed') return;
    if (this.host.decision) {
      this.onPeerEnd('workload', 'truncated', `downstream TLS: ${err.message}`);
      return;
    }
    const code = (err as NodeJS.ErrnoException).code ?? '';
    // OpenSSL refused the workload itself (no certificate under `require`) and wrote its own alert: let it out.
    this.downWire?.release();
    const missing = code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' || code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED';
    const reason = missing ? Reason.workloadCertificateMissing : Reason.downstreamHandshakeFailed;
    this.upWire.discard();
    this.host.send('server', this.alertToServer(AlertDescription.access_denied));
    this.host.deny(reason, `workload TLS: ${err.message}`, null, { ...this.decisionExtras(), substitution: this.substitution(false, false) });
  }

  // ───────────────────────────── relay ─────────────────────────────

  private enterRelay(): void {
    if (this.state === 'Relay' || this.state === 'Closed') return;
    this.transition('Relay');
    this.host.decide({ outcome: 'allow', reason: Reason.ok, ...this.decisionExtras(), ...this.workloadOk });
    this.downWire!.release();
    const up = this.up;
    const down = this.down!;
    up.on('data', (d: Buffer) => {
      if (!down.write(d)) up.pause();
    });
    down.on('data', (d: Buffer) => {
      if (!up.write(d)) down.pause();
    });
    down.on('drain', () => up.resume());
    up.on('drain', () => down.resume());
    // Ends are mirrored from the wires' 'peerEnd' (onPeerEnd), which knows how each peer ended.
  }

  /** A peer's TLS stream ended: record how, and end the other side the same way. */
  private onPeerEnd(peer: Peer, end: PeerEnd, detail?: string): void {
    if (this.state === 'Closed') return;
    this.host.peerEnded(peer, end);
    if (!this.host.decision) return; // during the handshake the error/close handlers decide
    if (end === 'clean') {
      // close_notify, then FIN (the wire's outputEnd); the other direction may go on (half-close).
      (peer === 'server' ? this.down : this.up)?.end();
      return;
    }
    // Cut: the other side is ended without close_notify (a FIN alone), so it cannot take a
    // truncated stream for a whole one; then the connection is over.
    if (detail) this.host.partial.detail = detail;
    this.up.destroy();
    this.down?.destroy();
    this.host.endTo(peer === 'server' ? 'workload' : 'server');
    this.host.finished();
  }

  private onSocketClose(which: 'up' | 'down'): void {
    this.closed[which] = true;
    if (this.state === 'Closed') return;
    if (!this.host.decision) {
      // The other side's error handler reports the reason; a quiet close is a peer hang-up.
      setImmediate(() => {
        if (!this.host.decision && this.state !== 'Closed') {
          this.host.deny(Reason.peerClosed, `${which === 'up' ? 'server' : 'workload'} closed during the handshake`, this.downstreamStarted ? null : AlertDescription.handshake_failure, this.decisionExtras());
        }
      });
      return;
    }
    if (this.closed.up && (this.closed.down || !this.down)) this.host.finished();
  }

  // ───────────────────────────── helpers ─────────────────────────────

  private isClosed(): boolean {
    return this.state === 'Closed';
  }

  private transition(to: InterceptState): void {
    if (!TRANSITIONS[this.state].includes(to)) throw new Error(`intercept: illegal transition ${this.state} → ${to}`);
    this.state = to;
  }

  private checkIdle(): void {
    if (!this.idleWaiters.length || !this.idle) return;
    const waiters = this.idleWaiters.splice(0);
    for (const w of waiters) w();
  }

  private queueWorkload(chunk: Buffer): void {
    if (!chunk.length) return;
    this.pendingBytes += chunk.length;
    if (this.pendingBytes > 2 * this.ctx.limits.maxHandshakeMessageBytes + 64 * 1024) {
      this.host.deny(Reason.handshakeTooLarge, `workload sent ${this.pendingBytes} bytes before its handshake was answered`, AlertDescription.record_overflow);
      return;
    }
    this.pendingWorkload.push(chunk);
  }

  private substitution(workloadCertificate: boolean, presented = this.identityPresented): Decision['substitution'] {
    return {
      requested: this.certRequested,
      identity: presented && this.certRequested && this.identity ? this.identity.name : null,
      workloadCertificate,
    };
  }

  private decisionExtras(): Partial<Decision> {
    return { substitution: this.substitution(false), ...(this.chain ? chainDecisionFields(this.chain) : {}) };
  }

  /** Runs an event handler; an unexpected exception ends this connection, never the process. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.host.fail(Reason.internalError, (err as Error).stack ?? String(err));
    }
  }
}

/** The chain of certificates the peer sent, leaf first, as DER. */
function peerChain(socket: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let cert = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  const seen = new Set<string>();
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    out.push(cert.raw);
    cert = cert.issuerCertificate;
  }
  return out;
}

function hexFingerprint(fp: string): string {
  return fp.replace(/:/g, '').toLowerCase();
}
