/**
 * Intercept mode (DESIGN.md "Why the proxy terminates TLS"): two OpenSSL sessions over
 * in-memory wires, upstream first.
 *
 * 1. UpstreamHandshake — `tls.connect` towards the server with the workload's SNI and ALPN
 *    list, presenting the rule's proxy identity on CertificateRequest. Server bytes pass
 *    through a ServerFlightWatcher before OpenSSL sees them:
 *    - TLS ≤ 1.2: the Certificate message is checked (chain, hostname, CRLs) *before* it
 *      reaches OpenSSL, so a revoked server never receives the proxy's certificate; it gets
 *      a `certificate_revoked` alert instead. A CertificateRequest is seen in clear.
 *    - TLS 1.3: from the ServerHello on, the proxy's own flight (Certificate,
 *      CertificateVerify, Finished) is held on the wire until OpenSSL has finished and the
 *      peer chain has been checked; a failing chain discards it, so here too the server
 *      never receives the proxy's certificate.
 * 2. DownstreamHandshake — only then is the workload answered: a leaf minted for the SNI,
 *    the ALPN protocol the server chose, and a CertificateRequest when `clientAuth` asks.
 * 3. Relay — plaintext copied between the two sessions with backpressure and half-close.
 */
import tls from 'node:tls';
import { verifyServerChain, type ChainResult } from '../pki/chain';
import { buildAlert, AlertDescription } from '../tls/alert';
import { ParseError } from '../bytes/reader';
import { RecordReader, ContentType } from '../tls/record';
import type { ClientHello } from '../tls/handshake';
import type { RuleSettings } from '../config/types';
import type { EngineContext, IdentityRef } from './context';
import { chainDecisionFields, type Decision } from './decision';
import { chainVerdict as verdictFor, type FlowHost } from './flow';
import { Reason, type ReasonCode } from './reasons';
import { ServerFlightWatcher, type FlightEvent } from './server-flight';
import { Wire } from './wire';
import { alertFor } from './alerts';
import type { Peer } from './session';

/** What the Session offers to the intercept flow. */
export interface InterceptHost extends FlowHost {
  fail(reason: ReasonCode, detail: string): void;
  finished(): void;
}


export class Intercept {
  downstreamStarted = false;
  private readonly upWire: Wire;
  private readonly up: tls.TLSSocket;
  private downWire: Wire | null = null;
  private down: tls.TLSSocket | null = null;
  private watcher: ServerFlightWatcher | null;
  private chain: ChainResult | null = null;
  private tls13 = false;
  private certRequested = false;
  /** The proxy identity actually went out to the server (not merely configured). */
  private identityPresented = false;
  /** ALPN protocol from the ServerHello (known before OpenSSL finishes the upstream handshake). */
  private serverAlpn: string | null = null;
  private upSecure = false;
  /** The workload's side of the decision, once its handshake has finished and it passed. */
  private workloadOk: Partial<Decision> | null = null;
  private readonly identity: IdentityRef | undefined;
  /** Workload bytes that arrive before the downstream session exists. */
  private pendingWorkload: Buffer[] = [];
  private pendingBytes = 0;
  private workloadEnded = false;
  private closed = { up: false, down: false };
  private disposed = false;

  constructor(
    private readonly host: InterceptHost,
    private readonly ctx: EngineContext,
    private readonly hello: ClientHello,
    private readonly serverName: string,
    private readonly settings: RuleSettings,
  ) {
    this.identity = settings.identity ? ctx.identities.get(settings.identity) : undefined;
    this.watcher = new ServerFlightWatcher(ctx.limits.maxHandshakeMessageBytes);
    this.upWire = new Wire((chunk) => this.host.send('server', chunk));
    this.upWire.on('outputEnd', () => this.host.endTo('server'));
    this.upWire.on('error', () => undefined);
    const isIp = /^[\d.]+$|:/.test(serverName);
    this.up = tls.connect({
      socket: this.upWire,
      servername: hello.sni ?? (isIp ? undefined : serverName),
      ALPNProtocols: hello.alpn.length ? hello.alpn : undefined,
      // The chain is verified by our own code (pki/chain.ts) against our trust anchors and
      // CRL index, before OpenSSL acts on it where the protocol allows; see the file docstring.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      ...(this.identity?.secureContextOptions ?? {}),
    });
  }

  /** Starts the upstream handshake; `workloadBytes` are the held ClientHello (and anything after it). */
  start(workloadBytes: Buffer, workloadEnded: boolean): void {
    this.queueWorkload(workloadBytes);
    this.workloadEnded = workloadEnded;
    this.up.on('secureConnect', () => {
      // OpenSSL reports the handshake done before Node has written the client's last flight
      // to the wire; the TLS 1.3 checks below need that flight, so wait for it to arrive.
      const check = (turns: number) => {
        if (this.disposed) return;
        if (this.tls13 && turns > 0 && !hasEncryptedRecord(this.upWire.heldBytes())) setImmediate(() => check(turns - 1));
        else this.guard(() => this.onUpstreamSecure());
      };
      check(20);
    });
    this.up.on('error', (err) => this.guard(() => this.onUpstreamError(err)));
    this.up.on('close', () => this.onSocketClose('up'));
  }

  fromServer(chunk: Buffer, end: boolean): void {
    if (this.disposed) return;
    if (this.watcher) {
      let step;
      try {
        step = this.watcher.push(chunk);
      } catch (err) {
        if (!(err instanceof ParseError)) throw err;
        this.denyUpstream(Reason.malformedHandshake, `server handshake: ${err.message}`, AlertDescription.decode_error);
        return;
      }
      for (const record of step.records) {
        for (const ev of record.events) if (!this.onFlightEvent(ev)) return;
        this.upWire.deliver(record.raw);
      }
      if (step.rest) this.upWire.deliver(step.rest);
      if (this.watcher.done) this.watcher = null;
    } else if (chunk.length) {
      this.upWire.deliver(chunk);
    }
    if (end) {
      if (!this.host.decision && this.downstreamStarted) this.peerClosedEarly('server');
      else this.upWire.deliverEnd();
    }
  }

  private peerClosedEarly(who: Peer): void {
    this.host.deny(Reason.peerClosed, `${who} closed the connection during the handshake`, null, this.decisionExtras());
  }

  fromWorkload(chunk: Buffer, end: boolean): void {
    if (this.disposed) return;
    if (this.downWire) {
      // TLS ≤ 1.2 upstream not finished yet: whatever the workload's next flight makes the
      // downstream answer (its CCS and Finished) waits until the upstream handshake is done.
      // Behind Envoy, bytes for the server leave only in answers to workload requests, so the
      // workload must not consider its handshake done before the server's Finished arrived.
      if (!this.tls13 && !this.upSecure) this.downWire.hold();
      if (chunk.length) this.downWire.deliver(chunk);
      if (end) {
        // OpenSSL's server side waits forever on an EOF mid-handshake (allowHalfOpen wire);
        // a workload that hangs up before its Finished arrived ends the connection here.
        if (!this.host.decision) this.peerClosedEarly('workload');
        else this.downWire.deliverEnd();
      }
      return;
    }
    this.queueWorkload(chunk);
    if (end) this.workloadEnded = true;
  }

  /** Resolves once both OpenSSL sessions have asked for more input. */
  async consumed(): Promise<void> {
    for (const wire of [this.upWire, this.downWire]) {
      if (wire && !wire.consumed && !wire.destroyed) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            wire.off('readRequested', done);
            resolve();
          };
          const t = setTimeout(done, 50);
          wire.on('readRequested', done);
        });
      }
    }
  }

  drained(to: Peer, n: number): void {
    (to === 'server' ? this.upWire : this.downWire)?.drained(n);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pendingWorkload = [];
    this.up.destroy();
    this.upWire.destroy();
    this.down?.destroy();
    this.downWire?.destroy();
  }

  // ───────────────────────────── upstream ─────────────────────────────

  /** Returns false when the flight must not reach OpenSSL (the connection was denied). */
  private onFlightEvent(ev: FlightEvent): boolean {
    switch (ev.kind) {
      case 'serverHello':
        if (ev.hello.isHelloRetryRequest) return true;
        this.serverAlpn = ev.hello.alpn ?? null;
        if (ev.hello.selectedVersion >= 0x0304) {
          this.tls13 = true;
          this.upWire.hold();
        }
        return true;
      case 'serverHelloDone':
        // TLS ≤ 1.2: the server's flight has been checked, so the workload can be answered now,
        // while OpenSSL finishes upstream. Waiting for the server's Finished instead would
        // deadlock behind Envoy: the proxy's client flight can only travel in the answer to
        // the workload's next request, which the workload sends only once it has been answered.
        if (this.chain && !this.chainVerdict()) this.startDownstreamOnce();
        return true;
      case 'certificate': {
        this.chain = this.verify(ev.chain);
        const verdict = this.chainVerdict();
        if (verdict) {
          this.denyUpstream(verdict, this.chain.detail ?? verdict, alertFor(verdict));
          return false;
        }
        return true;
      }
      case 'certificateRequest':
        this.certRequested = true;
        this.identityPresented = !!this.identity;
        if (!this.identity) {
          this.denyUpstream(Reason.clientCertificateRequired, this.noIdentityDetail(), AlertDescription.handshake_failure);
          return false;
        }
        return true;
      case 'alert':
        return true;
    }
  }

  private onUpstreamSecure(): void {
    if (this.disposed) return;
    if (this.tls13) {
      this.certRequested = clientFlightHasCertificate(this.upWire.heldBytes(), this.up.getCipher()?.standardName ?? '');
      this.chain = this.verify(peerChain(this.up));
      const verdict = this.chainVerdict();
      if (verdict) {
        this.upWire.discard();
        this.denyUpstream(verdict, this.chain.detail ?? verdict, alertFor(verdict));
        return;
      }
      if (this.certRequested && !this.identity) {
        this.upWire.discard();
        this.denyUpstream(Reason.clientCertificateRequired, this.noIdentityDetail(), AlertDescription.handshake_failure);
        return;
      }
      this.identityPresented = this.certRequested && !!this.identity;
      this.upWire.release();
    } else if (!this.chain) {
      this.denyUpstream(Reason.badServerCertificate, 'server completed the handshake without a Certificate message', AlertDescription.handshake_failure);
      return;
    }
    const cipher = this.up.getCipher();
    this.host.partial.tls = {
      version: this.up.getProtocol() ?? undefined,
      cipher: cipher?.standardName ?? cipher?.name,
      alpn: this.up.alpnProtocol || null,
    };
    this.upSecure = true;
    this.downWire?.release();
    this.startDownstreamOnce();
    this.maybeAllow();
  }

  private startDownstreamOnce(): void {
    if (this.downstreamStarted || this.disposed) return;
    this.downstreamStarted = true;
    void this.startDownstream().catch((err) => this.host.fail(Reason.internalError, `downstream setup: ${(err as Error).message}`));
  }

  /** Both sessions are up and both checks passed: allow, and start relaying. */
  private maybeAllow(): void {
    if (!this.upSecure || !this.workloadOk || this.host.decision || this.disposed) return;
    this.host.decide({ outcome: 'allow', reason: Reason.ok, ...this.decisionExtras(), ...this.workloadOk });
    this.relay();
  }

  private onUpstreamError(err: Error): void {
    if (this.disposed) return;
    if (this.host.decision) {
      this.host.fail(Reason.internalError, `upstream: ${err.message}`);
      return;
    }
    const required = /certificate required|alert handshake failure/i.test(err.message) && this.certRequested && !this.identity;
    const serverWantsCert = /tlsv13 alert certificate required/i.test(err.message);
    const reason = required || (serverWantsCert && !this.identity) ? Reason.clientCertificateRequired : Reason.upstreamHandshakeFailed;
    const detail = reason === Reason.clientCertificateRequired ? this.noIdentityDetail() : `upstream TLS: ${err.message}`;
    this.host.deny(reason, detail, this.downstreamStarted ? null : AlertDescription.handshake_failure, this.decisionExtras());
  }

  /** Deny during the upstream handshake: an alert to the server (plaintext) and one to the workload. */
  private denyUpstream(reason: ReasonCode, detail: string, alert: number): void {
    this.host.send('server', buildAlert(alert));
    this.host.deny(reason, detail, alert, this.decisionExtras());
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

  /** The reason to deny for the checked chain, or null to go on (softFail lets unknown/stale through). */
  private chainVerdict(): ReasonCode | null {
    return verdictFor(this.chain!, this.settings);
  }

  private noIdentityDetail(): string {
    return `server sent CertificateRequest and rule ${this.host.partial.rule ?? 'default'} names no proxy identity`;
  }

  // ───────────────────────────── downstream ─────────────────────────────

  private async startDownstream(): Promise<void> {
    // When the server chose TLS ≤ 1.2, so does the workload's session: its server Finished can
    // then be held until the upstream handshake completes (see fromWorkload), which keeps the
    // workload from sending application data that could only travel upstream too late.
    const secureContext = await this.ctx.leafContext(this.hello.sni ?? this.serverName, this.tls13 ? {} : { maxVersion: 'TLSv1.2' });
    if (this.disposed) return;
    const wire = new Wire((chunk) => this.host.send('workload', chunk));
    wire.on('outputEnd', () => this.host.endTo('workload'));
    wire.on('error', () => undefined);
    this.downWire = wire;
    const alpn = this.up.alpnProtocol || this.serverAlpn;
    const down = new tls.TLSSocket(wire, {
      isServer: true,
      secureContext,
      ALPNProtocols: alpn ? [alpn] : undefined,
      requestCert: this.settings.clientAuth !== 'none',
      // With `require`, OpenSSL refuses a workload that sends no certificate at all
      // (SSL_VERIFY_FAIL_IF_NO_PEER_CERT); the chain itself is verified in onDownstreamSecure.
      rejectUnauthorized: this.settings.clientAuth === 'require',
    });
    this.down = down;
    down.on('secure', () => this.guard(() => this.onDownstreamSecure()));
    down.on('error', (err) => this.guard(() => this.onDownstreamError(err)));
    down.on('close', () => this.onSocketClose('down'));
    const pending = this.pendingWorkload;
    this.pendingWorkload = [];
    for (const chunk of pending) wire.deliver(chunk);
    if (this.workloadEnded) wire.deliverEnd();
  }

  private onDownstreamSecure(): void {
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
            ...(check && !check.ok ? { error: check.reason } : {}),
          };
    const extras = { ...this.decisionExtras(), workload, substitution: this.substitution(!!peer) };
    if (auth === 'require' && !peer) {
      this.host.deny(Reason.workloadCertificateMissing, 'workload sent no certificate', null, extras);
      return;
    }
    if (check && !check.ok) {
      this.host.deny(Reason.workloadCertificateInvalid, `workload certificate: ${check.reason}`, null, extras);
      return;
    }
    this.workloadOk = { workload, substitution: this.substitution(!!peer) };
    this.maybeAllow();
  }

  private onDownstreamError(err: Error): void {
    if (this.disposed) return;
    if (this.host.decision) {
      this.host.fail(Reason.internalError, `downstream: ${err.message}`);
      return;
    }
    const missing = /peer did not return a certificate|certificate required/i.test(err.message);
    const invalid = /certificate|verify/i.test(err.message) && this.settings.clientAuth !== 'none';
    const reason = missing ? Reason.workloadCertificateMissing : invalid ? Reason.workloadCertificateInvalid : Reason.downstreamHandshakeFailed;
    this.host.deny(reason, `workload TLS: ${err.message}`, null, { ...this.decisionExtras(), substitution: this.substitution(false) });
  }

  private relay(): void {
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
    up.on('end', () => down.end());
    down.on('end', () => up.end());
  }

  private onSocketClose(which: 'up' | 'down'): void {
    this.closed[which] = true;
    if (this.disposed) return;
    if (!this.host.decision) {
      // The other side's error handler reports the reason; a quiet close is a peer hang-up.
      setImmediate(() => {
        if (!this.host.decision && !this.disposed) {
          this.host.deny(
            Reason.peerClosed,
            `${which === 'up' ? 'server' : 'workload'} closed during the handshake`,
            this.downstreamStarted ? null : AlertDescription.handshake_failure,
            this.decisionExtras(),
          );
        }
      });
      return;
    }
    if (this.closed.up && (this.closed.down || !this.down)) this.host.finished();
    else if (which === 'up') this.down?.end();
    else this.up.end();
  }

  // ───────────────────────────── helpers ─────────────────────────────

  private queueWorkload(chunk: Buffer): void {
    if (!chunk.length) return;
    this.pendingBytes += chunk.length;
    if (this.pendingBytes > 2 * this.ctx.limits.maxHandshakeMessageBytes + 64 * 1024) {
      this.host.deny(Reason.handshakeTooLarge, `workload sent ${this.pendingBytes} bytes before its handshake was answered`, AlertDescription.record_overflow);
      return;
    }
    this.pendingWorkload.push(chunk);
  }

  private substitution(workloadCertificate: boolean): Decision['substitution'] {
    return {
      requested: this.certRequested,
      identity: this.identityPresented && this.identity ? this.identity.name : null,
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

/** The chain of certificates the server sent, leaf first, as DER. */
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

/**
 * Whether the proxy's held TLS 1.3 client flight contains a Certificate message, i.e. the
 * server sent CertificateRequest (RFC 8446 §4.4.2: the client answers it with a Certificate,
 * possibly empty, and sends one only then). The flight is encrypted, but its size tells:
 * without a Certificate it holds only Finished (4 + Hash.length bytes, §4.4.4) in one
 * record, and OpenSSL adds no record padding. Each encrypted record carries 1 byte of inner
 * content type and a 16-byte AEAD tag.
 */
export function clientFlightHasCertificate(flight: Buffer, cipherSuite: string): boolean {
  const hashLen = /SHA384/.test(cipherSuite) ? 48 : 32;
  let handshakeBytes = 0;
  try {
    for (const rec of new RecordReader().push(flight)) {
      if (rec.type === ContentType.application_data) handshakeBytes += rec.fragment.length - 17;
    }
  } catch {
    return false;
  }
  return handshakeBytes > 4 + hashLen;
}

/** Whether `bytes` hold a complete encrypted (application_data) record: the end of a TLS 1.3 flight. */
function hasEncryptedRecord(bytes: Buffer): boolean {
  try {
    return new RecordReader().push(bytes).some((r) => r.type === ContentType.application_data);
  } catch {
    return false;
  }
}

function hexFingerprint(fp: string): string {
  return fp.replace(/:/g, '').toLowerCase();
}
