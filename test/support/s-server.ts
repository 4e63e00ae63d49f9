/**
 * `openssl s_server` as the external server in tests: an independent TLS implementation that
 * requires a client certificate (`-Verify 1 -verify_return_error`) and prints what it saw
 * (the client certificate's subject, alerts). Output is collected for assertions.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface SServer {
  port: number;
  /** Everything s_server printed so far (stdout + stderr). */
  output(): string;
  /** Resolves once the output matches `re` (rejects after `ms`). */
  waitFor(re: RegExp, ms?: number): Promise<string>;
  stop(): Promise<void>;
}

export interface SServerOptions {
  cert: string;
  key: string;
  /** Chain sent after the leaf (intermediates). */
  chain?: string;
  /** CA bundle that verifies client certificates. */
  clientCA: string;
  /** The only protocol version offered (`-tls1`/`-tls1_1` need `-cipher DEFAULT@SECLEVEL=0` in `args` under OpenSSL 3). */
  version: 'tls1' | 'tls1_1' | 'tls1_2' | 'tls1_3';
  /** No certificate at all (`-nocert`, for anonymous and PSK suites); `cert`/`key` are then ignored. */
  noCert?: boolean;
  /** Require a client certificate (default true); false = do not ask for one. */
  requireClientCert?: boolean;
  /** Ask for one but accept none (`-verify 1`). */
  optionalClientCert?: boolean;
  /** Extra arguments. */
  args?: string[];
  /** The port to listen on (default 0: any free port). */
  port?: number;
  /** A command that runs openssl, e.g. `['ip', 'netns', 'exec', NS]` for a network namespace (it must exec, so that stop() signals openssl itself). */
  prefix?: string[];
}

export async function startSServer(opts: SServerOptions): Promise<SServer> {
  const verify =
    opts.requireClientCert === false ? [] : opts.optionalClientCert ? ['-verify', '1'] : ['-Verify', '1', '-verify_return_error'];
  const args = [
    's_server', '-accept', String(opts.port ?? 0), ...(opts.noCert ? ['-nocert'] : ['-cert', opts.cert, '-key', opts.key]),
    ...(opts.chain && !opts.noCert ? ['-cert_chain', opts.chain] : []),
    '-CAfile', opts.clientCA, ...verify, `-${opts.version}`, '-www', '-msg', ...(opts.args ?? []),
  ];
  const argv = [...(opts.prefix ?? []), 'openssl', ...args];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
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
      const t = setTimeout(() => reject(new Error(`s_server: no ${re} within ${ms} ms; output:\n${out}`)), ms);
      waiters.push({ re, resolve: (s) => (clearTimeout(t), resolve(s)) });
    });
  // "ACCEPT [::]:PORT" for port 0; a fixed port is printed as a bare "ACCEPT".
  const first = await waitFor(opts.port ? /^ACCEPT/m : /ACCEPT \S+:(\d+)/);
  const port = opts.port || Number(/ACCEPT \S+:(\d+)/.exec(first)![1]);
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
