/**
 * What `make bench` needs from Debian, installed when missing (`apt-get install -y -qq
 * --no-install-recommends`, one `apt-get update -qq` first if the install fails), and the
 * version line of each tool for the report. A contender that cannot be had is skipped with the
 * reason printed; the load generator's compiler and OpenSSL headers are required.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';

export interface Tool {
  /** Key used by the harness. */
  name: 'haproxy' | 'nginx' | 'stunnel' | 'gnuplot' | 'cc';
  /** Debian packages that bring it. */
  packages: string[];
  /** Whether it is usable now. */
  present(): boolean;
  /** One line naming the version (and the OpenSSL it runs with, for the TLS contenders). */
  version(): string;
}

const onPath = (bin: string): boolean => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;

/** All of a command's output (stdout + stderr: nginx and stunnel print versions on stderr), or ''. */
function output(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

const line = (text: string, re: RegExp): string => text.split('\n').find((l) => re.test(l))?.trim() ?? '';

/** The nginx stream module as Debian's libnginx-mod-stream installs it. */
export const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export const TOOLS: Tool[] = [
  {
    name: 'haproxy',
    packages: ['haproxy'],
    present: () => onPath('haproxy'),
    version: () => {
      const out = output('haproxy', ['-vv']);
      return [line(out, /^HAProxy version/).replace(/ - https?:\S+/, ''), line(out, /^Running on OpenSSL/)].filter(Boolean).join('; ');
    },
  },
  {
    name: 'nginx',
    packages: ['nginx', 'libnginx-mod-stream'],
    present: () => onPath('nginx') && fs.existsSync(NGINX_STREAM_MODULE),
    version: () => {
      const out = output('nginx', ['-V']);
      return [line(out, /^nginx version/), line(out, /^built with OpenSSL/)].filter(Boolean).join('; ');
    },
  },
  {
    name: 'stunnel',
    packages: ['stunnel4'],
    present: () => onPath('stunnel4'),
    version: () => {
      const out = output('stunnel4', ['-version']);
      return [line(out, /^stunnel \d/), line(out, /^Running\s+with OpenSSL/)].filter(Boolean).join('; ').replace(/\s+/g, ' ');
    },
  },
  {
    name: 'gnuplot',
    packages: ['gnuplot-nox'],
    present: () => onPath('gnuplot'),
    version: () => line(output('gnuplot', ['--version']), /gnuplot/),
  },
  {
    name: 'cc',
    packages: ['gcc', 'libc6-dev', 'libssl-dev'],
    present: () => onPath('cc') && fs.existsSync('/usr/include/openssl/ssl.h'),
    version: () => line(output('cc', ['--version']), /\S/),
  },
];

export interface Availability {
  /** Tool name → version line, for those present. */
  versions: Map<Tool['name'], string>;
  /** Tool name → why it is missing. */
  missing: Map<Tool['name'], string>;
}

/**
 * Installs the missing tools when allowed (root with apt-get; `install: false` only checks),
 * then reports which are there. Never throws: a failed install is a reason in `missing`.
 */
export function ensureTools(opts: { install: boolean; log: (line: string) => void }): Availability {
  let missing = TOOLS.filter((t) => !t.present());
  const failure = new Map<string, string>();
  if (missing.length && opts.install) {
    const canInstall = process.getuid?.() === 0 && onPath('apt-get');
    if (!canInstall) {
      for (const t of missing) failure.set(t.name, `not installed, and apt-get cannot run here (needs root): apt-get install ${t.packages.join(' ')}`);
    } else {
      const pkgs = missing.flatMap((t) => t.packages);
      opts.log(`installing ${pkgs.join(' ')} (apt-get, quiet) ...`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const install = () => spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { env, encoding: 'utf8' });
      let r = install();
      if (r.status !== 0) {
        spawnSync('apt-get', ['update', '-qq'], { env, stdio: 'ignore' });
        r = install();
      }
      if (r.status !== 0) {
        const why = (r.stderr || r.stdout || '').trim().split('\n').slice(-1)[0] ?? `exit ${r.status}`;
        for (const t of missing) failure.set(t.name, `apt-get install ${t.packages.join(' ')} failed: ${why}`);
      }
    }
    missing = TOOLS.filter((t) => !t.present());
  }
  const versions = new Map<Tool['name'], string>();
  const gone = new Map<Tool['name'], string>();
  for (const t of TOOLS) {
    if (t.present()) versions.set(t.name, t.version());
    else gone.set(t.name, failure.get(t.name) ?? `not installed (apt-get install ${t.packages.join(' ')})`);
  }
  return { versions, missing: gone };
}

/** `openssl version` of the command line tool (the upstream `s_server` and the PKI). */
export function opensslVersion(): string {
  try {
    return execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}
