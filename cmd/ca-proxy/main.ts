#!/usr/bin/env node
/**
 * The ca-proxy CLI (one binary, subcommands that read like their documentation):
 *   ca-proxy run --config FILE        standalone proxy (HTTP CONNECT and SNI listeners)
 *   ca-proxy run --dev DIR            the same with the development PKI in DIR (`make run`)
 *   ca-proxy serve-extproc --config F Envoy network ext_proc gRPC service (docs/extproc.md)
 *   ca-proxy publish-crl --config F   CRL publisher: CA → validated CRL → ConfigMaps (docs/kubernetes.md)
 *   ca-proxy crl show FILE [--ca F]   what a CRL says, and whether its signature verifies
 *   ca-proxy check HOST:PORT          connect as the proxy would and print the decision
 */
import { Command, Option } from 'commander';
import { runCommand } from './run';
import { crlShowCommand } from './crl';
import { checkCommand } from './check';
import { serveExtProcCommand } from './serve-extproc';
import { publishCrlCommand } from './publish-crl';

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
  .action(checkCommand);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`ca-proxy: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
