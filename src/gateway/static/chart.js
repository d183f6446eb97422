// A small dependency-free SVG bar chart of clicks per minute (one bar per minute, provisional
// minutes lighter), with a y axis, minute ticks on the x axis and a hover/keyboard read-out.

const SVG_NS = 'http://www.w3.org/2000/svg';
const MARGIN = { top: 14, right: 14, bottom: 30, left: 52 };

const intFormat = new Intl.NumberFormat('en-US');
const timeFormat = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', hour12: false });
const timeSecFormat = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

/** 12345 → "12,345". */
export function fmtInt(n) {
  return intFormat.format(n);
}

/** Epoch ms or ISO string → local "HH:MM" (or "HH:MM:SS" with seconds). */
export function fmtTime(t, seconds = false) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return '—';
  return (seconds ? timeSecFormat : timeFormat).format(d);
}

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

/** A "nice" axis step (1, 2 or 5 × 10^k, at least 1) giving about `ticks` intervals up to `max`. */
function niceStep(max, ticks) {
  const raw = Math.max(1, max / ticks);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const f = raw / pow;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * pow;
}

/**
 * Creates a chart inside `container` (its size follows the container's CSS size).
 * `update({ adId, minutes: [{ start: ms, count, final }] })` redraws; `clear(message)` empties it.
 */
export function createMinuteChart(container) {
  let data = null;
  let message = null;
  let active = -1; // minute index under the pointer / keyboard focus, -1 = none
  let parts = null; // geometry and elements of the current drawing that the read-out touches

  // One <svg> for the chart's lifetime: redraws replace its children only, so keyboard focus and
  // the pointer's hover survive the 2-second refreshes.
  const svg = el('svg', { role: 'img', tabindex: 0 });
  svg.addEventListener('pointermove', (ev) => {
    if (!parts) return;
    const r = svg.getBoundingClientRect();
    const px = ev.clientX - r.left - MARGIN.left;
    const py = ev.clientY - r.top;
    const inside = px >= 0 && px < parts.plotW && py >= MARGIN.top && py <= MARGIN.top + parts.plotH;
    setActive(inside ? Math.min(parts.n - 1, Math.floor(px / parts.band)) : -1);
  });
  svg.addEventListener('pointerleave', () => setActive(-1));
  svg.addEventListener('blur', () => setActive(-1));
  svg.addEventListener('keydown', (ev) => {
    if (!parts) return;
    if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight' || ev.key === 'Home' || ev.key === 'End') {
      ev.preventDefault();
      const last = parts.n - 1;
      const from = active < 0 ? last : active;
      const next = ev.key === 'Home' ? 0 : ev.key === 'End' ? last : from + (ev.key === 'ArrowLeft' ? -1 : 1);
      setActive(Math.min(last, Math.max(0, next)));
    } else if (ev.key === 'Escape') {
      setActive(-1);
    }
  });

  const draw = () => {
    parts = null;
    if (!data) {
      const p = document.createElement('p');
      p.className = 'empty';
      p.textContent = message ?? '';
      container.replaceChildren(p);
      return;
    }
    const width = Math.max(320, container.clientWidth);
    const height = Math.max(200, container.clientHeight);
    const plotW = width - MARGIN.left - MARGIN.right;
    const plotH = height - MARGIN.top - MARGIN.bottom;
    const mins = data.minutes;
    const n = Math.max(1, mins.length);
    const total = mins.reduce((s, m) => s + m.count, 0);
    const peak = mins.reduce((s, m) => Math.max(s, m.count), 0);
    const step = niceStep(peak, 5);
    const yMax = Math.max(step, Math.ceil(peak / step) * step);
    const band = plotW / n;
    const barW = Math.max(1, band * 0.74);
    const y = (v) => MARGIN.top + plotH - (v / yMax) * plotH;
    const x = (i) => MARGIN.left + i * band;

    const attrs = {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      'data-ad-id': data.adId,
      'data-total': total,
      'aria-label': `Clicks per minute for ${data.adId} over the last ${n} minutes: ${fmtInt(total)} in total, peak ${fmtInt(peak)}. Use the arrow keys to read single minutes.`,
    };
    for (const [k, v] of Object.entries(attrs)) svg.setAttribute(k, String(v));
    svg.replaceChildren();
    el('title', {}, svg).textContent = `Clicks per minute for ${data.adId}`;

    // Y axis: gridlines and labels.
    const yAxis = el('g', { class: 'axis axis-y' }, svg);
    for (let v = 0; v <= yMax; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      el('line', { class: v === 0 ? 'baseline' : 'grid', x1: MARGIN.left, x2: MARGIN.left + plotW, y1: yy, y2: yy }, yAxis);
      const label = el('text', { x: MARGIN.left - 8, y: yy, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, yAxis);
      label.textContent = fmtInt(v);
    }

    // X axis: a tick every 5 minutes, labelled every 10 (local clock minutes).
    const xAxis = el('g', { class: 'axis axis-x' }, svg);
    mins.forEach((m, i) => {
      const minute = new Date(m.start).getMinutes();
      if (minute % 5 !== 0) return;
      const cx = Math.round(x(i) + band / 2) + 0.5;
      const major = minute % 10 === 0;
      el('line', { class: 'tick', x1: cx, x2: cx, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + (major ? 6 : 3) }, xAxis);
      if (major) {
        const label = el('text', { x: cx, y: MARGIN.top + plotH + 18, 'text-anchor': 'middle' }, xAxis);
        label.textContent = fmtTime(m.start);
      }
    });

    // Hover band under the bars, then the bars (only minutes with clicks get one), then the tooltip.
    const highlight = el('rect', { class: 'hover-band', y: MARGIN.top, width: band, height: plotH, visibility: 'hidden' }, svg);
    const bars = el('g', { class: 'bars' }, svg);
    mins.forEach((m, i) => {
      if (m.count <= 0) return;
      const top = y(m.count);
      el('rect', {
        class: `bar ${m.final ? 'bar-final' : 'bar-provisional'}`,
        x: x(i) + (band - barW) / 2,
        y: top,
        width: barW,
        height: Math.max(1, MARGIN.top + plotH - top),
        rx: Math.min(2, barW / 4),
        'data-minute': new Date(m.start).toISOString(),
        'data-count': m.count,
        'data-final': m.final,
      }, bars);
    });
    const tip = el('g', { class: 'tooltip', visibility: 'hidden', 'pointer-events': 'none' }, svg);
    const tipBox = el('rect', { rx: 4, height: 38 }, tip);
    const tipLine1 = el('text', { x: 8, y: 15 }, tip);
    const tipLine2 = el('text', { x: 8, y: 31, class: 'tooltip-sub' }, tip);

    parts = { n, highlight, tip, tipBox, tipLine1, tipLine2, band, plotW, plotH, x };
    if (svg.parentNode !== container) container.replaceChildren(svg);
    if (active >= n) active = -1;
    showActive();
  };

  const showActive = () => {
    if (!parts || !data) return;
    const { highlight, tip, tipBox, tipLine1, tipLine2, band, plotW, x } = parts;
    const m = data.minutes[active];
    if (!m) {
      highlight.setAttribute('visibility', 'hidden');
      tip.setAttribute('visibility', 'hidden');
      return;
    }
    highlight.setAttribute('x', x(active));
    highlight.setAttribute('visibility', 'visible');
    tipLine1.textContent = `${fmtTime(m.start)} · ${fmtInt(m.count)} click${m.count === 1 ? '' : 's'}`;
    tipLine2.textContent = m.final ? 'final' : 'provisional (minute still open)';
    tip.setAttribute('visibility', 'visible');
    const w = Math.ceil(Math.max(tipLine1.getComputedTextLength(), tipLine2.getComputedTextLength())) + 16;
    tipBox.setAttribute('width', w);
    const cx = x(active) + band / 2;
    const left = Math.min(MARGIN.left + plotW - w, Math.max(MARGIN.left, cx - w / 2));
    tip.setAttribute('transform', `translate(${left},${MARGIN.top + 2})`);
  };

  const setActive = (i) => {
    if (i === active) return;
    active = i;
    showActive();
  };

  let lastSize = '';
  new ResizeObserver(() => {
    const size = `${container.clientWidth}x${container.clientHeight}`;
    if (size === lastSize) return;
    lastSize = size;
    draw();
  }).observe(container);

  return {
    update(next) {
      data = next;
      message = null;
      draw();
    },
    clear(msg) {
      data = null;
      message = msg;
      active = -1;
      draw();
    },
  };
}
