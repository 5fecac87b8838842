// @vitest-environment jsdom
/**
 * The React views in jsdom, driven like a user would (labels, roles, buttons), on the fake engine:
 * navigation, inline validation, the dataset preview, training to a saved adapter, the loss chart,
 * the library's rename/delete, compare, and the no-WebGPU message.
 */
import { act, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { LossChart, niceTicks, smooth } from '../../src/ui/components/LossChart';
import { whitespaceNote } from '../../src/ui/components/CompareView';
import { detectContainer } from '../../src/train/data/containers';
import { FakeEngine } from './fake-engine';
import { FakeLocks, makeApp, until } from './helpers';
import { appTestSetup, mountApp as mount } from './app-harness';

appTestSetup();

const nav = () => within(screen.getByRole('navigation', { name: 'Steps' }));

describe('App', () => {
  it('has a step navigation that marks the current view and switches views', async () => {
    const { c } = await makeApp();
    mount(c);
    const buttons = nav().getAllByRole('button');
    expect(buttons.map((b) => b.querySelector('.step-label')?.textContent)).toEqual([
      '1 · Model',
      '2 · Data',
      '3 · Settings',
      '4 · Train',
      '5 · Adapters',
      '6 · Compare',
      '7 · Chat',
      'Diagnostics',
    ]);
    expect(buttons[0]!.getAttribute('aria-current')).toBe('page');
    expect(buttons[0]!.textContent).toContain('stories260K');
    fireEvent.click(buttons[2]!);
    expect(screen.getByRole('heading', { level: 2 }).textContent).toBe('3 · Settings');
    expect(window.location.hash).toBe('#/settings');
    expect(nav().getAllByRole('button')[2]!.getAttribute('aria-current')).toBe('page');
  });

  it('shows the model cost card and the loaded model', async () => {
    const { c } = await makeApp();
    mount(c);
    const card = screen.getByRole('region', { name: 'Cost of this model' });
    expect(card.textContent).toMatch(/Parameters260K/);
    expect(card.textContent).toMatch(/Bundled with the app/);
    expect(screen.getByTestId('model-loaded').textContent).toMatch(/tabtune\/stories260K.*llama.*chat template/);
    expect(screen.getByRole('button', { name: /stories260K \(tiny Llama\)/ }).getAttribute('aria-pressed')).toBe(
      'true',
    );
    // the model card: origin, licence and a link to the shipped README
    const modelCard = screen.getByTestId('model-card');
    expect(modelCard.textContent).toMatch(/Andrej Karpathy's stories260K from llama2\.c.*Licence: MIT\./);
    expect(within(modelCard).getByRole('link', { name: 'Model card' }).getAttribute('href')).toBe(
      'models/stories260K/README.md',
    );
  });

  it('a folder with the same name as the loaded one (saved again, or another copy) can be loaded; the loaded one says Loaded', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { File: NodeFile } = await import('node:buffer'); // jsdom's File cannot be read
    const dir = join(process.cwd(), 'public/models/stories260K');
    const folder = () =>
      readdirSync(dir).map((n) => {
        const f = new NodeFile([new Uint8Array(readFileSync(join(dir, n)))], n);
        Object.defineProperty(f, 'webkitRelativePath', { value: `my-model/${n}` });
        return f as unknown as File;
      });
    const { c } = await makeApp();
    mount(c);
    const load = () => screen.getByTestId('load-model') as HTMLButtonElement;
    await act(() => c.chooseModel({ kind: 'files', id: 'my-model', files: folder() }));
    expect(load().disabled).toBe(false);
    await act(async () => void (await c.loadModel()));
    expect(load().textContent).toBe('Loaded');
    expect(load().disabled).toBe(true);
    await act(() => c.chooseModel({ kind: 'files', id: 'my-model', files: folder() }));
    expect(load().textContent).toBe('Load model');
    expect(load().disabled).toBe(false);
  });

  it('validates settings inline: labelled fields, messages, aria-invalid, and start is blocked', async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    const rank = screen.getByLabelText('Rank r');
    fireEvent.change(rank, { target: { value: 'abc' } });
    expect(rank.getAttribute('aria-invalid')).toBe('true');
    const errId = rank.getAttribute('aria-describedby')!.split(' ').pop()!;
    expect(document.getElementById(errId)!.textContent).toBe('Rank r must be a whole number.');
    fireEvent.change(screen.getByLabelText('Learning rate'), { target: { value: '-1' } });
    expect(screen.getByText('Learning rate must be above 0 and at most 1.')).toBeTruthy();
    fireEvent.click(nav().getByRole('button', { name: /Train/ }));
    const start = screen.getByTestId('start-training') as HTMLButtonElement;
    expect(start.disabled).toBe(true);
    expect(
      within(screen.getByRole('list', { name: 'Why training cannot start' })).getByText(/Fix the highlighted settings/),
    ).toBeTruthy();
    // fixing it unblocks
    fireEvent.click(nav().getByRole('button', { name: /Settings/ }));
    fireEvent.change(screen.getByLabelText('Rank r'), { target: { value: '16' } });
    fireEvent.change(screen.getByLabelText('Learning rate'), { target: { value: '0.001' } });
    expect(c.state.lora.r).toBe(16);
    expect(c.state.train.lr).toBe(0.001);
    fireEvent.click(nav().getByRole('button', { name: /Train/ }));
    expect((screen.getByTestId('start-training') as HTMLButtonElement).disabled).toBe(false);
  });

  it('a setting that is not a number shows as a dash in the navigation and the run summary, never NaN', async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    fireEvent.change(screen.getByLabelText('Learning rate'), { target: { value: 'abc' } });
    fireEvent.change(screen.getByLabelText('Rank r'), { target: { value: '' } });
    fireEvent.change(screen.getByLabelText('Batch size'), { target: { value: 'x' } });
    expect(screen.getByRole('navigation', { name: 'Steps' }).textContent).not.toMatch(/NaN/);
    expect(nav().getByRole('button', { name: /Settings/ }).textContent).toContain('r — · lr —');
    fireEvent.click(nav().getByRole('button', { name: /Train/ }));
    const lead = document.querySelector('.lead')!.textContent!;
    expect(lead).not.toMatch(/NaN/);
    expect(lead).toContain('lr —');
    expect(lead).toContain('batch —');
  });

  it('steps: typing 0, a negative number or nothing keeps the steps field, says what is allowed and blocks the start', async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    fireEvent.click(screen.getByRole('radio', { name: 'steps' }));
    for (const typed of ['0', '-5', '', 'ten']) {
      fireEvent.change(screen.getByRole('textbox', { name: 'Steps' }), { target: { value: typed } });
      // still in steps mode, with what was typed
      expect((screen.getByRole('radio', { name: 'steps' }) as HTMLInputElement).checked).toBe(true);
      const field = screen.getByRole('textbox', { name: 'Steps' }) as HTMLInputElement;
      expect(field.value).toBe(typed);
      expect(field.getAttribute('aria-invalid')).toBe('true');
      expect(screen.getByText('Steps must be a whole number between 1 and 1000000.')).toBeTruthy();
      expect(c.startBlockers()).toContain('Fix the highlighted settings (Settings).');
    }
    fireEvent.change(screen.getByRole('textbox', { name: 'Steps' }), { target: { value: '12' } });
    expect(c.state.train.steps).toBe(12);
    expect(c.startBlockers()).toEqual([]);
    // epochs mode is chosen with the radio, not by typing 0 steps
    fireEvent.click(screen.getByRole('radio', { name: 'epochs' }));
    expect(c.state.train.steps).toBe(0);
    expect(screen.getByLabelText('Epochs')).toBeTruthy();
  });

  it('memory and loss-read settings: activation checkpointing and a validated loss interval reach the training run', async () => {
    const { c, engine } = await makeApp();
    c.go('settings');
    mount(c);
    const ckpt = screen.getByRole('checkbox', { name: /activation checkpointing/ }) as HTMLInputElement;
    expect(ckpt.checked).toBe(false);
    expect(ckpt.getAttribute('aria-describedby')).toBe('ckpt-hint');
    fireEvent.click(ckpt);
    expect(c.state.train.activationCheckpointing).toBe(true);
    const every = screen.getByLabelText('Read the loss every (steps)');
    fireEvent.change(every, { target: { value: '0' } });
    expect(every.getAttribute('aria-invalid')).toBe('true');
    expect(screen.getByText('Read the loss every must be between 1 and 10000.')).toBeTruthy();
    fireEvent.change(every, { target: { value: '5' } });
    expect(c.state.train.lossEvery).toBe(5);
    // the settings go to the engine as they are
    c.setTrain({ steps: 3 });
    await c.startTraining();
    expect(engine.lastTrain?.train.activationCheckpointing).toBe(true);
    expect(engine.lastTrain?.train.lossEvery).toBe(5);
  });

  it('frozen weights: 16-bit or 4-bit NF4 with the memory of each; choosing 4-bit loads the model in 4 bits', async () => {
    const { c, engine } = await makeApp();
    c.go('settings');
    mount(c);
    const group = within(screen.getByRole('group', { name: 'Frozen weights' }));
    const sixteen = group.getByRole('radio', { name: /^16-bit/ }) as HTMLInputElement;
    const four = group.getByRole('radio', { name: /^4-bit NF4/ }) as HTMLInputElement;
    await waitFor(() => expect(four.labels![0]!.textContent).toMatch(/4-bit NF4 · about .+ to train/));
    expect(sixteen.labels![0]!.textContent).toMatch(/16-bit · about .+ to train/);
    expect(sixteen.checked).toBe(true);
    const dq = group.getByRole('checkbox', { name: /double quantization/ }) as HTMLInputElement;
    expect(dq.disabled).toBe(true); // only with 4-bit weights
    fireEvent.click(four);
    await waitFor(() => expect(engine.lastFrozen).toEqual({ quantize: 'nf4', doubleQuant: true }));
    await waitFor(() => expect(screen.getByRole('group', { name: 'Frozen weights' })).toBeTruthy());
    const again = within(screen.getByRole('group', { name: 'Frozen weights' }));
    await waitFor(() =>
      expect((again.getByRole('radio', { name: /^4-bit NF4/ }) as HTMLInputElement).checked).toBe(true),
    );
    expect((again.getByRole('checkbox', { name: /double quantization/ }) as HTMLInputElement).disabled).toBe(false);
    c.go('model');
    await waitFor(() => expect(screen.getByTestId('model-loaded').textContent).toMatch(/4-bit NF4/));
  });

  it("target modules: the model's linear modules as checkboxes, all-linear, family default", async () => {
    const { c } = await makeApp();
    c.go('settings');
    mount(c);
    const all = screen.getByRole('checkbox', { name: /all-linear/ }) as HTMLInputElement;
    expect(all.checked).toBe(true); // demo preset
    fireEvent.click(all);
    expect(c.state.lora.target_modules).toEqual(['q_proj', 'v_proj']);
    const k = screen.getByRole('checkbox', { name: /k_proj/ }) as HTMLInputElement;
    expect(k.checked).toBe(false);
    fireEvent.click(k);
    expect(c.state.lora.target_modules).toEqual(['q_proj', 'k_proj', 'v_proj']);
    fireEvent.click(screen.getByRole('checkbox', { name: /q_proj/ }));
    fireEvent.click(screen.getByRole('checkbox', { name: /k_proj/ }));
    fireEvent.click(screen.getByRole('checkbox', { name: /v_proj/ }));
    expect(screen.getByText('Choose at least one target module, or all-linear.')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Use the default' }));
    expect(c.state.lora.target_modules).toEqual(['q_proj', 'v_proj']);
  });

  it('dataset view: counts, issues by line, highlighted counted tokens, paged preview', async () => {
    const { c } = await makeApp();
    c.go('data');
    mount(c);
    const summary = screen.getByTestId('dataset-summary');
    expect(summary.textContent).toMatch(/alpaca/);
    expect(summary.textContent).toMatch(/24records/);
    const examples = document.querySelectorAll('.example');
    expect(examples).toHaveLength(5);
    expect(examples[0]!.querySelector('mark.counted')!.textContent).toBe('Her name was Lily.');
    expect(screen.getByText('Page 1 of 5')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Next →' }));
    expect(screen.getByText('Page 2 of 5')).toBeTruthy();
    // An invalid max length (here past the fake model's 128 positions) is flagged with the Settings
    // view's own message, and the counts shown are marked as those of the last valid value.
    expect(screen.queryByTestId('summary-stale')).toBeNull();
    fireEvent.change(screen.getByLabelText('Max sequence length'), { target: { value: '4096' } });
    expect(screen.getByText('This model handles at most 128 positions.')).toBeTruthy();
    expect(screen.getByTestId('summary-stale').textContent).toMatch(/last valid max length/);
    fireEvent.change(screen.getByLabelText('Max sequence length'), { target: { value: '64' } });
    expect(screen.queryByTestId('summary-stale')).toBeNull();
    await act(() => c.setDatasetText('bad.jsonl', '{"text":"ok"}\nnope\n'));
    expect(screen.getByText('line 2')).toBeTruthy();
    expect(screen.getByText(/1 line skipped or cut/)).toBeTruthy();
    expect(screen.queryByTestId('dataset-truncated')).toBeNull();
    // Records longer than max length are said to be cut, with their lines (not only a tag on the preview).
    const long = JSON.stringify({ text: 'x'.repeat(100) });
    await act(() => c.setDatasetText('long.jsonl', `{"text":"ok"}\n${long}\n${long}\n`));
    expect(screen.getByTestId('dataset-truncated').textContent).toBe(
      '2 examples are longer than max length 64 and cut to it, so their end is not trained on (lines 2, 3). Raise max length in Settings, or shorten those records.',
    );
  });

  it('dataset view: the first records and the counts so far while the file is counted, then the final summary', async () => {
    const { c, engine } = await makeApp();
    c.go('data');
    mount(c);
    let open = (): void => undefined;
    engine.countingGate = new Promise<void>((r) => (open = r));
    const lines = Array.from({ length: 40 }, (_, i) =>
      i === 2 || i === 30 ? 'nope' : JSON.stringify({ instruction: `Say ${i}`, output: `Hi ${i}` }),
    );
    const loading = c.setDatasetText('big.jsonl', lines.join('\n'));
    // The early summary: preview of the first records, counts and issues so far, no final summary.
    const early = await screen.findByTestId('dataset-provisional');
    expect(screen.getByTestId('dataset-progress').textContent).toMatch(/^Counting… \d+ records so far \(50%\)$/);
    const soFar = Number(/Counting… (\d+)/.exec(screen.getByTestId('dataset-progress').textContent!)![1]);
    expect(soFar).toBeGreaterThan(0);
    expect(soFar).toBeLessThan(38);
    expect(within(early).getByText(/1 line skipped or cut so far/)).toBeTruthy();
    expect(within(early).getByText('line 3')).toBeTruthy();
    expect(screen.queryByTestId('dataset-summary')).toBeNull();
    expect(screen.queryByRole('button', { name: 'Next: settings →' })).toBeNull();
    const firstEarly = document.querySelector('.example mark.counted')!.textContent;
    expect(firstEarly).toBe('Hi 0');
    expect(c.state.dataset.summary?.fileName).not.toBe('big.jsonl');
    // The final summary replaces it: exact counts, every issue, the same first example.
    await act(async () => {
      open();
      await loading;
    });
    engine.countingGate = null;
    expect(screen.queryByTestId('dataset-provisional')).toBeNull();
    expect(screen.queryByTestId('dataset-progress')).toBeNull();
    const summary = screen.getByTestId('dataset-summary');
    expect(summary.textContent).toMatch(/38records/);
    expect(within(summary).getByText(/2 lines skipped or cut —/)).toBeTruthy();
    expect(document.querySelector('.example mark.counted')!.textContent).toBe(firstEarly);
  });

  it('pasted text is read by what it holds: plain paragraphs as text, records as JSON Lines', async () => {
    const { c, engine } = await makeApp();
    c.go('data');
    mount(c);
    const paste = (text: string) => {
      fireEvent.change(screen.getByLabelText('Or paste records'), { target: { value: text } });
      fireEvent.click(screen.getByRole('button', { name: 'Use pasted text' }));
    };
    const plain = 'Hello world, this is pasted text.\n\nAnother pasted record.';
    paste(plain);
    await waitFor(() => expect(engine.calls.filter((x) => x.startsWith('loadDataset:')).length).toBeGreaterThan(1));
    const name = engine.calls
      .filter((x) => x.startsWith('loadDataset:'))
      .pop()!
      .slice('loadDataset:'.length);
    // The name the reader gets must not force a container: the real reader sniffs this as paragraphs.
    expect(detectContainer(name, plain)).toBe('txt');
    expect(detectContainer(name, '{"text":"a"}\n{"text":"b"}')).toBe('jsonl');
    expect(detectContainer(name, '[{"text":"a"}]')).toBe('json');
    expect(c.state.dataset.fileName).toBe(name);
  });

  it('trains to a saved adapter and draws the loss curve with labelled axes', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 5, evalEvery: 5, checkpointEvery: 2 });
    c.go('train');
    mount(c);
    await act(async () => {
      fireEvent.click(screen.getByTestId('start-training'));
    });
    await waitFor(() => expect(screen.getByTestId('train-finished')).toBeTruthy());
    expect(screen.getByTestId('train-finished').textContent).toMatch(/Adapter saved: stories260K · demo-qa · r8/);
    const chart = screen.getByTestId('loss-chart');
    expect(JSON.parse(chart.getAttribute('data-losses')!)).toHaveLength(5);
    const texts = [...chart.querySelectorAll('text')].map((t) => t.textContent);
    expect(texts).toContain('step');
    expect(texts).toContain('loss (nats / token)');
    expect(chart.querySelectorAll('circle.dot-val')).toHaveLength(1);
    expect(screen.getByTestId('step').textContent).toBe('5');
    expect(screen.getByRole('progressbar', { name: 'Training progress' }).getAttribute('aria-valuenow')).toBe('5');
    // The run was checkpointed, but once its adapter is saved there is nothing to resume from.
    expect(c.state.run.checkpoint?.step).toBeGreaterThan(0);
    expect(screen.queryByTestId('last-checkpoint')).toBeNull();
  });

  it('a run stopped early is headed as stopped, not finished', async () => {
    const engine = new FakeEngine();
    engine.stepMs = 5;
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 1000 });
    c.go('train');
    mount(c);
    let done!: Promise<void>;
    act(() => {
      done = c.startTraining();
    });
    await act(() => engine.reached(3));
    act(() => c.stop());
    await act(() => done);
    await waitFor(() => expect(screen.getByTestId('train-finished').textContent).toMatch(/Stopped early after/));
    expect(within(screen.getByTestId('train-progress')).getByRole('heading', { level: 3 }).textContent).toBe(
      'Stopped early',
    );
  });

  it('keeps the keyboard focus on the run controls: Start gives way to Pause, Pause to Resume, the end to Train again', async () => {
    const engine = new FakeEngine();
    engine.stepMs = 5;
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 1000 });
    c.go('train');
    mount(c);
    const start = screen.getByTestId('start-training');
    start.focus();
    let done!: Promise<void>;
    act(() => {
      done = c.startTraining();
    });
    await act(() => engine.reached(2));
    const pause = screen.getByRole('button', { name: 'Pause' });
    expect(document.activeElement).toBe(pause);
    act(() => pause.click());
    await waitFor(() => expect(c.state.run.status).toBe('paused'));
    // the same element, relabelled: the focus never left it
    expect(screen.getByRole('button', { name: 'Resume' })).toBe(pause);
    expect(document.activeElement).toBe(pause);
    act(() => c.stop());
    await act(() => done);
    await waitFor(() => expect(screen.getByTestId('train-finished')).toBeTruthy());
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Train again' }));
  });

  it('an unfinished run is discarded only when confirmed; Keep leaves it resumable', async () => {
    const { c, engine } = await makeApp();
    c.setTrain({ steps: 4, checkpointEvery: 2 });
    engine.failNext.train = Object.assign(new Error('boom'), { name: 'EngineError' });
    await c.startTraining();
    expect(c.state.resumable).toHaveLength(1);
    c.go('train');
    mount(c);
    const run = () => screen.queryAllByTestId('resumable-run');
    fireEvent.click(within(run()[0]!).getByRole('button', { name: 'Discard…' }));
    expect(c.state.resumable).toHaveLength(1); // one click deletes nothing
    const confirm = within(run()[0]!).getByRole('group', { name: 'Confirm discard' });
    expect(document.activeElement).toBe(within(confirm).getByRole('button', { name: 'Discard the checkpoint' }));
    fireEvent.click(within(confirm).getByRole('button', { name: 'Keep' }));
    expect(document.activeElement).toBe(within(run()[0]!).getByRole('button', { name: 'Discard…' }));
    expect(c.state.resumable).toHaveLength(1);
    fireEvent.click(within(run()[0]!).getByRole('button', { name: 'Discard…' }));
    await act(async () => {
      fireEvent.click(within(run()[0]!).getByRole('button', { name: 'Discard the checkpoint' }));
    });
    await waitFor(() => expect(run()).toHaveLength(0));
    expect(c.state.resumable).toHaveLength(0);
  });

  it('while a run starts, it says what it is doing (resuming at step N of M, compiling) and the bar is not full', async () => {
    const engine = new FakeEngine();
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 8, checkpointEvery: 2 });
    let open!: () => void;
    engine.firstStepGate = new Promise<void>((r) => (open = r));
    const started = c.startTraining();
    await until(() => c.state.run.startup === 'Compiling the GPU kernels for the first step…');
    expect(c.state.run.totalSteps).toBe(8);
    open();
    await started;
    expect(c.state.run.startup).toBeNull();
    // A failed run resumes from its checkpoint at step 4: the start says so, with the step count.
    engine.deviceLostAtStep = 5;
    engine.firstStepGate = null;
    await c.startTraining();
    engine.firstStepGate = new Promise<void>((r) => (open = r));
    const seen: string[] = [];
    const off = c.store.subscribe(() => {
      const s = c.state.run.startup;
      if (s && seen.at(-1) !== s) seen.push(s);
    });
    const resumed = c.resumeRun(c.state.resumable[0]!.id);
    await until(() => c.state.run.startup === 'Resuming at step 4 of 8: compiling the GPU kernels for the first step…');
    expect(seen[0]).toMatch(/^Resuming at step 4 of 8: /);
    expect(c.state.run.totalSteps).toBe(8);
    mount(c);
    await waitFor(() =>
      expect(screen.getByTestId('train-startup').textContent).toBe(
        'Resuming at step 4 of 8: compiling the GPU kernels for the first step…',
      ),
    );
    const bar = screen.getByRole('progressbar', { name: 'Training progress' });
    expect(bar.getAttribute('aria-valuenow')).toBe('4');
    expect(bar.getAttribute('aria-valuemax')).toBe('8');
    open();
    await resumed;
    off();
    expect(c.state.run).toMatchObject({ status: 'done', startup: null });
  });

  it('a run another tab is training shows here as a sign that the GPU is in use', async () => {
    const locks = new FakeLocks();
    const engineA = new FakeEngine();
    engineA.stepMs = 2;
    const a = await makeApp({ engine: engineA, locks, tabId: 'A' });
    a.c.setTrain({ steps: 50, checkpointEvery: 3 });
    const running = a.c.startTraining();
    await engineA.reached(4);
    engineA.pause();
    const b = await makeApp({ locks, tabId: 'B' });
    await b.c.go('train');
    await until(() => b.c.state.elsewhere.length === 1, 2000, 'the other tab to be seen');
    expect(b.c.state.resumable).toEqual([]);
    expect(a.c.state.elsewhere).toEqual([]); // a tab's own run is not "elsewhere"
    mount(b.c);
    expect(screen.getByTestId('training-elsewhere').textContent).toMatch(
      /Another tab is training on this GPU.*\(checkpoint at step 3 of 50\)/,
    );
    // That tab finishes: the sign goes.
    engineA.resume();
    await running;
    await act(() => b.c.refreshRuns());
    expect(b.c.state.elsewhere).toEqual([]);
    expect(screen.queryByTestId('training-elsewhere')).toBeNull();
  });

  it('library: a double click on Download downloads once', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 2 });
    await c.startTraining();
    c.go('library');
    mount(c);
    const saved: string[] = [];
    const created = URL.createObjectURL;
    const revoked = URL.revokeObjectURL;
    const click = HTMLAnchorElement.prototype.click;
    URL.createObjectURL = () => 'blob:test';
    URL.revokeObjectURL = () => {};
    HTMLAnchorElement.prototype.click = function (this: HTMLAnchorElement) {
      saved.push(this.download);
    };
    try {
      const button = screen.getByTestId('download-zip');
      await act(async () => {
        fireEvent.click(button);
        fireEvent.click(button);
      });
      await waitFor(() => expect(saved).toHaveLength(1));
      // A second click a moment later (the whole double click) is ignored too.
      await act(async () => {
        fireEvent.click(button);
        await new Promise((r) => setTimeout(r, 50));
      });
      expect(saved).toHaveLength(1);
      expect(saved[0]).toMatch(/\.zip$/);
    } finally {
      URL.createObjectURL = created;
      URL.revokeObjectURL = revoked;
      HTMLAnchorElement.prototype.click = click;
    }
  });

  it('library: rename and a confirmed delete', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 2 });
    await c.startTraining();
    c.go('library');
    mount(c);
    expect(screen.getAllByTestId('adapter-row')).toHaveLength(1);
    fireEvent.click(screen.getByRole('button', { name: 'Rename' }));
    fireEvent.change(screen.getByLabelText('New name'), { target: { value: 'my adapter' } });
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Save' }));
    });
    await waitFor(() => expect(screen.getByTestId('adapter-name').textContent).toBe('my adapter'));
    fireEvent.click(screen.getByRole('button', { name: 'Delete…' }));
    await act(async () => {
      fireEvent.click(screen.getByRole('button', { name: 'Delete for good' }));
    });
    await waitFor(() => expect(screen.queryAllByTestId('adapter-row')).toHaveLength(0));
  });

  it('library by keyboard: Escape cancels a rename, and closing the form or the delete question gives focus back to its button', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 2 });
    await c.startTraining();
    c.go('library');
    mount(c);
    const original = screen.getByTestId('adapter-name').textContent;
    fireEvent.click(screen.getByRole('button', { name: 'Rename' }));
    const input = screen.getByLabelText('New name');
    expect(document.activeElement).toBe(input);
    fireEvent.change(input, { target: { value: 'half typed' } });
    fireEvent.keyDown(input, { key: 'Escape' });
    expect(screen.queryByLabelText('New name')).toBeNull();
    expect(screen.getByTestId('adapter-name').textContent).toBe(original);
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Rename' }));
    // saved by Enter: focus is back on Rename, not lost to the page
    fireEvent.click(screen.getByRole('button', { name: 'Rename' }));
    fireEvent.change(screen.getByLabelText('New name'), { target: { value: 'by keyboard' } });
    await act(async () => {
      fireEvent.submit(screen.getByLabelText('New name').closest('form')!);
    });
    await waitFor(() => expect(screen.getByTestId('adapter-name').textContent).toBe('by keyboard'));
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Rename' }));
    fireEvent.click(screen.getByRole('button', { name: 'Delete…' }));
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Delete for good' }));
    fireEvent.click(screen.getByRole('button', { name: 'Keep' }));
    expect(document.activeElement).toBe(screen.getByRole('button', { name: 'Delete…' }));
    expect(screen.getAllByTestId('adapter-row')).toHaveLength(1);
  });

  it('compare: outputs side by side and the loss table', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 2 });
    await c.startTraining();
    c.go('compare');
    mount(c);
    expect((screen.getByRole('checkbox', { name: /stories260K · demo-qa · r8/ }) as HTMLInputElement).checked).toBe(
      true,
    );
    await act(async () => {
      fireEvent.click(screen.getByTestId('run-compare'));
    });
    await waitFor(() => expect(screen.getByTestId('compare-outputs').getAttribute('data-status')).toBe('done'));
    const cells = screen.getAllByTestId('compare-cell');
    expect(cells).toHaveLength(4);
    expect(cells[1]!.textContent).toMatch(/The cat watched the rain\./);
    expect(cells[0]!.textContent).toMatch(/only whitespace: 2 line breaks/);
    await act(async () => {
      fireEvent.click(screen.getByTestId('run-eval'));
    });
    await waitFor(() => expect(screen.getByTestId('eval-table').querySelectorAll('td.num')).toHaveLength(6));
    expect(screen.getByTestId('eval-table').textContent).toMatch(/3\.000\s*20\.09/); // loss 3, perplexity e^3 for the base model
    expect(screen.getByTestId('eval-table').textContent).toMatch(/1\.500\s*4\.48/); // e^1.5 with the adapter
  });

  it('compare: the loss table shows what was evaluated, and the outputs keep their columns, whatever ran after', async () => {
    const { c } = await makeApp();
    c.setTrain({ steps: 2 });
    await c.startTraining();
    await c.startTraining(); // a second adapter
    const [second, first] = c.state.library.adapters;
    c.go('compare');
    mount(c);
    // evaluate base + the second adapter only
    act(() => c.toggleCompareAdapter(first!.id, false));
    act(() => c.toggleCompareAdapter(second!.id, true));
    await act(() => c.runEvaluation());
    const rows = () => [...screen.getByTestId('eval-table').querySelectorAll('tbody tr')].map((r) => r.textContent);
    expect(rows()).toHaveLength(2);
    // now generate with both adapters: the table still lists what it measured, no row "waiting" for ever
    act(() => c.toggleCompareAdapter(first!.id, true));
    await act(() => c.runCompare());
    expect(screen.getAllByTestId('compare-cell')).toHaveLength(2 * 3);
    expect(rows()).toHaveLength(2);
    expect(rows().join(' ')).not.toMatch(/waiting|evaluating/);
    expect(rows()[1]).toContain(second!.name);
    // and an evaluation with fewer adapters does not hide outputs already generated
    act(() => c.toggleCompareAdapter(first!.id, false));
    await act(() => c.runEvaluation());
    expect(screen.getAllByTestId('compare-cell')).toHaveLength(2 * 3);
    expect(screen.getByTestId('eval-table').querySelector('caption')!.textContent).toContain('demo-qa.jsonl');
  });

  it('keyboard: the hidden file inputs are not tab stops (their buttons are), in Model, Data and Adapters', async () => {
    const { c } = await makeApp();
    mount(c);
    for (const [view, button] of [
      ['Model', 'Choose folder…'],
      ['Data', 'Upload file…'],
      ['Adapters', 'Choose files…'],
    ] as const) {
      fireEvent.click(nav().getByRole('button', { name: new RegExp(view) }));
      const inputs = Array.from(document.querySelectorAll<HTMLInputElement>('input[type="file"]'));
      expect(inputs.length, view).toBe(1);
      expect(inputs[0]!.tabIndex, `${view}: the file input is skipped by Tab`).toBe(-1);
      const b = screen.getByRole('button', { name: button });
      expect(b.tabIndex).toBe(0);
    }
  });

  it("Diagnostics is a view like the others: its own h2 title under the app's single h1", async () => {
    const { c } = await makeApp();
    mount(c);
    fireEvent.click(nav().getByRole('button', { name: /Diagnostics/ }));
    await waitFor(() => expect(screen.getByRole('heading', { level: 2 }).textContent).toBe('Diagnostics'));
    expect(document.querySelectorAll('h1')).toHaveLength(1);
    expect(document.querySelector('main.page')).toBeTruthy();
  });

  it('Diagnostics runs the self-test through the engine (the GPU worker), shows each check, and waits for a training run', async () => {
    const engine = new FakeEngine();
    engine.stepMs = 5;
    const { c } = await makeApp({ engine });
    c.setTrain({ steps: 1000 });
    mount(c);
    let done!: Promise<void>;
    act(() => {
      done = c.startTraining();
    });
    await act(() => engine.reached(2));
    fireEvent.click(nav().getByRole('button', { name: /Diagnostics/ }));
    const main = () => document.querySelector('main.page')!;
    await waitFor(() => expect(main().getAttribute('data-status')).toBe('waiting'));
    expect(main().textContent).toMatch(/training run is using the GPU/);
    expect(engine.calls).not.toContain('selfTest');
    act(() => c.stop());
    await act(() => done);
    await waitFor(() => expect(main().getAttribute('data-status')).toBe('passed'));
    expect(engine.calls.filter((x) => x === 'selfTest')).toHaveLength(1);
    expect(main().textContent).toMatch(/all 2 checks passed/);
    expect(main().textContent).toMatch(/maxComputeInvocationsPerWorkgroup256/);
    engine.failSelfTest = true;
    fireEvent.click(screen.getByRole('button', { name: 'Run again' }));
    await waitFor(() => expect(main().getAttribute('data-status')).toBe('failed'));
    expect(main().textContent).toMatch(/1 of 2 checks failed/);
    expect(main().textContent).toMatch(/got 1.5, expected 1/);
  });

  it('explains a missing WebGPU, with what other browsers need', async () => {
    const engine = new FakeEngine();
    engine.noWebGpu = true;
    const { c } = await makeApp({ engine });
    mount(c);
    const alert = screen.getAllByRole('alert')[0]!;
    expect(alert.textContent).toMatch(/WebGPU is not available/);
    expect(alert.textContent).toMatch(/Firefox/);
    expect(alert.textContent).toMatch(/Safari/);
    expect(screen.getByText('no WebGPU')).toBeTruthy();
  });
});

describe('chart helpers', () => {
  it('round ticks, smoothing, whitespace notes', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(2.3, 7.1, 5)).toEqual([2, 3, 4, 5, 6, 7, 8]);
    expect(niceTicks(4.2, 7.4, 5)).toEqual([4, 5, 6, 7, 8]);
    expect(niceTicks(0, 60, 6)).toEqual([0, 10, 20, 30, 40, 50, 60]);
    for (const v of smooth([1, 1, 1])) expect(v).toBeCloseTo(1, 12);
    expect(smooth([4, 2], 0.5)[1]).toBeCloseTo((4 * 0.25 + 2 * 0.5) / 0.75);
    expect(whitespaceNote('\n\n ')).toBe('2 line breaks, 1 space');
  });

  it('renders an empty-history chart without NaN', () => {
    render(<LossChart history={[{ step: 1, loss: 2, valLoss: null, lr: 0.1 }]} totalSteps={10} />);
    const svg = screen.getByTestId('loss-chart');
    expect(svg.innerHTML).not.toMatch(/NaN/);
  });
});
