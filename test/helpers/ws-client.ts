/** A WebSocket client of the live top-N feed that records every frame, for tests. */
import WebSocket from 'ws';
import { waitFor } from './wait.ts';

/** A frame of the feed (docs/api.md): the fields tests look at. */
export interface FeedFrame {
  type: string;
  final?: boolean;
  window?: number;
  count?: number;
  from?: string;
  to?: string;
  code?: string;
  error?: string;
  filter?: Record<string, string> | null;
  ads?: Array<{ ad_id: string; count: number }>;
}

/** `GET /v1/ws/popular_ads?q` of the gateway at `http`. */
export const feedUrl = (http: string, q = ''): string => `${http.replace('http', 'ws')}/v1/ws/popular_ads?${q}`;

/** Records every frame received and the close code; socket errors are expected in these tests and kept quiet. */
export class FeedClient {
  readonly frames: FeedFrame[] = [];
  readonly ws: WebSocket;
  closedWith: number | undefined;
  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (d) => this.frames.push(JSON.parse(String(d)) as FeedFrame));
    this.ws.on('close', (code) => (this.closedWith = code));
    this.ws.on('error', () => undefined);
  }
  /** Resolves once open; rejects on a refused upgrade. */
  opened(): Promise<void> {
    return new Promise((res, rej) => {
      this.ws.once('open', () => res());
      this.ws.once('error', rej);
    });
  }
  /** The first frame matching `pred`, waiting for it. */
  async next(pred: (f: FeedFrame) => boolean, timeoutMs = 30_000): Promise<FeedFrame> {
    let found: FeedFrame | undefined;
    await waitFor('a matching frame', () => (found = this.frames.find(pred)) !== undefined, {
      timeoutMs,
      everyMs: 50,
      detail: () => this.frames.slice(-3),
    });
    return found!;
  }
  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }
  /** Every frame of one type so far. */
  of(type: string): FeedFrame[] {
    return this.frames.filter((f) => f.type === type);
  }
  close(): void {
    this.ws.terminate();
  }
}
