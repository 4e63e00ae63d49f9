/** Shared by the subcommands: the config from `--config FILE` or `--dev DIR`. */
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../internal/config/load';
import { devConfig } from '../../internal/config/defaults';
import type { Config } from '../../internal/config/types';

export function configFromOptions(opts: { config?: string; dev?: string }): Config {
  if (opts.config) return loadConfig(opts.config);
  if (opts.dev) {
    const dir = path.resolve(opts.dev);
    if (!fs.existsSync(path.join(dir, 'interception-ca.crt'))) {
      throw new Error(`${dir} holds no development PKI; create it with \`node dist/scripts/dev-pki.js ${opts.dev}\` (make run does)`);
    }
    return devConfig(dir);
  }
  throw new Error('give --config FILE (or --dev DIR for the development setup); see `ca-proxy run --help`');
}
