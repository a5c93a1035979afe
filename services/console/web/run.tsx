// Run: live figures and controls, curves per stage, the sample grid of every checkpoint (with a slider),
// the restarts timeline, the committed checkpoints, and links to the Temporal UI and the trace.
import { useState } from 'preact/hooks';
import type { RunDetail } from '../api-types.ts';
import { usePoll } from './api.ts';
import { Controls } from './controls.tsx';
import { CurvesPanel } from './curves.tsx';
import { ago, bytes, num, pct, when } from './format.ts';
import { Progress, Sha, Status } from './widgets.tsx';

export function RunView(props: { id: string }) {
  const { data: run, error, refresh } = usePoll<RunDetail>(`/api/runs/${encodeURIComponent(props.id)}`, 2000);
  if (!run)
    return <section>{error ? <p class="error">{error.message}</p> : <p class="muted">loading…</p>}</section>;
  const p = run.progress;
  const stages = (['dvae', 'transformer'] as const).filter(
    (s) => run.checkpoints.some((c) => c.stage === s) || p?.stage === s,
  );
  return (
    <section class="run">
      <h1>
        {run.runId} <Status status={run.status} paused={run.paused} />
      </h1>
      {error && <p class="error">{error.message} (showing the last answer)</p>}
      {run.note && <p class={run.status === 'running' ? 'muted' : 'error'}>{run.note}</p>}
      <RunFacts run={run} />
      <RunLinks run={run} />
      {run.status === 'running' && <Controls run={run} onDone={refresh} />}
      <SamplesPanel run={run} />
      {stages.map((s) => (
        <CurvesPanel key={s} runId={run.runId} stage={s} run={run} />
      ))}
      <Timeline run={run} />
      <Checkpoints run={run} />
    </section>
  );
}

/** The live figures of a run (progress query while it runs, its result once done). */
function RunFacts(props: { run: RunDetail }) {
  const { run } = props;
  const p = run.progress;
  return (
    <div class="facts">
      <span>
        stage <b data-stage>{run.stage}</b>
      </span>
      <Progress step={run.step} total={run.totalSteps} done={run.status === 'completed'} />
      <span>
        loss <b>{num(run.loss)}</b>
      </span>
      {p && (
        <span>
          lr <b>{num(p.lr)}</b>
        </span>
      )}
      {p?.tau !== null && p?.tau !== undefined && (
        <span>
          τ <b>{num(p.tau, 3)}</b> β <b>{num(p.beta, 3)}</b>
        </span>
      )}
      <span>
        <b>{num(run.stepsPerSec, 2)}</b> steps/s
      </span>
      <span>
        W <b>{run.worldSize ?? '–'}</b>
      </span>
      <span>
        restarts <b>{run.restarts}</b>
      </span>
      <span>
        compression <b>{pct(run.compressionRate)}</b>
      </span>
      {p && (
        <span>
          checkpoint <b data-checkpoint>{p.checkpointStep}</b>
        </span>
      )}
    </div>
  );
}

/** Where else to look at the run: the Temporal UI, its trace, the model it published. */
function RunLinks(props: { run: RunDetail }) {
  const { run } = props;
  return (
    <div class="links">
      <a href={run.links.temporal} target="_blank" rel="noreferrer">
        open in the Temporal UI
      </a>
      {run.start.traceId ? (
        <span>
          trace{' '}
          {run.links.trace ? (
            <a href={run.links.trace} target="_blank" rel="noreferrer">
              <code>{run.start.traceId}</code>
            </a>
          ) : (
            <code>{run.start.traceId}</code>
          )}
        </span>
      ) : (
        <span class="muted">not traced (no OTEL_EXPORTER_OTLP_ENDPOINT when it started)</span>
      )}
      <span class="muted">
        started {when(run.startedAt)}
        {run.closedAt ? `, ended ${when(run.closedAt)}` : ''}
      </span>
      {run.result && (
        <span>
          published{' '}
          <a href="#/models">
            {run.result.model.name} v{run.result.model.version}
          </a>
        </span>
      )}
    </div>
  );
}

function SamplesPanel(props: { run: RunDetail }) {
  const { run } = props;
  const stages = (['dvae', 'transformer'] as const).filter((s) => run.samples.some((x) => x.stage === s));
  const [picked, setStage] = useState<'dvae' | 'transformer' | null>(null);
  const stage = picked && stages.includes(picked) ? picked : stages.at(-1);
  const grids = run.samples.filter((s) => s.stage === stage);
  const [pos, setPos] = useState<number | null>(null);
  if (!stage || grids.length === 0)
    return (
      <div class="panel">
        <h2>Samples</h2>
        <p class="muted">No sample grid yet: the first one is drawn at the first checkpoint.</p>
      </div>
    );
  // Follows the newest grid until the slider is moved.
  const i = pos === null || pos >= grids.length ? grids.length - 1 : pos;
  const g = grids[i]!;
  const cost = run.sampleCost.find((c) => c.stage === stage);
  return (
    <div class="panel samples">
      <h2>
        Samples
        {stages.map((s) => (
          <button key={s} class={s === stage ? 'tab on' : 'tab'} onClick={() => (setStage(s), setPos(null))}>
            {s === 'dvae' ? 'dVAE reconstructions' : 'transformer samples'}
          </button>
        ))}
      </h2>
      <label class="slider">
        checkpoint step <b data-sample-step>{g.step}</b> ({i + 1} of {grids.length})
        <input
          type="range"
          min={0}
          max={grids.length - 1}
          value={i}
          onInput={(e) => setPos(Number((e.target as HTMLInputElement).value))}
        />
      </label>
      {cost && cost.grids > 0 && (
        <p class="muted" data-sample-cost>
          {cost.grids} grids of this stage took {cost.sampleSeconds.toFixed(1)} s to draw,{' '}
          {pct(cost.sampleSeconds / (cost.sampleSeconds + cost.stepSeconds))} of its step time
        </p>
      )}
      <img
        class="grid"
        alt={`${stage} samples at step ${g.step}: ${g.rows.join('; ')}`}
        src={`/api/runs/${encodeURIComponent(run.runId)}/samples/${stage}/${g.step}`}
      />
    </div>
  );
}

function Timeline(props: { run: RunDetail }) {
  const t = props.run.timeline;
  return (
    <div class="panel">
      <h2>Timeline</h2>
      {t.length === 0 ? (
        <p class="muted">nothing yet</p>
      ) : (
        <ol class="timeline">
          {t.map((e, k) => (
            <li key={k} class={`tl-${e.kind}`}>
              <time title={e.at}>{when(e.at)}</time> <span class={`kind kind-${e.kind}`}>{e.kind}</span>{' '}
              {e.message}
              {e.fromStep !== undefined && <b> (resumed from step {e.fromStep})</b>}
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}

function Checkpoints(props: { run: RunDetail }) {
  const cks = [...props.run.checkpoints].reverse();
  return (
    <div class="panel">
      <h2>Committed checkpoints</h2>
      {cks.length === 0 ? (
        <p class="muted">none yet</p>
      ) : (
        <table class="checkpoints">
          <thead>
            <tr>
              <th>stage</th>
              <th>step</th>
              <th>committed</th>
              <th>loss</th>
              <th>W</th>
              <th>parts (bytes, sha256)</th>
            </tr>
          </thead>
          <tbody>
            {cks.map((c) => (
              <tr key={`${c.stage}-${c.step}`}>
                <td>{c.stage}</td>
                <td class="num">{c.step}</td>
                <td title={c.createdAt}>{ago(c.createdAt)}</td>
                <td class="num">{num(c.loss)}</td>
                <td class="num">{c.worldSize ?? '–'}</td>
                <td>
                  {c.parts.map((p) => (
                    <span class="part" key={p.name}>
                      {p.name} {bytes(p.bytes)} <Sha sha256={p.sha256} />
                    </span>
                  ))}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
