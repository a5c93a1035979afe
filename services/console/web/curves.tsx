// A stage's curves: what its checkpoints stored (every step from 1) plus the live points the progress query
// has shown since the newest checkpoint.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { Curves, RunDetail } from '../api-types.ts';
import { getJson } from './api.ts';
import { Chart, color } from './chart.tsx';

type Stage = 'dvae' | 'transformer';

/** Series drawn on the main charts, per stage; every other stored series gets a small chart below. */
const MAIN: Record<Stage, { title: string; series: string[]; log?: boolean }[]> = {
  dvae: [
    { title: 'loss (−ELBO per pixel-channel)', series: ['loss', 'recon', 'kl'] },
    { title: 'learning rate', series: ['lr'] },
    { title: 'Gumbel τ and KL weight β', series: ['tau', 'beta'] },
  ],
  transformer: [
    { title: 'loss (1/8 text + 7/8 image cross-entropy)', series: ['loss', 'textLoss', 'imageLoss'] },
    { title: 'learning rate', series: ['lr'] },
  ],
};
/** Counters and flags, not curves. */
const HIDDEN = new Set(['updates', 'skipped', 'clipped', 'bytesRaw']);
const LIVE_KEYS = ['loss', 'lr', 'tau', 'beta'] as const;

function useCurves(runId: string, stage: Stage, checkpointKey: string): Curves | undefined {
  const [c, setC] = useState<Curves>();
  useEffect(() => {
    let alive = true;
    getJson<Curves>(`/api/runs/${encodeURIComponent(runId)}/curves/${stage}`).then(
      (x) => alive && setC(x),
      () => undefined,
    );
    return () => void (alive = false);
  }, [runId, stage, checkpointKey]);
  return c;
}

export function CurvesPanel(props: { runId: string; stage: Stage; run: RunDetail }) {
  const { run, stage } = props;
  const newest = run.checkpoints.filter((c) => c.stage === stage).at(-1)?.step ?? 0;
  const stored = useCurves(props.runId, stage, `${newest}:${run.status}`);
  // Live points from the progress query, past the stored curves.
  const live = useRef(new Map<number, Record<string, number | null>>());
  const p = run.progress;
  if (p && p.stage === stage && p.step > 0)
    live.current.set(p.step, { loss: p.loss, lr: p.lr, tau: p.tau, beta: p.beta });
  const last = stored?.steps.at(-1) ?? 0;
  for (const s of live.current.keys()) if (s <= last) live.current.delete(s);
  const tail = [...live.current.keys()].sort((a, b) => a - b);

  if (!stored || (stored.steps.length === 0 && tail.length === 0)) return null;
  const x = [...stored.steps, ...tail];
  const values = (name: string) => [
    ...(stored.series[name] ?? stored.steps.map(() => null)),
    ...tail.map((s) =>
      (LIVE_KEYS as readonly string[]).includes(name) ? (live.current.get(s)![name] ?? null) : null,
    ),
  ];
  const main = MAIN[stage].map((m) => ({
    ...m,
    series: m.series.filter((s) => s in stored.series || s === 'loss'),
  }));
  const shown = new Set(main.flatMap((m) => m.series));
  const more = Object.keys(stored.series).filter((s) => !shown.has(s) && !HIDDEN.has(s));
  return (
    <div class="panel curves" data-curves={stage}>
      <h2>{stage === 'dvae' ? 'dVAE' : 'Transformer'} curves</h2>
      <div class="charts">
        {main
          .filter((m) => m.series.length > 0)
          .map((m) => (
            <Chart
              key={m.title}
              title={m.title}
              x={x}
              lines={m.series.map((s, i) => ({ label: s, values: values(s), color: color(i) }))}
            />
          ))}
      </div>
      {more.length > 0 && (
        <details>
          <summary>more series ({more.join(', ')})</summary>
          <div class="charts small">
            {more.map((s, i) => (
              <Chart
                key={s}
                title={s}
                x={x}
                height={140}
                lines={[{ label: s, values: values(s), color: color(i + 3) }]}
              />
            ))}
          </div>
        </details>
      )}
    </div>
  );
}
