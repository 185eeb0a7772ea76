/**
 * A small line chart as SVG text (no plotting dependency): latency against load for
 * docs/BENCHMARKS.md. Log-scaled y axis, since p99 and p50 differ by orders of magnitude.
 */

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Array<{ x: number; y: number }>;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Horizontal reference lines, e.g. a target. */
  hlines?: Array<{ y: number; label: string; color: string }>;
  /** Vertical reference lines. */
  vlines?: Array<{ x: number; label: string; color: string }>;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicksLinear(max: number, count = 6): number[] {
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max + 1e-9; v += step) ticks.push(v);
  return ticks;
}

export function lineChart(series: Series[], o: ChartOptions): string {
  const W = 760;
  const H = 420;
  const m = { l: 70, r: 170, t: 40, b: 55 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y) && p.y > 0);
  const hys = (o.hlines ?? []).map((h) => h.y);
  const xMax = Math.max(...all.map((p) => p.x), ...(o.vlines ?? []).map((v) => v.x)) * 1.05;
  const yMinRaw = Math.min(...all.map((p) => p.y), ...hys);
  const yMaxRaw = Math.max(...all.map((p) => p.y), ...hys);
  const yLo = 10 ** Math.floor(Math.log10(yMinRaw));
  const yHi = 10 ** Math.ceil(Math.log10(yMaxRaw));
  const X = (x: number) => m.l + (x / xMax) * pw;
  const Y = (y: number) => m.t + ph - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  // y grid (decades and 2x, 5x)
  for (let d = yLo; d <= yHi * 1.0001; d *= 10) {
    for (const k of [1, 2, 5]) {
      const v = d * k;
      if (v > yHi * 1.0001) continue;
      const y = Y(v);
      out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${k === 1 ? '#ccc' : '#eee'}"/>`);
      out.push(`<text x="${m.l - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end" fill="#333">${v >= 1 ? v : v.toPrecision(1)}</text>`);
    }
  }
  for (const v of niceTicksLinear(xMax)) {
    const x = X(v);
    out.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${m.t}" y2="${m.t + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x.toFixed(1)}" y="${m.t + ph + 18}" text-anchor="middle" fill="#333">${v}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.l + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  for (const h of o.hlines ?? []) {
    const y = Y(h.y);
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${h.color}" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${m.l + 4}" y="${(y - 4).toFixed(1)}" fill="${h.color}">${esc(h.label)}</text>`);
  }
  for (const v of o.vlines ?? []) {
    const x = X(v.x);
    out.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${m.t}" y2="${m.t + ph}" stroke="${v.color}" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${(x + 4).toFixed(1)}" y="${m.t + 14}" fill="${v.color}">${esc(v.label)}</text>`);
  }
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p.y) && p.y > 0);
    const d = pts.map((p, k) => `${k ? 'L' : 'M'}${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    for (const p of pts) out.push(`<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    const ly = m.t + 10 + i * 20;
    out.push(`<line x1="${m.l + pw + 12}" x2="${m.l + pw + 36}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    out.push(`<text x="${m.l + pw + 42}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
