import { render } from 'preact';
import './style.css';
import { useRoute } from './router.js';
import { RunsPage } from './runs.js';
import { RunPage } from './run.js';
import { WorkersPage } from './workers.js';

function App() {
  const route = useRoute();
  return (
    <>
      <header class="top">
        <a class="brand" href="#/">skein</a>
        <nav>
          <a href="#/" class={route.page === 'runs' ? 'on' : ''}>Runs</a>
          <a href="#/workers" class={route.page === 'workers' ? 'on' : ''}>Workers</a>
        </nav>
      </header>
      <main>
        {route.page === 'run' && route.id ? <RunPage key={route.id} id={route.id} /> : route.page === 'workers' ? <WorkersPage /> : <RunsPage params={route.params} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
