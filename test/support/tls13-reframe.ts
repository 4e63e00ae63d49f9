/**
 * A TLS 1.3 server flight re-framed against RFC 8446 §5.1, for tests of how ca-proxy refuses it:
 * the protected records are decrypted with the server handshake keys (the server's key log) and
 * re-sealed with the Certificate split across two records and another record between them. Over
 * a Node TLS server (`reframingServer`) or as a TCP relay in front of any server that writes an
 * NSS key log (`reframingRelay`, e.g. gnutls-serv with SSLKEYLOGFILE). One suite,
 * TLS_AES_128_GCM_SHA256: the server must be limited to it.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { RecordReader, ContentType, HandshakeType, AlertDescription } from '../../internal/tls';
import { RecordProtection, parseKeylogLine, trafficKeys, type TrafficKeys } from '../../internal/tls/protection';

export type Between = 'ccs' | 'protected alert';

/**
 * Re-frames a TLS 1.3 server's output on its way to the proxy: records in clear pass; the
 * protected flight is decrypted with the server handshake keys (`keys()`, null until the server
 * has logged them) and re-sealed with the Certificate split across two records and `between` in
 * the middle (RFC 8446 §5.1 forbids it).
 */
export function reframer(between: Between, keys: () => TrafficKeys | null, write: (b: Buffer) => void): { push(chunk: Buffer): void; flush(): boolean } {
  const reader = new RecordReader();
  let opener: RecordProtection | null = null;
  let sealer: RecordProtection | null = null;
  let hs = Buffer.alloc(0);
  let done = false;
  const waiting: Buffer[] = [];
  /** Returns false while protected records wait for the keys. */
  const flush = (): boolean => {
    if (!opener && waiting.length) {
      const k = keys();
      if (!k) return false;
      opener = new RecordProtection(k);
      sealer = new RecordProtection(k);
    }
    while (waiting.length && !done) {
      hs = Buffer.concat([hs, opener!.open(waiting.shift()!).content]);
      for (let off = 0; off + 4 <= hs.length; ) {
        const len = hs.readUIntBE(off + 1, 3);
        if (off + 4 + len > hs.length) break;
        if (hs[off] === HandshakeType.finished) {
          const cut = hs.indexOf(Buffer.from([HandshakeType.certificate])) + 100;
          // Sealed in wire order: each record takes the next sequence number (RFC 8446 §5.3).
          const first = sealer!.seal(ContentType.handshake, hs.subarray(0, cut));
          const mid = between === 'ccs' ? Buffer.from([ContentType.change_cipher_spec, 3, 3, 0, 1, 1]) : sealer!.alert(AlertDescription.user_canceled, 1);
          write(Buffer.concat([first, mid, sealer!.seal(ContentType.handshake, hs.subarray(cut))]));
          done = true;
          break;
        }
        off += 4 + len;
      }
    }
    return true;
  };
  return {
    push(chunk) {
      for (const r of reader.push(chunk)) {
        if (r.type === ContentType.application_data) waiting.push(r.raw);
        else write(r.raw);
      }
      flush();
    },
    flush,
  };
}

export const SUITE = 'TLS_AES_128_GCM_SHA256';

/**
 * A TLS 1.3 server (Node's OpenSSL) whose flight is re-framed (see `reframer`). Records the
 * client sends are collected, to read the alert it answered with; `errors` is what the server's
 * OpenSSL reported.
 */
export async function reframingServer(between: Between, pem: { key: string; cert: string }): Promise<{ port: number; fromClient: () => Buffer; secrets: Map<string, Buffer>; errors: string[]; close(): Promise<void> }> {
  const secureContext = tls.createSecureContext({ key: pem.key, cert: pem.cert, minVersion: 'TLSv1.3', ciphers: SUITE });
  const received: Buffer[] = [];
  const errors: string[] = [];
  const secrets = new Map<string, Buffer>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const secret = () => secrets.get('SERVER_HANDSHAKE_TRAFFIC_SECRET');
    const out = reframer(between, () => (secret() ? trafficKeys(secret()!, SUITE) : null), (b) => !sock.destroyed && sock.write(b));
    const wire = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        out.push(chunk);
        cb();
      },
    });
    const t = new tls.TLSSocket(wire, { isServer: true, secureContext });
    t.on('keylog', (line: Buffer) => {
      const e = parseKeylogLine(line);
      if (!e) return;
      secrets.set(e.label, e.secret);
      out.flush();
    });
    t.on('error', (err) => errors.push(err.message));
    sock.on('data', (d) => {
      received.push(d);
      wire.push(d);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      sockets.delete(sock);
      wire.push(null);
      t.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    fromClient: () => Buffer.concat(received),
    secrets,
    errors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A TCP relay in front of `port` that re-frames the server's flight with the keys from `keylogFile` (GnuTLS's SSLKEYLOGFILE). */
export async function reframingRelay(port: number, keylogFile: string, between: Between): Promise<{ port: number; close(): Promise<void> }> {
  const keys = (): TrafficKeys | null => {
    const text = fs.existsSync(keylogFile) ? fs.readFileSync(keylogFile, 'latin1') : '';
    const line = text.split('\n').map((l) => parseKeylogLine(l)).find((e) => e?.label === 'SERVER_HANDSHAKE_TRAFFIC_SECRET');
    return line ? trafficKeys(line.secret, SUITE) : null;
  };
  const open = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(port, '127.0.0.1');
    open.add(down);
    open.add(up);
    down.pipe(up);
    const out = reframer(between, keys, (b) => !down.destroyed && down.write(b));
    const retry = (): void => {
      if (!out.flush() && !down.destroyed) setTimeout(retry, 10);
    };
    up.on('data', (d: Buffer) => {
      out.push(d);
      retry();
    });
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('close', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const sock of open) sock.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The alerts in `bytes` (the client's records after its ClientHello): plaintext, or protected under the client handshake keys. */
export function alertsIn(bytes: Buffer, clientSecret: Buffer | undefined): number[] {
  const out: number[] = [];
  const open = clientSecret ? new RecordProtection(trafficKeys(clientSecret, 'TLS_AES_128_GCM_SHA256')!) : null;
  for (const r of new RecordReader().push(bytes)) {
    if (r.type === ContentType.alert) out.push(r.fragment[1]!);
    if (r.type === ContentType.application_data && open) {
      const inner = open.open(r.raw);
      if (inner.type === ContentType.alert) out.push(inner.content[1]!);
    }
  }
  return out;
}
