// Pause, resume and setWorldSize for a running run. They need the console token: taken from the URL the
// console printed, or pasted here once (kept in this browser).
import { useState } from 'preact/hooks';
import type { RunDetail } from '../api-types.ts';
import { ApiCallError, getJson, getToken, postJson, setToken } from './api.ts';

export function Controls(props: { run: RunDetail; onDone: () => void }) {
  const { run } = props;
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [w, setW] = useState(String(run.worldSize ?? ''));
  const [hasToken, setHasToken] = useState(!!getToken());
  const base = `/api/runs/${encodeURIComponent(run.runId)}`;

  const act = async (what: string, path: string, body?: unknown) => {
    setBusy(true);
    setMsg(null);
    try {
      await postJson(`${base}/${path}`, body);
      setMsg({ ok: true, text: `${what}: signalled` });
      props.onDone();
    } catch (e) {
      const auth = e instanceof ApiCallError && (e.status === 401 || e.status === 403);
      if (auth) setHasToken(false);
      setMsg({ ok: false, text: `${what}: ${(e as Error).message}` });
    } finally {
      setBusy(false);
    }
  };

  if (!hasToken) return <TokenForm onToken={() => setHasToken(true)} />;
  return (
    <div class="panel controls">
      <h2>Controls</h2>
      {run.paused ? (
        <button disabled={busy} onClick={() => void act('resume', 'resume')} data-action="resume">
          Resume
        </button>
      ) : (
        <button disabled={busy} onClick={() => void act('pause', 'pause')} data-action="pause">
          Pause
        </button>
      )}
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void act('world size', 'world-size', { world_size: Number(w) });
        }}
      >
        <label>
          world size{' '}
          <input
            type="number"
            min={1}
            step={1}
            value={w}
            onInput={(e) => setW((e.target as HTMLInputElement).value)}
          />
        </label>
        <button disabled={busy} type="submit">
          Set
        </button>
      </form>
      <span class="muted">
        {run.paused
          ? 'paused: the next segment waits for resume'
          : 'pause takes effect at the next segment boundary'}
      </span>
      {msg && <p class={msg.ok ? 'ok' : 'error'}>{msg.text}</p>}
    </div>
  );
}

function TokenForm(props: { onToken: () => void }) {
  const [t, setT] = useState('');
  const [err, setErr] = useState<string | null>(null);
  return (
    <div class="panel controls">
      <h2>Controls</h2>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          setToken(t.trim());
          getJson('/api/auth').then(
            () => props.onToken(),
            (x: Error) => (setToken(null), setErr(x.message)),
          );
        }}
      >
        <label>
          console token{' '}
          <input type="password" value={t} onInput={(e) => setT((e.target as HTMLInputElement).value)} />
        </label>
        <button type="submit">Use</button>
      </form>
      <span class="muted">printed by `dalle console`, or in $DALLE_HOME/console.token</span>
      {err && <p class="error">{err}</p>}
    </div>
  );
}
