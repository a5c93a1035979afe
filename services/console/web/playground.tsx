// Playground: a prompt and the sampling knobs; images appear as the sampler streams them.
import { useRef, useState } from 'preact/hooks';
import type { GenerateEvents } from '../api-types.ts';
import { ApiCallError, generateStream } from './api.ts';
import { num } from './format.ts';

interface Shown {
  index: number;
  seed: string;
  score: number;
  src: string;
}

type Form = typeof DEFAULTS;

const DEFAULTS = {
  prompt: 'a large blue circle at the center',
  n: '4',
  seed: '',
  temperature: '1',
  topK: '0',
  topP: '1',
  guidance: '1',
  candidates: '1',
  model: '',
};

/** The request body for the form: the .proto's field names; the server judges the values. */
function bodyOf(f: Form): Record<string, unknown> {
  const body: Record<string, unknown> = {
    prompt: f.prompt,
    num_images: Number(f.n),
    temperature: Number(f.temperature),
    top_k: Number(f.topK),
    top_p: Number(f.topP),
    guidance_scale: Number(f.guidance),
    candidates: Number(f.candidates),
  };
  if (f.seed.trim()) body.seed = f.seed.trim();
  if (f.model.trim()) {
    const [name, version] = f.model.trim().split('@');
    body.model = version ? { name, version: Number(version) } : { name };
  }
  return body;
}

/** One Generate stream at a time: its events as state, and a way to start (or cancel) one. */
function useGenerate() {
  const [images, setImages] = useState<Shown[]>([]);
  const [progress, setProgress] = useState<GenerateEvents['progress'] | null>(null);
  const [asked, setAsked] = useState<GenerateEvents['request'] | null>(null);
  const [done, setDone] = useState<GenerateEvents['done'] | null>(null);
  const [err, setErr] = useState<{ message: string; field?: string } | null>(null);
  const [running, setRunning] = useState(false);
  const abort = useRef<AbortController | undefined>(undefined);

  const start = async (body: Record<string, unknown>) => {
    abort.current?.abort();
    const ac = new AbortController();
    abort.current = ac;
    setImages([]);
    setProgress(null);
    setDone(null);
    setErr(null);
    setAsked(null);
    setRunning(true);
    const image = (i: GenerateEvents['image']) =>
      setImages((xs) =>
        [
          ...xs,
          { index: i.index, seed: i.seed, score: i.score, src: `data:image/png;base64,${i.png_base64}` },
        ].sort((a, b) => a.index - b.index),
      );
    try {
      await generateStream(
        body,
        {
          request: setAsked,
          progress: setProgress,
          image,
          done: setDone,
          error: (e) => setErr({ message: e.message, field: e.field }),
        },
        ac.signal,
      );
    } catch (e) {
      if (!ac.signal.aborted)
        setErr(
          e instanceof ApiCallError ? { message: e.message, field: e.body.field } : { message: String(e) },
        );
    } finally {
      setRunning(false);
    }
  };
  return { images, progress, asked, done, err, running, start, cancel: () => abort.current?.abort() };
}

export function PlaygroundPage() {
  const [f, setF] = useState(DEFAULTS);
  const g = useGenerate();
  const field = (k: keyof Form) => ({
    value: f[k],
    onInput: (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value }),
  });
  const bad = (k: string) => (g.err?.field === k ? 'bad' : undefined);
  return (
    <section class="playground">
      <h1>Playground</h1>
      <form
        class="panel"
        onSubmit={(e) => {
          e.preventDefault();
          void g.start(bodyOf(f));
        }}
      >
        <label class={`prompt ${bad('prompt') ?? ''}`}>
          prompt
          <textarea rows={2} {...field('prompt')} />
        </label>
        <div class="knobs">
          <label class={bad('num_images')}>
            images <input type="number" min={1} max={16} {...field('n')} />
          </label>
          <label class={bad('seed')}>
            seed <input placeholder="random" {...field('seed')} />
          </label>
          <label class={bad('temperature')}>
            temperature <input type="number" step="any" {...field('temperature')} />
          </label>
          <label class={bad('top_k')}>
            top-k <input type="number" min={0} {...field('topK')} />
          </label>
          <label class={bad('top_p')}>
            top-p <input type="number" step="any" {...field('topP')} />
          </label>
          <label class={bad('guidance_scale')}>
            guidance <input type="number" step="any" min={0} {...field('guidance')} />
          </label>
          <label class={bad('candidates')}>
            candidates <input type="number" min={1} {...field('candidates')} />
          </label>
          <label class={bad('model.name')}>
            model <input placeholder="default (name or name@version)" {...field('model')} />
          </label>
        </div>
        <button type="submit" disabled={g.running} data-action="generate">
          {g.running ? 'Generating…' : 'Generate'}
        </button>
        {g.running && (
          <button type="button" onClick={g.cancel}>
            Cancel
          </button>
        )}
      </form>
      <Results g={g} />
    </section>
  );
}

function Results(props: { g: ReturnType<typeof useGenerate> }) {
  const { err, progress, asked, images, done } = props.g;
  const total = progress ? progress.tokens_total * Math.max(1, progress.tokens_done.length) : 0;
  const sampled = progress?.tokens_done.reduce((a, b) => a + b, 0) ?? 0;
  return (
    <>
      {err && <p class="error">{err.message}</p>}
      {progress && total > 0 && (
        <div class="progress" title="image tokens sampled">
          <div class="bar" style={{ width: `${((100 * sampled) / total).toFixed(1)}%` }} />
          <span class="label">
            {progress.queue_position > 0
              ? `queued (${progress.queue_position} ahead)`
              : `tokens ${sampled} / ${total}`}
          </span>
        </div>
      )}
      {asked && (
        <p class="muted">
          seed {asked.seed};{' '}
          {asked.candidates > 1
            ? `image i is the reranker's best of ${asked.candidates} candidates, seeds seed + i·${asked.candidates} + c`
            : 'image i uses seed + i'}
        </p>
      )}
      <div class="images">
        {images.map((i) => (
          <figure key={i.index}>
            <img src={i.src} alt={`image ${i.index}`} data-image={i.index} />
            <figcaption>
              seed {i.seed} · score {num(i.score, 3)}
            </figcaption>
          </figure>
        ))}
      </div>
      {done && (
        <p class="muted">
          {done.model ? `${done.model.name} v${done.model.version}` : ''} · {num(done.timings.total_ms, 0)} ms
          (queue {num(done.timings.queue_ms, 0)}, sampling {num(done.timings.sample_ms, 0)}, decoding{' '}
          {num(done.timings.decode_ms, 0)})
        </p>
      )}
    </>
  );
}
