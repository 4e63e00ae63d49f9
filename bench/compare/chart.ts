/**
 * One PNG per scenario with gnuplot (Debian `gnuplot-nox`, terminal `pngcairo`): a panel per
 * charted metric, a bar per row at its median with the min–max of the rounds as the error bar.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { med, range, type ScenarioResult } from './measure';

const quote = (s: string): string => `"${s.replace(/["\\]/g, '')}"`;

/** The gnuplot script (and data files it reads, written into `dataDir`) for `r`'s chart. Null when nothing is charted. */
export function chartScript(r: ScenarioResult, pngPath: string, dataDir: string): string | null {
  const panels = r.metrics
    .filter((m) => m.chart)
    .map((m) => ({ m, rows: r.rows.filter((row) => Number.isFinite(med(row.values[m.key]))) }))
    .filter((p) => p.rows.length);
  if (!panels.length) return null;
  const width = Math.max(640, 420 * panels.length);
  const lines = [
    `set terminal pngcairo size ${width},480 font "sans,10"`,
    `set output ${quote(pngPath)}`,
    `set multiplot layout 1,${panels.length} title ${quote(r.title)}`,
    'set style data histograms',
    'set style histogram errorbars gap 1 lw 1',
    'set style fill solid 0.75 border -1',
    'set boxwidth 0.8',
    'set yrange [0:*]',
    'set xtics rotate by -30 scale 0 nomirror',
    'set grid ytics',
    'set bmargin 7',
    'unset key',
  ];
  panels.forEach(({ m, rows }, i) => {
    const data = path.join(dataDir, `${r.id}-${i}.dat`);
    const text = rows
      .map((row) => {
        const [lo, hi] = range(row.values[m.key]);
        return `${quote(row.label)} ${med(row.values[m.key])} ${lo} ${hi}`;
      })
      .join('\n');
    fs.writeFileSync(data, text + '\n');
    const better = m.better === 'higher' ? 'higher is better' : 'lower is better';
    lines.push(`set title ${quote(`${m.label}${m.unit ? ` (${m.unit})` : ''}, ${better}`)}`);
    lines.push(`plot ${quote(data)} using 2:3:4:xtic(1) lc rgb "#3b6ea5"`);
  });
  lines.push('unset multiplot', '');
  return lines.join('\n');
}

/** Writes `pngPath` for `r`; returns null on success, else why not (gnuplot missing or failing). */
export function writeChart(r: ScenarioResult, pngPath: string, scratchDir: string): string | null {
  const script = chartScript(r, pngPath, scratchDir);
  if (!script) return 'nothing to chart';
  fs.mkdirSync(path.dirname(pngPath), { recursive: true });
  const file = path.join(scratchDir, `${r.id}.gp`);
  fs.writeFileSync(file, script);
  const run = spawnSync('gnuplot', [file], { encoding: 'utf8', timeout: 30_000 });
  if (run.error) return `gnuplot: ${run.error.message}`;
  if (run.status !== 0) return `gnuplot exited ${run.status}: ${run.stderr.trim().split('\n').slice(-2).join(' ')}`;
  return null;
}
