/**
 * GnuTLS (`gnutls-serv`, `gnutls-cli` from gnutls-bin) as a second, independent TLS stack in
 * tests. GnuTLS is strict where OpenSSL is lenient: a plaintext alert after a TLS 1.3 ServerHello
 * is a record it cannot decrypt (`Decryption has failed`, then `bad_record_mac`), so it shows
 * whether an alert was sent as a protected record (RFC 8446 §6).
 *
 * `gnutls-serv` prints the alerts it received only at debug level 5 (`-d 5`):
 * `REC[…]: Decrypted Packet[0] Alert(21) …` and `REC[…]: Alert[2|44] - Certificate was revoked - was received`.
 * `gnutls-cli` prints `*** Received alert [44]: Certificate was revoked`.
 */
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';

export interface GnutlsServ {
  port: number;
  output(): string;
  /** Resolves once the output matches `re` (rejects after `ms`, with the output). */
  waitFor(re: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface GnutlsServOptions {
  /** PEM file: the leaf, then its intermediates. */
  certChain: string;
  key: string;
  /** CA bundle for client certificates; with it, a client certificate is required, without it none is asked for (`--disable-client-cert`; gnutls-serv asks by default). */
  clientCA?: string;
  /** GnuTLS priority string, e.g. `NORMAL:-VERS-ALL:+VERS-TLS1.3`. */
  priority: string;
  /** NSS key log file GnuTLS writes its secrets to (`SSLKEYLOGFILE`). */
  keylogFile?: string;
}

/** A port free right now (gnutls-serv cannot report an ephemeral one). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Starts `gnutls-serv --http` on 127.0.0.1 and resolves once it accepts connections. */
export async function startGnutlsServ(opts: GnutlsServOptions): Promise<GnutlsServ> {
  const port = await freePort();
  const args = [
    '-p', String(port), '--http', '-d', '5', '--x509certfile', opts.certChain, '--x509keyfile', opts.key, '--priority', opts.priority,
    ...(opts.clientCA ? ['--x509cafile', opts.clientCA, '--require-client-cert'] : ['--disable-client-cert']),
  ];
  const env = opts.keylogFile ? { ...process.env, SSLKEYLOGFILE: opts.keylogFile } : process.env;
  const child: ChildProcess = spawn('gnutls-serv', args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  const waiters: { re: RegExp; resolve: (s: string) => void }[] = [];
  const onData = (d: Buffer) => {
    out += d.toString('latin1');
    for (const w of [...waiters]) {
      if (w.re.test(out)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(out);
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const waitFor = (re: RegExp, ms = 5000) =>
    new Promise<string>((resolve, reject) => {
      if (re.test(out)) return resolve(out);
      const t = setTimeout(() => reject(new Error(`gnutls-serv: no ${re} within ${ms} ms; output:\n${out}`)), ms);
      waiters.push({ re, resolve: (s) => (clearTimeout(t), resolve(s)) });
    });
  await waitFor(/listening on IPv4/);
  return {
    port,
    output: () => out,
    waitFor,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** The `gnutls-cli` arguments for a TLS connection to `host:port` trusting `caFile`. */
export function gnutlsCliArgs(caFile: string, host: string, port: number, extra: string[] = []): string[] {
  return ['--x509cafile', caFile, '-p', String(port), ...extra, host];
}

/**
 * A relay for a workload with no proxy option (gnutls-cli): each connection to the returned port
 * becomes `CONNECT target` on the proxy at `proxyPort`, then a byte pipe both ways.
 */
export async function connectRelay(proxyPort: number, target: string): Promise<{ port: number; close(): Promise<void> }> {
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.pause();
    const up = net.connect(proxyPort, '127.0.0.1', () => up.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    open.add(up);
    up.on('close', () => open.delete(up));
    let head = Buffer.alloc(0);
    const onHead = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      up.off('data', onHead);
      if (!/^HTTP\/1\.1 200/.test(head.toString('latin1'))) return client.destroy();
      const rest = head.subarray(end + 4);
      if (rest.length) client.write(rest);
      up.pipe(client);
      client.pipe(up);
      client.resume();
    };
    up.on('data', onHead);
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
