/** A tiny SVG line-chart writer (no dependency): x axis, a left and an optional right y axis. */

export interface Series {
  name: string;
  color: string;
  axis: 'left' | 'right';
  points: ReadonlyArray<readonly [number, number]>;
  dash?: string;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  leftLabel: string;
  rightLabel?: string;
  series: Series[];
  width?: number;
  height?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** "Nice" tick values covering [0, max]. */
export function ticks(max: number, target = 5): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => max / s <= target) ?? 10 * mag;
  const out: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(v);
  if (out[out.length - 1]! < max) out.push(out[out.length - 1]! + step);
  return out;
}

function fmt(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

export function renderChart(c: ChartSpec): string {
  const W = c.width ?? 960;
  const H = c.height ?? 440;
  const m = { l: 70, r: c.rightLabel ? 70 : 20, t: 64, b: 74 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = c.series.flatMap((s) => s.points);
  const xMax = Math.max(1e-9, ...all.map((p) => p[0]));
  const yMax = (axis: 'left' | 'right') =>
    Math.max(0, ...c.series.filter((s) => s.axis === axis).flatMap((s) => s.points.map((p) => p[1])));
  const xt = ticks(xMax, 10);
  const lt = ticks(yMax('left'));
  const rt = ticks(yMax('right'));
  const X = (x: number) => m.l + (x / xt[xt.length - 1]!) * pw;
  const YL = (y: number) => m.t + ph - (y / lt[lt.length - 1]!) * ph;
  const YR = (y: number) => m.t + ph - (y / rt[rt.length - 1]!) * ph;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`);
  if (c.subtitle) {
    // Long subtitles wrap onto a second line at a word boundary.
    const sub = c.subtitle;
    const cut = sub.length > 130 ? sub.lastIndexOf(' ', 130) : -1;
    const lines = cut > 0 ? [sub.slice(0, cut), sub.slice(cut + 1)] : [sub];
    lines.forEach((l, i) => o.push(`<text x="${W / 2}" y="${38 + i * 14}" text-anchor="middle" fill="#555" font-size="11">${esc(l)}</text>`));
  }
  // grid + left axis
  for (const v of lt) {
    const y = YL(v);
    o.push(`<line x1="${m.l}" y1="${y}" x2="${m.l + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${m.l - 6}" y="${y + 4}" text-anchor="end">${fmt(v)}</text>`);
  }
  for (const v of xt) {
    const x = X(v);
    o.push(`<line x1="${x}" y1="${m.t + ph}" x2="${x}" y2="${m.t + ph + 5}" stroke="#333"/>`);
    o.push(`<text x="${x}" y="${m.t + ph + 18}" text-anchor="middle">${fmt(v)}</text>`);
  }
  if (c.rightLabel) {
    for (const v of rt) o.push(`<text x="${m.l + pw + 6}" y="${YR(v) + 4}">${fmt(v)}</text>`);
    o.push(
      `<text transform="translate(${W - 16},${m.t + ph / 2}) rotate(90)" text-anchor="middle">${esc(c.rightLabel)}</text>`,
    );
  }
  o.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  o.push(`<text x="${m.l + pw / 2}" y="${m.t + ph + 36}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  o.push(`<text transform="translate(16,${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.leftLabel)}</text>`);
  for (const s of c.series) {
    if (s.points.length === 0) continue;
    const Y = s.axis === 'left' ? YL : YR;
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ');
    o.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
  }
  // legend
  let lx = m.l;
  const ly = H - 14;
  for (const s of c.series) {
    o.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    const label = `${s.name}${c.rightLabel ? (s.axis === 'left' ? ' (left)' : ' (right)') : ''}`;
    o.push(`<text x="${lx + 28}" y="${ly}">${esc(label)}</text>`);
    lx += 40 + label.length * 6.6;
  }
  o.push('</svg>');
  return o.join('\n');
}
