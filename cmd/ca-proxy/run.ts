/** `ca-proxy run`: the standalone proxy until SIGINT/SIGTERM. */
import { configFromOptions } from './load';
import { createRuntime } from './runtime';

export async function runCommand(opts: { config?: string; dev?: string; listen?: string; admin?: string }): Promise<void> {
  const config = configFromOptions(opts);
  if (opts.listen) config.listen.connect = opts.listen;
  if (opts.admin) config.admin = opts.admin;
  const rt = await createRuntime(config);
  const where: string[] = [];
  if (rt.connect) where.push(`HTTP CONNECT proxy on ${fmt(rt.connect.address)}`);
  if (rt.sni) where.push(`SNI-routed TLS listener on ${fmt(rt.sni.address)} (upstream port ${config.listen.sniUpstreamPort})`);
  if (rt.admin) where.push(`admin (/metrics, /healthz, /readyz) on http://${fmt(rt.admin.address)}`);
  rt.logger.info({ listen: where, ready: rt.readiness() }, 'ca-proxy started');
  const proxy = rt.connect ? `http://${fmt(rt.connect.address)}` : null;
  process.stderr.write(
    [
      '',
      'ca-proxy is running:',
      ...where.map((w) => `  - ${w}`),
      ...(proxy
        ? [
            '',
            'Send traffic through it (workloads must trust the interception CA):',
            `  curl --proxy ${proxy} --cacert ${config.interceptionCA.cert} https://HOST/`,
            `  HTTPS_PROXY=${proxy} SSL_CERT_FILE=${config.interceptionCA.cert} your-client`,
          ]
        : []),
      '',
      `Readiness: ${rt.readiness().detail}. Stop with Ctrl-C.`,
      '',
    ].join('\n'),
  );
  const stop = async (signal: string) => {
    rt.logger.info({ signal, graceMs: config.limits.shutdownGraceMs }, 'shutting down: listeners closed, open connections drain');
    await rt.close(config.limits.shutdownGraceMs);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  // Not a reload (CRLs reload by themselves when their files change); but not a death either.
  process.on('SIGHUP', () => rt.logger.warn('SIGHUP ignored: CRLs reload on their own; restart ca-proxy to apply a changed configuration'));
}

function fmt(a: { address: string; port: number; family: string }): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
