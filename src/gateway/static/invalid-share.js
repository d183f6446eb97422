// The invalid share of each ranked ad: GET /v1/ads/{id}/invalid over the ranking's window (and
// country filter), polled every few seconds for the ads the table lists. The table renders from
// the last answers, so a ranking update never blanks the column.

const POLL_MS = 4000;
const pct = new Intl.NumberFormat('en-US', { style: 'percent', minimumFractionDigits: 1, maximumFractionDigits: 1 });

/**
 * `authHeaders()`: the request headers (bearer token). `onUpdate()`: called when new shares
 * arrived (re-render the column with `cell`).
 */
export function createInvalidShares({ authHeaders, onUpdate }) {
  /** ad_id → {share, count, invalid, byRule} for the current window length and filter. */
  let shares = new Map();
  let target = { ads: [], from: '', to: '', country: '', kind: '' };
  let timer = 0;
  let inflight = false;
  let again = false;

  async function fetchOne(ad, t) {
    const q = new URLSearchParams({ from: String(Date.parse(t.from)), to: String(Date.parse(t.to)) });
    if (t.country) q.set('country', t.country);
    const res = await fetch(`/v1/ads/${encodeURIComponent(ad)}/invalid?${q}`, { cache: 'no-store', headers: authHeaders() });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const b = await res.json();
    return { share: Number(b.invalid_share) || 0, count: Number(b.count) || 0, invalid: Number(b.invalid) || 0, byRule: b.invalid_by_rule ?? {} };
  }

  async function refresh() {
    clearTimeout(timer);
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    const t = target;
    try {
      if (!document.hidden && t.ads.length > 0) {
        const answers = await Promise.allSettled(t.ads.map((ad) => fetchOne(ad, t)));
        // A newer filter or window length may have been chosen meanwhile: its shares only.
        if (t.kind === target.kind) {
          answers.forEach((a, i) => {
            if (a.status === 'fulfilled') shares.set(t.ads[i], a.value);
          });
          onUpdate();
        }
      }
    } finally {
      inflight = false;
      if (again) {
        again = false;
        void refresh();
      } else timer = setTimeout(() => void refresh(), POLL_MS);
    }
  }

  return {
    /** The ads and window of the ranking now shown; fetches at once for ads without a share. */
    track(ads, from, to, country) {
      // Shares of another window length or filter are not shown, even for a moment.
      const kind = JSON.stringify([Date.parse(to) - Date.parse(from), country ?? '']);
      if (kind !== target.kind) shares = new Map();
      target = { ads, from, to, country: country ?? '', kind };
      if (ads.some((ad) => !shares.has(ad))) void refresh();
      else if (!timer && !inflight) timer = setTimeout(() => void refresh(), POLL_MS);
    },
    /** Fills a table cell with an ad's invalid share (or a dash until it is known). */
    cell(td, ad) {
      const s = shares.get(ad);
      td.textContent = s ? pct.format(s.share) : '—';
      td.dataset.share = s ? String(s.share) : '';
      td.classList.toggle('has-invalid', Boolean(s && s.invalid > 0));
      const rules = s ? Object.entries(s.byRule).filter(([, n]) => n > 0) : [];
      td.title = s
        ? `${s.invalid} invalid of ${s.count + s.invalid} clicks in this window${rules.length ? ` (${rules.map(([r, n]) => `${r}: ${n}`).join(', ')})` : ''}`
        : 'not known yet';
    },
  };
}
