// Models: every published version, and which one the sampler serves.
import type { ModelsView } from '../api-types.ts';
import { usePoll } from './api.ts';
import { ago, bytes } from './format.ts';
import { Sha } from './widgets.tsx';

export function ModelsPage() {
  const { data, error } = usePoll<ModelsView>('/api/models', 5000);
  return (
    <section>
      <h1>Models</h1>
      {error && <p class="error">{error.message}</p>}
      {data && (
        <p class={data.sampler.reachable ? 'muted' : 'error'}>
          sampler at <code>{data.sampler.address}</code>:{' '}
          {data.sampler.reachable
            ? `serving, default model ${data.sampler.defaultModel}`
            : `unreachable (${data.sampler.error}); start it with 'dalle sampler'`}
        </p>
      )}
      {data && data.models.length === 0 && (
        <p class="muted">Nothing published yet: a run publishes its model when it completes.</p>
      )}
      {data?.models.map((m) => (
        <div class="panel" key={m.name} data-model={m.name}>
          <h2>
            {m.name} {m.isDefault && <span class="badge">default</span>}
          </h2>
          <table>
            <thead>
              <tr>
                <th>version</th>
                <th>sampler</th>
                <th>published</th>
                <th>run</th>
                <th>preset</th>
                <th>bytes</th>
                <th>sha256</th>
              </tr>
            </thead>
            <tbody>
              {[...m.versions].reverse().map((v) => (
                <tr key={v.version}>
                  <td class="num">v{v.version}</td>
                  <td>
                    {m.servingVersion === v.version ? (
                      <span class="badge serving" data-serving>
                        serving
                      </span>
                    ) : m.loadedVersions.includes(v.version) ? (
                      <span class="badge">loaded</span>
                    ) : (
                      ''
                    )}
                  </td>
                  <td title={v.createdAt}>{ago(v.createdAt)}</td>
                  <td>{v.runId ? <a href={`#/runs/${encodeURIComponent(v.runId)}`}>{v.runId}</a> : '–'}</td>
                  <td>{v.preset ?? '–'}</td>
                  <td class="num">{bytes(v.bytes)}</td>
                  <td>
                    <Sha sha256={v.sha256} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </section>
  );
}
