/** Shared by the subcommands: the config from `--config FILE` or `--dev DIR`. */
import fs from 'node:fs';
import path from 'node:path';
import YAML, { isMap } from 'yaml';
import { ConfigError, loadConfig, parseConfig } from '../../internal/config/load';
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

/** Placeholder for the processors' required interceptionCA, in a component that never reads it. */
const NO_INTERCEPTION_CA = { cert: '/dev/null/unused', key: '/dev/null/unused' };

/**
 * Loads a config file for a component that must not hold the interception CA's key (publish-crl,
 * inject): the processors' loader and schema, with `interceptionCA` optional.
 * @throws ConfigError
 */
export function loadConfigWithoutInterceptionCA(file: string): Config {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(e as Error).message}` }]);
  }
  const doc = YAML.parseDocument(text);
  if (doc.errors.length === 0 && isMap(doc.contents) && !doc.has('interceptionCA')) {
    doc.set('interceptionCA', NO_INTERCEPTION_CA);
    text = doc.toString();
  }
  return parseConfig(text, path.dirname(path.resolve(file)), file);
}
