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

const DEFAULTS = {
  prompt: 'a large blue circle at the center',
  n: '4',
  seed: '',
  temperature: '1',
  topK: '0',
  topP: '1',
  model: '',
};

export function PlaygroundPage() {
  const [f, setF] = useState(DEFAULTS);
  const [images, setImages] = useState<Shown[]>([]);
  const [progress, setProgress] = useState<GenerateEvents['progress'] | null>(null);
  const [asked, setAsked] = useState<GenerateEvents['request'] | null>(null);
  const [done, setDone] = useState<GenerateEvents['done'] | null>(null);
  const [err, setErr] = useState<{ message: string; field?: string } | null>(null);
  const [running, setRunning] = useState(false);
  const abort = useRef<AbortController | undefined>(undefined);
  const field = (k: keyof typeof DEFAULTS) => ({
    value: f[k],
    onInput: (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value }),
  });

  const go = async () => {
    abort.current?.abort();
    const ac = new AbortController();
    abort.current = ac;
    setImages([]);
    setProgress(null);
    setDone(null);
    setErr(null);
    setAsked(null);
    setRunning(true);
    const body: Record<string, unknown> = {
      prompt: f.prompt,
      num_images: Number(f.n),
      temperature: Number(f.temperature),
      top_k: Number(f.topK),
      top_p: Number(f.topP),
    };
    if (f.seed.trim()) body.seed = f.seed.trim();
    if (f.model.trim()) {
      const [name, version] = f.model.trim().split('@');
      body.model = version ? { name, version: Number(version) } : { name };
    }
    try {
      await generateStream(
        body,
        {
          request: setAsked,
          progress: setProgress,
          image: (i) =>
            setImages((xs) =>
              [
                ...xs,
                {
                  index: i.index,
                  seed: i.seed,
                  score: i.score,
                  src: `data:image/png;base64,${i.png_base64}`,
                },
              ].sort((a, b) => a.index - b.index),
            ),
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

  const bad = (k: string) => (err?.field === k ? 'bad' : undefined);
  const total = progress?.tokens_total ?? 0;
  const doneTokens = progress?.tokens_done.reduce((a, b) => a + b, 0) ?? 0;
  return (
    <section class="playground">
      <h1>Playground</h1>
      <form
        class="panel"
        onSubmit={(e) => {
          e.preventDefault();
          void go();
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
          <label class={bad('model.name')}>
            model <input placeholder="default (name or name@version)" {...field('model')} />
          </label>
        </div>
        <button type="submit" disabled={running} data-action="generate">
          {running ? 'Generating…' : 'Generate'}
        </button>
        {running && (
          <button type="button" onClick={() => abort.current?.abort()}>
            Cancel
          </button>
        )}
      </form>
      {err && (
        <p class="error">
          {err.field ? `${err.field}: ` : ''}
          {err.message}
        </p>
      )}
      {progress && total > 0 && (
        <div class="progress" title="image tokens sampled">
          <div
            class="bar"
            style={{
              width: `${((100 * doneTokens) / (total * Math.max(1, progress.tokens_done.length))).toFixed(1)}%`,
            }}
          />
          <span class="label">
            {progress.queue_position > 0
              ? `queued (${progress.queue_position} ahead)`
              : `tokens ${doneTokens} / ${total * progress.tokens_done.length}`}
          </span>
        </div>
      )}
      {asked && <p class="muted">seed {asked.seed}; image i uses seed + i</p>}
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
    </section>
  );
}
