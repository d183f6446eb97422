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

/** One small chart of a small-multiples figure; every panel shares the x axis, y starts at 0. */
export interface Panel {
  title: string;
  series: Array<Omit<Series, 'axis'>>;
  /** Horizontal reference lines (targets). */
  refs?: Array<{ y: number; label: string; color: string }>;
  /** Tick label of a y value; default k/M suffixes. */
  yFormat?: (v: number) => string;
}

export interface PanelsSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  panels: Panel[];
  columns?: number;
  panelWidth?: number;
  panelHeight?: number;
}

/** Small multiples: a grid of line charts over one x range, each with its own y axis from 0. */
export function renderPanels(c: PanelsSpec): string {
  const cols = c.columns ?? 2;
  const PW = c.panelWidth ?? 470;
  const PH = c.panelHeight ?? 210;
  const top = c.subtitle ? 62 : 40;
  const rows = Math.ceil(c.panels.length / cols);
  const W = cols * PW;
  const H = top + rows * PH + 30;
  const m = { l: 62, r: 14, t: 44, b: 30 };
  const pw = PW - m.l - m.r;
  const ph = PH - m.t - m.b;
  const xMax = Math.max(1e-9, ...c.panels.flatMap((p) => p.series.flatMap((s) => s.points.map((q) => q[0]))));
  const xt = ticks(xMax, 8);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  o.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`);
  if (c.subtitle) o.push(`<text x="${W / 2}" y="42" text-anchor="middle" fill="#555">${esc(c.subtitle)}</text>`);
  c.panels.forEach((p, i) => {
    const ox = (i % cols) * PW + m.l;
    const oy = top + Math.floor(i / cols) * PH + m.t;
    const f = p.yFormat ?? fmt;
    const yMax = Math.max(0, ...p.series.flatMap((s) => s.points.map((q) => q[1])), ...(p.refs ?? []).map((r) => r.y));
    const yt = ticks(yMax, 4);
    const X = (x: number): number => ox + (x / xt[xt.length - 1]!) * pw;
    const Y = (y: number): number => oy + ph - (y / yt[yt.length - 1]!) * ph;
    o.push(`<text x="${ox}" y="${oy - 24}" font-size="12" font-weight="bold">${esc(p.title)}</text>`);
    for (const v of yt) {
      o.push(`<line x1="${ox}" y1="${Y(v)}" x2="${ox + pw}" y2="${Y(v)}" stroke="#eee"/>`);
      o.push(`<text x="${ox - 5}" y="${Y(v) + 4}" text-anchor="end">${esc(f(v))}</text>`);
    }
    for (const v of xt) o.push(`<text x="${X(v)}" y="${oy + ph + 14}" text-anchor="middle">${fmt(v)}</text>`);
    o.push(`<rect x="${ox}" y="${oy}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
    for (const r of p.refs ?? []) {
      o.push(`<line x1="${ox}" y1="${Y(r.y)}" x2="${ox + pw}" y2="${Y(r.y)}" stroke="${r.color}" stroke-dasharray="6 3"/>`);
      o.push(`<text x="${ox + pw - 4}" y="${Y(r.y) - 4}" text-anchor="end" fill="${r.color}">${esc(r.label)}</text>`);
    }
    let lx = ox;
    for (const s of p.series.length > 1 ? p.series : []) {
      o.push(`<line x1="${lx}" y1="${oy - 10}" x2="${lx + 18}" y2="${oy - 10}" stroke="${s.color}" stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
      o.push(`<text x="${lx + 22}" y="${oy - 6}">${esc(s.name)}</text>`);
      lx += 34 + s.name.length * 6;
    }
    for (const s of p.series) {
      if (s.points.length === 0) continue;
      const d = s.points.map((q, j) => `${j ? 'L' : 'M'}${X(q[0]).toFixed(1)},${Y(q[1]).toFixed(1)}`).join(' ');
      o.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.6"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    }
  });
  o.push(`<text x="${W / 2}" y="${H - 10}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  o.push('</svg>');
  return o.join('\n');
}
