/**
 * Metric names a PromQL expression reads, with the official PromQL grammar
 * (`@prometheus-io/lezer-promql`, the parser of Prometheus' own UI): the Identifier of every
 * VectorSelector. Grafana's `$__rate_interval`-style variables in ranges are replaced by `5m`
 * first (they are not PromQL); label values such as `"$namespace"` are strings and parse as they are.
 */
import { parser } from '@prometheus-io/lezer-promql';

/** @throws Error naming the position when the expression does not parse */
export function metricNames(expr: string): string[] {
  const text = expr.replace(/\$__(rate_)?interval|\$__range/g, '5m');
  const tree = parser.parse(text);
  const names: string[] = [];
  const c = tree.cursor();
  do {
    if (c.type.isError) throw new Error(`PromQL does not parse at ${c.from}: ${JSON.stringify(text.slice(Math.max(0, c.from - 20), c.from + 20))} in ${text}`);
    if (c.name === 'Identifier') {
      const node = c.node;
      if (node.parent?.name === 'VectorSelector') names.push(text.slice(c.from, c.to));
    }
  } while (c.next());
  return [...new Set(names)];
}

/**
 * Every metric name a Prometheus text exposition declares: each `# TYPE` line's name, plus the
 * series names a histogram (`_bucket`, `_sum`, `_count`) or summary (`_sum`, `_count`) expands to.
 */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return names;
}
