// Small pieces every view uses.
import type { RunStatusName } from '../api-types.ts';

export function Status(props: { status: RunStatusName; paused?: boolean }) {
  const s = props.paused && props.status === 'running' ? 'paused' : props.status;
  return <span class={`status status-${s}`}>{s}</span>;
}

export function Progress(props: { step: number; total: number; done?: boolean }) {
  const f = props.done ? 1 : props.total > 0 ? Math.min(1, props.step / props.total) : 0;
  return (
    <div class="progress" title={`${props.step} / ${props.total}`}>
      <div class="bar" style={{ width: `${(f * 100).toFixed(1)}%` }} />
      <span class="label">{props.done ? 'done' : `${props.step} / ${props.total}`}</span>
    </div>
  );
}

export function Sha(props: { sha256: string }) {
  return (
    <code class="sha" title={props.sha256}>
      {props.sha256.slice(0, 12)}…
    </code>
  );
}
