// The page's side of the console API: the bearer token (taken once from `?token=` in the URL, then kept in
// this browser's localStorage), JSON calls that name what went wrong, polling that rests while the tab is
// hidden, and a reader of the server-sent events of POST /api/generate.
import { useEffect, useState } from 'preact/hooks';
import type { ApiError, GenerateEvents } from '../api-types.ts';

const TOKEN_KEY = 'dalle-console-token';

/** Moves `?token=` from the address bar into storage, so it is not left in history or screenshots. */
export function adoptUrlToken(): void {
  const url = new URL(location.href);
  const t = url.searchParams.get('token');
  if (!t) return;
  localStorage.setItem(TOKEN_KEY, t);
  url.searchParams.delete('token');
  history.replaceState(null, '', url.pathname + url.search + url.hash);
}

export const getToken = (): string | null => localStorage.getItem(TOKEN_KEY);
export const setToken = (t: string | null): void =>
  t ? localStorage.setItem(TOKEN_KEY, t) : localStorage.removeItem(TOKEN_KEY);

/** A failed API call: the server's error code and message. */
export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiError,
  ) {
    super(body.message || `HTTP ${status}`);
  }
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  const t = getToken();
  if (t) h.authorization = `Bearer ${t}`;
  if (json) h['content-type'] = 'application/json';
  return h;
}

async function check(r: Response): Promise<Response> {
  if (r.ok) return r;
  const body = (await r.json().catch(() => ({ error: 'http', message: `HTTP ${r.status}` }))) as ApiError;
  throw new ApiCallError(r.status, body);
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  return (await (await check(await fetch(path, { headers: headers(false), signal }))).json()) as T;
}

export async function postJson<T>(path: string, body?: unknown): Promise<T> {
  const r = await fetch(path, {
    method: 'POST',
    headers: headers(true),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return (await (await check(r)).json()) as T;
}

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  /** Fetch now (e.g. after a control changed something). */
  refresh: () => void;
}

/** A poll's request that has not answered by then is dropped (and the next one made), so one request stuck
 *  in a slow service never ends the polling. */
const POLL_TIMEOUT_MS = 15_000;

/** GET `path` now and every `everyMs` while the tab is visible; `path` null pauses. */
export function usePoll<T>(path: string | null, everyMs: number): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<Error>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!path) return;
    // Per effect, not per component: after a refresh the previous loop's request in flight must not
    // schedule a second loop beside the new one.
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      if (document.visibilityState === 'visible') {
        try {
          const d = await getJson<T>(path, AbortSignal.timeout(POLL_TIMEOUT_MS));
          if (!alive) return;
          setData(d);
          setError(undefined);
        } catch (e) {
          if (!alive) return;
          setError(e as Error);
        }
      }
      if (alive) timer = setTimeout(() => void run(), everyMs);
    };
    void run();
    return () => {
      alive = false;
      clearTimeout(timer);
    };
  }, [path, everyMs, tick]);
  return { data, error, refresh: () => setTick((t) => t + 1) };
}

type GenerateHandler = { [K in keyof GenerateEvents]: (data: GenerateEvents[K]) => void };

/** POST /api/generate as server-sent events; each event goes to its handler. Rejects with ApiCallError when
 *  the request fails before streaming (a bad field, no sampler). */
export async function generateStream(
  body: Record<string, unknown>,
  on: GenerateHandler,
  signal: AbortSignal,
): Promise<void> {
  const r = await check(
    await fetch('/api/generate', {
      method: 'POST',
      headers: { ...headers(true), accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal,
    }),
  );
  const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let at: number;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      const handler = on[event as keyof GenerateEvents] as ((d: unknown) => void) | undefined;
      handler?.(JSON.parse(data.join('\n')));
    }
  }
}
