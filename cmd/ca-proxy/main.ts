#!/usr/bin/env node
/**
 * The ca-proxy CLI (one binary, subcommands that read like their documentation):
 *   ca-proxy run --config FILE        standalone proxy (HTTP CONNECT and SNI listeners)
 *   ca-proxy run --dev DIR            the same with the development PKI in DIR (`make run`)
 *   ca-proxy serve-extproc --config F Envoy network ext_proc gRPC service (docs/extproc.md)
 *   ca-proxy publish-crl --config F   CRL publisher: CA → validated CRL → ConfigMaps (docs/kubernetes.md)
 *   ca-proxy redirect [flags]         the init container's iptables redirect to the sidecar (docs/kubernetes.md)
 *   ca-proxy inject --config F        sidecar-injecting admission webhook (docs/kubernetes.md)
 *   ca-proxy crl show FILE [--ca F]   what a CRL says, and whether its signature verifies
 *   ca-proxy check HOST:PORT          connect as the proxy would and print the decision
 */
import { Command, Option } from 'commander';

/**
 * A command's action, loading its module only when the command runs: `--help`, `crl show` and
 * `redirect` do not pay for gRPC, the Kubernetes client or the TLS engine they do not use.
 */
function lazy<M extends Record<K, (...args: never[]) => unknown>, K extends keyof M>(load: () => Promise<M>, name: K) {
  return async (...args: Parameters<M[K]>): Promise<void> => {
    const mod = await load();
    await mod[name](...args);
  };
}
const runCommand = lazy(() => import('./run'), 'runCommand');
const crlShowCommand = lazy(() => import('./crl'), 'crlShowCommand');
const checkCommand = lazy(() => import('./check'), 'checkCommand');
const serveExtProcCommand = lazy(() => import('./serve-extproc'), 'serveExtProcCommand');
const publishCrlCommand = lazy(() => import('./publish-crl'), 'publishCrlCommand');
const redirectCommand = lazy(() => import('./redirect'), 'redirectCommand');
const injectCommand = lazy(() => import('./inject'), 'injectCommand');

const program = new Command();
program
  .name('ca-proxy')
  .description('Egress TLS filter: checks server certificate chains against CRLs and presents the proxy\'s own client certificate.')
  .showHelpAfterError()
  .version(require('../../../package.json').version);

program
  .command('run')
  .description('Start the standalone proxy: an HTTP CONNECT listener (HTTPS_PROXY), an optional SNI-routed TLS listener, and the admin port (/metrics, /healthz, /readyz).')
  .addOption(new Option('-c, --config <file>', 'YAML configuration file (see docs/configuration.md)').conflicts('dev'))
  .addOption(new Option('--dev <dir>', 'use the embedded development configuration with the PKI in <dir> (created by `make run`)'))
  .option('--listen <host:port>', 'override listen.connect (the HTTP CONNECT listener)')
  .option('--admin <host:port>', 'override admin (the /metrics, /healthz, /readyz listener)')
  .action(runCommand);

program
  .command('serve-extproc')
  .description('Serve Envoy\'s network external processing API (envoy.service.network_ext_proc.v3) over gRPC for an Envoy sidecar or a central deployment, plus grpc.health.v1 and the admin port. See docs/extproc.md.')
  .addOption(new Option('-c, --config <file>', 'YAML configuration file (the extproc section; see docs/configuration.md)').conflicts('dev'))
  .addOption(new Option('--dev <dir>', 'use the embedded development configuration with the PKI in <dir>'))
  .option('--listen <address>', 'override extproc.listen: unix:/path/to.sock or host:port')
  .option('--admin <host:port>', 'override admin (the /metrics, /healthz, /readyz listener)')
  .action(serveExtProcCommand);

program
  .command('publish-crl')
  .description('Run the CRL publisher: while holding the publisher.lease Lease, fetch every publisher.sources CRL, validate it as the processors do, and write it into ConfigMaps they watch. See docs/kubernetes.md.')
  .requiredOption('-c, --config <file>', 'YAML configuration file (the publisher section; interceptionCA not needed)')
  .option('--admin <host:port>', 'override admin (the /metrics, /healthz, /readyz listener)')
  .option('--identity <name>', 'Lease holder identity (default: host name + random suffix)')
  .action(publishCrlCommand);

program
  .command('redirect')
  .description(
    'Install, in the current network namespace, the nat OUTPUT rules (chains CA_PROXY_OUTPUT and CA_PROXY_REDIRECT) that send outbound TCP to the sidecar\'s listener on loopback; what the injected init container runs. ' +
      'Needs root with CAP_NET_ADMIN. Atomic (one iptables-restore transaction per family) and idempotent; after applying, the rules are read back and a probe connection checks that the kernel redirects. ' +
      'Prints one summary line; exit code 1 on any failure, with nothing left half-installed. See docs/kubernetes.md, "Traffic redirect".',
  )
  .option('--proxy-port <port>', 'the sidecar\'s listener port (REDIRECT target on 127.0.0.1 / ::1)', '15001')
  .option('--proxy-uid <uid>', 'numeric uid the sidecar runs as; its own connections are never redirected', '1337')
  .option('--ports <list>', 'destination TCP ports to redirect: comma-separated ports or ranges (8000-8100), or * for every port', '443')
  .option('--exclude-ports <list>', 'destination TCP ports never redirected (wins over --ports)')
  .option('--exclude-cidrs <list>', 'destination networks never redirected, IPv4 and IPv6 (e.g. 10.96.0.0/12,fd00::/8); loopback is always excluded')
  .addOption(new Option('--ipv6 <mode>', 'IPv6 rules with ip6tables: auto = when an interface other than lo has an IPv6 address').choices(['auto', 'on', 'off']).default('auto'))
  .addOption(new Option('--iptables-mode <mode>', 'backend: auto = where ca-proxy\'s or other rules already are (nft first, as istio-iptables), else nft').choices(['auto', 'nft', 'legacy']).default('auto'))
  .option('--dry-run', 'print the iptables-restore scripts that would be applied, change nothing')
  .option('--cleanup', 'remove exactly ca-proxy\'s jump and chains (every backend holding them, with --iptables-mode auto)')
  .addHelpText(
    'after',
    '\nExamples:\n' +
      '  ca-proxy redirect                                   # port 443 → 15001, uid 1337 exempt\n' +
      '  ca-proxy redirect --ports 443,8443 --exclude-cidrs 10.96.0.0/12 --dry-run\n' +
      '  ca-proxy redirect --cleanup\n' +
      'See the rules in the pod: iptables -t nat -S; ip6tables -t nat -S (or iptables-legacy -t nat -S)\n',
  )
  .action(redirectCommand);

program
  .command('inject')
  .description('Serve the mutating admission webhook (admission.k8s.io/v1, HTTPS POST /mutate) that adds the redirect init container, the Envoy sidecar and the interception CA bundle to pods labelled ca-proxy.io/inject=true; /metrics, /healthz, /readyz on the admin port. See docs/kubernetes.md "Sidecar injection".')
  .requiredOption('-c, --config <file>', 'YAML configuration file (the injector section; interceptionCA not needed)')
  .option('--listen <host:port>', 'override injector.listen (the HTTPS webhook listener)')
  .option('--admin <host:port>', 'override injector.admin / admin (the /metrics, /healthz, /readyz listener)')
  .action(injectCommand);

const crl = program.command('crl').description('Inspect certificate revocation lists.');
crl
  .command('show')
  .description('Print issuer, cRLNumber, thisUpdate, nextUpdate, entry count and, with --ca, the signature status of a CRL (PEM or DER). Exit code 1 when a CRL does not parse, its signature does not verify, or it is not current.')
  .argument('<file>', 'CRL file (PEM may hold several CRLs)')
  .option('--ca <file>', 'PEM bundle holding the CRL issuer\'s certificate, to verify the signature')
  .option('--json', 'print JSON instead of text')
  .action(crlShowCommand);

program
  .command('check')
  .description('Connect to HOST:PORT as the proxy would (same engine, same policy) and print the decision as JSON. Exit code 0 for allow, 2 for deny.')
  .argument('<target>', 'HOST:PORT of the external server')
  .option('--sni <name>', 'server name to send (default: HOST)')
  .addOption(new Option('-c, --config <file>', 'YAML configuration file').conflicts('dev'))
  .option('--dev <dir>', 'use the development configuration with the PKI in <dir>')
  .option('--wait-ready <seconds>', 'first wait up to this long until the CRLs are loaded (as /readyz would say), exit 1 if they are not')
  .action(checkCommand);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`ca-proxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
