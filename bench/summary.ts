/**
 * `npm run bench`, last step: gathers the three runs (bench/results/latest-stdio.json, latest-http.json,
 * latest-scale.json) into bench/results/latest.json and draws bench/results/latest.svg from it: calls per
 * second and p50 latency of the direct connection (a), mcp-proxy (b) and Countersign (c) at each concurrency,
 * in the stdio topology. The README's chart is this file, copied to docs/performance.svg after a run.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchReport } from './report.js';
import type { ScaleResult } from './scale.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

async function readJson<T>(name: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path.join(DIR, name), 'utf8')) as T;
  } catch {
    return undefined;
  }
}

interface Bar {
  label: string;
  value: number;
  color: string;
}

const COLORS = { direct: '#8c8c8c', proxy: '#d98c3f', gateway: '#2f6db5' };

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One panel of grouped bars: a group per concurrency, a bar per side. */
function panel(
  x0: number,
  title: string,
  unit: string,
  groups: { label: string; bars: Bar[] }[],
  width: number,
  height: number,
): string {
  const top = 40;
  const bottom = height - 40;
  const max = Math.max(1, ...groups.flatMap((g) => g.bars.map((b) => b.value)));
  const groupWidth = (width - 40) / groups.length;
  const barWidth = Math.min(34, (groupWidth - 20) / 3);
  const parts = [
    `<text x="${x0 + width / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${escape(title)}</text>`,
    `<line x1="${x0 + 30}" y1="${bottom}" x2="${x0 + width - 10}" y2="${bottom}" stroke="#333"/>`,
  ];
  groups.forEach((group, gi) => {
    const gx = x0 + 40 + gi * groupWidth;
    group.bars.forEach((bar, bi) => {
      const h = ((bottom - top) * bar.value) / max;
      const bx = gx + bi * (barWidth + 4);
      parts.push(
        `<rect x="${bx.toFixed(1)}" y="${(bottom - h).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${h.toFixed(1)}" fill="${bar.color}"><title>${escape(`${bar.label}: ${bar.value.toFixed(2)} ${unit}`)}</title></rect>`,
        `<text x="${(bx + barWidth / 2).toFixed(1)}" y="${(bottom - h - 4).toFixed(1)}" text-anchor="middle" font-size="9">${bar.value >= 100 ? bar.value.toFixed(0) : bar.value.toFixed(2)}</text>`,
      );
    });
    parts.push(
      `<text x="${(gx + (group.bars.length * (barWidth + 4)) / 2).toFixed(1)}" y="${bottom + 16}" text-anchor="middle" font-size="11">${escape(group.label)}</text>`,
    );
  });
  parts.push(`<text x="${x0 + 30}" y="${bottom + 32}" font-size="10" fill="#555">${escape(unit)}</text>`);
  return parts.join('\n');
}

function chart(stdio: BenchReport): string {
  const width = 820;
  const height = 300;
  const sides = (
    r: BenchReport['results'][number],
    pick: (s: { callsPerSec: number; latency: { p50: number } }) => number,
  ): Bar[] => [
    { label: '(a) direct', value: pick(r.direct), color: COLORS.direct },
    ...(r.proxy ? [{ label: '(b) mcp-proxy', value: pick(r.proxy), color: COLORS.proxy }] : []),
    { label: '(c) Countersign', value: pick(r.gateway), color: COLORS.gateway },
  ];
  const throughput = stdio.results.map((r) => ({
    label: `c=${r.concurrency}`,
    bars: sides(r, (s) => s.callsPerSec),
  }));
  const latency = stdio.results.map((r) => ({
    label: `c=${r.concurrency}`,
    bars: sides(r, (s) => s.latency.p50),
  }));
  const legend = [
    ['(a) direct (server-everything over Streamable HTTP)', COLORS.direct],
    ['(b) mcp-proxy → stdio', COLORS.proxy],
    ['(c) Countersign (policy + limit + audit) → stdio', COLORS.gateway],
  ]
    .map(
      ([label, color], i) =>
        `<rect x="${20 + i * 270}" y="${height + 4}" width="12" height="12" fill="${color}"/><text x="${36 + i * 270}" y="${height + 14}" font-size="11">${escape(label ?? '')}</text>`,
    )
    .join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 40}" viewBox="0 0 ${width} ${height + 40}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel(0, 'calls per second (higher is better)', 'calls/s', throughput, width / 2, height),
    panel(width / 2, 'p50 latency (lower is better)', 'ms', latency, width / 2, height),
    legend,
    `<text x="${width - 10}" y="${height + 34}" text-anchor="end" font-size="9" fill="#777">${escape(`${stdio.machine.cpuModel}, ${stdio.machine.cores} cores, ${stdio.startedAt}`)}</text>`,
    '</svg>',
    '',
  ].join('\n');
}

const stdio = await readJson<BenchReport>('latest-stdio.json');
const http = await readJson<BenchReport>('latest-http.json');
const scale = await readJson<ScaleResult>('latest-scale.json');
await writeFile(
  path.join(DIR, 'latest.json'),
  `${JSON.stringify({ generatedAt: new Date().toISOString(), stdio, http, scale }, null, 2)}\n`,
);
console.log(`written: ${path.relative(process.cwd(), path.join(DIR, 'latest.json'))}`);
if (stdio) {
  await writeFile(path.join(DIR, 'latest.svg'), chart(stdio));
  console.log(`written: ${path.relative(process.cwd(), path.join(DIR, 'latest.svg'))}`);
}
