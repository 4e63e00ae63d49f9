/**
 * Inspect mode (DESIGN.md "Why the proxy terminates TLS", last paragraphs): the bytes are
 * relayed unchanged and the handshake is followed as it passes, in both directions. No
 * OpenSSL session, no cryptography beyond the chain and CRL check.
 *
 * States (the whole table; `Session` holds the flow while it is `Inspecting`):
 *
 *   AwaitServerHello ──▶ AwaitCertificate ──▶ Following ──▶ Done (allow: Session relays, parsing stops)
 *          │                    │                  └──────▶ Done (deny: a peer's fatal alert, EOF, malformed)
 *          ├─ TLS 1.3 / HRR ──▶ Done (tls13: deny | allowUnchecked) or handed to intercept (tls13: intercept)
 *          └────────────────────┴─────────────────────────▶ Done (deny: bad chain, limits, timeout, EOF)
 *
 * - AwaitServerHello: the ClientHello goes to the server. The server's bytes are held from
 *   its first byte. Workload bytes after the ClientHello are held too when `tls13: intercept`
 *   (so that nothing the workload sends — 0-RTT data above all — reaches a server it may
 *   never talk to), else forwarded.
 * - AwaitCertificate (TLS ≤ 1.2): the server's records stay held until its Certificate
 *   message (RFC 5246 §7.4.2) is complete and its chain passes `verifyServerChain` (trust
 *   anchors, validity, host name, CRLs — the same check as intercept). A failing chain is
 *   never forwarded: both peers receive a fatal alert (e.g. `certificate_revoked`) and both
 *   connections close. A ChangeCipherSpec before any Certificate is an abbreviated handshake
 *   (session resumption): nothing to check, so the rule's `revocation` decides.
 * - Following: everything is forwarded as it arrives; the observers still read the server's
 *   CertificateRequest and the workload's Certificate (empty or not) or SSLv3 `no_certificate`
 *   warning (RFC 6101 §5.4.6), until each direction's ChangeCipherSpec. Then the decision
 *   (`allow`, reason `ok`) is made and the Session relays without parsing.
 *
 * Refused whatever the chain: a version below the rule's `minVersion` (`protocol_version`) and
 * export, NULL, anonymous and RC4 suites (`insufficient_security`).
 *
 * Bounded: bytes held in each direction ≤ `limits.maxBufferedBytes`, judged at record boundaries
 * (so the same bytes give the same decision however TCP cut them), handshake messages ≤
 * `limits.maxHandshakeMessageBytes`, the whole handshake ≤ `limits.handshakeTimeoutMs`
 * (Session's timer calls `timeout()`); each breach is a decision and a clean close.
 */
import { verifyServerChain, type ChainResult } from '../pki/chain';
import { buildAlert, AlertDescription, AlertLevel, alertName } from '../tls/alert';
import { ParseError } from '../bytes/reader';
import { versionName, versionNumber, type ClientHello, type ServerHello } from '../tls/handshake';
import type { RuleSettings } from '../config/types';
import type { EngineContext } from './context';
import { chainDecisionFields, type Decision } from './decision';
import { chainVerdict, type FlowHost } from './flow';
import { Reason, type ReasonCode } from './reasons';
import { HandshakeObserver, type ObservedEvent } from './observer';
import { alertFor, parseErrorAlert } from './alerts';
import { cipherSuiteName, refusedCipherSuite } from './cipher-suites';

/** What the Session offers to the inspect flow. */
export interface InspectHost extends FlowHost {
  /** The handshake is decided (allowed): relay the rest unchanged, without parsing. */
  relay(): void;
  /** TLS 1.3 with `tls13: intercept`: drop this upstream connection and intercept `workloadBytes` (everything the workload sent) over a new one. */
  switchToIntercept(workloadBytes: Buffer, workloadEnded: boolean): void;
}

export type InspectState = 'AwaitServerHello' | 'AwaitCertificate' | 'Following' | 'Done';


/** A FIFO of byte chunks that can give back a prefix of its bytes. */
class HeldBytes {
  chunks: Buffer[] = [];
  bytes = 0;
  push(b: Buffer): void {
    if (!b.length) return;
    this.chunks.push(b);
    this.bytes += b.length;
  }
  /** Removes and returns the first `n` bytes (all when n ≥ size). */
  take(n = this.bytes): Buffer {
    const out: Buffer[] = [];
    let left = Math.min(n, this.bytes);
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        out.push(c);
        this.chunks.shift();
        left -= c.length;
        this.bytes -= c.length;
      } else {
        out.push(c.subarray(0, left));
        this.chunks[0] = c.subarray(left);
        this.bytes -= left;
        left = 0;
      }
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }
  clear(): void {
    this.chunks = [];
    this.bytes = 0;
  }
}

export class Inspect {
  state: InspectState = 'AwaitServerHello';
  private readonly client: HandshakeObserver;
  private readonly server: HandshakeObserver;
  /** Server bytes not yet forwarded (AwaitServerHello, AwaitCertificate). */
  private readonly heldServer = new HeldBytes();
  /** Workload bytes not yet forwarded (past the ClientHello, `tls13: intercept` only). */
  private readonly heldWorkload = new HeldBytes();
  /** Workload stream bytes forwarded so far, and the offset up to which they may be (the ClientHello's end). */
  private workloadSent = 0;
  private workloadMayPass = Infinity;
  /** Every workload byte so far, kept only while a switch to intercept is possible. */
  private workloadLog: HeldBytes | null;
  private workloadEnded = false;
  private serverHello: ServerHello | null = null;
  private chain: ChainResult | null = null;
  /** True when the handshake was abbreviated (no Certificate) and the policy let it through. */
  private resumed = false;
  private certRequested = false;
  /** The workload's answer to CertificateRequest: a non-empty Certificate message. */
  private workloadCertificate = false;
  private clientCcs = false;
  private serverCcs = false;

  constructor(
    private readonly host: InspectHost,
    private readonly ctx: EngineContext,
    private readonly hello: ClientHello,
    private readonly serverName: string,
    private readonly settings: RuleSettings,
  ) {
    const max = ctx.limits.maxHandshakeMessageBytes;
    this.client = new HandshakeObserver('client', max);
    this.server = new HandshakeObserver('server', max);
    this.workloadLog = settings.tls13 === 'intercept' ? new HeldBytes() : null;
    if (settings.tls13 === 'intercept') this.workloadMayPass = 0;
    host.partial.tls = { alpn: null };
  }

  /** Starts with the workload's bytes so far (its ClientHello and anything after it). */
  start(workloadBytes: Buffer, workloadEnded: boolean): void {
    this.fromWorkload(workloadBytes, workloadEnded);
  }

  /** Whether a plaintext alert can still reach the workload (it has not received the server's ChangeCipherSpec). */
  get workloadPlaintext(): boolean {
    return !this.serverCcs;
  }

  fromWorkload(chunk: Buffer, end: boolean): void {
    if (this.state === 'Done') return;
    if (chunk.length) {
      this.workloadLog?.push(chunk);
      if (this.state === 'Following') {
        // The server's chain passed: forward first, read after (a reader never delays bytes).
        this.host.send('server', chunk);
        this.workloadSent += chunk.length;
      } else {
        this.heldWorkload.push(chunk);
      }
      if (!this.observe(this.client, chunk)) return;
      this.forwardWorkload();
      this.maybeDecide();
    }
    if (end && !this.decided()) {
      this.workloadEnded = true;
      this.state = 'Done';
      this.host.deny(Reason.peerClosed, `workload closed the connection during the handshake`, null, this.extras());
    }
  }

  fromServer(chunk: Buffer, end: boolean): void {
    if (this.state === 'Done') return;
    if (chunk.length) {
      if (this.state === 'Following') this.host.send('workload', chunk);
      else this.heldServer.push(chunk); // released (or dropped) by the event that ends the hold
      if (!this.observe(this.server, chunk)) return;
      this.maybeDecide();
    }
    if (end && !this.decided()) {
      const alert = this.state === 'Following' ? null : AlertDescription.handshake_failure;
      this.state = 'Done';
      this.host.deny(Reason.peerClosed, 'server closed the connection during the handshake', alert, this.extras());
    }
  }

  /** Whether this flow is over (a method call may have changed the state since TypeScript last looked). */
  private decided(): boolean {
    return this.state === 'Done';
  }

  /** The handshake timeout fired before a decision: alerts to both peers, a decision, a clean close. */
  timeout(ms: number): void {
    if (this.state === 'Done') return;
    this.denyBoth(Reason.handshakeTimeout, `no decision within ${ms} ms (inspect ${this.state})`, AlertDescription.handshake_failure);
  }

  dispose(): void {
    this.state = 'Done';
    this.heldServer.clear();
    this.heldWorkload.clear();
    this.workloadLog = null;
  }

  // ───────────────────────────── events ─────────────────────────────

  /** Feeds an observer; returns false when the connection was decided (denied, relayed, switched) by what it saw. */
  private observe(obs: HandshakeObserver, chunk: Buffer): boolean {
    let events: ObservedEvent[];
    try {
      events = obs.push(chunk);
    } catch (err) {
      if (!(err instanceof ParseError)) throw err;
      const tooLarge = err.code === 'too_large';
      this.denyBoth(tooLarge ? Reason.handshakeTooLarge : Reason.malformedHandshake, `${obs.side}: ${err.message}`, parseErrorAlert(err));
      return false;
    }
    for (const ev of events) {
      if (obs === this.client ? !this.onClient(ev) : !this.onServer(ev)) return false;
    }
    return this.state !== 'Done';
  }

  private onClient(ev: ObservedEvent): boolean {
    switch (ev.kind) {
      case 'record':
        // Workload bytes are held only while they may not pass yet (tls13: intercept).
        return this.withinLimit('workload', ev.end - this.workloadSent);
      case 'clientHello':
        // The ClientHello may pass even while later workload bytes are held.
        if (this.workloadMayPass === 0) this.workloadMayPass = ev.end;
        return true;
      case 'certificate':
        this.workloadCertificate = ev.chain.length > 0;
        return true;
      case 'alert':
        if (ev.level === AlertLevel.warning && ev.description === AlertDescription.no_certificate) {
          this.workloadCertificate = false; // SSLv3's way of saying "no certificate" (RFC 6101 §5.4.6)
          return true;
        }
        if (ev.level === AlertLevel.warning && ev.description !== AlertDescription.close_notify) return true;
        this.forwardWorkloadAll();
        this.peerAborted('workload', ev.description);
        return false;
      case 'changeCipherSpec':
      case 'encrypted':
        this.clientCcs = true;
        return true;
      default:
        return true;
    }
  }

  private onServer(ev: ObservedEvent): boolean {
    switch (ev.kind) {
      case 'record':
        // Every server byte is held until the chain has passed (nothing is forwarded before).
        return this.state === 'Following' || this.withinLimit('server', ev.end);
      case 'serverHello':
        return this.onServerHello(ev.hello);
      case 'certificate':
        if (this.state !== 'AwaitCertificate') return true; // a second Certificate cannot come before CCS; ignore
        return this.onCertificate(ev.chain);
      case 'certificateRequest':
        this.certRequested = true;
        return true;
      case 'serverHelloDone':
        if (this.state === 'AwaitCertificate') {
          this.denyBoth(Reason.serverCertificateMissing, 'server finished its flight without a Certificate (anonymous key exchange)', AlertDescription.handshake_failure);
          return false;
        }
        return true;
      case 'alert':
        if (ev.level === AlertLevel.warning && ev.description !== AlertDescription.close_notify) return true;
        if (this.state !== 'Following') {
          // The server's own alert reaches the workload, but none of the held (unchecked) bytes before it.
          this.heldServer.clear();
          this.host.send('workload', buildAlert(ev.description, { level: ev.level, version: this.recordVersion() }));
        }
        this.peerAborted('server', ev.description);
        return false;
      case 'changeCipherSpec':
        if (this.state === 'AwaitServerHello') {
          this.denyBoth(Reason.malformedHandshake, 'server sent ChangeCipherSpec before its ServerHello', AlertDescription.unexpected_message);
          return false;
        }
        // Still held in AwaitCertificate: the workload has not seen it (yet).
        if (this.state === 'AwaitCertificate' && !this.onAbbreviated()) return false;
        this.serverCcs = true;
        return true;
      case 'encrypted':
        this.denyBoth(Reason.malformedHandshake, `server sent application data during the handshake (${this.state})`, AlertDescription.unexpected_message);
        return false;
      default:
        return true;
    }
  }

  private onServerHello(hello: ServerHello): boolean {
    if (this.state !== 'AwaitServerHello') {
      this.denyBoth(Reason.malformedHandshake, 'second ServerHello', AlertDescription.unexpected_message);
      return false;
    }
    this.serverHello = hello;
    this.client.setVersion(hello.selectedVersion);
    this.host.partial.tls = {
      version: versionName(hello.selectedVersion),
      cipher: cipherSuiteName(hello.cipherSuite),
      alpn: hello.alpn,
    };
    // A HelloRetryRequest always selects TLS 1.3 (RFC 8446 §4.1.4), so it decides as a ServerHello would.
    if (hello.isHelloRetryRequest || hello.selectedVersion >= 0x0304) return this.onTls13(hello.isHelloRetryRequest);
    if (hello.selectedVersion < versionNumber(this.settings.minVersion)) {
      this.denyBoth(Reason.protocolVersion, `server chose ${versionName(hello.selectedVersion)}; rule ${this.host.partial.rule ?? 'default'} has minVersion ${this.settings.minVersion}`, AlertDescription.protocol_version);
      return false;
    }
    const weak = refusedCipherSuite(hello.cipherSuite);
    if (weak) {
      this.denyBoth(Reason.insufficientSecurity, `server chose ${cipherSuiteName(hello.cipherSuite)}, ${weak}`, AlertDescription.insufficient_security);
      return false;
    }
    this.state = 'AwaitCertificate';
    return true;
  }

  private onTls13(hrr: boolean): boolean {
    const what = hrr ? 'HelloRetryRequest (TLS 1.3)' : 'ServerHello selecting TLS 1.3';
    this.server.stop();
    this.client.stop();
    switch (this.settings.tls13) {
      case 'allowUnchecked':
        this.host.decide({ outcome: 'allow', reason: Reason.tls13Unchecked, revocation: { status: 'not_checked' }, substitution: this.substitution() });
        this.releaseAll();
        this.state = 'Done';
        this.host.relay();
        return false;
      case 'intercept': {
        const log = this.workloadLog!.take();
        this.state = 'Done';
        this.heldServer.clear();
        this.heldWorkload.clear();
        this.workloadLog = null;
        this.host.switchToIntercept(log, this.workloadEnded);
        return false;
      }
      default:
        this.denyBoth(Reason.tls13NotInspectable, `${what}: its Certificate is encrypted and rule ${this.host.partial.rule ?? 'default'} has tls13: deny`, AlertDescription.protocol_version);
        return false;
    }
  }

  private onCertificate(chainDer: Buffer[]): boolean {
    this.chain = verifyServerChain(chainDer, {
      anchors: this.ctx.anchors,
      hostname: this.serverName,
      now: this.ctx.now(),
      revocation: this.ctx.revocation,
      leafOnly: this.settings.leafOnly,
    });
    const c = this.chain;
    const verdict = chainVerdict(c, this.settings);
    if (verdict) {
      this.denyBoth(verdict, c.detail ?? verdict, alertFor(verdict));
      return false;
    }
    this.state = 'Following';
    this.releaseAll();
    return true;
  }

  /** ChangeCipherSpec from the server before a Certificate: a resumed session (RFC 5246 §7.3), nothing to check. */
  private onAbbreviated(): boolean {
    if (this.settings.revocation === 'hardFail') {
      this.denyBoth(Reason.revocationUnknown, 'abbreviated handshake (session resumption): the server sent no Certificate to check, and the rule is hardFail', AlertDescription.certificate_unknown);
      return false;
    }
    this.resumed = true;
    this.state = 'Following';
    this.releaseAll();
    return true;
  }

  // ───────────────────────────── decisions ─────────────────────────────

  /** Both directions past their ChangeCipherSpec: the handshake is decided, relay the rest unread. */
  private maybeDecide(): void {
    if (this.state !== 'Following' || !this.clientCcs || !this.serverCcs) return;
    this.state = 'Done';
    this.host.decide({ outcome: 'allow', reason: Reason.ok, ...this.extras() });
    this.host.relay();
  }

  private peerAborted(who: 'workload' | 'server', description: number): void {
    const reason = who === 'server' ? Reason.upstreamHandshakeFailed : Reason.downstreamHandshakeFailed;
    this.state = 'Done';
    this.host.deny(reason, `${who} sent alert ${alertName(description)}`, null, this.extras());
  }

  /** Deny with a fatal alert to both peers (never the held bytes) and close both. */
  private denyBoth(reason: ReasonCode, detail: string, alert: number): void {
    this.state = 'Done';
    this.heldServer.clear();
    this.heldWorkload.clear();
    this.workloadLog = null;
    this.client.stop();
    this.server.stop();
    const version = this.recordVersion();
    // A peer that has switched to encrypted records cannot read a plaintext alert: it gets the close alone.
    if (!this.clientCcs) this.host.send('server', buildAlert(alert, { version }));
    this.host.deny(reason, detail, this.workloadPlaintext ? alert : null, this.extras());
  }

  /** `held` bytes of `side` are waiting at a record boundary: within limits.maxBufferedBytes, or denied. */
  private withinLimit(side: 'workload' | 'server', held: number): boolean {
    const max = this.ctx.limits.maxBufferedBytes;
    if (held <= max) return true;
    this.denyBoth(Reason.handshakeTooLarge, `${held} ${side} bytes held before a decision (limits.maxBufferedBytes ${max})`, AlertDescription.record_overflow);
    return false;
  }

  // ───────────────────────────── bytes ─────────────────────────────

  private releaseAll(): void {
    if (this.heldServer.bytes) this.host.send('workload', this.heldServer.take());
    this.workloadMayPass = Infinity;
    this.workloadLog = null;
    this.forwardWorkload();
  }

  /** Forwards held workload bytes up to what may pass (everything, or the ClientHello before a TLS 1.3 decision). */
  private forwardWorkload(): void {
    const n = Math.min(this.heldWorkload.bytes, this.workloadMayPass - this.workloadSent);
    if (n <= 0) return;
    this.workloadSent += n;
    this.host.send('server', this.heldWorkload.take(n));
  }

  private forwardWorkloadAll(): void {
    this.workloadMayPass = Infinity;
    this.forwardWorkload();
  }

  /** legacy_record_version for our alerts: the negotiated version up to TLS 1.2 (RFC 5246 §6.2.1), else 0x0303. */
  private recordVersion(): number {
    const v = this.serverHello?.selectedVersion ?? 0x0303;
    return v >= 0x0300 && v <= 0x0303 ? v : 0x0303;
  }

  // ───────────────────────────── decision fields ─────────────────────────────

  private substitution(): Decision['substitution'] {
    // Inspect never substitutes: the workload answers a CertificateRequest itself.
    return { requested: this.certRequested, identity: null, workloadCertificate: this.certRequested && this.workloadCertificate };
  }

  private extras(): Partial<Decision> {
    const extras: Partial<Decision> = { substitution: this.substitution() };
    if (this.resumed) extras.revocation = { status: 'not_checked' };
    return this.chain ? { ...extras, ...chainDecisionFields(this.chain) } : extras;
  }
}
