// Runs: every trainDalle run, newest first, live while running.
import type { RunSummary } from '../api-types.ts';
import { usePoll } from './api.ts';
import { ago, num, pct } from './format.ts';
import { Progress, Status } from './widgets.tsx';

export function RunsView() {
  const { data, error } = usePoll<{ runs: RunSummary[] }>('/api/runs', 2000);
  return (
    <section>
      <h1>Runs</h1>
      {error && <p class="error">{error.message}</p>}
      {!data && !error && <p class="muted">loading…</p>}
      {data && data.runs.length === 0 && (
        <p class="muted">
          No runs yet. Start one with <code>dalle train --config tiny</code>.
        </p>
      )}
      {data && data.runs.length > 0 && (
        <table class="runs">
          <thead>
            <tr>
              <th>run</th>
              <th>status</th>
              <th>preset</th>
              <th>stage</th>
              <th class="wide">progress</th>
              <th>loss</th>
              <th>steps/s</th>
              <th>W</th>
              <th>restarts</th>
              <th title="gradient bytes PowerSGD did not send">compression</th>
              <th>started</th>
            </tr>
          </thead>
          <tbody>
            {data.runs.map((r) => (
              <tr key={r.runId} data-run={r.runId}>
                <td>
                  <a href={`#/runs/${encodeURIComponent(r.runId)}`}>{r.runId}</a>
                </td>
                <td>
                  <Status status={r.status} paused={r.paused} />
                </td>
                <td>{r.preset ?? '–'}</td>
                <td>{r.stage}</td>
                <td class="wide">
                  <Progress step={r.step} total={r.totalSteps} done={r.status === 'completed'} />
                </td>
                <td class="num">{num(r.loss)}</td>
                <td class="num">{num(r.stepsPerSec, 2)}</td>
                <td class="num">{r.worldSize ?? '–'}</td>
                <td class="num">{r.restarts}</td>
                <td class="num">{pct(r.compressionRate)}</td>
                <td title={r.startedAt}>{ago(r.startedAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
