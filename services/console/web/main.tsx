// The console page: a hash router over four views. Served by services/console/server.ts.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { adoptUrlToken } from './api.ts';
import { ModelsPage } from './models.tsx';
import { PlaygroundPage } from './playground.tsx';
import { RunView } from './run.tsx';
import { RunsView } from './runs.tsx';
import './style.css';

function useHash(): string {
  const [h, setH] = useState(location.hash);
  useEffect(() => {
    const on = () => setH(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return h;
}

function App() {
  const hash = useHash();
  const path = hash.replace(/^#/, '') || '/runs';
  const run = /^\/runs\/(.+)$/.exec(path);
  const tab = run ? '/runs' : path;
  const nav = (to: string, label: string) => (
    <a href={`#${to}`} class={tab === to ? 'on' : ''}>
      {label}
    </a>
  );
  return (
    <>
      <header>
        <span class="brand">dalle console</span>
        <nav>
          {nav('/runs', 'Runs')}
          {nav('/models', 'Models')}
          {nav('/playground', 'Playground')}
        </nav>
      </header>
      <main>
        {run ? (
          <RunView key={run[1]} id={decodeURIComponent(run[1]!)} />
        ) : path === '/models' ? (
          <ModelsPage />
        ) : path === '/playground' ? (
          <PlaygroundPage />
        ) : (
          <RunsView />
        )}
      </main>
    </>
  );
}

adoptUrlToken();
render(<App />, document.getElementById('app')!);
