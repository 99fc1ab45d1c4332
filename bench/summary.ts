/**
 * `npm run bench`, last step: gathers the three runs (bench/results/latest-stdio.json, latest-http.json,
 * latest-scale.json) into bench/results/latest.json and draws bench/results/latest.svg from it: calls per
 * second of the direct connection (a), mcp-proxy (b) and Countersign (c) at each concurrency, and b and c
 * relative to a, in the stdio topology. The README's chart is this file, copied to docs/performance.svg after a run.
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
  const throughput = stdio.results.map((r) => ({
    label: `c=${r.concurrency}`,
    bars: [
      { label: '(a) direct', value: r.direct.callsPerSec, color: COLORS.direct },
      ...(r.proxy ? [{ label: '(b) mcp-proxy', value: r.proxy.callsPerSec, color: COLORS.proxy }] : []),
      { label: '(c) Countersign', value: r.gateway.callsPerSec, color: COLORS.gateway },
    ],
  }));
  const relative = stdio.results.map((r) => ({
    label: `c=${r.concurrency}`,
    bars: [
      ...(r.proxy
        ? [
            {
              label: '(b) mcp-proxy ÷ direct',
              value: r.proxy.callsPerSec / r.direct.callsPerSec,
              color: COLORS.proxy,
            },
          ]
        : []),
      {
        label: '(c) Countersign ÷ direct',
        value: r.gateway.callsPerSec / r.direct.callsPerSec,
        color: COLORS.gateway,
      },
    ],
  }));
  // Reference lines on the ratio panel: 1.0 (as fast as direct) and 0.95 (the goal for c/a).
  const ratioMax = Math.max(1, ...relative.flatMap((g) => g.bars.map((b) => b.value)));
  const lineY = (ratio: number): number => height - 40 - ((height - 80) * ratio) / ratioMax;
  const references = [1, 0.95]
    .map(
      (ratio) =>
        `<line x1="${width / 2 + 30}" x2="${width - 10}" y1="${lineY(ratio).toFixed(1)}" y2="${lineY(ratio).toFixed(1)}" stroke="#c33" stroke-dasharray="4 3"/>` +
        `<text x="${width - 12}" y="${(lineY(ratio) - 3).toFixed(1)}" text-anchor="end" font-size="9" fill="#c33">${ratio.toFixed(2)}</text>`,
    )
    .join('\n');
  const legend = [
    ['(a) direct: server-everything over Streamable HTTP', COLORS.direct],
    ['(b) mcp-proxy → stdio server', COLORS.proxy],
    ['(c) Countersign (policy, limit, audit) → stdio server', COLORS.gateway],
  ]
    .map(
      ([label, color], i) =>
        `<rect x="20" y="${height + 6 + i * 16}" width="12" height="12" fill="${color}"/><text x="38" y="${height + 16 + i * 16}" font-size="11">${escape(label ?? '')}</text>`,
    )
    .join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height + 60}" viewBox="0 0 ${width} ${height + 60}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel(0, 'calls per second (higher is better)', 'calls/s', throughput, width / 2, height),
    panel(
      width / 2,
      'calls per second relative to direct',
      'ratio (goal for c: ≥ 0.95)',
      relative,
      width / 2,
      height,
    ),
    references,
    legend,
    `<text x="${width - 10}" y="${height + 54}" text-anchor="end" font-size="9" fill="#777">${escape(`${stdio.machine.cpuModel}, ${stdio.machine.cores} cores, Node ${stdio.machine.node}, ${stdio.startedAt}`)}</text>`,
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
